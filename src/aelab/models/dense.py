"""Fully connected autoencoders: 784-32-784, 784-784-784, deep stacks, tied weights."""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from ..config import ModelConfig
from ..errors import ConfigError
from ._registry import register_model
from .base import Autoencoder, check_sparsity, glorot_init, make_activation


class TiedLinear(nn.Module):
    """A decoder layer that reuses an encoder layer's weight, transposed; only the bias is its own."""

    def __init__(self, source: nn.Linear):
        super().__init__()
        self.source = [source]  # a list, so the weight is not registered (and saved) twice
        self.bias = nn.Parameter(torch.zeros(source.in_features))
        self.in_features, self.out_features = source.out_features, source.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.source[0].weight.t(), self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, tied"


def _per_layer(value, n: int, key: str) -> list:
    if isinstance(value, list):
        if len(value) != n:
            raise ConfigError(f"{key}: has {len(value)} entries but the model has {n} hidden layers (code included)")
        return value
    return [value] * n


class DenseAutoencoder(Autoencoder):
    def __init__(self, cfg: ModelConfig, input_shape: tuple[int, ...]):
        super().__init__(cfg, input_shape)
        d_in = math.prod(input_shape)
        enc_sizes = [*cfg.hidden, cfg.code_dim]
        dec_hidden = list(reversed(cfg.hidden)) if cfg.decoder_hidden is None else cfg.decoder_hidden
        n_hidden = len(enc_sizes) + len(dec_hidden)
        acts = _per_layer(cfg.activation, n_hidden, "model.activation")
        if cfg.code_activation is not None:
            acts[len(enc_sizes) - 1] = cfg.code_activation
        check_sparsity(cfg, acts[len(enc_sizes) - 1])
        drops = _per_layer(cfg.dropout, n_hidden, "model.dropout")
        if cfg.tied and dec_hidden != list(reversed(cfg.hidden)):
            raise ConfigError("model.tied: tied weights need the decoder to mirror the encoder (leave model.decoder_hidden empty)")

        enc: list[nn.Module] = [nn.Flatten()]
        linears = []
        prev = d_in
        for i, h in enumerate(enc_sizes):
            lin = nn.Linear(prev, h)
            linears.append(lin)
            enc += [lin, *([nn.BatchNorm1d(h)] if cfg.batch_norm else []), make_activation(acts[i])]
            if drops[i] > 0:
                enc.append(nn.Dropout(drops[i]))
            prev = h
        dec: list[nn.Module] = []
        for j, h in enumerate([*dec_hidden, d_in]):
            lin = TiedLinear(linears[-1 - j]) if cfg.tied else nn.Linear(prev, h)
            dec.append(lin)
            k = len(enc_sizes) + j
            if k < n_hidden:
                dec += [*([nn.BatchNorm1d(h)] if cfg.batch_norm else []), make_activation(acts[k])]
                if drops[k] > 0:
                    dec.append(nn.Dropout(drops[k]))
            prev = h
        dec.append(nn.Unflatten(1, tuple(input_shape)))
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)
        if cfg.init == "glorot":
            glorot_init(self)

    def first_layer_weights(self) -> torch.Tensor:
        """(units, *input_shape): what seed 003 draws as '1層目パラメーター'."""
        lin = next(m for m in self.encoder if isinstance(m, nn.Linear))
        return lin.weight.detach().reshape(-1, *self.input_shape)

    def last_layer_weights(self) -> torch.Tensor:
        """The output layer's weight transposed, (units, *input_shape) (seed 003's second picture)."""
        last = [m for m in self.decoder if isinstance(m, (nn.Linear, TiedLinear))][-1]
        w = last.source[0].weight if isinstance(last, TiedLinear) else last.weight.t()
        return w.detach().reshape(-1, *self.input_shape)


@register_model("dense", "fully connected: input-hidden...-code-...hidden-input (seeds 000, 001, 003, 004)")
def build_dense(cfg: ModelConfig, input_shape: tuple[int, ...]) -> DenseAutoencoder:
    return DenseAutoencoder(cfg, input_shape)
