"""What every aelab model is: an encoder, a decoder and a loss.

Decoders return *logits* (pre-activation outputs) so that BCE is computed
on logits, which is numerically safe; ``decode`` applies the output
activation for users.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ACTIVATIONS, ModelConfig, check_choice, check_positive
from ..errors import ConfigError, DataError
from ._registry import capabilities


@dataclass
class LossOutput:
    total: torch.Tensor
    parts: dict[str, torch.Tensor] = field(default_factory=dict)  # named terms, logged as metrics


def make_activation(name: str) -> nn.Module:
    return {
        "relu": nn.ReLU,
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
        "identity": nn.Identity,
        "leaky_relu": nn.LeakyReLU,
        "elu": nn.ELU,
    }[name]()


def reconstruction_loss(logits: torch.Tensor, target: torch.Tensor, loss: str, output_activation: str) -> torch.Tensor:
    """Mean per value (Keras' convention), so numbers compare with the seeds'."""
    logits = logits.float()
    if loss == "bce":
        return F.binary_cross_entropy_with_logits(logits, target)
    out = torch.sigmoid(logits) if output_activation == "sigmoid" else logits
    return F.mse_loss(out, target)


def glorot_init(module: nn.Module) -> None:
    """Keras' default: Glorot-uniform weights, zero biases (better than torch's default here)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class Autoencoder(nn.Module):
    """Base class. Subclasses set ``self.encoder`` and ``self.decoder`` or override the hooks."""

    def __init__(self, cfg: ModelConfig, input_shape: tuple[int, ...]):
        super().__init__()
        self.cfg = cfg
        self.input_shape = tuple(input_shape)
        self.output_activation = cfg.output_activation

    # -- the public surface --------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        logits = self.decode_logits(z)
        return torch.sigmoid(logits) if self.output_activation == "sigmoid" else logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    @property
    def code_shape(self) -> tuple[int, ...]:
        with torch.no_grad():
            was = self.training
            self.eval()
            z = self.encode(torch.zeros(1, *self.input_shape, device=self.device))
            self.train(was)
        return tuple(z.shape[1:])

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # -- training --------------------------------------------------------
    def check_data(self, splits) -> None:
        """Refuses data this model cannot learn from, before anything is written (a family may extend it)."""
        if capabilities(self.cfg).needs_labels and splits.y_train is None:
            raise DataError(
                f"data.name: model '{self.cfg.name}' needs class labels, and {splits.name} has none; "
                "use a labelled dataset (mnist, fashion-mnist, cifar10, a folder of class sub-folders)"
            )

    def code_penalty(self, z: torch.Tensor) -> torch.Tensor | None:
        """A penalty on the code added to the loss; None: none."""
        return None

    def compute_loss(
        self, x: torch.Tensor, target: torch.Tensor, y: torch.Tensor | None, loss: str, epoch: int = 0
    ) -> LossOutput:
        z = self.encode(x)
        logits = self.decode_logits(z)
        recon = reconstruction_loss(logits, target, loss, self.output_activation)
        pen = self.code_penalty(z)
        if pen is None:
            return LossOutput(recon, {"recon": recon})
        return LossOutput(recon + pen, {"recon": recon, "penalty": pen})

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """What evaluation compares with the target (a VAE uses the code's mean)."""
        return self(x)


@dataclass
class CodePenaltyKeys:
    """Keys of a code penalty (seed 004's sparse autoencoder), for families whose code is a plain activation."""

    code_activation: str | None = None  # None: same as `activation`
    l1: float = 0.0  # L1 activity penalty on the code
    sparsity_target: float | None = None  # KL sparsity: target mean activation of the code
    sparsity_weight: float = 0.0

    def validate_penalty(self) -> None:
        if self.code_activation is not None:
            check_choice("model.code_activation", self.code_activation, ACTIVATIONS)
        check_positive("model.l1", self.l1, allow_zero=True)
        check_positive("model.sparsity_weight", self.sparsity_weight, allow_zero=True)
        if self.sparsity_target is not None and not 0.0 < self.sparsity_target < 1.0:
            raise ConfigError(f"model.sparsity_target: must be in (0, 1), got {self.sparsity_target}")

    def penalty_facts(self) -> list[tuple[str, Any]]:
        return [(k, getattr(self, k)) for k in ("l1", "sparsity_target") if getattr(self, k) not in (None, 0.0)]


class PenalizedAutoencoder(Autoencoder):
    """An autoencoder whose config has ``CodePenaltyKeys``: L1 activity and KL sparsity on the code."""

    def code_penalty(self, z: torch.Tensor) -> torch.Tensor | None:
        """L1 activity (Keras' activity_regularizer: per sample sum, batch mean) and KL sparsity."""
        pen = None
        if self.cfg.l1 > 0:
            pen = self.cfg.l1 * z.abs().flatten(1).sum(1).mean()
        if self.cfg.sparsity_target is not None and self.cfg.sparsity_weight > 0:
            rho = self.cfg.sparsity_target
            rho_hat = z.flatten(1).float().mean(0).clamp(1e-6, 1 - 1e-6)
            kl = (rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))).sum()
            pen = self.cfg.sparsity_weight * kl if pen is None else pen + self.cfg.sparsity_weight * kl
        return pen


def check_dense_sizes(cfg: Any) -> None:
    """``code_dim``, ``hidden`` and ``decoder_hidden`` of a dense-layered family are all >= 1."""
    check_positive("model.code_dim", cfg.code_dim)
    for key in ("hidden", "decoder_hidden"):
        for i, h in enumerate(getattr(cfg, key) or []):
            check_positive(f"model.{key}[{i}]", h)


def check_activations(key: str, value: str | list[str]) -> None:
    for a in value if isinstance(value, list) else [value]:
        check_choice(key, a, ACTIVATIONS)


def check_rates(key: str, value: float | list[float]) -> None:
    for r in value if isinstance(value, list) else [value]:
        if not 0.0 <= r < 1.0:
            raise ConfigError(f"{key}: rates must be in [0, 1), got {value}")


def check_kernel(k: int) -> None:
    if k < 1 or k % 2 == 0:
        raise ConfigError(f"model.kernel_size: must be an odd integer >= 1, got {k}")


def check_sparsity(cfg: Any, code_activation: str) -> None:
    if cfg.sparsity_target is not None and cfg.sparsity_weight > 0 and code_activation != "sigmoid":
        raise ConfigError("model.sparsity_target: KL sparsity needs codes in (0, 1); set model.code_activation=sigmoid")
