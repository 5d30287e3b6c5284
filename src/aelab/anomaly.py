"""Anomaly scoring with a trained autoencoder: what it reconstructs badly is what it has not seen.

A score per sample (MSE, BCE, or a VAE's negative ELBO; higher = more unusual),
and a threshold set as a quantile of the *training* data's scores, so that
about (1 - quantile) of data like the training set is flagged.

    det = aelab.AnomalyDetector(code_dim=4, epochs=20, contamination=0.01).fit(X)
    det.decision_function(X_new)   # scores
    det.predict(X_new)             # 1 = outlier, 0 = inlier
"""
from __future__ import annotations

import hashlib
import io
import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ._io import atomic_write_bytes, save_safetensors, write_csv, write_json
from .errors import ConfigError, DataError

METRICS = ("auto", "mse", "bce", "nelbo")
NELBO_SAMPLES = 4  # z draws averaged per sample: a steadier VAE score than one draw
SCORE_SEED = 0  # the same input always gets the same score


# -- scores -------------------------------------------------------------------

def resolve_metric(model, metric: str, loss: str) -> str:
    """'auto' -> the family's default score (a VAE's negative ELBO), else the run's training loss;
    checks the metric fits the model (the family's declared ``anomaly_scores``)."""
    from .models import capabilities, list_models

    if metric not in METRICS:
        raise ConfigError(f"metric: must be one of {', '.join(METRICS)}; got '{metric}'")
    caps = capabilities(model)
    if metric == "auto":
        return caps.default_anomaly_score or loss
    if metric not in caps.anomaly_scores:
        able = " or ".join(n for n in list_models() if metric in capabilities(n).anomaly_scores)
        what = {"nelbo": "nelbo (negative ELBO) needs a VAE run"}.get(metric, f"{metric} needs a run")
        use = " or ".join(s for s in caps.anomaly_scores if s != "bce" or model.output_activation == "sigmoid")
        raise ConfigError(f"metric: {what} (model.name {able}); use {use}")
    if metric == "bce" and model.output_activation != "sigmoid":
        raise ConfigError("metric: bce compares probabilities and this model's output is not a sigmoid; use mse")
    return metric


@torch.no_grad()
def score_array(model, x: np.ndarray, metric: str, batch_size: int = 1024) -> np.ndarray:
    """Per-sample anomaly scores (float64), higher = more anomalous. ``x`` is model input already."""
    from .evaluate.evaluate import batches, per_sample_errors

    if metric in ("mse", "bce"):
        return per_sample_errors(model, x, metric, batch_size)[metric].double().numpy()
    if metric != "nelbo":
        raise ConfigError(f"metric: must be one of mse, bce, nelbo; got '{metric}'")
    gen = torch.Generator().manual_seed(SCORE_SEED)
    out = [model.nelbo_per_sample(b.float(), gen, samples=NELBO_SAMPLES)["nelbo"].double().cpu()
           for b in batches(x, batch_size, model.device)]
    return torch.cat(out).numpy()


def threshold_at(train_scores: np.ndarray, quantile: float) -> float:
    check_quantile(quantile)
    return float(np.quantile(np.asarray(train_scores, dtype=np.float64), quantile))


def check_quantile(q: float, name: str = "quantile") -> None:
    if not isinstance(q, (int, float)) or isinstance(q, bool) or not 0.0 < float(q) < 1.0:
        raise ConfigError(f"{name}: must be a number strictly between 0 and 1 (like 0.99), got {q!r}")


def _weights_digest(run_dir: Path) -> str:
    h = hashlib.sha256()
    with open(run_dir / "model.safetensors", "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run_train_scores(run, metric: str) -> np.ndarray:
    """Scores of the run's own training split, cached in the run directory.

    The cache (anomaly-train-METRIC.safetensors) remembers the weights' SHA-256, so
    retraining into the same folder never reuses stale scores.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    cache = run.path / f"anomaly-train-{metric}.safetensors"
    digest = _weights_digest(run.path) if (run.path / "model.safetensors").is_file() else None
    if digest and cache.is_file():
        try:
            with safe_open(str(cache), framework="pt") as f:
                meta = f.metadata() or {}
            if meta.get("weights_sha256") == digest:
                return load_file(cache)["scores"].double().numpy()
        except (SafetensorError, OSError, KeyError, ValueError):
            pass  # unreadable cache: recompute and replace it
    scores = score_array(run.model, run.load_data().x_train, metric)
    if digest:
        save_train_scores(run.path, metric, scores, digest)
    return scores


def save_train_scores(run_dir: Path, metric: str, scores: np.ndarray, digest: str | None = None) -> None:
    try:
        digest = digest or _weights_digest(run_dir)
        save_safetensors(run_dir / f"anomaly-train-{metric}.safetensors", {"scores": torch.from_numpy(np.asarray(scores))},
                         metadata={"metric": metric, "weights_sha256": digest, "samples": str(len(scores))})
    except OSError:
        pass  # a read-only run folder still scores, it just recomputes next time


def prepare(run, x: np.ndarray, where: str) -> np.ndarray:
    """The run's own input preparation (scaler included), plus a NaN check."""
    x = run.prepare_input(x)
    bad = ~np.isfinite(x)
    if bad.any():
        i = int(np.argwhere(bad)[0][0])
        raise DataError(f"{where}: holds NaN or inf ({int(bad.sum())} values, first in sample {i}); clean the data first")
    return x


def write_scores_csv(path: str | Path, scores: np.ndarray, threshold: float, labels: np.ndarray | None = None) -> Path:
    """index, score, is_outlier (and label when known): one row per sample, written atomically."""
    header = ["index", "score", "is_outlier"] + (["label"] if labels is not None else [])
    rows = ([i, f"{s:.8g}", int(s > threshold)] + ([int(labels[i])] if labels is not None else [])
            for i, s in enumerate(scores))
    return write_csv(path, header, rows)


# -- held-out-class evaluation (the anomaly recipe) --------------------------------

def held_out_evaluation(run, metric: str = "auto", quantile: float = 0.99, top: int = 32) -> dict:
    """Scores the run's test split; with data.exclude_classes, ROC-AUC of 'held-out class' vs the rest.

    Writes anomaly.json, anomaly/scores-test.csv and the two figures under anomaly/ in the run
    directory, and adds test_roc_auc (and friends) to summary.json so result tables pick it up.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    metric = resolve_metric(run.model, metric, run.config.train.loss)
    splits = run.load_data()
    test_scores = score_array(run.model, splits.x_test, metric)
    thr = threshold_at(run_train_scores(run, metric), quantile)
    held = list(run.config.data.exclude_classes)
    res: dict = {"metric": metric, "quantile": quantile, "threshold": thr, "test_samples": int(len(test_scores)),
                 "test_flagged": int((test_scores > thr).sum())}
    folder = run.path / "anomaly"
    labels = splits.y_test
    write_scores_csv(folder / "scores-test.csv", test_scores, thr, labels)
    if held and labels is not None:
        positive = np.isin(labels, held)
        if positive.all() or not positive.any():
            raise DataError(f"data.exclude_classes: the test split needs both held-out {held} and other samples")
        pred = test_scores > thr
        res.update(
            held_out_classes=held,
            held_out_names=[splits.classes[k] for k in held] if splits.classes else None,
            roc_auc=float(roc_auc_score(positive, test_scores)),
            average_precision=float(average_precision_score(positive, test_scores)),
            recall_at_threshold=float(pred[positive].mean()),
            false_positive_rate_at_threshold=float(pred[~positive].mean()),
        )
        fig = score_histogram_figure(test_scores, positive, thr, metric,
                                     ", ".join(res["held_out_names"] or map(str, held)))
        _save_figure(folder / "histogram.png", fig)
    if len(splits.sample_shape) == 3:
        _save_figure(folder / "top.png", top_scoring_figure(splits.x_test, test_scores, labels, held, top))
    write_json(run.path / "anomaly.json", res)
    if "roc_auc" in res and (run.path / "summary.json").is_file():
        summary = json.loads((run.path / "summary.json").read_text())
        summary.update({"test_roc_auc": res["roc_auc"], "test_average_precision": res["average_precision"],
                        "anomaly_metric": metric})
        write_json(run.path / "summary.json", summary)
    return res


# -- figures (pure: they return matplotlib figures) -----------------------------------

def score_histogram_figure(scores: np.ndarray, positive: np.ndarray, threshold: float, metric: str, held_name: str):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 3.6))
    ax = fig.add_subplot(1, 1, 1)
    lo, hi = np.quantile(scores, [0.0, 0.999])
    bins = np.linspace(lo, hi, 60)
    ax.hist(scores[~positive], bins=bins, density=True, alpha=0.6, label=f"inliers (trained-on classes), n={int((~positive).sum())}")
    ax.hist(scores[positive], bins=bins, density=True, alpha=0.6, label=f"held out: {held_name}, n={int(positive.sum())}")
    ax.axvline(threshold, color="k", ls="--", lw=1, label="threshold (training quantile)")
    ax.set_xlabel(f"anomaly score ({metric} per image)")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def top_scoring_figure(x: np.ndarray, scores: np.ndarray, labels: np.ndarray | None, held: Sequence[int], n: int = 32):
    """The n highest-scoring test images, held-out class outlined in red."""
    from matplotlib.figure import Figure

    order = np.argsort(-scores)[:n]
    cols = 8
    rows = math.ceil(len(order) / cols)
    fig = Figure(figsize=(cols * 1.1, rows * 1.25))
    for k, i in enumerate(order):
        ax = fig.add_subplot(rows, cols, k + 1)
        img = np.asarray(x[i], dtype=np.float32)
        img = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
        ax.imshow(np.clip(img, 0, 1), cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        is_held = labels is not None and int(labels[i]) in held
        for s in ax.spines.values():
            s.set_color("red" if is_held else "0.7")
            s.set_linewidth(2 if is_held else 0.5)
        ax.set_title(f"{scores[i]:.3g}", fontsize=7)
    fig.suptitle("highest scores on the test set (red: held-out class)", fontsize=9)
    fig.tight_layout()
    return fig


def _save_figure(path: Path, fig) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(path, buf.getvalue())


# -- the PyOD-style estimator ---------------------------------------------------

class AnomalyDetector:
    """Autoencoder outlier detector with PyOD's surface: fit, decision_function, predict.

    Trains an aelab model on X (a dense autoencoder by default). Tabular data (2-D
    float arrays) is standardised with a scaler kept with the model and fitted with an
    identity output and MSE; images (N, H, W) / (N, C, H, W) in [0, 1] or uint8 keep a
    sigmoid output and BCE. ``contamination`` is the share of training data expected
    to be outliers: the threshold is the (1 - contamination) quantile of training scores.
    """

    def __init__(self, *, model: str = "dense", hidden: Sequence[int] = (64,), code_dim: int = 8,
                 epochs: int = 20, batch_size: int = 128, lr: float | None = None, contamination: float = 0.01,
                 metric: str = "auto", scale: str = "auto", seed: int = 0, threads: int | None = None,
                 out: str | Path | None = None, verbose: bool = False):
        self.model = model
        self.hidden = hidden
        self.code_dim = code_dim
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.contamination = contamination
        self.metric = metric
        self.scale = scale
        self.seed = seed
        self.threads = threads
        self.out = out
        self.verbose = verbose

    # -- construction ---------------------------------------------------------
    @classmethod
    def from_run(cls, path: str | Path, *, contamination: float = 0.01, metric: str = "auto") -> "AnomalyDetector":
        """Wraps a finished run; the threshold comes from the run's own training split."""
        from .run import load_run

        det = cls(contamination=contamination, metric=metric)
        det._check_params()
        det.run_ = load_run(path)
        det.metric_ = resolve_metric(det.run_.model, metric, det.run_.config.train.loss)
        det.decision_scores_ = run_train_scores(det.run_, det.metric_)
        det._set_threshold()
        return det

    def _check_params(self) -> None:
        check_quantile(self.contamination, "contamination")
        if self.contamination >= 0.5:
            raise ConfigError(f"contamination: must be in (0, 0.5) (the share of outliers), got {self.contamination}")
        if self.metric not in METRICS:
            raise ConfigError(f"metric: must be one of {', '.join(METRICS)}; got '{self.metric}'")
        if self.scale not in ("auto", "standard", "none"):
            raise ConfigError(f"scale: must be one of auto, standard, none; got '{self.scale}'")

    def _config(self, tabular: bool):
        from .config import Config
        from .models import capabilities

        standard = self.scale == "standard" or (self.scale == "auto" and tabular)
        sigmoid = not standard and not tabular
        return Config.from_dict({
            "name": "anomaly-detector",
            "data": {"name": "npy", "path": "<in memory>", "scale": "standard" if standard else "auto"},
            "model": {"name": self.model, "hidden": list(self.hidden), "code_dim": self.code_dim,
                      "output_activation": "sigmoid" if sigmoid else "identity",
                      **({} if sigmoid else dict(capabilities(self.model).real_valued_keys))},
            "train": {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                      "loss": "bce" if sigmoid else "mse", "seed": self.seed, "threads": self.threads},
        })

    # -- the estimator ----------------------------------------------------------
    def fit(self, X, y=None) -> "AnomalyDetector":
        """Trains on X (unlabelled; ``y`` is ignored, as in PyOD) and sets threshold_."""
        from .data import Splits
        from .runner import train

        self._check_params()
        x = np.asarray(X)
        if x.ndim < 2 or len(x) < 2:
            raise DataError(f"X: expected at least 2 samples shaped (N, D), (N, H, W) or (N, C, H, W), got shape {x.shape}")
        tabular = x.ndim == 2
        cfg = self._config(tabular)
        xt = self._prepare_training(x, cfg.data.scale, tabular)
        splits = Splits("array", xt, None, xt, None, None, self._scaler)  # "test" = train: no split to spare
        log = print if self.verbose else (lambda *_: None)
        if self.out is not None:
            self.run_ = train(cfg, self.out, data=splits, log=log, overwrite=True)
        else:
            self.run_ = train(cfg, data=splits, log=log, is_writer=False)  # in memory: nothing is written
        self.run_.model.eval()
        self.metric_ = resolve_metric(self.run_.model, self.metric, cfg.train.loss)
        self.decision_scores_ = score_array(self.run_.model, splits.x_train, self.metric_)
        if self.out is not None:  # so that from_run(out) finds the training scores without the array
            save_train_scores(self.run_.path, self.metric_, self.decision_scores_)
        self._set_threshold()
        return self

    def _prepare_training(self, x: np.ndarray, scale: str, tabular: bool):
        from .data.preprocess import Preprocessor

        if x.ndim == 3:
            x = x[:, None]
        prep = Preprocessor(scale, unit_range=not tabular)  # the one preprocessor load_data uses for data.scale
        xt = prep.fit_transform(x, "X")
        self._scaler = prep.state()
        return xt

    def _set_threshold(self) -> None:
        self.threshold_ = threshold_at(self.decision_scores_, 1.0 - self.contamination)
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(np.int64)

    def _fitted(self):
        if not hasattr(self, "run_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("This AnomalyDetector instance is not fitted yet. Call 'fit' with appropriate "
                                 "arguments before using this estimator, or build one with AnomalyDetector.from_run(path).")
        return self.run_

    def decision_function(self, X) -> np.ndarray:
        """Anomaly score per sample; higher = more anomalous."""
        run = self._fitted()
        return score_array(run.model, prepare(run, np.asarray(X), "X"), self.metric_)

    def predict(self, X) -> np.ndarray:
        """1 for outliers (score above threshold_), 0 for inliers."""
        self._fitted()
        return (self.decision_function(X) > self.threshold_).astype(np.int64)

    def fit_predict(self, X, y=None) -> np.ndarray:
        return self.fit(X).labels_

    def __repr__(self) -> str:
        return (f"AnomalyDetector(model={self.model!r}, hidden={tuple(self.hidden)}, code_dim={self.code_dim}, "
                f"epochs={self.epochs}, contamination={self.contamination})")
