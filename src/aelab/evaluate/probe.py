"""Linear probe: how much label information a code keeps, next to raw pixels and PCA of the same size.

Reconstruction error says how well a code redraws the input; a logistic
regression on frozen codes says how usable the code is as features. The two
can disagree (seed 002's point), so ``aelab probe`` reports both side by side.
Each feature set is centred and scaled by one number, then fed to the same classifier.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..errors import DataError, RunError

CLASSIFIER = "LogisticRegression(C=1, lbfgs, max_iter=1000) on centred features divided by their overall std"
MAX_ITER = 1000


def _flat(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    f = x.reshape(len(x), -1)
    return f.astype(np.float32) / 255.0 if f.dtype == np.uint8 else f.astype(np.float32, copy=False)


def center_scale(train_x: np.ndarray, test_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre each feature, then divide the whole set by ONE number (its overall std).

    One scale per feature set puts codes, pixels and PCA on the same footing for
    the L2 penalty; per-feature standardising would whiten PCA's low-variance
    components and the blank border pixels into noise as loud as the signal
    (it cost PCA 17 points of accuracy on Fashion-MNIST in a trial).
    """
    mu = train_x.mean(axis=0, dtype=np.float64)
    sd = float((train_x - mu).std())
    sd = sd if sd > 1e-12 else 1.0
    return ((train_x - mu) / sd).astype(np.float32), ((test_x - mu) / sd).astype(np.float32)


def probe_accuracy(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, seed: int = 0
) -> tuple[float, int]:
    """(test accuracy, lbfgs iterations) of a logistic regression fitted on (train_x, train_y)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    a, b = center_scale(train_x, test_x)
    clf = LogisticRegression(max_iter=MAX_ITER, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # probe.json records the iterations instead
        clf.fit(a, train_y)
    return float(clf.score(b, test_y)), int(np.max(clf.n_iter_))


def pca_features(train_x: np.ndarray, test_x: np.ndarray, n_components: int, seed: int = 0):
    """Train and test PCA features, the variance they explain, and PCA's own test reconstruction MSE."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=n_components, random_state=seed).fit(train_x)
    test_pc = pca.transform(test_x)
    mse = float(np.mean((pca.inverse_transform(test_pc) - test_x) ** 2))
    return pca.transform(train_x), test_pc, float(pca.explained_variance_ratio_.sum()), mse


def linear_probe(
    run, limit: int | None = None, test_limit: int | None = None, seed: int = 0, threads: int | None = None
) -> dict[str, Any]:
    """Probe, pixel and PCA accuracies for a loaded Run; returns what probe.json holds."""
    from threadpoolctl import threadpool_limits

    from .evaluate import encode_array

    if limit is not None and limit < 2:
        raise DataError(f"--limit: must be >= 2 (training samples for the classifier), got {limit}")
    if threads is not None and threads < 1:
        raise DataError(f"--threads: must be >= 1, got {threads}")
    if test_limit is not None and test_limit < 1:
        raise DataError(f"--test-limit: must be >= 1, got {test_limit}")
    data = run.load_data()
    if data.y_train is None or data.y_test is None:
        raise RunError(f"{run.path}: the run's data ({data.name}) has no labels; a linear probe needs them")
    x, y = data.x_train[:limit], data.y_train[:limit]
    xt, yt = data.x_test[:test_limit], data.y_test[:test_limit]
    if len(np.unique(y)) < 2:
        raise DataError(f"--limit: the first {len(y)} training samples hold one class only; raise --limit")

    t0 = time.perf_counter()
    z, zt = _flat(encode_array(run.model, x)), _flat(encode_array(run.model, xt))
    px, pxt = _flat(x), _flat(xt)
    code_dim = z.shape[1]
    n_pca = min(code_dim, px.shape[1], len(px))
    with threadpool_limits(threads):
        probe, it_probe = probe_accuracy(z, y, zt, yt, seed)
        pixels, it_pixels = probe_accuracy(px, y, pxt, yt, seed)
        pc, pct, explained, pca_mse = pca_features(px, pxt, n_pca, seed)
        pca, it_pca = probe_accuracy(pc, y, pct, yt, seed)
    out = {
        "run": str(run.path),
        "probe_accuracy": probe,
        "pixels_accuracy": pixels,
        "pca_accuracy": pca,
        "code_dim": int(code_dim),
        "pixels_dim": int(px.shape[1]),
        "pca_components": int(n_pca),
        "pca_explained_variance": explained,
        "pca_test_mse": pca_mse,  # PCA's reconstruction error, mean per value: compare with test_mse
        "train_size": int(len(z)),
        "test_size": int(len(zt)),
        "classifier": CLASSIFIER,
        "iterations": {"probe": it_probe, "pixels": it_pixels, "pca": it_pca},  # MAX_ITER: stopped before converging
        "max_iter": MAX_ITER,
        "seed": seed,
        "seconds": time.perf_counter() - t0,
    }
    for k in ("test_bce", "test_mse", "test_psnr"):  # reconstruction quality, to read next to the accuracies
        if run.summary.get(k) is not None:
            out[k] = run.summary[k]
    return out


def probe_table(res: dict[str, Any]) -> str:
    """Accuracy next to reconstruction error, the two things seed 002 says to tell apart."""

    def mse(v):
        return f"{v:.4f}" if v is not None else "-"

    rows = [
        ("autoencoder code", res["code_dim"], res["probe_accuracy"], mse(res.get("test_mse"))),
        (
            f"PCA ({res['pca_explained_variance']:.0%} of variance)",
            res["pca_components"],
            res["pca_accuracy"],
            mse(res.get("pca_test_mse")),
        ),
        ("raw pixels", res["pixels_dim"], res["pixels_accuracy"], "-"),
    ]
    lines = [
        f"linear probe: {res['classifier']}, {res['train_size']} train / {res['test_size']} test samples",
        f"{'features':<30}{'dims':>6}  {'test accuracy':>13}  {'test recon mse':>14}",
    ]
    lines += [f"{name:<30}{dims:>6}  {acc:>13.4f}  {m:>14}" for name, dims, acc, m in rows]
    return "\n".join(lines)
