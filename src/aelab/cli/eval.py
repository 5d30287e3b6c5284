"""`aelab eval`: test (or train) metrics of a run, as JSON."""

from __future__ import annotations

import argparse
import json

NAME = "eval"


def add_parser(sub) -> argparse.ArgumentParser:
    e = sub.add_parser("eval", help="metrics of a run on its test split, as JSON")
    e.add_argument("run")
    e.add_argument("--split", choices=["test", "train"], default="test")
    return e


def run(a: argparse.Namespace) -> int:
    from ..evaluate.evaluate import evaluate
    from ..evaluate.extra import extra_metrics
    from ..evaluate.metrics import entropy_floor
    from ..run import load_run

    run = load_run(a.run)
    data = run.load_data()
    x = data.x_test if a.split == "test" else data.x_train
    res = evaluate(run.model, x, run.config.train.loss)
    out = {
        "run": str(run.path),
        "split": a.split,
        "samples": int(len(x)),
        **{f"{a.split}_{k}": v for k, v in res.items()},
    }
    if run.model.output_activation == "sigmoid" and run.scaler is None:
        out[f"{a.split}_bce_floor"] = entropy_floor(x)
    y = data.y_test if a.split == "test" else data.y_train
    out.update({f"{a.split}_{k}": v for k, v in extra_metrics(run.model, x, y).items()})  # accuracy, ELBO, ...
    print(json.dumps(out, indent=2))
    return 0
