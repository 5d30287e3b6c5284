"""The VQ-VAE's metric set "codebook": perplexity and use of the codebook."""

from __future__ import annotations

import numpy as np
import torch

from .evaluate import batches, eval_mode
from .metric_sets import register_metrics


@torch.no_grad()
def codebook_counts(model, x, batch_size: int = 1024) -> np.ndarray:
    """How often each codebook entry of a VQ-VAE is picked over x, (codebook_size,)."""
    k = model.cfg.codebook_size
    counts = torch.zeros(k, dtype=torch.long)
    with eval_mode(model):
        for b in batches(x, batch_size, model.device):
            counts += torch.bincount(model.encode_indices(b).flatten().cpu(), minlength=k)
    return counts.numpy()


@register_metrics("codebook")
def codebook_metrics(model, x, y) -> dict[str, float]:
    """Codebook perplexity (exp of the entropy of code use; K when all K are used evenly) and codes used."""
    c = codebook_counts(model, x).astype(np.float64)
    p = c / max(c.sum(), 1.0)
    nz = p[p > 0]
    return {
        "perplexity": float(np.exp(-(nz * np.log(nz)).sum())),
        "codes_used": float((c > 0).sum()),
        "codes_used_fraction": float((c > 0).mean()),
    }
