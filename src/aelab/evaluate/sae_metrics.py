"""The sparse autoencoder's metric set "sae": L0, fraction of variance unexplained, dead latents."""

from __future__ import annotations

import numpy as np
import torch

from .evaluate import batches, eval_mode
from .metric_sets import register_metrics


@torch.no_grad()
def latent_frequencies(model, x, batch_size: int = 1024) -> tuple[np.ndarray, float, float]:
    """A sparse autoencoder over x: how often each latent fires (latents,), mean L0, FVU."""
    fires = torch.zeros(model.n_latents)
    l0 = sq_err = 0.0
    n = 0
    xs = []
    with eval_mode(model):
        for b in batches(x, batch_size, model.device):
            z = model.encode(b)
            active = (z > 0).float()
            fires += active.sum(0).cpu()
            l0 += float(active.sum())
            flat = b.float().flatten(1)
            sq_err += float((model.decode(z).float().flatten(1) - flat).pow(2).double().sum())
            xs.append(flat.double().sum(0))
            n += len(b)
    mean = torch.stack(xs).sum(0) / max(n, 1)
    total_var = 0.0
    for b in batches(x, batch_size, torch.device("cpu")):
        total_var += float((b.double().flatten(1) - mean).pow(2).sum())
    return (fires.cpu().numpy() / max(n, 1)), l0 / max(n, 1), sq_err / max(total_var, 1e-12)


@register_metrics("sae")
def sae_metrics(model, x, y) -> dict[str, float]:
    """L0 (active latents per sample), fraction of variance unexplained, and dead latents: never firing
    on x (``dead_fraction``), and no firing in the last ``model.dead_samples`` training samples
    (``dead_fraction_train``)."""
    freq, l0, fvu = latent_frequencies(model, x)
    return {
        "l0": l0,
        "fvu": fvu,
        "dead_fraction": float((freq == 0).mean()),
        "dead_fraction_train": float(model.dead_mask().float().mean()),
    }
