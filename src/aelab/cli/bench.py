"""``aelab bench``: the speed benchmark as a sub-command."""

from __future__ import annotations

import argparse
import json
import sys

NAME = "bench"


def add_parser(sub) -> argparse.ArgumentParser:
    import textwrap

    from ..bench.cases import CASES, default_cases

    intro = textwrap.fill(
        "Trains each case for --epochs epochs in a fresh process and prints, per case: seconds per epoch "
        "(median after a warm-up epoch), samples/s, achieved GFLOP/s and share of the matmul peak measured "
        "at the start (fp32 and bf16), peak resident memory and the validation loss. --vs keras also runs the "
        "seed's own Keras model on the same data, one after the other, and prints the ratio.",
        78,
    )
    listing = "\n".join(f"  {n:<18}{c.description}" for n, c in CASES.items())
    b = sub.add_parser(
        "bench",
        help="time training of the seeds' models (and the seeds' Keras code)",
        description=f"{intro}\n\ncases (default: {','.join(default_cases())}):\n{listing}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    b.add_argument("--cases", metavar="A,B", help="comma-separated case names (default: the four seed cases)")
    b.add_argument("--epochs", type=int, default=5, help="epochs per case, the first one a warm-up (default 5)")
    b.add_argument("--vs", choices=["keras"], help="also run the seed's Keras model (needs tensorflow and keras)")
    b.add_argument(
        "--keras-python", metavar="PYTHON", help="interpreter with tensorflow/keras for --vs keras (default: this one)"
    )
    b.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key in every case, e.g. train.precision=bf16-mixed (repeatable)",
    )
    b.add_argument("--limit", type=int, help="train on the first N samples only (smoke tests)")
    b.add_argument("--json", action="store_true", help="print the full results as JSON instead of a table")
    b.add_argument("--out", metavar="FILE", help="also save the JSON results to FILE")
    return b


def run(a: argparse.Namespace) -> int:
    from .._io import write_json
    from ..bench import format_table, run_bench

    def log(s: str) -> None:
        print(s, file=sys.stderr, flush=True)

    res = run_bench(
        a.cases,
        epochs=a.epochs,
        vs_keras=a.vs == "keras",
        overrides=a.set,
        limit=a.limit,
        keras_python=a.keras_python,
        log=log,
    )
    if a.out:
        write_json(a.out, res)
    print(json.dumps(res, indent=2) if a.json else format_table(res))
    return 0
