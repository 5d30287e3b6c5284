"""Reconstruction metrics as pure tensor functions, and the BCE floor.

All losses are means per value (per pixel), as Keras reports them.
"""

from __future__ import annotations

import functools
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
    return F.binary_cross_entropy_with_logits(
        logits.float().flatten(1), target.float().flatten(1), reduction="none"
    ).mean(1)


def mse(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared error."""
    return (recon.float() - target.float()).flatten(1).pow(2).mean(1)


def psnr(per_sample_mse: torch.Tensor, peak: float = 1.0) -> torch.Tensor:
    """Per-sample PSNR in dB (images in [0, peak]); a perfect copy is capped at 100 dB."""
    return 10 * torch.log10(peak**2 / per_sample_mse.clamp_min(1e-10))


def _binary_entropy(t: torch.Tensor) -> torch.Tensor:
    """-(t log t + (1 - t) log(1 - t)), element-wise, in t's dtype (0 at t = 0 and 1)."""
    return torch.special.xlogy(t, t).add_(torch.special.xlogy(1 - t, 1 - t)).neg_()


@functools.cache
def _byte_entropy() -> np.ndarray:
    """The binary entropy of k / 255 (float32 division, as uint8 data is scaled) for every byte k, in float64."""
    return _binary_entropy(torch.as_tensor(np.arange(256, dtype=np.float32) / np.float32(255)).double()).numpy()


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
        part = np.asarray(target[i : i + step])
        if part.dtype == np.uint8:  # 256 values: count them, each one's entropy taken once in float64
            total += float(np.bincount(part.ravel(), minlength=256) @ _byte_entropy())
            count += part.size
            continue
        # float32 terms summed in float64: within 1e-7 of float64 terms, at a third of their time (0.15 s
        # for MNIST's test split, paid by every run and by every member of a sweep)
        t = torch.as_tensor(part.astype(np.float32, copy=False)).flatten().clamp(0, 1)
        total += float(_binary_entropy(t).sum(dtype=torch.float64))
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


# -- which metrics fit the data --------------------------------------------
#
# BCE (and its floor) compares probabilities, so it only means something where the
# targets lie in [0, 1]; PSNR needs the range a value can span (1 for such targets).
# Standardised data (data.scale: standard) has neither: there a reconstruction is a
# regression, judged by MSE, RMSE per feature and R^2 (scikit-learn's r2_score).


def value_range(x: np.ndarray | torch.Tensor) -> tuple[float, float]:
    """(min, max) of the values the model sees (uint8 read as /255), in chunks: a memory-mapped split is never loaded whole."""
    if torch.is_tensor(x):
        x = x.detach().cpu().numpy()
    if len(x) == 0:
        return float("nan"), float("nan")
    if np.asarray(x[:1]).dtype == np.uint8:
        return 0.0, 1.0  # bytes are scaled by 1/255: always inside [0, 1]
    step = max(1, (1 << 22) // max(1, int(np.prod(np.shape(x)[1:]))))
    lo, hi = math.inf, -math.inf
    for i in range(0, len(x), step):
        part = np.asarray(x[i : i + step])
        lo, hi = min(lo, float(part.min())), max(hi, float(part.max()))
    return lo, hi


def in_unit_range(lo: float, hi: float) -> bool:
    return lo >= 0.0 and hi <= 1.0


class RegressionStats:
    """Streaming per-feature sums for RMSE per feature and R^2 over batches of (recon, target)."""

    def __init__(self) -> None:
        self.n = 0
        # per-feature sums (float64, CPU); None until the first batch
        self.sse: torch.Tensor | None = None
        self.sum: torch.Tensor | None = None
        self.sumsq: torch.Tensor | None = None

    def update(self, recon: torch.Tensor, target: torch.Tensor) -> None:
        r, t = recon.double().flatten(1).cpu(), target.double().flatten(1).cpu()
        sse, s, ss = (r - t).pow(2).sum(0), t.sum(0), t.pow(2).sum(0)
        if self.sse is None or self.sum is None or self.sumsq is None:
            self.sse, self.sum, self.sumsq = sse, s, ss
        else:
            self.sse, self.sum, self.sumsq = self.sse + sse, self.sum + s, self.sumsq + ss
        self.n += len(t)

    def rmse_per_feature(self) -> np.ndarray:
        if self.sse is None:
            return np.zeros(0)
        return (self.sse / max(self.n, 1)).sqrt().numpy()

    def r2(self) -> float:
        """Mean over features of 1 - SSE/SST; constant features (SST = 0) are left out, as nothing explains them."""
        if self.sse is None or self.sum is None or self.sumsq is None:
            return float("nan")
        sst = self.sumsq - self.sum.pow(2) / max(self.n, 1)
        keep = sst > 1e-12 * max(self.n, 1)
        if not bool(keep.any()):
            return float("nan")
        return float((1 - self.sse[keep] / sst[keep]).mean())


def format_metrics(m: dict[str, float | list], loss: str, prefix: str = "") -> str:
    """One line naming every metric once, the loss first: ``bce 0.2556 (floor 0.2422)  mse 0.0032  psnr 20.10 dB``."""

    def get(k):
        return m.get(f"{prefix}{k}")

    parts = []
    for k in [loss] + [k for k in ("bce", "mse", "rmse", "r2", "psnr") if k != loss]:
        v = get(k)
        if v is None:
            continue
        if k == "psnr":
            peak = get("psnr_peak")
            parts.append(f"psnr {v:.2f} dB" + (f" (peak {peak:.4g})" if peak is not None else ""))
        elif k == "bce" and get("bce_floor") is not None:
            parts.append(f"bce {v:.4f} (floor {get('bce_floor'):.4f})")
        else:
            parts.append(f"{k} {v:.4f}")
    return "  ".join(parts)
