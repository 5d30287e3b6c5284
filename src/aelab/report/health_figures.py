"""Latent health for every model's report: how the code's units are used on the test set."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..evaluate.health import VAE_ACTIVE_THRESHOLD, dead_units, unit_activity


def latent_health_figure(z_all: np.ndarray, vae: bool) -> tuple[Any, str]:
    """Left: per-unit activity (or, for a VAE, the variance of each unit's posterior mean); right: all code values."""
    z = np.asarray(z_all, dtype=np.float64).reshape(len(z_all), -1)
    fig = Figure(figsize=(9, 2.8))
    a1, a2 = fig.subplots(1, 2)
    if vae:
        var = np.sort(z.var(0))[::-1]
        a1.bar(np.arange(len(var)), var, width=1.0, color="tab:blue")
        a1.axhline(VAE_ACTIVE_THRESHOLD, color="k", ls="--", lw=0.8)
        a1.set_yscale("log")
        a1.set_xlabel("code unit, by variance")
        a1.set_ylabel("Var_x of E[z|x]")
        active = int((var > VAE_ACTIVE_THRESHOLD).sum())
        left = (
            f"{active} of {len(var)} units are active (the variance of their posterior mean over the test set "
            f"exceeds {VAE_ACTIVE_THRESHOLD}, dashed; Burda et al. 2016); the others carry nothing."
        )
    else:
        act = unit_activity(z)
        a1.hist(act, bins=20, range=(0, 1), color="tab:blue")
        a1.set_xlabel("fraction of test samples where the unit is non-zero")
        a1.set_ylabel("units")
        dead = int(dead_units(z).sum())
        left = f"{dead} of {z.shape[1]} code units are dead (never non-zero, or constant, on the test set)."
    a2.hist(z.ravel(), bins=60, color="tab:gray")
    a2.set_yscale("log")
    a2.set_xlabel("code value")
    a2.set_ylabel("count")
    fig.tight_layout()
    return fig, left + " Right: histogram of every code value."
