"""`aelab data list|fetch|info|export`."""

from __future__ import annotations

import argparse
import json

from ..errors import ConfigError

NAME = "data"


def add_parser(sub) -> argparse.ArgumentParser:
    da = sub.add_parser("data", help="list, fetch, describe and export datasets")
    dsub = da.add_subparsers(dest="data_cmd", metavar="ACTION")
    dsub.add_parser("list", help="datasets aelab knows and where they are")
    f = dsub.add_parser("fetch", help="find or download a dataset and verify its checksums")
    f.add_argument("name")
    f.add_argument("--no-download", action="store_true", help="only look for local copies")
    i = dsub.add_parser("info", help="shapes, classes and location of a dataset")
    i.add_argument("name")
    e = dsub.add_parser(
        "export",
        help="write one split of a built-in dataset as an .npy (input for `aelab encode`)",
        description=(
            "Writes the train or test images of mnist, fashion-mnist or cifar10 as they are stored: uint8, "
            "shaped (N, C, H, W), unscaled (`aelab encode` scales uint8 by 1/255, as training does)."
        ),
    )
    e.add_argument("name")
    e.add_argument("--split", choices=("train", "test"), default="train", help="which split (default: train)")
    e.add_argument("--path", help="folder holding the dataset's files (default: the fetched copy)")
    e.add_argument("--limit", type=int, help="only the first N samples")
    e.add_argument("-o", "--output", required=True, help="the .npy file to write")
    return da


def run(a: argparse.Namespace) -> int:
    from .. import data as D
    from ..data import fetch as F

    if a.data_cmd == "list":
        for name in D.dataset_names():
            src = F.SOURCES.get(name)
            where = F.locate(name) if src else None
            desc = src.description if src else "your own data: set data.path"
            state = f"[{where}]" if where else ("[not fetched]" if src else "")
            print(f"{name:<15}{desc} {state}")
        return 0
    if a.data_cmd == "fetch":
        F.fetch(a.name, download=not a.no_download)
        return 0
    if a.data_cmd == "info":
        print(json.dumps(D.info(a.name), indent=2))
        return 0
    if a.data_cmd == "export":
        return _export(a)
    raise ConfigError("data: use one of list, fetch NAME, info NAME, export NAME -o FILE.npy")


def _export(a: argparse.Namespace) -> int:
    from pathlib import Path

    from .. import data as D
    from ._common import write_output_array

    out = Path(a.output)
    if out.suffix.lower() != ".npy":  # checked before reading 60,000 images
        raise ConfigError(f"data export: {out}: output must end in .npy")
    if a.limit is not None and a.limit < 1:
        raise ConfigError(f"data export: --limit must be at least 1, got {a.limit}")
    x = D.raw_split(a.name, a.split, a.path)
    if a.limit is not None:
        x = x[: a.limit]
    write_output_array(out, x)
    print(f"wrote {a.name} {a.split}: {len(x)} samples shaped {tuple(x.shape[1:])}, {x.dtype} -> {out}")
    return 0
