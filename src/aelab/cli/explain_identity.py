"""`aelab explain-identity`: seed 000's question answered with measurements."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "explain-identity"


def add_parser(sub) -> argparse.ArgumentParser:
    e = sub.add_parser(
        "explain-identity",
        help="why a 784-784-784 autoencoder copies MNIST better than Fashion-MNIST, measured",
        description="Answers seed 000's question with measurements: the BCE floor and grey-pixel share of "
        "each dataset, MSE against code size for PCA and trained autoencoders on MNIST and "
        "Fashion-MNIST, and what more epochs, MSE + linear output, and the learning rate change. "
        "Writes OUT/identity.md, OUT/identity.json and PNG figures.",
    )
    e.add_argument("--out", default="docs/identity", help="output folder (default docs/identity)")
    e.add_argument(
        "--runs",
        default="runs/identity",
        help="where the autoencoder runs go; finished ones are reused (default runs/identity)",
    )
    e.add_argument("--quick", action="store_true", help="a fast check: 2000 training images, 1 epoch, codes 8 and 784")
    e.add_argument("--limit", type=int, help="training images per dataset (default all 60000)")
    e.add_argument("--test-limit", type=int, help="test images per dataset (default all 10000)")
    e.add_argument(
        "--epochs", type=int, help="epochs of every autoencoder in the code-size curve (default 5, the seed's)"
    )
    e.add_argument("--long-epochs", type=int, help="epochs of the 'more epochs' row (default 30)")
    e.add_argument("--code-dims", help="comma-separated code sizes for the curve (default 2,8,32,128,784)")
    e.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"], help="where the autoencoders train")
    e.add_argument(
        "--data-path",
        nargs=2,
        metavar=("MNIST_DIR", "FASHION_DIR"),
        help="IDX folders to use instead of the installed datasets",
    )
    return e


def run(a: argparse.Namespace) -> int:
    from ..explain_identity import IdentityOptions, explain_identity

    opts = IdentityOptions.quick() if a.quick else IdentityOptions()
    if a.limit is not None:
        opts.limit = a.limit
    if a.test_limit is not None:
        opts.test_limit = a.test_limit
    if a.epochs is not None:
        opts.epochs = a.epochs
    if a.long_epochs is not None:
        opts.long_epochs = a.long_epochs
    if a.code_dims:
        opts.code_dims = parse_dims(a.code_dims)
    opts.device = a.device
    if a.data_path:
        opts.paths = {"mnist": a.data_path[0], "fashion-mnist": a.data_path[1]}
    opts.runs = a.runs
    import sys

    page = explain_identity(Path(a.out), opts, command="aelab " + " ".join(sys.argv[1:]))
    print(f"identity page written to {page}")
    return 0


def parse_dims(raw: str) -> list[int]:
    from ..errors import ConfigError

    try:
        dims = [int(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--code-dims: must be comma-separated integers like 2,8,32, got '{raw}'") from None
    if not dims or min(dims) < 1:
        raise ConfigError(f"--code-dims: needs integers >= 1, got '{raw}'")
    return dims
