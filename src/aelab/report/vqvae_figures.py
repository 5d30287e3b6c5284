"""The VQ-VAE's report figures: codebook usage, reconstructions, and the image of each single code."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from ..evaluate.evaluate import reconstruct
from ..evaluate.vqvae_metrics import codebook_counts
from .figure_sets import register_figures
from .images import grid


def _images(ax, imgs: np.ndarray, ncols: int, label: str | None = None) -> None:
    img = grid(imgs, ncols=ncols)
    ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if label:
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)


@torch.no_grad()
def single_code_images(model, codes: np.ndarray) -> np.ndarray:
    """Each code k decoded from a map filled with k alone: what one entry draws, (len(codes), C, H, W)."""
    _, h, w = model.code_shape
    idx = torch.as_tensor(codes, dtype=torch.long)[:, None, None].expand(-1, h, w).to(model.device)
    was = model.training
    model.eval()
    try:
        logits = model.decode_indices_logits(idx).float()
    finally:
        model.train(was)
    out = torch.sigmoid(logits) if model.output_activation == "sigmoid" else logits
    return out.cpu().numpy()


@register_figures("vq-vae")
def vqvae_figures(model, splits, n: int = 10) -> list[tuple[str, Any, str]]:
    counts = codebook_counts(model, splits.x_test)
    order = np.argsort(-counts, kind="stable")
    used = int((counts > 0).sum())
    fig = Figure(figsize=(7, 2.6))
    ax = fig.subplots()
    ax.bar(np.arange(len(counts)), counts[order] / max(counts.sum(), 1), width=1.0, color="tab:blue")
    ax.set_xlabel("codebook entry, most used first")
    ax.set_ylabel("share of positions")
    ax.set_yscale("log")
    fig.tight_layout()
    figs: list[tuple[str, Any, str]] = [
        (
            "vq_codebook_usage",
            fig,
            f"How often each of the {len(counts)} codebook entries is picked over the test set "
            f"(every position of every code map); {used} entries are used at least once.",
        )
    ]
    x = splits.x_test[:n]
    rec = reconstruct(model, x)
    fig = Figure(figsize=(n * 0.9 + 1.2, 2.2))
    a1, a2 = fig.subplots(2, 1)
    _images(a1, np.asarray(x, np.float32), n, "input")
    _images(a2, rec, n, "decoded")
    fig.tight_layout()
    figs.append(("vq_reconstructions", fig, "Test images and their reconstructions through the quantised code map."))
    top = order[: min(32, used)]
    if len(top):
        imgs = single_code_images(model, top)
        fig = Figure(figsize=(8, 8 * (-(-len(top) // 8)) / 8 + 0.4))
        ax = fig.subplots()
        _images(ax, imgs, 8)
        ax.set_title(f"the {len(top)} most used codes, each decoded from a map of that code alone", fontsize=9)
        fig.tight_layout()
        figs.append(
            (
                "vq_single_codes",
                fig,
                "Images decoded from single codes: every position of the code map set to "
                "the same entry, most used entries first.",
            )
        )
    return figs
