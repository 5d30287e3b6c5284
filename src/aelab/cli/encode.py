"""`aelab encode`: codes of images or arrays under a trained run."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ._common import read_input_array, write_output_array

NAME = "encode"


def add_parser(sub) -> argparse.ArgumentParser:
    en = sub.add_parser(
        "encode",
        help="encode images or arrays to codes (.npy)",
        description=(
            "Input: .npy/.npz shaped (N,H,W), (N,C,H,W) or (N,D), uint8 (scaled by 1/255) or float in [0,1]; "
            "a PNG/JPEG file; or a folder of images. Output: (N, code size) float32 .npy."
        ),
    )
    en.add_argument("run")
    en.add_argument("input")
    en.add_argument("-o", "--output", required=True)
    en.add_argument("--keep-shape", action="store_true", help="keep conv feature-map codes as (N, C, H, W)")
    return en


def run(a: argparse.Namespace) -> int:
    from ..evaluate.evaluate import encode_array
    from ..run import load_run

    run = load_run(a.run)
    x = run.prepare_input(read_input_array(Path(a.input)))
    z = encode_array(run.model, x)
    if z.ndim == 2 or a.keep_shape:
        out = z
    else:
        out = z.reshape(len(z), -1)
    write_output_array(Path(a.output), out.astype(np.float32))
    print(f"encoded {len(x)} samples to codes shaped {tuple(out.shape[1:])} -> {a.output}")
    return 0
