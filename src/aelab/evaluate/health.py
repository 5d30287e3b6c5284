"""Latent health: which code units a model actually uses on the test set.

- activity of a unit: the fraction of samples where it is non-zero (|z| > ``tol``); a unit is
  *dead* when it is never active or never changes (its spread over the test set is below ``tol``):
  seed 003's 1000 ReLU units, a TopK dictionary's latents that never win.
- for VAEs, the active-units count of Burda et al. 2016: a unit is active when
  Cov_x(E_q[z_u | x]) > 0.01, i.e. the mean code varies with the input; others collapsed to the prior.
- a histogram of all code values and of the per-unit activity, for the report.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..models import capabilities
from .evaluate import encode_array

VAE_ACTIVE_THRESHOLD = 0.01  # Burda et al. 2016, section 5.2


def unit_activity(codes: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """Fraction of samples in which each unit is non-zero, (units,); codes (N, units)."""
    return (np.abs(codes) > tol).mean(0)


def dead_units(codes: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """Boolean (units,): never non-zero, or constant over the samples."""
    return (unit_activity(codes, tol) == 0) | (codes.std(0) <= tol)


def vae_active_units(mean_codes: np.ndarray, threshold: float = VAE_ACTIVE_THRESHOLD) -> np.ndarray:
    """Boolean (units,): Cov_x(E[z|x]) > threshold per unit (the variance over x of the posterior mean)."""
    return mean_codes.astype(np.float64).var(0) > threshold


def code_histogram(codes: np.ndarray, bins: int = 40) -> dict:
    """Histogram of every code value (the edges span the observed range), JSON-ready."""
    v = codes.astype(np.float64).ravel()
    lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 1.0)
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi if hi > lo else lo + 1.0))
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def latent_health(model, x, batch_size: int = 1024, tol: float = 1e-6) -> tuple[dict, dict]:
    """Health of ``model``'s code on ``x`` (flattened per sample): (scalars, details).

    The scalars go to summary.json as ``test_<key>`` (code_units, dead_units, dead_fraction,
    mean_unit_activity, and active_units for VAEs); the details (histograms, per-unit numbers)
    under ``latent_health``, for the report's figure.
    """
    codes = encode_array(model, x, batch_size).reshape(len(x), -1)
    act = unit_activity(codes, tol)
    dead = dead_units(codes, tol)
    scalars = {
        "code_units": int(codes.shape[1]),
        "dead_units": int(dead.sum()),
        "dead_fraction": float(dead.mean()),
        "mean_unit_activity": float(act.mean()),
    }
    details: dict[str, Any] = {
        "unit_activity_histogram": {
            "edges": [i / 10 for i in range(11)],
            "counts": [int(c) for c in np.histogram(act, bins=10, range=(0, 1))[0]],
        },
        "code_histogram": code_histogram(codes),
    }
    if capabilities(model).generative:  # a VAE: encode() is the posterior mean, the prior N(0, I)
        var = codes.astype(np.float64).var(0)
        scalars["active_units"] = int((var > VAE_ACTIVE_THRESHOLD).sum())
        details["posterior_mean_variance"] = [float(v) for v in var]
    return scalars, details
