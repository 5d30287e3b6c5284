"""TopK sparse autoencoder (Gao et al. 2024, "Scaling and evaluating sparse autoencoders").

Any (N, D) data (pixels, embeddings, another model's activations; images are flattened):
z = TopK(W_enc (x - b_pre) + b_enc), x_hat = W_dec z + b_pre, with an overcomplete code of
``expansion`` x D latents (or ``latents``). Only the k largest pre-activations survive (and
then ReLU), so L0 <= k by construction: no L1 penalty, no shrinkage.

- ``batch_topk``: keep the k x N largest activations of the whole batch instead of k per sample
  (Bussmann et al. 2024); at inference a threshold (the running mean of the smallest kept
  activation) replaces the batch, so a sample's code does not depend on its neighbours.
- b_pre is learned, initialised to the mean of the first training batch.
- Decoder columns are kept at unit norm; their gradient loses its component parallel to the
  column (it would only change the norm), as in Gao et al.
- Dead latents (no activation in the last ``dead_samples`` training samples) get the AuxK loss:
  the top ``aux_k`` dead latents reconstruct the residual x - x_hat, weighted by ``aux_coef``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig, TrainConfig, check_positive
from ..errors import ConfigError
from ._registry import Capabilities, register_model
from .base import Autoencoder, LossOutput


@dataclass
class TopKSAEConfig(ModelConfig):
    """model: keys of the TopK sparse autoencoder."""

    name: str = "topk-sae"
    # identity + train.loss mse is Gao et al.'s linear SAE (any real data); sigmoid + bce for data in [0, 1]
    output_activation: str = "identity"
    expansion: int = 8  # latents = expansion x input size (when `latents` is unset)
    latents: int | None = None  # the dictionary size, overriding `expansion`
    k: int = 32  # active latents per sample
    batch_topk: bool = False  # keep the k x N largest activations of the batch (Bussmann et al. 2024)
    aux_k: int | None = None  # dead latents used by the AuxK loss; None: half the input size (as sparsify)
    aux_coef: float = 0.03125  # weight of the AuxK loss (1/32, Gao et al.)
    dead_samples: int = 10000  # a latent is dead after this many training samples without firing

    def validate(self, train: TrainConfig) -> None:
        super().validate(train)
        for key in ("expansion", "latents", "k", "aux_k", "dead_samples"):
            check_positive(f"model.{key}", getattr(self, key))
        check_positive("model.aux_coef", self.aux_coef, allow_zero=True)

    def facts(self) -> list[tuple[str, Any]]:
        size = self.latents if self.latents else f"{self.expansion} x input"
        return [
            ("latents", size),
            ("k", self.k),
            ("activation", "BatchTopK" if self.batch_topk else "TopK"),
            ("AuxK", f"{self.aux_coef:g}"),
        ]


def topk_mask(pre: torch.Tensor, k: int) -> torch.Tensor:
    """Keeps the k largest entries of each row (then ReLU), zeroes the rest."""
    vals, idx = pre.topk(k, dim=-1, sorted=False)
    return torch.zeros_like(pre).scatter_(-1, idx, F.relu(vals))


class TopKSAE(Autoencoder):
    cfg: TopKSAEConfig
    b_pre_initted: torch.Tensor
    samples_since_fired: torch.Tensor
    threshold: torch.Tensor

    def __init__(self, cfg: TopKSAEConfig, input_shape: tuple[int, ...]):
        super().__init__(cfg, input_shape)
        d = math.prod(input_shape)
        n = cfg.latents or cfg.expansion * d
        if cfg.k > n:
            raise ConfigError(f"model.k: {cfg.k} active latents need a dictionary of at least {cfg.k}, got {n} latents")
        self.d_in, self.n_latents, self.k = d, n, cfg.k
        self.aux_k = min(cfg.aux_k or max(1, d // 2), n)
        w = torch.randn(d, n)
        w /= w.norm(dim=0, keepdim=True)
        self.W_dec = nn.Parameter(w)  # (D, L), unit columns
        self.W_enc = nn.Parameter(w.t().clone())  # (L, D), initialised to the decoder's transpose (Gao et al.)
        self.b_enc = nn.Parameter(torch.zeros(n))
        self.b_pre = nn.Parameter(torch.zeros(d))
        self.register_buffer("b_pre_initted", torch.tensor(False))
        self.register_buffer("samples_since_fired", torch.zeros(n, dtype=torch.long))
        self.register_buffer("threshold", torch.tensor(0.0))  # BatchTopK's inference threshold
        self.W_dec.register_hook(self._remove_parallel_grad)

    # -- the decoder's unit-norm columns ----------------------------------------
    def _remove_parallel_grad(self, g: torch.Tensor) -> torch.Tensor:
        w = self.W_dec.detach()
        return g - (g * w).sum(0, keepdim=True) * w

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=0, keepdim=True).clamp(min=1e-8))

    def train(self, mode: bool = True):
        self.normalize_decoder()  # after the last optimiser step, before anything reads the weights
        return super().train(mode)

    # -- the surface --------------------------------------------------------------
    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.flatten(1) - self.b_pre, self.W_enc, self.b_enc)

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        if not self.cfg.batch_topk:
            return topk_mask(pre, self.k)
        if self.training:
            flat = pre.flatten()
            vals, idx = flat.topk(min(self.k * len(pre), flat.numel()), sorted=False)
            z = torch.zeros_like(flat).scatter_(0, idx, F.relu(vals)).view_as(pre)
            kept = vals[vals > 0]
            if len(kept):
                with torch.no_grad():
                    self.threshold.mul_(0.99).add_(kept.min().float(), alpha=0.01)
            return z
        return pre * (pre > self.threshold)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The sparse code (N, latents): at most k non-zero per sample (TopK)."""
        return self.activate(self.pre_activations(x))

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return F.linear(z, self.W_dec, self.b_pre).unflatten(
            1, self.input_shape
        )  # no len(z): exports keep a dynamic batch

    # -- training -------------------------------------------------------------------
    def dead_mask(self) -> torch.Tensor:
        return self.samples_since_fired >= self.cfg.dead_samples

    def compute_loss(self, x, target, y, loss: str, epoch: int = 0) -> LossOutput:
        if not bool(self.b_pre_initted):
            with torch.no_grad():
                self.b_pre.copy_(target.flatten(1).float().mean(0))
                self.b_pre_initted.fill_(True)
        self.normalize_decoder()
        flat_t = target.flatten(1).float()
        pre = self.pre_activations(x)
        z = self.activate(pre)
        logits = F.linear(z, self.W_dec, self.b_pre).float()
        x_hat = torch.sigmoid(logits) if self.output_activation == "sigmoid" else logits
        err = flat_t - x_hat
        recon = F.binary_cross_entropy_with_logits(logits, flat_t) if loss == "bce" else err.pow(2).mean()
        total_var = (flat_t - flat_t.mean(0)).pow(2).sum().clamp(min=1e-12)
        fvu = err.pow(2).sum() / total_var
        with torch.no_grad():
            fired = (z > 0).any(0)
            self.samples_since_fired += len(x)
            self.samples_since_fired[fired] = 0
        dead = self.dead_mask()
        n_dead = int(dead.sum())
        parts = {
            "recon": recon,
            "fvu": fvu.detach(),
            "l0": (z > 0).float().sum(1).mean(),
            "dead_fraction": dead.float().mean(),
        }
        total = recon
        if n_dead and self.cfg.aux_coef > 0:
            # AuxK: the top-k_aux dead latents explain the residual the live ones leave
            k_aux = min(self.aux_k, n_dead)
            aux_pre = pre.masked_fill(~dead, -math.inf)
            vals, idx = aux_pre.topk(k_aux, dim=-1, sorted=False)
            z_aux = torch.zeros_like(pre).scatter_(-1, idx, F.relu(vals))
            e_hat = F.linear(z_aux, self.W_dec).float()
            e = err.detach()
            aux = (
                min(n_dead / self.aux_k, 1.0) * (e_hat - e).pow(2).sum() / (e - e.mean(0)).pow(2).sum().clamp(min=1e-12)
            )
            total = total + self.cfg.aux_coef * aux
            parts["auxk"] = aux.detach()
        return LossOutput(total, parts)


@register_model(
    "topk-sae",
    "TopK sparse autoencoder (Gao et al. 2024) on any (N, D) data: overcomplete code, TopK or BatchTopK, AuxK",
    config=TopKSAEConfig,
    capabilities=Capabilities(
        metrics=("sae",), epoch_metrics=True, figures=("sae",), train_settings=MappingProxyType({"loss": "mse"})
    ),  # the identity output's loss
)
def build_topk_sae(cfg: TopKSAEConfig, input_shape: tuple[int, ...]) -> TopKSAE:
    return TopKSAE(cfg, input_shape)
