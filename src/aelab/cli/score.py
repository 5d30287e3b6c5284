"""`aelab score`: anomaly scores of new data under a trained run, thresholded on its training data."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import ConfigError
from ._common import read_input_array

DESCRIPTION = """\
Score samples by how badly the run reconstructs them (higher = more unusual) and flag
those above a threshold: the --quantile of the scores of the run's own training split
(computed once, then cached in the run directory as anomaly-train-METRIC.safetensors).

  aelab score RUN data.npy -o scores.csv        CSV: index, score, is_outlier
  aelab score RUN                               the run's test split; with data.exclude_classes,
                                                ROC-AUC of the held-out classes -> anomaly.json,
                                                anomaly/ (scores, histogram, top images), summary.json

Input: .npy/.npz/.csv arrays, a PNG/JPEG file or a folder of images, prepared as the
run's training data was (uint8 / 255, or the run's standard scaler for tabular data).
"""


NAME = "score"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "score",
        help="anomaly scores and outlier flags from a trained run",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", help="a finished run directory")
    p.add_argument(
        "input",
        nargs="?",
        help="samples to score (.npy, .npz, .csv, image or folder); omit to evaluate the run's test split",
    )
    p.add_argument("-o", "--output", help="CSV to write (index, score, is_outlier); required with INPUT")
    p.add_argument(
        "--metric",
        choices=["auto", "mse", "bce", "nelbo"],
        default="auto",
        help="per-sample score: reconstruction MSE or BCE (mean per value), or a VAE's negative "
        "ELBO in nats; auto (default): the model family's declared default, mse for every family whatever "
        "its training loss (the best-ranking score measured, docs/ANOMALY.md)",
    )
    p.add_argument(
        "--quantile",
        type=float,
        default=0.99,
        help="threshold = this quantile of the training scores; about 1 - QUANTILE of "
        "training-like data gets flagged (default 0.99)",
    )
    return p


def run(a: argparse.Namespace) -> int:
    from ..anomaly import (
        check_quantile,
        held_out_evaluation,
        prepare,
        resolve_metric,
        run_train_scores,
        score_array,
        threshold_at,
        write_scores_csv,
    )
    from ..run import load_run

    check_quantile(a.quantile, "--quantile")
    if a.input is not None and not a.output:
        raise ConfigError("score: give -o/--output scores.csv to write the scores of INPUT")
    run = load_run(a.run)
    if a.input is None:
        res = held_out_evaluation(run, a.metric, a.quantile)
        print(json.dumps(res, indent=2))
        return 0
    metric = resolve_metric(run.model, a.metric, run.config.train.loss)
    x = prepare(run, read_input_array(Path(a.input)), a.input)
    scores = score_array(run.model, x, metric)
    train_scores = run_train_scores(run, metric)
    thr = threshold_at(train_scores, a.quantile)
    write_scores_csv(a.output, scores, thr)
    flagged = int((scores > thr).sum())
    print(
        f"scored {len(scores)} samples ({metric}); threshold {thr:.6g} = the {a.quantile} quantile of "
        f"{len(train_scores)} training scores; {flagged} flagged ({100 * flagged / len(scores):.1f}%) -> {a.output}"
    )
    return 0
