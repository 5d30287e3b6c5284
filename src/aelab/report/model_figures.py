"""Model-specific report figures, as named figure sets a family declares in ``Capabilities.figures``.

A set is ``fn(model, splits) -> [(file_stem, matplotlib_figure, caption), ...]``
registered with ``@register_figures(name, section)``; the run report draws the
sets of the "Weights" section beside the weights and the others under "Model".
No file I/O here: the report saves and shows what the sets return.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..evaluate.extra import predict_classes, tap_reconstructions
from ..models import capabilities
from . import figures as F
from .images import grid
from .sae_figures import sae_figures
from .vae_figures import vae_figures
from .vqvae_figures import vqvae_figures

FigureSet = Callable[[Any, Any], list[tuple[str, Any, str]]]
_SETS: dict[str, tuple[FigureSet, str]] = {}


def register_figures(name: str, section: str = "Model") -> Callable[[FigureSet], FigureSet]:
    def deco(fn: FigureSet) -> FigureSet:
        if name in _SETS:
            raise ValueError(f"figure set '{name}' is already registered")
        _SETS[name] = (fn, section)
        return fn

    return deco


def figure_sets() -> list[str]:
    return sorted(_SETS)


def model_figures(model, splits, section: str | None = None) -> list[tuple[str, Any, str]]:
    """The figures of every set the model's family declares (of one ``section`` if given), in declared order."""
    out: list[tuple[str, Any, str]] = []
    for name in capabilities(model).figures:
        if name not in _SETS:
            raise KeyError(
                f"model '{model.cfg.name}' declares figure set '{name}', which report/model_figures.py does not have"
            )
        fn, sec = _SETS[name]
        if section is None or sec == section:
            out += fn(model, splits)
    return out


# -- the sets -------------------------------------------------------------------


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


@register_figures("vae")
def vae_figure_set(model, splits) -> list[tuple[str, Any, str]]:
    """Prior samples, an interpolation and (2-D codes) the manifold; nothing for tabular rows."""
    if len(model.input_shape) != 3:
        return []
    return vae_figures(model, splits)


@register_figures("classifier")
def classifier_figures(model, splits, n: int = 10) -> list[tuple[str, Any, str]]:
    """Test images and their reconstructions from each tap depth, plus per-class accuracy."""
    x = splits.x_test[:n]
    recs = tap_reconstructions(model, x)
    depths = sorted(recs)
    rows = [("input", x)] + [(f"block {k}" + (" (tap)" if k == model.tap else " (probe)"), recs[k]) for k in depths]
    fig = Figure(figsize=(n * 0.9 + 1.2, 1.0 * len(rows) + 0.3))
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    for ax, (label, imgs) in zip(axes, rows):
        img = grid(imgs, ncols=n)
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=255)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout()
    shapes = ", ".join(f"block {k}: {'x'.join(map(str, model.tap_shape(k)))}" for k in depths)
    figs: list[tuple[str, Any, str]] = [
        (
            "classifier_taps",
            fig,
            f"Test images reconstructed from the feature maps after pooling blocks {', '.join(map(str, depths))} "
            f"({shapes}); the tap head is trained with the classifier, probe heads on frozen features.",
        )
    ]
    if splits.y_test is not None:
        figs.append(_class_accuracy_figure(model, splits))
    return figs


def _class_accuracy_figure(model, splits) -> tuple[str, Any, str]:
    y = np.asarray(splits.y_test)
    pred = predict_classes(model, splits.x_test)
    k = model.num_classes
    classes = splits.classes or [str(i) for i in range(k)]
    acc = [float((pred[y == i] == i).mean()) if (y == i).any() else np.nan for i in range(k)]
    fig = Figure(figsize=(6, 3))
    ax = fig.subplots()
    ax.bar(range(k), acc, color="tab:blue")
    ax.set_xticks(range(k))
    ax.set_xticklabels([str(c) for c in classes[:k]], rotation=45, ha="right", fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("test accuracy")
    ax.axhline(float((pred == y).mean()), color="k", lw=0.8, ls="--")
    fig.tight_layout()
    return ("classifier_accuracy", fig, f"Test accuracy per class (dashed: overall {float((pred == y).mean()):.4f}).")


register_figures("vq-vae")(vqvae_figures)
register_figures("sae")(sae_figures)
