"""`aelab eval`: test (or train) metrics of a run, as JSON."""

from __future__ import annotations

import argparse
import json

NAME = "eval"


def add_parser(sub) -> argparse.ArgumentParser:
    e = sub.add_parser("eval", help="metrics of a run on its test split, as JSON")
    e.add_argument("run")
    e.add_argument("--split", choices=["test", "train"], default="test")
    e.add_argument(
        "--nll",
        type=int,
        metavar="K",
        help="also estimate the test NLL with K importance samples "
        "(VAE families; 5000 is the literature's K) and record it in RUN/summary.json",
    )
    e.add_argument("--nll-limit", type=int, metavar="N", help="estimate the NLL on the first N test samples only")
    e.add_argument("--nll-seed", type=int, default=0, help="seed of the test binarisation and the importance draws")
    return e


def run(a: argparse.Namespace) -> int:
    from ..evaluate.evaluate import data_metrics
    from ..evaluate.extra import extra_metrics
    from ..run import load_run

    run = load_run(a.run)
    data = run.load_data()
    x = data.x_test if a.split == "test" else data.x_train
    res = data_metrics(
        run.model, x, run.config.train.loss, run.scaler
    )  # the metrics that fit the data, as in summary.json
    out = {
        "run": str(run.path),
        "split": a.split,
        "samples": int(len(x)),
        **{f"{a.split}_{k}": v for k, v in res.items()},
    }
    y = data.y_test if a.split == "test" else data.y_train
    out.update({f"{a.split}_{k}": v for k, v in extra_metrics(run.model, x, y).items()})  # accuracy, ELBO, ...
    if a.nll is not None:  # importance-sampled NLL (VAE families), also written to summary.json
        from ..run import record_nll

        out.update(record_nll(run, x, a.nll, a.nll_seed, a.nll_limit, a.split))
    print(json.dumps(out, indent=2))
    return 0
