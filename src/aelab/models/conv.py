"""Convolutional autoencoders: conv + max-pool down, conv + upsample up (seed 004).

Pooling rounds up, as Keras' padding='same' does (28 -> 14 -> 7 -> 4); on the
way up the feature map is cropped back to the encoder's size at that level
(8 -> 7), which plays the part of the seed's one 'valid' convolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..config import ModelConfig, TrainConfig, check_positive
from ..errors import ConfigError
from ._registry import Capabilities, register_model
from .base import (
    CodePenaltyKeys,
    PenalizedAutoencoder,
    check_activations,
    check_kernel,
    check_rates,
    check_sparsity,
    glorot_init,
    make_activation,
)


@dataclass
class ConvConfig(CodePenaltyKeys, ModelConfig):
    """model: keys of the convolutional autoencoder (its code is the last feature map)."""

    name: str = "conv"
    channels: list[int] = field(default_factory=lambda: [16, 8, 8])  # encoder filters, one pooling step each
    decoder_channels: list[int] | None = None  # None: the mirror of `channels`
    kernel_size: int = 3
    batch_norm: bool = False
    activation: str = "relu"  # one for every conv layer
    dropout: float = 0.0  # one rate for every conv layer

    def validate(self, train: TrainConfig) -> None:
        super().validate(train)
        for i, c in enumerate(self.channels):
            check_positive(f"model.channels[{i}]", c)
        for i, c in enumerate(self.decoder_channels or []):
            check_positive(f"model.decoder_channels[{i}]", c)
        check_kernel(self.kernel_size)
        check_activations("model.activation", self.activation)
        check_rates("model.dropout", self.dropout)
        self.validate_penalty()

    def stack_refusal(self) -> str | None:
        if self.dropout > 0:
            return "dropout draws from the global random stream, not each member's own"
        if self.batch_norm:
            return "batch norm or tied weights"
        return None

    def facts(self) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = [("channels", self.channels), ("activation", self.activation)]
        if self.dropout:
            out.append(("dropout", self.dropout))
        out += self.penalty_facts()
        if self.batch_norm:
            out.append(("batch_norm", True))
        return out


class CropTo(nn.Module):
    def __init__(self, h: int, w: int):
        super().__init__()
        self.h, self.w = h, w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, : self.h, : self.w]

    def extra_repr(self) -> str:
        return f"{self.h}x{self.w}"


def _block(cin: int, cout: int, k: int, act: str, bn: bool, dropout: float) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, padding=k // 2)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(make_activation(act))
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return layers


def conv_sizes(hw: tuple[int, int], n_pools: int) -> list[tuple[int, int]]:
    sizes = [hw]
    for _ in range(n_pools):
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return sizes


class ConvAutoencoder(PenalizedAutoencoder):
    def __init__(self, cfg: ConvConfig, input_shape: tuple[int, ...]):
        super().__init__(cfg, input_shape)
        if len(input_shape) != 3:
            raise ConfigError(
                f"model.name: '{cfg.name}' needs image data shaped (C, H, W), got samples shaped {tuple(input_shape)}; use model.name=dense"
            )
        c, h, w = input_shape
        if not cfg.channels:
            raise ConfigError("model.channels: a conv autoencoder needs at least one block")
        sizes = conv_sizes((h, w), len(cfg.channels))
        for i, s in enumerate(sizes[:-1]):
            if min(s) < 2:
                raise ConfigError(
                    f"model.channels: {len(cfg.channels)} pooling steps do not fit a {h}x{w} image "
                    f"(it is {s[0]}x{s[1]} before step {i + 1}); use at most {i} blocks"
                )
        dec_channels = list(reversed(cfg.channels)) if cfg.decoder_channels is None else cfg.decoder_channels
        if len(dec_channels) != len(cfg.channels):
            raise ConfigError(
                f"model.decoder_channels: needs {len(cfg.channels)} entries (one per upsampling step), got {len(dec_channels)}"
            )
        act = cfg.activation
        code_act = cfg.code_activation or act
        check_sparsity(cfg, code_act)
        k = cfg.kernel_size
        drop = cfg.dropout

        enc: list[nn.Module] = []
        prev = c
        for i, ch in enumerate(cfg.channels):
            last = i == len(cfg.channels) - 1
            enc += _block(prev, ch, k, code_act if last else act, cfg.batch_norm, drop)
            enc.append(nn.MaxPool2d(2, ceil_mode=True))
            prev = ch
        dec: list[nn.Module] = []
        targets = list(reversed(sizes[:-1]))
        for ch, (th, tw) in zip(dec_channels, targets):
            dec += _block(prev, ch, k, act, cfg.batch_norm, drop)
            dec.append(nn.Upsample(scale_factor=2, mode="nearest"))
            dec.append(CropTo(th, tw))  # removed again below where the sizes already agree
            prev = ch
        dec.append(nn.Conv2d(prev, c, k, padding=k // 2))
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*self._drop_needless_crops(dec, sizes))
        if cfg.init == "glorot":
            glorot_init(self)

    @staticmethod
    def _drop_needless_crops(layers: list[nn.Module], sizes) -> list[nn.Module]:
        out, cur = [], sizes[-1]
        for m in layers:
            if isinstance(m, nn.Upsample):
                cur = (cur[0] * 2, cur[1] * 2)
            if isinstance(m, CropTo):
                if (m.h, m.w) == cur:
                    continue
                cur = (m.h, m.w)
            out.append(m)
        return out

    def first_layer_weights(self) -> torch.Tensor:
        return self.encoder[0].weight.detach()


@register_model(
    "conv",
    "convolutional: conv+pool down to a feature-map code, conv+upsample up (seed 004)",
    config=ConvConfig,
    capabilities=Capabilities(figures=("weights_first",), stackable=True),
)
def build_conv(cfg: ConvConfig, input_shape: tuple[int, ...]) -> ConvAutoencoder:
    return ConvAutoencoder(cfg, input_shape)
