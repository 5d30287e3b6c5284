"""The classifier autoencoder's report figures: reconstructions from each tap depth and per-class accuracy."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..evaluate.classifier_metrics import predict_classes, tap_reconstructions
from .figure_sets import register_figures
from .images import grid


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
