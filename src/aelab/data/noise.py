"""Input corruptions for denoising training, composable in a list.

Each takes a clean batch in [0, 1] and a torch.Generator, so noise is
reproducible from the run's seed and drawn fresh for every batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..config import NoiseConfig

Noise = Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]


def gaussian(factor: float, clip: bool = True) -> Noise:
    """x + factor * N(0, 1), clipped to [0, 1] (seed 004's noise_factor=0.5)."""

    def apply(x: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
        n = torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)
        y = x + factor * n
        return y.clamp_(0.0, 1.0) if clip else y

    return apply


def masking(fraction: float, clip: bool = True) -> Noise:
    """Set a random fraction of the values to 0 (seed 003, Vincent et al. 2010)."""

    def apply(x: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
        keep = torch.rand(x.shape, generator=g, device=x.device) >= fraction
        return x * keep

    return apply


def salt_pepper(fraction: float, clip: bool = True) -> Noise:
    """Set a random fraction of the values to 0 or 1, half each."""

    def apply(x: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
        u = torch.rand(x.shape, generator=g, device=x.device)
        y = torch.where(u < fraction / 2, torch.zeros_like(x), x)
        return torch.where((u >= fraction / 2) & (u < fraction), torch.ones_like(x), y)

    return apply


_KINDS = {"gaussian": gaussian, "masking": masking, "salt_pepper": salt_pepper}


def compose(configs: Sequence[NoiseConfig]) -> Noise | None:
    """One function applying the configured corruptions in order; None when there are none."""
    fns = [_KINDS[c.kind](c.amount, c.clip) for c in configs]
    if not fns:
        return None

    def apply(x: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
        for f in fns:
            x = f(x, g)
        return x

    return apply
