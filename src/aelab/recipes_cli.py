"""Sub-commands `aelab recipes`, `aelab sweep` and `aelab explain-identity`, and suites for `aelab train`."""
from __future__ import annotations

import argparse
from pathlib import Path

from .cli import command


def add_commands(sub) -> None:
    r = sub.add_parser("recipes", help="list the built-in recipes (the seed experiments) with one-line descriptions",
                       description="List every recipe shipped with aelab. `aelab train NAME` runs one; a suite "
                                   "(marked [suite]) runs all its members and writes compare.html.")
    r.add_argument("name", nargs="?", help="print this recipe's YAML (or a suite's members) instead of the list")

    s = sub.add_parser("sweep", help="train a recipe over a grid of config values and compare the runs",
                       description="Runs the product of the --grid values (and --seeds), one run directory each (named "
                                   "from the values), then writes OUT/compare.html (mean and 95% interval over seeds). Runs already finished in OUT are skipped; "
                                   "half-finished ones resume from their checkpoint.")
    s.add_argument("recipe", help="recipe name or YAML config file")
    s.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="a config key and its values, e.g. model.code_dim=2,8,32 (repeatable; the product is run)")
    s.add_argument("--seeds", type=int, metavar="N",
                   help="also repeat every grid point with N seeds (the recipe's train.seed and the N-1 after it)")
    s.add_argument("--no-stack", action="store_true",
                   help="train the runs one after another; by default runs that share an architecture (seeds, "
                        "lr, noise...) train together as one stacked model, each with its own optimizer and data order")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key in every run (repeatable)")
    s.add_argument("--out", help="sweep directory (default runs/sweep-RECIPE)")
    s.add_argument("--reports", action="store_true", help="also write each run's report.html (slower)")

    e = sub.add_parser("explain-identity", help="why a 784-784-784 autoencoder copies MNIST better than Fashion-MNIST, measured",
                       description="Answers seed 000's question with measurements: the BCE floor and grey-pixel share of "
                                   "each dataset, MSE against code size for PCA and trained autoencoders on MNIST and "
                                   "Fashion-MNIST, and what more epochs, MSE + linear output, and the learning rate change. "
                                   "Writes OUT/identity.md, OUT/identity.json and PNG figures.")
    e.add_argument("--out", default="docs/identity", help="output folder (default docs/identity)")
    e.add_argument("--runs", default="runs/identity", help="where the autoencoder runs go; finished ones are reused (default runs/identity)")
    e.add_argument("--quick", action="store_true", help="a fast check: 2000 training images, 1 epoch, codes 8 and 784")
    e.add_argument("--limit", type=int, help="training images per dataset (default all 60000)")
    e.add_argument("--test-limit", type=int, help="test images per dataset (default all 10000)")
    e.add_argument("--epochs", type=int, help="epochs of every autoencoder in the code-size curve (default 5, the seed's)")
    e.add_argument("--long-epochs", type=int, help="epochs of the 'more epochs' row (default 30)")
    e.add_argument("--code-dims", help="comma-separated code sizes for the curve (default 2,8,32,128,784)")
    e.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"], help="where the autoencoders train")
    e.add_argument("--data-path", nargs=2, metavar=("MNIST_DIR", "FASHION_DIR"), help="IDX folders to use instead of the installed datasets")


@command("recipes")
def cmd_recipes(a: argparse.Namespace) -> int:
    from .errors import ConfigError
    from .recipes import is_suite, list_recipes, recipe_path, suite_members

    if a.name:
        p = recipe_path(a.name)
        if p is None:
            raise ConfigError(f"recipes: no recipe named '{a.name}'; `aelab recipes` lists them")
        if is_suite(a.name):
            name, desc, members = suite_members(a.name)
            print(f"{name}: {desc}")
            for m in members:
                print(f"  {m.name}" + (f"  ({m.recipe} --set {' --set '.join(m.overrides)})" if m.overrides else ""))
        else:
            print(p.read_text(), end="")
        return 0
    recipes = list_recipes()
    width = max(map(len, recipes), default=10) + 2
    for name, desc in recipes.items():
        tag = "[suite] " if is_suite(name) else ""
        print(f"{name:<{width}}{tag}{desc}")
    return 0


@command("sweep")
def cmd_sweep(a: argparse.Namespace) -> int:
    from .sweep import sweep

    html = sweep(a.recipe, a.grid, a.out, a.set, seeds=a.seeds, stack=not a.no_stack, reports=a.reports)
    print(f"comparison written to {html}")
    return 0


def train_suite(a: argparse.Namespace) -> int:
    """`aelab train SUITE`: every member into OUT/MEMBER (default runs/SUITE), then OUT/compare.html."""
    from .errors import ConfigError
    from .sweep import run_suite

    if a.overwrite:
        raise ConfigError("train --overwrite: not for a suite; finished members are skipped, so delete a member's folder to redo it")
    html = run_suite(a.config, a.out, a.set, reports=not getattr(a, "no_report", False))
    print(f"comparison written to {html}")
    return 0


@command("explain-identity")
def cmd_explain_identity(a: argparse.Namespace) -> int:
    from .explain_identity import IdentityOptions, explain_identity

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
    from .errors import ConfigError

    try:
        dims = [int(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--code-dims: must be comma-separated integers like 2,8,32, got '{raw}'") from None
    if not dims or min(dims) < 1:
        raise ConfigError(f"--code-dims: needs integers >= 1, got '{raw}'")
    return dims
