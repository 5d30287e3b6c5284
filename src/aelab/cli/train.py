"""`aelab train`: one run from a config file or recipe (or every member of a suite), or --resume."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from .. import runlock
from ..errors import ConfigError
from ..recipes import resolve_config

NAME = "train"


def add_parser(sub) -> argparse.ArgumentParser:
    t = sub.add_parser(
        "train",
        help="train a model from a config file or recipe",
        description=(
            "Train from a YAML config or a recipe name. Writes a run directory with config.yaml, metrics.csv, "
            "batches.csv, model.safetensors, summary.json, checkpoint/."
        ),
    )
    t.add_argument("config", nargs="?", help="YAML config file or recipe name")
    t.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. model.code_dim=64 (repeatable)",
    )
    t.add_argument("--out", help="run directory (default runs/NAME-TIMESTAMP)")
    t.add_argument(
        "--resume",
        metavar="RUN",
        help="continue the run in RUN from its last checkpoint (--set may change train.epochs, train.lr, "
        "train.early_stopping and train.checkpoint_every)",
    )
    t.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    t.add_argument(
        "--no-report", action="store_true", help="skip RUN/report.html and the reconstructions-per-epoch animation"
    )
    t.add_argument(
        "--tensorboard", action="store_true", help="also log per-epoch scalars and reconstructions to RUN/tensorboard"
    )
    return t


def run(a: argparse.Namespace) -> int:
    from ..report.hooks import training_hooks
    from ..run import default_run_dir, load_config
    from ..runner import train
    from ..train.distributed import writes_run_dir

    report, tb = not getattr(a, "no_report", False), getattr(a, "tensorboard", False)
    rank0 = writes_run_dir()
    report, tb = report and rank0, tb and rank0
    if a.resume:
        cfg, out = load_config(Path(a.resume)), a.resume
    else:
        if not a.config:
            raise ConfigError("train: give a config file or recipe name, or --resume RUN")
        from ..recipes import is_suite

        if is_suite(a.config):  # a recipe listing recipes (seed003): run them all, then compare
            from .recipes import train_suite

            return train_suite(a)
        cfg = resolve_config(a.config, a.set)
        out = a.out or default_run_dir(cfg)
    # one writer per run folder (runlock.py), held through the report; runner.train re-enters it
    with runlock.writing(out) if rank0 else contextlib.nullcontext():
        hooks = training_hooks(cfg, out, progress=report, tensorboard=tb, resume=bool(a.resume))
        if a.resume:
            run = train(resume=a.resume, callbacks=hooks, overrides=a.set)
        else:
            run = train(cfg, out, overwrite=a.overwrite, callbacks=hooks)
        if rank0:
            print(f"run written to {run.path}")
        if report:
            from ..report import write_run_report

            print(f"report written to {write_run_report(run, run.load_data())}")  # the data training loaded
    return 0
