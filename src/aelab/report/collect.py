"""What a report shows, computed once from a model and its data: reconstructions, codes, errors, projections.

Kept apart from drawing (figures.py) and writing (html.py) so each is testable alone.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

import numpy as np
import torch

from ..config import NoiseConfig
from ..data.noise import compose
from ..errors import ConfigError
from ..evaluate.evaluate import encode_array, per_sample_errors, reconstruct

LATENT_METHODS = ("pca", "tsne", "umap")
NOISE_SEED = 1234  # the noisy copies shown in reports are the same in every report and comparison


def sample_indices(y: np.ndarray | None, n: int = 10) -> np.ndarray:
    """The test images every report and comparison shows: the first of each class, else the first n.

    Fixed by the data alone, so different runs on the same data show the same images.
    """
    if y is None:
        return np.arange(n)
    first: dict[int, int] = {}
    for i, lab in enumerate(np.asarray(y).tolist()):
        first.setdefault(int(lab), i)
        if len(first) >= n:
            break
    idx = [first[k] for k in sorted(first)][:n]
    chosen = set(idx)
    rest = [i for i in range(min(len(y), 2 * n)) if i not in chosen]
    return np.array(idx + rest[: n - len(idx)], dtype=np.int64)


def noisy_copy(x: np.ndarray, noise: Sequence[NoiseConfig]) -> np.ndarray | None:
    """The run's input corruption applied with a fixed seed; None when the run has no noise."""
    fn = compose(noise)
    if fn is None:
        return None
    g = torch.Generator().manual_seed(NOISE_SEED)
    return fn(torch.as_tensor(np.asarray(x, dtype=np.float32)).clone(), g).numpy()


def model_input(x: np.ndarray, noise: Sequence[NoiseConfig]) -> tuple[np.ndarray, np.ndarray | None]:
    """(what the model is fed, the noisy copy or None)."""
    noisy = noisy_copy(x, noise)
    return (x if noisy is None else noisy), noisy


def bare(model):
    """The autoencoder inside a wrapper (DistributedDataParallel, torch.compile)."""
    return getattr(model, "module", getattr(model, "_orig_mod", model))


def reconstruct_samples(
    model, x: np.ndarray, noise: Sequence[NoiseConfig] = ()
) -> tuple[np.ndarray, np.ndarray | None]:
    """(reconstructions, noisy inputs or None) of a handful of images."""
    xin, noisy = model_input(x, noise)
    return reconstruct(bare(model), xin), noisy


def errors(model, x: np.ndarray, loss: str) -> tuple[np.ndarray, np.ndarray]:
    """(per-image MSE, reconstructions) over a whole split."""
    m = bare(model)
    mse = per_sample_errors(m, x, loss)["mse"].numpy()
    return mse, reconstruct(m, x)


def codes(model, x: np.ndarray) -> np.ndarray:
    return encode_array(bare(model), x)


def pca_2d(z: np.ndarray) -> tuple[np.ndarray, float]:
    """(the codes on their first two principal axes, the share of variance those keep).

    A randomized SVD (a few passes over the codes) instead of a full one: a full
    SVD of a 10,000 x 3,136 conv code took minutes and only two axes are kept.
    """
    import torch

    zc = z.astype(np.float64) - z.mean(0, dtype=np.float64)
    total = float((zc**2).sum())
    if zc.shape[1] <= 64:
        _, s, vt = np.linalg.svd(zc, full_matrices=False)
        axes = vt[:2]
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            _, s_t, v_t = torch.svd_lowrank(torch.from_numpy(zc), q=8, niter=4)
        s, axes = s_t.numpy(), v_t.numpy()[:, :2].T
    share = float((s[:2] ** 2).sum() / total) if total > 0 else 1.0
    pts = zc @ axes.T
    if pts.shape[1] < 2:
        pts = np.column_stack([pts, np.zeros(len(pts))])
    return pts.astype(np.float32), share


def project_2d(
    z: np.ndarray, method: str = "pca", seed: int = 0, max_points: int = 3000
) -> tuple[np.ndarray, np.ndarray, str]:
    """(points (M, 2), indices of the M codes used, a note) for a latent scatter.

    Codes of two values are drawn as they are. t-SNE and UMAP see at most
    ``max_points`` codes (t-SNE on 10,000 takes minutes on a laptop); PCA sees all.
    """
    if method not in LATENT_METHODS:
        raise ConfigError(f"latent: must be one of {', '.join(LATENT_METHODS)}; got '{method}'")
    z = np.asarray(z, dtype=np.float32).reshape(len(z), -1)
    idx = np.arange(len(z))
    if z.shape[1] == 2:
        return z, idx, "the code itself: 2 values"
    if method != "pca" and len(z) > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(len(z), max_points, replace=False))
        z = z[idx]
    if z.shape[1] < 2:
        return np.column_stack([z[:, 0], np.zeros(len(z))]), idx, "1 code value"
    if method == "pca":
        pts, share = pca_2d(z)
        return pts, idx, f"{share:.0%} of the code variance"
    if method == "tsne":
        from sklearn.manifold import TSNE
        from threadpoolctl import threadpool_limits

        # one OpenMP thread: on a busy machine, spinning OpenMP workers made a 30-point t-SNE take 40 s instead of 1 s
        with threadpool_limits(1, user_api="openmp"):
            pts = TSNE(
                n_components=2, init="pca", random_state=seed, perplexity=min(30.0, max(2.0, (len(z) - 1) / 3))
            ).fit_transform(z)
        return pts, idx, f"{len(z)} codes"
    if importlib.util.find_spec("umap") is None:
        raise ConfigError("latent: umap needs the umap-learn package (pip install umap-learn); use pca or tsne")
    import umap  # type: ignore

    return umap.UMAP(n_components=2, random_state=seed).fit_transform(z), idx, f"{len(z)} codes"
