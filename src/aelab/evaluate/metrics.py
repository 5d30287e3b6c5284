"""Reconstruction metrics as pure tensor functions, and the BCE floor.

All losses are means per value (per pixel), as Keras reports them.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

EPS = 1e-7


def bce(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample mean binary cross-entropy of probabilities (clamped like Keras)."""
    p = probs.float().clamp(EPS, 1 - EPS).flatten(1)
    t = target.float().flatten(1)
    return -(t * torch.log(p) + (1 - t) * torch.log(1 - p)).mean(1)


def bce_logits(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample mean BCE from logits: exact, no clamping needed."""
    return F.binary_cross_entropy_with_logits(logits.float().flatten(1), target.float().flatten(1), reduction="none").mean(1)


def mse(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared error."""
    return (recon.float() - target.float()).flatten(1).pow(2).mean(1)


def psnr(per_sample_mse: torch.Tensor, peak: float = 1.0) -> torch.Tensor:
    """Per-sample PSNR in dB (images in [0, peak]); a perfect copy is capped at 100 dB."""
    return 10 * torch.log10(peak**2 / per_sample_mse.clamp_min(1e-10))


def entropy_floor(target: np.ndarray | torch.Tensor) -> float:
    """The lowest BCE any model can reach on these targets: their mean binary entropy (nats per value).

    BCE(t, p) = H(t) + KL(t || p) >= H(t), with equality only at p = t; so a grey pixel
    (0 < t < 1) costs BCE even when reconstructed perfectly.
    """
    if torch.is_tensor(target):
        target = target.detach().cpu().numpy()
    if np.ndim(target) == 0:
        target = np.atleast_1d(target)
    if len(target) == 0:
        return float("nan")
    # in chunks of samples: a memory-mapped test split (uint8, scaled here) is never loaded whole
    step = max(1, (1 << 22) // max(1, int(np.prod(np.shape(target)[1:]))))
    total, count = 0.0, 0
    for i in range(0, len(target), step):
        part = np.asarray(target[i: i + step])
        t = torch.as_tensor(part.astype(np.float32) / 255 if part.dtype == np.uint8 else part.astype(np.float32)).flatten()
        t = t.clamp(0, 1).double()
        total += float((-(torch.special.xlogy(t, t) + torch.special.xlogy(1 - t, 1 - t))).sum())
        count += t.numel()
    return total / count


def grey_share(target: np.ndarray, lo: float = 0.1, hi: float = 0.9) -> float:
    """Share of values strictly between lo and hi (the 'grey' pixels that keep BCE above zero)."""
    t = np.asarray(target)
    return float(((t > lo) & (t < hi)).mean())


def summarize_errors(per_sample: dict[str, torch.Tensor]) -> dict[str, float]:
    return {k: float(v.double().mean()) for k, v in per_sample.items()}


def finite(x: float) -> bool:
    return math.isfinite(x)
