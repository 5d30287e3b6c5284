"""`aelab sweep`: a recipe over a grid of config values, then a comparison page."""

from __future__ import annotations

import argparse

NAME = "sweep"


def add_parser(sub) -> argparse.ArgumentParser:
    s = sub.add_parser(
        "sweep",
        help="train a recipe over a grid of config values and compare the runs",
        description="Runs the product of the --grid values, one run directory each (named from the "
        "values), then writes OUT/compare.html. Runs already finished in OUT are skipped; "
        "half-finished ones resume from their checkpoint.",
    )
    s.add_argument("recipe", help="recipe name or YAML config file")
    s.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        required=True,
        help="a config key and its values, e.g. model.code_dim=2,8,32 (repeatable; the product is run)",
    )
    s.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a key in every run (repeatable)"
    )
    s.add_argument("--out", help="sweep directory (default runs/sweep-RECIPE)")
    s.add_argument("--reports", action="store_true", help="also write each run's report.html (slower)")
    return s


def run(a: argparse.Namespace) -> int:
    from ..sweep import sweep

    html = sweep(a.recipe, a.grid, a.out, a.set, reports=a.reports)
    print(f"comparison written to {html}")
    return 0
