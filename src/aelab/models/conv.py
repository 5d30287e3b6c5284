"""Convolutional autoencoders: conv + max-pool down, conv + upsample up (seed 004).

Pooling rounds up, as Keras' padding='same' does (28 -> 14 -> 7 -> 4); on the
way up the feature map is cropped back to the encoder's size at that level
(8 -> 7), which plays the part of the seed's one 'valid' convolution.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import ConfigError
from ._registry import register_model
from .base import Autoencoder, check_sparsity, glorot_init, make_activation


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


class ConvAutoencoder(Autoencoder):
    def __init__(self, cfg: ModelConfig, input_shape: tuple[int, ...]):
        super().__init__(cfg, input_shape)
        if len(input_shape) != 3:
            raise ConfigError(f"model.name: '{cfg.name}' needs image data shaped (C, H, W), got samples shaped {tuple(input_shape)}; use model.name=dense")
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
            raise ConfigError(f"model.decoder_channels: needs {len(cfg.channels)} entries (one per upsampling step), got {len(dec_channels)}")
        act = cfg.activation if isinstance(cfg.activation, str) else cfg.activation[0]
        code_act = cfg.code_activation or act
        check_sparsity(cfg, code_act)
        k = cfg.kernel_size
        drop = cfg.dropout if isinstance(cfg.dropout, float) else 0.0

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


@register_model("conv", "convolutional: conv+pool down to a feature-map code, conv+upsample up (seed 004)")
def build_conv(cfg: ModelConfig, input_shape: tuple[int, ...]) -> ConvAutoencoder:
    return ConvAutoencoder(cfg, input_shape)
