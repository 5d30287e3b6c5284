"""The report figures every family may declare (the weight pictures), and the one place that imports the
families' figure modules, so importing this registers every figure set (registry: figure_sets.py).

A family's own sets live in report/<family>_figures.py and register themselves with
``@register_figures``; add a new family's module with one import line below.
No file I/O here: the report saves and shows what the sets return.
"""

from __future__ import annotations

from typing import Any

# importing the families' figure modules registers their sets (add a new family's module here)
from . import classifier_figures as _classifier_figures  # noqa: F401
from . import figures as F
from . import sae_figures as _sae_figures  # noqa: F401
from . import vae_figures as _vae_figures  # noqa: F401
from . import vqvae_figures as _vqvae_figures  # noqa: F401
from .figure_sets import FigureSet, figure_sets, model_figures, register_figures

__all__ = ["FigureSet", "figure_sets", "model_figures", "register_figures"]


# -- the sets shared by families -------------------------------------------------


@register_figures("weights_first", "Weights")
def first_layer_figure(model, splits) -> list[tuple[str, Any, str]]:
    """The first layer's weights (``model.first_layer_weights()``: (units, *input_shape) or conv filters)."""
    if not F.is_image_shape(model.input_shape):
        return []
    w = model.first_layer_weights().float().cpu().numpy()
    if w.ndim != 4:
        return []
    conv = tuple(w.shape[1:]) != tuple(model.input_shape)
    cap = (
        "First conv layer's filters, one tile per filter, one shared colour scale (grey 0 = no effect)."
        if conv
        else "First layer's weights, one tile per unit, reshaped to the image; one colour scale, grey = 0. "
        "Stroke- and blob-like tiles are learned features, noise-like tiles are units that learned little."
    )
    return [("weights_first", F.weight_tiles(w, "first layer weights"), cap)]


@register_figures("weights_last", "Weights")
def last_layer_figure(model, splits) -> list[tuple[str, Any, str]]:
    """The output layer's weights transposed (``model.last_layer_weights()``: (units, *input_shape))."""
    if not F.is_image_shape(model.input_shape):
        return []
    w = model.last_layer_weights().float().cpu().numpy()
    return [
        (
            "weights_last",
            F.weight_tiles(w, "last layer weights, transposed"),
            "Output layer's weights, transposed: the image each unit before the output adds; same kind of scale.",
        )
    ]
