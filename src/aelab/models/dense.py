"""Fully connected autoencoders: 784-32-784, 784-784-784, deep stacks, tied weights."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig, TrainConfig
from ..errors import ConfigError
from ._registry import Capabilities, register_model
from .base import (
    CodePenaltyKeys,
    PenalizedAutoencoder,
    check_activations,
    check_dense_sizes,
    check_rates,
    check_sparsity,
    glorot_init,
    make_activation,
)


@dataclass
class DenseConfig(CodePenaltyKeys, ModelConfig):
    """model: keys of the fully connected autoencoder."""

    name: str = "dense"
    hidden: list[int] = field(default_factory=list)  # encoder layers before the code
    code_dim: int = 32
    decoder_hidden: list[int] | None = None  # None: the mirror of `hidden`
    activation: str | list[str] = "relu"  # one for every hidden layer, or one per hidden layer
    dropout: float | list[float] = 0.0  # one rate for every hidden layer, or one per hidden layer
    tied: bool = False  # decoder weights are the encoder's transposed
    batch_norm: bool = False  # BatchNorm1d after every hidden linear layer, before its activation

    def validate(self, train: TrainConfig) -> None:
        super().validate(train)
        check_dense_sizes(self)
        check_activations("model.activation", self.activation)
        check_rates("model.dropout", self.dropout)
        self.validate_penalty()

    def stack_refusal(self) -> str | None:
        drop = self.dropout if isinstance(self.dropout, list) else [self.dropout]
        if any(d > 0 for d in drop):
            return "dropout draws from the global random stream, not each member's own"
        if self.batch_norm or self.tied:
            return "batch norm or tied weights"
        return None

    def facts(self) -> list[tuple[str, Any]]:
        dec = list(reversed(self.hidden)) if self.decoder_hidden is None else self.decoder_hidden
        out: list[tuple[str, Any]] = [
            ("layers", "-".join(map(str, ["in", *self.hidden, self.code_dim, *dec, "out"]))),
            ("activation", self.activation),
        ]
        if self.dropout not in (0, 0.0, []):
            out.append(("dropout", self.dropout))
        out += self.penalty_facts()
        if self.batch_norm:
            out.append(("batch_norm", True))
        if self.tied:
            out.append(("tied", True))
        return out


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


class DenseAutoencoder(PenalizedAutoencoder):
    def __init__(self, cfg: DenseConfig, input_shape: tuple[int, ...]):
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
            raise ConfigError(
                "model.tied: tied weights need the decoder to mirror the encoder (leave model.decoder_hidden empty)"
            )

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


@register_model(
    "dense",
    "fully connected: input-hidden...-code-...hidden-input (seeds 000, 001, 003, 004)",
    config=DenseConfig,
    capabilities=Capabilities(figures=("weights_first", "weights_last"), stackable=True),
)
def build_dense(cfg: DenseConfig, input_shape: tuple[int, ...]) -> DenseAutoencoder:
    return DenseAutoencoder(cfg, input_shape)
