"""VQ-VAE (van den Oord et al. 2017): a conv encoder, a codebook, a conv decoder.

Every encoder output vector z_e (one per position of a small feature map) is replaced by its
nearest codebook entry z_q; the decoder sees z_q, and the gradient skips the argmin
(straight-through: z_e + sg(z_q - z_e)). Loss: reconstruction + ||sg(z_e) - z_q||^2 (the codebook
term, replaced by exponential moving averages when ``ema`` is on) + commitment * ||z_e - sg(z_q)||^2.

Keeping the codebook alive, as vector-quantize-pytorch does:
- k-means initialisation: the first training batch's encoder outputs seed the codebook (Lloyd
  iterations), so no entry starts far from the data;
- dead-code restart: each entry's usage is tracked as an EMA of its assignment count; entries whose
  EMA falls below ``dead_code_threshold`` are re-seeded from random encoder outputs of the batch
  (vector-quantize-pytorch's ``threshold_ema_dead_code``).

``encode`` returns the quantised map z_q (N, D, h, w), so decode(encode(x)) is the reconstruction;
``decode`` snaps any input to the codebook first, so codes from elsewhere (a sampler) decode too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig, TrainConfig, check_positive
from ..errors import ConfigError
from ._registry import Capabilities, register_model
from .base import Autoencoder, LossOutput, reconstruction_loss


@dataclass
class VQVAEConfig(ModelConfig):
    """model: keys of the VQ-VAE."""

    name: str = "vq-vae"
    hidden: list[int] = field(default_factory=lambda: [32, 64])  # conv channels; each block halves H and W
    code_dim: int = 16  # D: dimension of a codebook entry (channels of the code map)
    codebook_size: int = 128  # K entries
    commitment: float = 0.25  # beta of the commitment term
    ema: bool = True  # update the codebook by exponential moving averages instead of its gradient
    ema_decay: float = 0.99
    kmeans_init: bool = True  # seed the codebook by k-means on the first training batch
    kmeans_iters: int = 10
    dead_code_threshold: float = 1.0  # re-seed entries whose usage EMA falls below this; 0: never

    def validate(self, train: TrainConfig) -> None:
        super().validate(train)
        if not self.hidden:
            raise ConfigError("model.hidden: a VQ-VAE needs at least one conv block")
        for i, h in enumerate(self.hidden):
            check_positive(f"model.hidden[{i}]", h)
        for key in ("code_dim", "codebook_size", "kmeans_iters"):
            check_positive(f"model.{key}", getattr(self, key))
        check_positive("model.commitment", self.commitment, allow_zero=True)
        check_positive("model.dead_code_threshold", self.dead_code_threshold, allow_zero=True)
        if not 0 < self.ema_decay < 1:
            raise ConfigError(f"model.ema_decay: must be in (0, 1), got {self.ema_decay}")

    def facts(self) -> list[tuple[str, Any]]:
        return [
            ("channels", self.hidden),
            ("codebook", f"{self.codebook_size} x {self.code_dim}"),
            ("codebook update", "EMA" if self.ema else "gradient"),
            ("commitment", self.commitment),
        ]


def kmeans(x: torch.Tensor, k: int, iters: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """k centroids of the rows of x (Lloyd's algorithm from k random rows; rows reused when x has fewer)."""
    n = len(x)
    idx = torch.randperm(n, generator=generator)[:k] if n >= k else torch.randint(n, (k,), generator=generator)
    c = x[idx].clone()
    for _ in range(iters):
        assign = torch.cdist(x, c).argmin(1)
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        filled = counts > 0
        c[filled] = sums[filled] / counts[filled, None]  # empty clusters keep their seed row
    return c


def perplexity(counts: torch.Tensor) -> torch.Tensor:
    """exp(entropy) of the code distribution: K when all codes are used equally, 1 when one is."""
    p = counts.float() / counts.sum().clamp(min=1)
    return torch.exp(-(p * torch.log(p.clamp(min=1e-12))).sum())


class VectorQuantizer(nn.Module):
    codebook: torch.Tensor  # a buffer under EMA updates, else a Parameter
    embed_avg: torch.Tensor
    cluster_size: torch.Tensor
    initted: torch.Tensor

    def __init__(
        self,
        num_codes: int,
        dim: int,
        commitment: float = 0.25,
        ema: bool = True,
        decay: float = 0.99,
        kmeans_init: bool = True,
        kmeans_iters: int = 10,
        dead_code_threshold: float = 1.0,
        eps: float = 1e-5,
    ):
        super().__init__()
        self.num_codes, self.dim, self.commitment = num_codes, dim, commitment
        self.ema, self.decay, self.eps = ema, decay, eps
        self.kmeans_iters, self.dead_code_threshold = kmeans_iters, dead_code_threshold
        init = torch.randn(num_codes, dim) / math.sqrt(dim)
        if ema:
            self.register_buffer("codebook", init)
            self.register_buffer("embed_avg", init.clone())
        else:
            self.codebook = nn.Parameter(init)
        self.register_buffer("cluster_size", torch.ones(num_codes))  # usage EMA (also the EMA update's counts)
        self.register_buffer("initted", torch.tensor(not kmeans_init))

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest codebook entry of every row, (M,); distances in fp32 even under autocast."""
        with torch.autocast(flat.device.type, enabled=False):
            flat, cb = flat.float(), self.codebook.float()
            d = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ cb.t() + cb.pow(2).sum(1)[None]
        return d.argmin(1)

    @torch.no_grad()
    def _init_kmeans(self, flat: torch.Tensor) -> None:
        with torch.autocast(flat.device.type, enabled=False):
            c = kmeans(flat.float(), self.num_codes, self.kmeans_iters)
        self.codebook.data.copy_(c)
        if self.ema:
            self.embed_avg.copy_(c)
        self.cluster_size.fill_(1.0)
        self.initted.fill_(True)

    @torch.no_grad()
    def _update(self, flat: torch.Tensor, idx: torch.Tensor) -> None:
        counts = torch.bincount(idx, minlength=self.num_codes).float()
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        if self.ema:
            sums = torch.zeros(self.num_codes, self.dim, device=flat.device).index_add_(0, idx, flat)
            self.embed_avg.mul_(self.decay).add_(sums, alpha=1 - self.decay)
            n = self.cluster_size.sum()
            smoothed = (self.cluster_size + self.eps) / (n + self.num_codes * self.eps) * n  # Laplace smoothing
            self.codebook.copy_(self.embed_avg / smoothed[:, None])
        if self.dead_code_threshold > 0:
            dead = self.cluster_size < self.dead_code_threshold
            n_dead = int(dead.sum())
            if n_dead:
                pick = torch.randint(len(flat), (n_dead,), device=flat.device)
                self.codebook.data[dead] = flat[pick].to(self.codebook.dtype)
                if self.ema:
                    self.embed_avg[dead] = flat[pick] * self.dead_code_threshold
                self.cluster_size[dead] = self.dead_code_threshold

    def forward(self, z_e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """z_e (N, D, h, w) -> (straight-through z_q, vq loss, indices (N, h, w), metrics)."""
        n, d, h, w = z_e.shape
        flat = z_e.float().permute(0, 2, 3, 1).reshape(-1, d)
        if self.training and not bool(self.initted):
            self._init_kmeans(flat.detach())
        idx = self.nearest(flat.detach())
        if self.training:
            self._update(flat.detach(), idx)
            idx = self.nearest(flat.detach())  # restarted codes may now be nearer
        z_q = F.embedding(idx, self.codebook.float())
        commit = F.mse_loss(flat, z_q.detach())
        loss = self.commitment * commit
        if not self.ema:
            loss = loss + F.mse_loss(z_q, flat.detach())
        z_q = flat + (z_q - flat).detach()  # straight-through
        z_q = z_q.view(n, h, w, d).permute(0, 3, 1, 2).contiguous()
        counts = torch.bincount(idx, minlength=self.num_codes)
        metrics = {
            "commit": commit.detach(),
            "perplexity": perplexity(counts),
            "codes_used": (counts > 0).float().mean(),
        }
        return z_q, loss, idx.view(n, h, w), metrics


class VQVAE(Autoencoder):
    """Conv encoder -> vector quantiser -> conv decoder. Images (C, H, W); H and W divisible by 2**len(hidden)."""

    cfg: VQVAEConfig

    def __init__(self, cfg: VQVAEConfig, input_shape: tuple[int, ...]):
        super().__init__(cfg, input_shape)
        if len(input_shape) != 3:
            raise ConfigError(
                f"model.name: a VQ-VAE needs images shaped (C, H, W), got samples shaped {tuple(input_shape)}"
            )
        c, hh, ww = input_shape
        f = 2 ** len(cfg.hidden)
        if hh % f or ww % f:
            raise ConfigError(
                f"model.hidden: {len(cfg.hidden)} stride-2 blocks need H and W divisible by {f}, got {hh}x{ww}"
            )
        enc: list[nn.Module] = []
        prev = c
        for ch in cfg.hidden:
            enc += [nn.Conv2d(prev, ch, 4, 2, 1), nn.ReLU()]
            prev = ch
        enc += [nn.Conv2d(prev, prev, 3, 1, 1), nn.ReLU(), nn.Conv2d(prev, cfg.code_dim, 1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(cfg.code_dim, prev, 3, 1, 1), nn.ReLU()]
        for i, ch in enumerate(reversed([c, *cfg.hidden[:-1]])):
            dec.append(nn.ConvTranspose2d(prev, ch, 4, 2, 1))
            if i < len(cfg.hidden) - 1:
                dec.append(nn.ReLU())
            prev = ch
        self.decoder = nn.Sequential(*dec)
        self.quantizer = VectorQuantizer(
            cfg.codebook_size,
            cfg.code_dim,
            cfg.commitment,
            cfg.ema,
            cfg.ema_decay,
            cfg.kmeans_init,
            cfg.kmeans_iters,
            cfg.dead_code_threshold,
        )

    @property
    def code_shape(self) -> tuple[int, ...]:
        f = 2 ** len(self.cfg.hidden)
        return (self.cfg.code_dim, self.input_shape[1] // f, self.input_shape[2] // f)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The quantised code map z_q (N, D, h, w)."""
        return self.quantizer(self.encoder(x))[0]

    def encode_indices(self, x: torch.Tensor) -> torch.Tensor:
        """Codebook indices (N, h, w)."""
        return self.quantizer(self.encoder(x))[2]

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Snaps z (N, D, h, w) to its nearest codebook entries, then decodes."""
        n, d, h, w = z.shape
        idx = self.quantizer.nearest(z.float().permute(0, 2, 3, 1).reshape(-1, d))
        return self.decode_indices_logits(idx.view(n, h, w))

    def decode_indices_logits(self, idx: torch.Tensor) -> torch.Tensor:
        """Decoder logits of a map of codebook indices (N, h, w)."""
        z_q = F.embedding(idx, self.quantizer.codebook.float()).permute(0, 3, 1, 2)
        return self.decoder(z_q)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.decoder(self.encode(x))
        return torch.sigmoid(logits) if self.output_activation == "sigmoid" else logits

    def compute_loss(self, x, target, y, loss: str, epoch: int = 0) -> LossOutput:
        z_q, vq_loss, _, m = self.quantizer(self.encoder(x))
        recon = reconstruction_loss(self.decoder(z_q), target, loss, self.output_activation)
        return LossOutput(recon + vq_loss, {"recon": recon, **m})


@register_model(
    "vq-vae",
    "vector-quantised (VQ-VAE): conv encoder, codebook (EMA, k-means init, dead-code restart), conv decoder",
    config=VQVAEConfig,
    capabilities=Capabilities(metrics=("codebook",), epoch_metrics=True, figures=("vq-vae",)),
)
def build_vqvae(cfg: VQVAEConfig, input_shape: tuple[int, ...]) -> VQVAE:
    return VQVAE(cfg, input_shape)
