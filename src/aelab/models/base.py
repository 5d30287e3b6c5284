"""What every aelab model is: an encoder, a decoder and a loss.

Decoders return *logits* (pre-activation outputs) so that BCE is computed
on logits, which is numerically safe; ``decode`` applies the output
activation for users.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
import torch.nn.functional as F

from ..config import ModelConfig
from ..errors import ConfigError


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

    def compute_loss(self, x: torch.Tensor, target: torch.Tensor, y: torch.Tensor | None, loss: str,
                     epoch: int = 0) -> LossOutput:
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

    def extra_metrics(self, x, y) -> dict[str, float]:
        """Model-specific test metrics for summary.json (a VAE's ELBO, a classifier's accuracy).

        ``x`` is a float array of samples, ``y`` their labels or None. Keys get a
        ``test_`` prefix in summary.json.
        """
        return {}


def check_sparsity(cfg: ModelConfig, code_activation: str) -> None:
    if cfg.sparsity_target is not None and cfg.sparsity_weight > 0 and code_activation != "sigmoid":
        raise ConfigError("model.sparsity_target: KL sparsity needs codes in (0, 1); set model.code_activation=sigmoid")
