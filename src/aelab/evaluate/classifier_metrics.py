"""The classifier autoencoder's metric set "classifier", and the batched predictions its figures use."""

from __future__ import annotations

import numpy as np
import torch

from .evaluate import batches, eval_mode
from .metric_sets import register_metrics


@torch.no_grad()
def predict_classes(model, x, batch_size: int = 1024) -> np.ndarray:
    """Predicted class of every sample (a model with ``classify``; eval mode, in batches)."""
    with eval_mode(model):
        return torch.cat([model.classify(b).argmax(1).cpu() for b in batches(x, batch_size, model.device)]).numpy()


@torch.no_grad()
def tap_reconstructions(model, x, batch_size: int = 1024) -> dict[int, np.ndarray]:
    """Reconstructions (after the output activation) from every tap depth of a model with ``tap_logits``."""
    out: dict[int, list[torch.Tensor]] = {}
    act = torch.sigmoid if model.output_activation == "sigmoid" else (lambda t: t)
    with eval_mode(model):
        for b in batches(x, batch_size, model.device):
            for k, logits in model.tap_logits(b).items():
                out.setdefault(k, []).append(act(logits.float()).cpu())
    return {k: torch.cat(v).numpy() for k, v in out.items()}


@register_metrics("classifier")
def classifier_metrics(model, x, y) -> dict[str, float]:
    """Accuracy (when labels are given) and the MSE of each probe's reconstruction."""
    res: dict[str, float] = {}
    if y is not None and len(y):
        res["accuracy"] = float((predict_classes(model, x) == np.asarray(y)).mean())
    if model.probe_taps:
        recs = tap_reconstructions(model, x)
        xs = np.asarray(x, dtype=np.float32)
        for k in model.probe_taps:
            res[f"mse_tap{k}"] = float(((recs[k] - xs) ** 2).mean())
    return res
