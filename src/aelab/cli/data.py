"""`aelab data list|fetch|info`."""

from __future__ import annotations

import argparse
import json

from ..errors import ConfigError

NAME = "data"


def add_parser(sub) -> argparse.ArgumentParser:
    da = sub.add_parser("data", help="list, fetch and describe datasets")
    dsub = da.add_subparsers(dest="data_cmd", metavar="ACTION")
    dsub.add_parser("list", help="datasets aelab knows and where they are")
    f = dsub.add_parser("fetch", help="find or download a dataset and verify its checksums")
    f.add_argument("name")
    f.add_argument("--no-download", action="store_true", help="only look for local copies")
    i = dsub.add_parser("info", help="shapes, classes and location of a dataset")
    i.add_argument("name")
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
    raise ConfigError("data: use one of list, fetch NAME, info NAME")
