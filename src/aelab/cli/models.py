"""`aelab models`: the registered model families."""

from __future__ import annotations

import argparse

NAME = "models"


def add_parser(sub) -> argparse.ArgumentParser:
    return sub.add_parser("models", help="list the registered models")


def run(a: argparse.Namespace) -> int:
    from ..models import list_models, model_description

    for n in list_models():
        print(f"{n:<16}{model_description(n)}")
    return 0
