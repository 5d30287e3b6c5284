"""A Keras-style model summary: layer, output shape, parameters, total."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class LayerRow:
    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int


def summarize(model: nn.Module) -> list[LayerRow]:
    """Rows for every leaf layer, in call order, from one forward pass of a single zero sample."""
    rows: list[LayerRow] = []
    hooks = []
    names = {m: n for n, m in model.named_modules()}
    counted: set[int] = set()

    def hook(m, _inp, out):
        if isinstance(out, (tuple, list)):
            out = out[0]
        own = [p for p in m.parameters(recurse=False) if id(p) not in counted]
        counted.update(id(p) for p in own)
        rows.append(LayerRow(names.get(m, "?"), type(m).__name__, tuple(out.shape[1:]), sum(p.numel() for p in own)))

    for m in model.modules():
        if len(list(m.children())) == 0:
            hooks.append(m.register_forward_hook(hook))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            dev = next(model.parameters()).device
            model(torch.zeros(1, *model.input_shape, device=dev))
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return rows


def summary_table(model: nn.Module) -> str:
    rows = summarize(model)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    w1 = max([len(f"{r.name} ({r.kind})") for r in rows] + [20]) + 2
    lines = [f"{'Layer (type)':<{w1}}{'Output Shape':<22}{'Param #':>10}", "=" * (w1 + 32)]
    lines.append(f"{'input':<{w1}}{str((None, *model.input_shape)):<22}{0:>10,}")
    for r in rows:
        lines.append(f"{r.name + ' (' + r.kind + ')':<{w1}}{str((None, *r.output_shape)):<22}{r.params:>10,}")
    lines += [
        "=" * (w1 + 32),
        f"Total params: {total:,}",
        f"Trainable params: {trainable:,}",
        f"Non-trainable params: {total - trainable:,}",
    ]
    return "\n".join(lines)
