"""The sparse autoencoder's report figures: the feature-density histogram and its dictionary."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..evaluate.sae_metrics import latent_frequencies
from . import figures as F
from .figure_sets import register_figures


@register_figures("sae")
def sae_figures(model, splits) -> list[tuple[str, Any, str]]:
    freq, l0, fvu = latent_frequencies(model, splits.x_test)
    dead = int((freq == 0).sum())
    live = freq[freq > 0]
    fig = Figure(figsize=(6.5, 2.8))
    ax = fig.subplots()
    if len(live):
        ax.hist(np.log10(live), bins=40, color="tab:blue")
    ax.set_xlabel("log10 of the fraction of test samples a latent fires on")
    ax.set_ylabel("latents")
    fig.tight_layout()
    figs: list[tuple[str, Any, str]] = [
        (
            "sae_feature_density",
            fig,
            f"Feature density: how often each of the {len(freq)} latents fires on the test set "
            f"(L0 {l0:.1f}, FVU {fvu:.4f}); {dead} latents never fire and are not drawn.",
        )
    ]
    if F.is_image_shape(model.input_shape) and len(live):
        top = np.argsort(-freq, kind="stable")[:64]
        w = model.W_dec.detach().float().cpu().numpy()[:, top].T.reshape(-1, *model.input_shape)
        figs.append(
            (
                "sae_dictionary",
                F.weight_tiles(w, "decoder columns of the 64 most frequent latents"),
                "Decoder columns (unit norm) of the 64 most frequently firing latents, most frequent first; "
                "one colour scale, grey = 0.",
            )
        )
    return figs
