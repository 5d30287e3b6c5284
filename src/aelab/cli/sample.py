"""`aelab sample RUN -n 64 -o samples.png`: decode codes drawn from a VAE's prior or a mixture fitted on training codes."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "sample"


def add_parser(sub) -> argparse.ArgumentParser:
    s = sub.add_parser(
        "sample",
        help="generate samples: decode codes drawn from a VAE's prior or a mixture fitted on training codes",
        description=(
            "Draws N codes and decodes them. VAEs draw from their prior N(0, I); other models from "
            "a Gaussian mixture fitted on the codes of (up to 20,000) training samples. "
            "Output: a .png grid of images or a .npy array."
        ),
    )
    s.add_argument("run")
    s.add_argument("-n", type=int, default=64, help="how many samples (default 64)")
    s.add_argument("-o", "--output", required=True, help="samples.png (a grid) or samples.npy")
    s.add_argument(
        "--from", dest="source", choices=["auto", "prior", "gmm"], default="auto", help="auto: prior for VAEs, else gmm"
    )
    s.add_argument("--components", type=int, default=10, help="mixture components (default 10)")
    s.add_argument("--seed", type=int, default=0)
    return s


def run(a: argparse.Namespace) -> int:
    from ..errors import DataError
    from ..evaluate.sampling import sample
    from ..models import capabilities
    from ..run import load_run
    from ._common import write_output_array

    out = Path(a.output)
    if out.suffix.lower() not in (".png", ".npy"):
        raise DataError(f"{out}: output must end in .png (a grid) or .npy")
    run_ = load_run(a.run)
    x_train = None
    if a.source == "gmm" or (a.source == "auto" and not capabilities(run_.model).generative):
        x_train = run_.load_data().x_train
    x = sample(run_.model, a.n, x_train, a.source, a.components, a.seed)
    write_output_array(out, x, run_.model.input_shape)
    print(f"{len(x)} samples -> {out}")
    return 0
