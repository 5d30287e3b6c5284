"""`aelab summary`: a Keras-style layer table of a config, recipe or run."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..recipes import resolve_config

NAME = "summary"


def add_parser(sub) -> argparse.ArgumentParser:
    s = sub.add_parser("summary", help="Keras-style table of a model (config, recipe or run)")
    s.add_argument("target")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    return s


def run(a: argparse.Namespace) -> int:
    from ..models import build_model, summary_table
    from ..run import load_run

    p = Path(a.target)
    if p.is_dir():
        model = load_run(p).model
    else:
        cfg = resolve_config(a.target, a.set)
        from ..models import KNOWN_SHAPES

        shape: tuple[int, ...] | None = KNOWN_SHAPES.get(cfg.data.name)
        if shape is None:
            from ..data import load_data

            shape = load_data(cfg.data).sample_shape
        model = build_model(cfg, shape)
    print(summary_table(model))
    return 0
