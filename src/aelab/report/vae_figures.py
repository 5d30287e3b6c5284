"""The three VAE pictures for the run report, as matplotlib figures (no file I/O here).

Each function returns a figure; ``vae_figures`` bundles them as
(file_stem, figure, caption): the "vae" figure set the VAE families declare.
"""

from __future__ import annotations

import numpy as np
import torch

from .figure_sets import register_figures
from .images import grid


def _image_figure(img: np.ndarray, title: str, width: float = 6.0, extent=None, axis_labels=None):
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    h, w = img.shape[:2]
    fig = Figure(figsize=(width, width * h / w + 0.4))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(
        img[..., 0] if img.shape[-1] == 1 else img,
        cmap="gray",
        vmin=0,
        vmax=255,
        extent=extent,
        interpolation="nearest",
    )
    ax.set_title(title, fontsize=9)
    if axis_labels:
        ax.set_xlabel(axis_labels[0])
        ax.set_ylabel(axis_labels[1])
    else:
        ax.set_axis_off()
    fig.tight_layout()
    return fig


@torch.no_grad()
def prior_samples_figure(model, n: int = 64, seed: int = 0):
    x = model.sample(n, torch.Generator().manual_seed(seed)).float().cpu().numpy()
    return _image_figure(grid(x, ncols=int(np.ceil(np.sqrt(n)))), f"{n} samples: z ~ N(0, I), decoded to mean images")


def interpolation_pairs(y: np.ndarray | None, n_pairs: int) -> list[tuple[int, int]]:
    """Test-set index pairs to interpolate between: different labels where labels exist."""
    if y is None:
        return [(2 * i, 2 * i + 1) for i in range(n_pairs)]
    pairs, used = [], set()
    for i in range(len(y)):
        if len(pairs) == n_pairs:
            break
        if i in used:
            continue
        j = next((k for k in range(i + 1, len(y)) if y[k] != y[i] and k not in used), None)
        if j is not None:
            pairs.append((i, j))
            used.update((i, j))
    return pairs


@torch.no_grad()
def interpolation_figure(model, x: np.ndarray, pairs: list[tuple[int, int]], steps: int = 10):
    rows = []
    for i, j in pairs:
        ends = torch.as_tensor(np.asarray(x[[i, j]], dtype=np.float32)).to(model.device)
        mu = model.encode_stats(ends)[0]
        t = torch.linspace(0, 1, steps, device=mu.device)[:, None]
        path = model.decode((1 - t) * mu[0] + t * mu[1]).float().cpu().numpy()
        rows.append(np.concatenate([ends[:1].cpu().numpy(), path, ends[1:].cpu().numpy()]))
    img = grid(np.concatenate(rows), ncols=steps + 2)
    return _image_figure(img, "test images at both ends; between: the line joining their codes")


@torch.no_grad()
def manifold_figure(model, n: int = 20):
    """The decoder over a 2-D code: a grid at Gaussian quantiles 5%..95%, so equal areas of prior mass."""
    q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, n))
    z1, z2 = torch.meshgrid(q, q.flip(0), indexing="xy")  # rows from high z2 (top) to low
    z = torch.stack([z1.reshape(-1), z2.reshape(-1)], 1).to(model.device)
    x = model.decode(z).float().cpu().numpy()
    lo, hi = float(q[0]), float(q[-1])
    return _image_figure(
        grid(x, ncols=n, pad=0), "decoded 2-D code space", width=7.0, extent=(lo, hi, lo, hi), axis_labels=("z1", "z2")
    )


@register_figures("vae")
def vae_figures(model, splits) -> list[tuple[str, object, str]]:
    """Prior samples, an interpolation and (2-D codes) the manifold; nothing for tabular rows."""
    if len(model.input_shape) != 3:
        return []
    was = model.training
    model.eval()
    try:
        out = [
            (
                "vae_prior_samples",
                prior_samples_figure(model),
                "Samples from the prior: z drawn from N(0, I) and decoded (mean images, not binarised).",
            )
        ]
        pairs = interpolation_pairs(splits.y_test, 6)
        if pairs:
            out.append(
                (
                    "vae_interpolation",
                    interpolation_figure(model, splits.x_test, pairs),
                    "Interpolation in code space: each row starts and ends with a test image; the 10 pictures "
                    "between decode evenly spaced points on the straight line between their mean codes.",
                )
            )
        if model.code_dim == 2:
            out.append(
                (
                    "vae_manifold",
                    manifold_figure(model),
                    "The learned 2-D manifold: the decoder's output over a 20x20 grid of codes placed at the "
                    "5%..95% quantiles of the Gaussian prior in each axis.",
                )
            )
    finally:
        model.train(was)
    return out
