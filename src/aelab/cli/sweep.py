"""`aelab sweep`: a recipe over a grid of config values, then a comparison page."""

from __future__ import annotations

import argparse

NAME = "sweep"


def add_parser(sub) -> argparse.ArgumentParser:
    s = sub.add_parser(
        "sweep",
        help="train a recipe over a grid of config values and compare the runs",
        description="Runs the product of the --grid values (and --seeds), one run directory each (named from the "
        "values), then writes OUT/compare.html (with the mean and 95% interval over seeds). Runs already finished "
        "in OUT are skipped; half-finished ones resume from their checkpoint.",
    )
    s.add_argument("recipe", help="recipe name or YAML config file")
    s.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="a config key and its values, e.g. model.code_dim=2,8,32 (repeatable; the product is run; "
        "needed unless --seeds is given)",
    )
    s.add_argument(
        "--seeds",
        type=int,
        metavar="N",
        help="also repeat every grid point with N seeds (the recipe's train.seed and the N-1 after it)",
    )
    s.add_argument(
        "--no-stack",
        action="store_true",
        help="train the runs one after another; by default new runs whose models can stack and that differ only "
        "in seed, lr, weight decay, momentum, schedule, epochs, early stopping or noise train together as one stacked model, "
        "each with its own optimizer and data order",
    )
    s.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a key in every run (repeatable)"
    )
    s.add_argument("--out", help="sweep directory (default runs/sweep-RECIPE)")
    s.add_argument("--reports", action="store_true", help="also write each run's report.html (slower)")
    return s


def run(a: argparse.Namespace) -> int:
    from ..sweep import sweep

    html = sweep(a.recipe, a.grid, a.out, a.set, seeds=a.seeds, stack=not a.no_stack, reports=a.reports)
    print(f"comparison written to {html}")
    return 0
