"""`aelab recipes`: the built-in recipes; and suites for `aelab train SUITE`."""

from __future__ import annotations

import argparse

NAME = "recipes"


def add_parser(sub) -> argparse.ArgumentParser:
    r = sub.add_parser(
        "recipes",
        help="list the built-in recipes (the seed experiments) with one-line descriptions",
        description="List every recipe shipped with aelab. `aelab train NAME` runs one; a suite "
        "(marked [suite]) runs all its members and writes compare.html.",
    )
    r.add_argument("name", nargs="?", help="print this recipe's YAML (or a suite's members) instead of the list")
    return r


def run(a: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..recipes import is_suite, list_recipes, recipe_path, suite_members

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


def train_suite(a: argparse.Namespace) -> int:
    """`aelab train SUITE`: every member into OUT/MEMBER (default runs/SUITE), then OUT/compare.html."""
    from ..errors import ConfigError
    from ..sweep import run_suite

    if a.overwrite:
        raise ConfigError(
            "train --overwrite: not for a suite; finished members are skipped, so delete a member's folder to redo it"
        )
    html = run_suite(a.config, a.out, a.set, reports=not getattr(a, "no_report", False))
    print(f"comparison written to {html}")
    return 0
