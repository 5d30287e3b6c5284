"""`aelab decode`: arrays or an image grid from codes under a trained run."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..errors import DataError
from ._common import read_input_array, write_output_array

NAME = "decode"


def add_parser(sub) -> argparse.ArgumentParser:
    d = sub.add_parser("decode", help="decode codes (.npy) to arrays (.npy) or an image grid (.png)")
    d.add_argument("run")
    d.add_argument("codes")
    d.add_argument("-o", "--output", required=True)
    return d


def run(a: argparse.Namespace) -> int:
    from ..evaluate.evaluate import decode_array
    from ..run import load_run

    run = load_run(a.run)
    z = read_input_array(Path(a.codes)).astype(np.float32)
    code_shape = run.model.code_shape
    n_code = int(np.prod(code_shape))
    if z.ndim == 1 and z.size == n_code:
        z = z[None]
    if int(np.prod(z.shape[1:])) != n_code:
        raise DataError(
            f"{a.codes}: codes shaped {tuple(z.shape[1:])} but this run's code is {code_shape} ({n_code} values)"
        )
    if not np.isfinite(z).all():
        raise DataError(f"{a.codes}: holds NaN or inf")
    x = decode_array(run.model, z.reshape(len(z), *code_shape))
    write_output_array(Path(a.output), x, run.model.input_shape)
    print(f"decoded {len(z)} codes to samples shaped {tuple(x.shape[1:])} -> {a.output}")
    return 0
