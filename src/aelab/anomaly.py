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
import numbers
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin

from ._io import atomic_write_bytes, save_safetensors, write_csv, write_json
from .data.preprocess import check_finite
from .errors import ConfigError, DataError, RunError

METRICS = ("auto", "mse", "bce", "nelbo")
NELBO_SAMPLES = 4  # z draws averaged per sample: a steadier VAE score than one draw
SCORE_SEED = 0  # the same input always gets the same score


# -- scores -------------------------------------------------------------------


def resolve_metric(model, metric: str, loss: str) -> str:
    """'auto' -> the family's declared default score (``Capabilities.default_anomaly_score``: MSE,
    measured best, for every family shipped; None there means the run's training loss); checks the
    metric fits the model (the family's declared ``anomaly_scores``)."""
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
    out = [
        model.nelbo_per_sample(b.float(), gen, samples=NELBO_SAMPLES)["nelbo"].double().cpu()
        for b in batches(x, batch_size, model.device)
    ]
    return torch.cat(out).numpy()


@torch.no_grad()
def score_array64(model, x: np.ndarray, metric: str, batch_size: int = 1024) -> np.ndarray:
    """score_array in float64 for mse and bce: a sample's score then does not depend on the batch it
    came in (float32 GEMMs round differently for different batch sizes), as scikit-learn expects."""
    import copy

    import torch.nn.functional as F

    if metric not in ("mse", "bce"):
        return score_array(model, x, metric, batch_size)
    m64 = copy.deepcopy(model).cpu().double().eval()
    out = []
    for i in range(0, len(x), batch_size):
        b = torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size], dtype=np.float64))
        logits = m64.decode_logits(m64.encode(b))
        if metric == "bce":
            out.append(F.binary_cross_entropy_with_logits(logits, b, reduction="none").flatten(1).mean(1))
        else:
            recon = torch.sigmoid(logits) if model.output_activation == "sigmoid" else logits
            out.append((recon - b).flatten(1).pow(2).mean(1))
    return torch.cat(out).numpy() if out else np.empty(0)


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
        save_safetensors(
            run_dir / f"anomaly-train-{metric}.safetensors",
            {"scores": torch.from_numpy(np.asarray(scores))},
            metadata={"metric": metric, "weights_sha256": digest, "samples": str(len(scores))},
        )
    except OSError:
        pass  # a read-only run folder still scores, it just recomputes next time


def prepare(run, x: np.ndarray, where: str) -> np.ndarray:
    """The run's own input preparation (scaler included), plus a NaN check."""
    return check_finite(run.prepare_input(x), where)


def write_scores_csv(path: str | Path, scores: np.ndarray, threshold: float, labels: np.ndarray | None = None) -> Path:
    """index, score, is_outlier (and label when known): one row per sample, written atomically."""
    header = ["index", "score", "is_outlier"] + (["label"] if labels is not None else [])
    rows = (
        [i, f"{s:.8g}", int(s > threshold)] + ([int(labels[i])] if labels is not None else [])
        for i, s in enumerate(scores)
    )
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
    res: dict = {
        "metric": metric,
        "quantile": quantile,
        "threshold": thr,
        "test_samples": int(len(test_scores)),
        "test_flagged": int((test_scores > thr).sum()),
    }
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
        fig = score_histogram_figure(
            test_scores, positive, thr, metric, ", ".join(res["held_out_names"] or map(str, held))
        )
        _save_figure(folder / "histogram.png", fig)
    if len(splits.sample_shape) == 3:
        _save_figure(folder / "top.png", top_scoring_figure(splits.x_test, test_scores, labels, held, top))
    write_json(run.path / "anomaly.json", res)
    if "roc_auc" in res and (run.path / "summary.json").is_file():
        summary = json.loads((run.path / "summary.json").read_text())
        summary.update(
            {
                "test_roc_auc": res["roc_auc"],
                "test_average_precision": res["average_precision"],
                "anomaly_metric": metric,
            }
        )
        write_json(run.path / "summary.json", summary)
    return res


# -- figures (pure: they return matplotlib figures) -----------------------------------


def score_histogram_figure(scores: np.ndarray, positive: np.ndarray, threshold: float, metric: str, held_name: str):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 3.6))
    ax = fig.add_subplot(1, 1, 1)
    lo, hi = np.quantile(scores, [0.0, 0.999])
    bins = np.linspace(lo, hi, 60)
    ax.hist(
        scores[~positive],
        bins=bins,
        density=True,
        alpha=0.6,
        label=f"inliers (trained-on classes), n={int((~positive).sum())}",
    )
    ax.hist(
        scores[positive], bins=bins, density=True, alpha=0.6, label=f"held out: {held_name}, n={int(positive.sum())}"
    )
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

MODELS = ("dense", "vae-dense")
LOSSES = ("auto", "mse", "bce")
SCALES = ("auto", "standard", "none")
PRECISIONS = ("fp32", "auto", "bf16-mixed")
PROBA_METHODS = ("linear", "unify")
SAVE_FORMAT = "aelab-anomaly-detector/1"

# scikit-learn's checks that assume its own outlier convention, which PyOD's surface replaces on purpose
# (pass to parametrize_with_checks(..., expected_failed_checks=lambda est: SKLEARN_CHECKS_EXPECTED_TO_FAIL)).
SKLEARN_CHECKS_EXPECTED_TO_FAIL = {
    "check_outliers_train": "PyOD's labels: predict gives 1 for outliers and 0 for inliers, not scikit-learn's -1/+1; "
    "decision_function is higher for outliers (scikit-learn's is negative for them)",
    "check_outliers_fit_predict": "PyOD's labels: fit_predict gives labels_ (1 outlier, 0 inlier), not -1/+1",
}


def _param_error(name: str, want: str, got) -> ConfigError:
    return ConfigError(f"The '{name}' parameter of AnomalyDetector must be {want}. Got {got!r} instead.")


def _among(name: str, v, allowed: Sequence[str]) -> None:
    if not isinstance(v, str) or v not in allowed:
        raise _param_error(name, "a str among {" + ", ".join(repr(a) for a in allowed) + "}", v)


def _int(name: str, v, low: int = 1) -> None:
    if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < low:
        raise _param_error(name, f"an int in the range [{low}, inf)", v)


def _real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))


class AnomalyDetector(OutlierMixin, BaseEstimator):
    """Autoencoder outlier detector: scikit-learn's estimator contract with PyOD's surface.

    Trains an aelab model on X (a dense autoencoder by default) and scores each sample by how
    badly it is reconstructed (higher = more anomalous). Tabular data (2-D arrays) is
    standardised with a scaler kept with the model and fitted with an identity output; images
    (N, H, W) / (N, C, H, W), uint8 or floats in [0, 1], keep a sigmoid output.

    Parameters
    ----------
    model : {'dense', 'vae-dense'}, default='dense'
    hidden : sequence of int, default=(256,)
        Encoder layer sizes before the code; the decoder mirrors them.
    code_dim : int, default=32
    epochs, batch_size : int, default=20, 128
    lr : float or None, default=None (Adam's 1e-3)
    loss : {'auto', 'mse', 'bce'}, default='auto'
        Training loss; 'auto' is BCE on images (sigmoid output), MSE on tables.
    dropout : float in [0, 1), default=0.0
    batch_norm : bool, default=False
    weight_decay : float >= 0, default=0.0
    contamination : float in (0, 0.5], default=0.01
        Share of the training data expected to be outliers: threshold_ is the
        (1 - contamination) quantile of the training scores (PyOD's definition).
    metric : {'auto', 'mse', 'bce', 'nelbo'}, default='auto'
        The score. 'auto' is the model family's declared default (``Capabilities.default_anomaly_score``):
        the per-sample MSE for every family, a VAE too, the best-ranking score measured over the ten
        Fashion-MNIST held-out-class tasks (docs/ANOMALY.md).
    scale : {'auto', 'standard', 'none'}, default='auto' (standard for tables)
    precision : {'fp32', 'auto', 'bf16-mixed'}, default='fp32'
        Training precision. fp32 by default so that a fit gives the same model on every CPU
        kind; 'auto' takes bf16-mixed where the CPU multiplies bf16 natively.
    seed : int, default=0
    threads : int or None, default=None
    out : path or None, default=None
        Keep the training run in this directory (`aelab report`, `from_run`); None writes nothing.
    verbose : bool, default=False

    Attributes
    ----------
    decision_scores_ : ndarray (n_samples,)
        Scores of the training data.
    threshold_ : float
    labels_ : ndarray (n_samples,), 1 for outliers, 0 for inliers (PyOD's convention).
    metric_ : str
        The score 'auto' resolved to.
    run_ : aelab.run.Run
        The trained model (``run_.model``) and its scaler.
    n_features_in_ : int
        Values per sample (H*W*C for images).
    """

    def __init__(
        self,
        *,
        model: str = "dense",
        hidden: Sequence[int] = (256,),
        code_dim: int = 32,
        epochs: int = 20,
        batch_size: int = 128,
        lr: float | None = None,
        loss: str = "auto",
        dropout: float = 0.0,
        batch_norm: bool = False,
        weight_decay: float = 0.0,
        contamination: float = 0.01,
        metric: str = "auto",
        scale: str = "auto",
        precision: str = "fp32",
        seed: int = 0,
        threads: int | None = None,
        out: str | Path | None = None,
        verbose: bool = False,
    ):
        self.model = model
        self.hidden = hidden
        self.code_dim = code_dim
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.loss = loss
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.weight_decay = weight_decay
        self.contamination = contamination
        self.metric = metric
        self.scale = scale
        self.precision = precision
        self.seed = seed
        self.threads = threads
        self.out = out
        self.verbose = verbose

    # -- construction ---------------------------------------------------------
    @classmethod
    def from_run(cls, path: str | Path, *, contamination: float = 0.01, metric: str = "auto") -> AnomalyDetector:
        """Wraps a finished run; the threshold comes from the run's own training split.

        The model is the run's; the other parameters keep their defaults, so ``clone`` of such a
        detector describes a fresh default detector, not the run's architecture."""
        from .run import load_run

        det = cls(contamination=contamination, metric=metric)
        det._check_params()
        det.run_ = load_run(path)
        det.metric_ = det._resolve_metric(det.run_.model, det.run_.config.train.loss)
        det.decision_scores_ = run_train_scores(det.run_, det.metric_)
        det.n_features_in_ = math.prod(det.run_.model.input_shape)
        det._set_threshold()
        return det

    def _check_params(self) -> None:
        """Errors name the parameter, the allowed values and what was given (scikit-learn's wording)."""
        from .models import capabilities

        _among("model", self.model, MODELS)
        hidden = self.hidden
        if not isinstance(hidden, (list, tuple)) or not all(
            isinstance(h, numbers.Integral) and not isinstance(h, bool) and h >= 1 for h in hidden
        ):
            raise _param_error("hidden", "a sequence of ints >= 1 (like (128,) or (256, 64))", hidden)
        _int("code_dim", self.code_dim)
        _int("epochs", self.epochs)
        _int("batch_size", self.batch_size)
        if self.lr is not None and not (_real(self.lr) and self.lr > 0):
            raise _param_error("lr", "a float in the range (0, inf) or None", self.lr)
        _among("loss", self.loss, LOSSES)
        if not (_real(self.dropout) and 0.0 <= self.dropout < 1.0):
            raise _param_error("dropout", "a float in the range [0, 1)", self.dropout)
        if not isinstance(self.batch_norm, (bool, np.bool_)):
            raise _param_error("batch_norm", "a bool", self.batch_norm)
        if not (_real(self.weight_decay) and self.weight_decay >= 0):
            raise _param_error("weight_decay", "a float in the range [0, inf)", self.weight_decay)
        if not (_real(self.contamination) and 0.0 < self.contamination <= 0.5):
            raise _param_error(
                "contamination", "a float in the range (0, 0.5] (the share of outliers)", self.contamination
            )
        _among("metric", self.metric, METRICS)
        _among("scale", self.scale, SCALES)
        _among("precision", self.precision, PRECISIONS)
        _int("seed", self.seed, 0)
        if self.threads is not None:
            _int("threads", self.threads)
        if self.batch_norm and self.model != "dense":
            raise _param_error(
                "batch_norm", "False with model='vae-dense' (batch norm is built into 'dense' only)", self.batch_norm
            )
        caps = capabilities(self.model)
        if (
            self.metric == "bce" and self.loss == "mse" and caps.real_valued_keys
        ):  # loss='mse' makes it decode real values
            scores = " or ".join(repr(s) for s in caps.anomaly_scores if s != "bce")
            raise _param_error("metric", f"{scores} for model={self.model!r} trained with loss='mse'", self.metric)

    def _config(self, tabular: bool):
        from .config import Config
        from .models import capabilities

        standard = self.scale == "standard" or (self.scale == "auto" and tabular)
        sigmoid = not standard and not tabular
        loss = self.loss if self.loss != "auto" else ("bce" if sigmoid else "mse")
        if loss == "bce" and not sigmoid:
            raise _param_error(
                "loss", "'mse' or 'auto' on tabular or standardised data (bce needs targets in [0, 1])", self.loss
            )
        return Config.from_dict(
            {
                "name": "anomaly-detector",
                "data": {"name": "npy", "path": "<in memory>", "scale": "standard" if standard else "auto"},
                "model": {
                    "name": self.model,
                    "hidden": [int(h) for h in self.hidden],
                    "code_dim": int(self.code_dim),
                    "output_activation": "sigmoid" if sigmoid else "identity",
                    "dropout": float(self.dropout),
                    **({"batch_norm": True} if self.batch_norm else {}),
                    # trained with MSE, a family that can decodes real values (a VAE: a Gaussian likelihood)
                    **(dict(capabilities(self.model).real_valued_keys) if loss == "mse" else {}),
                },
                "train": {
                    "epochs": int(self.epochs),
                    "batch_size": int(self.batch_size),
                    "lr": None if self.lr is None else float(self.lr),
                    "weight_decay": float(self.weight_decay),
                    "loss": loss,
                    "seed": int(self.seed),
                    "threads": self.threads,
                    "precision": self.precision,
                },
            }
        )

    def _resolve_metric(self, model, loss: str) -> str:
        return resolve_metric(model, self.metric, loss)

    # -- input checks -----------------------------------------------------------
    def _validate(self, X, reset: bool) -> np.ndarray:
        """scikit-learn's checks (finite, numeric, dense, enough samples); images may keep 3 or 4 dimensions."""
        from sklearn.utils.validation import check_array, validate_data

        x = X if hasattr(X, "shape") and hasattr(X, "ndim") else np.asarray(X)
        if getattr(x, "ndim", 2) <= 2:
            return validate_data(self, X, reset=reset, dtype="numeric", ensure_min_samples=2 if reset else 1)
        x = check_array(X, allow_nd=True, dtype="numeric", ensure_min_samples=2 if reset else 1)
        if reset:
            self.n_features_in_ = math.prod(x.shape[1:])
        elif math.prod(x.shape[1:]) != self.n_features_in_:
            raise ValueError(
                f"X has {math.prod(x.shape[1:])} features, but AnomalyDetector is expecting "
                f"{self.n_features_in_} features as input."
            )
        return x

    # -- the estimator ----------------------------------------------------------
    def fit(self, X, y=None) -> AnomalyDetector:
        """Trains on X (unlabelled; ``y`` is ignored, as in PyOD) and sets threshold_."""
        from .data import Splits
        from .runner import train

        self._check_params()
        x = np.asarray(self._validate(X, reset=True))
        if self.batch_norm and len(x) % self.batch_size == 1:  # batch norm cannot train on a last batch of one
            raise _param_error(
                "batch_size",
                f"a size that leaves no batch of one sample with batch_norm=True ({len(x)} samples)",
                self.batch_size,
            )
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
        self.metric_ = self._resolve_metric(self.run_.model, cfg.train.loss)
        self.decision_scores_ = score_array64(self.run_.model, splits.x_train, self.metric_)
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
        """PyOD's _process_decision_scores: threshold_, labels_, and the mean/spread that 'unify' needs."""
        scores = np.asarray(self.decision_scores_, dtype=np.float64)
        self.threshold_ = threshold_at(scores, 1.0 - float(self.contamination))
        self.labels_ = (scores > self.threshold_).astype(np.int64)
        self._mu, self._sigma = float(scores.mean()), float(scores.std())

    def _fitted(self):
        if not hasattr(self, "run_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError(
                "This AnomalyDetector instance is not fitted yet. Call 'fit' with appropriate "
                "arguments before using this estimator, or build one with AnomalyDetector.from_run(path) "
                "or AnomalyDetector.load(path)."
            )
        return self.run_

    def decision_function(self, X) -> np.ndarray:
        """Anomaly score per sample (float64); higher = more anomalous."""
        run = self._fitted()
        x = np.asarray(self._validate(X, reset=False))
        return score_array64(run.model, prepare(run, x, "X"), self.metric_)

    def predict(self, X, return_confidence: bool = False):
        """1 for outliers (score above threshold_), 0 for inliers; with return_confidence, also predict_confidence(X)."""
        scores = self.decision_function(X)
        pred = (scores > self.threshold_).astype(np.int64)
        return (pred, self._confidence(scores)) if return_confidence else pred

    def predict_proba(self, X, method: str = "linear", return_confidence: bool = False):
        """Outlier probability, PyOD's two ways: columns [P(inlier), P(outlier)].

        'linear': the score min-max scaled by the training scores' range, clipped to [0, 1].
        'unify': erf((score - mean) / (std * sqrt 2)) of the training scores, clipped to [0, 1]
        (Kriegel et al. 2011, "Interpreting and unifying outlier scores").
        """
        from scipy.special import erf

        _among("method", method, PROBA_METHODS)
        self._fitted()
        scores = self.decision_function(X)
        train = np.asarray(self.decision_scores_, dtype=np.float64)
        if method == "linear":
            lo, span = train.min(), train.max() - train.min()
            p = (scores - lo) / (span if span > 0 else 1.0)
        else:
            p = erf((scores - self._mu) / ((self._sigma if self._sigma > 0 else 1.0) * np.sqrt(2.0)))
        probs = np.empty((len(scores), 2))
        probs[:, 1] = np.clip(p, 0.0, 1.0)
        probs[:, 0] = 1.0 - probs[:, 1]
        return (probs, self._confidence(scores)) if return_confidence else probs

    def predict_confidence(self, X) -> np.ndarray:
        """How surely each prediction would stay the same under a slightly different training set, in [0, 1].

        PyOD's definition (Perini et al. 2020, ExCeeD): the share of training scores at or below the
        score gives a Bayesian outlier probability p = (1 + count) / (2 + n); the confidence of an
        outlier is P(Binomial(n, p) > n - floor(n * contamination)), of an inlier one minus that.
        """
        return self._confidence(self.decision_function(X))

    def _confidence(self, scores: np.ndarray) -> np.ndarray:
        from scipy.stats import binom

        train = np.sort(np.asarray(self.decision_scores_, dtype=np.float64))
        n = len(train)
        count = np.searchsorted(train, scores, side="right")  # training scores <= each score
        posterior = (1.0 + count) / (2.0 + n)
        conf = 1.0 - binom.cdf(n - int(n * self.contamination), n, posterior)
        return np.where(scores > self.threshold_, conf, 1.0 - conf)

    def fit_predict(self, X, y=None) -> np.ndarray:
        """Fits, then returns labels_ (1 outlier, 0 inlier), as PyOD does."""
        return self.fit(X).labels_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.non_deterministic = False
        return tags

    # -- saving: safetensors weights + JSON metadata, never a pickle ---------------------
    def save(self, path: str | Path) -> Path:
        """One .safetensors file: weights, scaler and training scores as tensors; parameters,
        config and threshold as JSON in its metadata. ``AnomalyDetector.load`` reads it back
        without unpickling anything."""
        run = self._fitted()
        tensors = {f"model.{k}": v for k, v in run.model.state_dict().items()}
        for k, v in (run.scaler or {}).items():
            tensors[f"scaler.{k}"] = torch.from_numpy(np.ascontiguousarray(v))
        tensors["decision_scores"] = torch.from_numpy(np.ascontiguousarray(self.decision_scores_, dtype=np.float64))
        params = {
            k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
            for k, v in self.get_params().items()
        }
        meta = {
            "format": SAVE_FORMAT,
            "params": params,
            "config": run.config.to_dict(),
            "input_shape": list(run.model.input_shape),
            "metric": self.metric_,
            "threshold": self.threshold_,
            "n_features_in": int(self.n_features_in_),
        }
        return save_safetensors(path, tensors, metadata={"aelab": json.dumps(meta)})

    @classmethod
    def load(cls, path: str | Path) -> AnomalyDetector:
        """The detector ``save`` wrote; a damaged or foreign file is one RunError naming it."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file, safe_open

        from .config import Config
        from .models import build_model
        from .run import Run, check_weights

        path = Path(path)
        if not path.is_file():
            raise RunError(f"{path}: no such file")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = json.loads((f.metadata() or {}).get("aelab", "null")) or {}
            tensors = load_file(path)
        except (SafetensorError, OSError, ValueError) as e:
            raise RunError(f"{path}: not a readable safetensors file ({e})") from None
        if not isinstance(meta, dict) or meta.get("format") != SAVE_FORMAT:
            raise RunError(f"{path}: not a detector saved by AnomalyDetector.save (format {SAVE_FORMAT})")
        try:
            params = dict(meta["params"])
            if isinstance(params.get("hidden"), list):
                params["hidden"] = tuple(params["hidden"])
            det = cls(**params)
            cfg = Config.from_dict(meta["config"])
            model = build_model(cfg, tuple(int(s) for s in meta["input_shape"]))
            weights = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
            check_weights(model, weights, path)
            model.load_state_dict(weights)
            scaler = {k[len("scaler.") :]: v.numpy() for k, v in tensors.items() if k.startswith("scaler.")} or None
            det.run_ = Run(path, cfg, model.eval(), {}, scaler)
            det.metric_ = str(meta["metric"])
            det.n_features_in_ = int(meta["n_features_in"])
            det.decision_scores_ = tensors["decision_scores"].double().numpy()
        except (KeyError, TypeError, ValueError) as e:
            raise RunError(f"{path}: detector metadata is incomplete or damaged ({e})") from None
        det._set_threshold()
        return det
