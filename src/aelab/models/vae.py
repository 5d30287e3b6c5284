"""Variational autoencoders: a Gaussian code drawn by reparameterisation, a Bernoulli or Gaussian decoder.

The encoder gives a mean and a log-variance per code unit; training samples
z = mu + sigma * eps so the gradient flows through the sample, and the loss is
the negative ELBO: reconstruction NLL + beta * KL(q(z|x) || N(0, I)).

Scales, stated once: ``compute_loss`` returns the negative ELBO divided by the
number of values per sample (so ``train_loss`` sits on the per-pixel scale of
the other models), and logs ``recon`` and ``kl`` in nats per sample.
The test negative ELBO in nats per image is the "elbo" metric set (evaluate/vae_metrics.py),
the pictures are the "vae" figure set (report/vae_figures.py); ``likelihood=True`` lets
`aelab eval --nll` estimate the test NLL (evaluate/likelihood.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig, TrainConfig, check_choice, check_positive
from ..errors import ConfigError
from ._registry import Capabilities, register_model
from .base import (
    Autoencoder,
    LossOutput,
    check_activations,
    check_dense_sizes,
    check_kernel,
    check_rates,
    glorot_init,
    make_activation,
)
from .conv import ConvAutoencoder, CropTo, _block, conv_sizes
from .dense import _per_layer

LIKELIHOODS = ("bernoulli", "gaussian")


@dataclass
class VAEConfig(ModelConfig):
    """model: keys of both VAEs (vae-dense reads the dense keys, vae-conv the conv ones)."""

    name: str = "vae-dense"
    hidden: list[int] = field(default_factory=list)  # vae-dense: encoder layers before the Gaussian heads
    code_dim: int = 32  # size of the Gaussian code
    decoder_hidden: list[int] | None = None  # vae-dense: None is the mirror of `hidden`
    activation: str | list[str] = "relu"  # vae-dense: one, or one per hidden layer; vae-conv: one
    dropout: float | list[float] = 0.0  # vae-dense: one rate, or one per hidden layer; vae-conv: one
    channels: list[int] = field(default_factory=lambda: [16, 8, 8])  # vae-conv: encoder filters
    decoder_channels: list[int] | None = None  # vae-conv: None is the mirror of `channels`
    kernel_size: int = 3  # vae-conv
    batch_norm: bool = False  # vae-conv
    beta: float = 1.0  # weight of the KL term
    kl_warmup_epochs: int = 0  # ramp beta from 0 over this many epochs
    likelihood: str = "bernoulli"  # decoder: bernoulli | gaussian
    binarize: bool = False  # bernoulli: redraw every training pixel as 0/1 ~ Bernoulli(intensity) each batch
    # importance samples per example in the training bound (1: the ELBO; k > 1: IWAE, Burda et al. 2016)
    iw_samples: int = 1

    def validate(self, train: TrainConfig) -> None:
        super().validate(train)
        check_dense_sizes(self)
        for i, c in enumerate(self.channels):
            check_positive(f"model.channels[{i}]", c)
        check_activations("model.activation", self.activation)
        check_rates("model.dropout", self.dropout)
        if self.name == "vae-conv":
            for key in ("activation", "dropout"):
                if isinstance(getattr(self, key), list):
                    raise ConfigError(f"model.{key}: vae-conv takes one value for every conv layer, got a list")
        check_kernel(self.kernel_size)
        check_positive("model.beta", self.beta, allow_zero=True)
        check_positive("model.kl_warmup_epochs", self.kl_warmup_epochs, allow_zero=True)
        check_positive("model.iw_samples", self.iw_samples)

    def check_loss(self, train: TrainConfig) -> None:
        check_choice("model.likelihood", self.likelihood, LIKELIHOODS)
        want = {"bernoulli": "bce", "gaussian": "mse"}[self.likelihood]
        if train.loss != want:
            raise ConfigError(
                f"train.loss: a VAE with model.likelihood={self.likelihood} trains with {want}, got '{train.loss}'"
            )

    def facts(self) -> list[tuple[str, Any]]:
        if self.name == "vae-conv":
            out: list[tuple[str, Any]] = [("channels", self.channels)]
        else:
            dec = list(reversed(self.hidden)) if self.decoder_hidden is None else self.decoder_hidden
            out = [("layers", "-".join(map(str, ["in", *self.hidden, self.code_dim, *dec, "out"])))]
        out += [("activation", self.activation), ("likelihood", self.likelihood), ("beta", self.beta)]
        if self.dropout not in (0, 0.0, []):
            out.append(("dropout", self.dropout))
        if self.batch_norm:
            out.append(("batch_norm", True))
        return out


VAE_CAPABILITIES = Capabilities(
    metrics=("elbo",),
    figures=("vae",),
    anomaly_scores=("nelbo", "mse", "bce"),
    generative=True,
    likelihood=True,  # 'auto' scores by MSE, as every family (measured best)
    real_valued_keys=MappingProxyType({"likelihood": "gaussian"}),
)

LOGVAR_RANGE = (-30.0, 20.0)  # keeps exp(logvar) finite in fp32 early in training
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample, in nats (closed form)."""
    return 0.5 * (mu.float().pow(2) + logvar.float().exp() - 1.0 - logvar.float()).flatten(1).sum(1)


def warmup_factor(epoch: int, warmup_epochs: int) -> float:
    """KL weight multiplier: 1/(W+1), 2/(W+1), ... 1 over the first W+1 epochs (never exactly 0,
    so the log-variances never run away while the KL is switched off)."""
    if warmup_epochs <= 0:
        return 1.0
    return min(1.0, (epoch + 1) / (warmup_epochs + 1))


class VAEMixin:
    """What dense and conv VAEs share: heads, sampling and the ELBO."""

    likelihood: str
    code_dim: int

    def _setup_vae(self, cfg: VAEConfig, features: int) -> None:
        if cfg.likelihood == "bernoulli" and cfg.output_activation != "sigmoid":
            raise ConfigError(
                "model.output_activation: a Bernoulli VAE decodes pixel probabilities; use sigmoid "
                f"(or model.likelihood=gaussian for real-valued data), got '{cfg.output_activation}'"
            )
        if cfg.binarize and cfg.likelihood != "bernoulli":
            raise ConfigError(
                "model.binarize: only for model.likelihood=bernoulli (0/1 pixels need a Bernoulli decoder)"
            )
        self.likelihood = cfg.likelihood
        self.beta = cfg.beta
        self.kl_warmup_epochs = cfg.kl_warmup_epochs
        self.binarize = cfg.binarize
        self.iw_samples = cfg.iw_samples
        self.code_dim = cfg.code_dim
        self.mu_head = nn.Linear(features, cfg.code_dim)
        self.logvar_head = nn.Linear(features, cfg.code_dim)
        if self.likelihood == "gaussian":
            # one learned noise scale for all values: the decoder's variance, so the NLL is a proper density
            self.log_sigma = nn.Parameter(torch.zeros(()))

    # -- the public surface ------------------------------------------------
    def encode_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of q(z|x), each (N, code_dim)."""
        h = self.encoder(x)
        return self.mu_head(h), self.logvar_head(h).clamp(*LOGVAR_RANGE)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The mean code: deterministic, what `aelab encode` writes."""
        return self.encode_stats(x)[0]

    @staticmethod
    def reparameterize(
        mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        eps = (
            torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
            if generator is not None
            else torch.randn_like(mu)
        )
        return mu + torch.exp(0.5 * logvar) * eps

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws z ~ N(0, I) decoded to their mean images (probabilities for a Bernoulli decoder)."""
        z = torch.randn(n, self.code_dim, generator=generator).to(self.device)
        return self.decode(z)

    # -- the objective -------------------------------------------------------
    def recon_nll(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """-log p(x|z) per sample in nats, summed over values."""
        logits, target = logits.float().flatten(1), target.float().flatten(1)
        if self.likelihood == "bernoulli":
            return F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(1)
        mean = torch.sigmoid(logits) if self.output_activation == "sigmoid" else logits
        inv_var = torch.exp(-2 * self.log_sigma)
        return (0.5 * (target - mean).pow(2) * inv_var + self.log_sigma + HALF_LOG_2PI).sum(1)

    def compute_loss(self, x: torch.Tensor, target: torch.Tensor, y, loss: str, epoch: int = 0) -> LossOutput:
        want = "bce" if self.likelihood == "bernoulli" else "mse"
        if loss != want:
            raise ConfigError(f"train.loss: a {self.likelihood} VAE trains with loss={want}, got '{loss}'")
        if self.binarize:
            b = torch.bernoulli(target.float().clamp(0, 1))
            x = b if x is target else x  # without input noise the encoder sees the same 0/1 image
            target = b
        beta = self.beta * warmup_factor(epoch, self.kl_warmup_epochs)
        values = math.prod(self.input_shape)
        if self.iw_samples > 1:
            # IWAE (Burda et al. 2016): -log mean_k w_k, w_k = p(x|z_k) p(z_k)^beta / q(z_k|x)^beta
            log_px, log_pz, log_qz = self.log_weight_terms(x, self.iw_samples, target=target)
            log_w = log_px + beta * (log_pz - log_qz)
            bound = torch.logsumexp(log_w, 0) - math.log(self.iw_samples)
            return LossOutput(
                -bound.mean() / values, {"iwae": -bound.mean(), "recon": -log_px.mean(), "kl": (log_qz - log_pz).mean()}
            )
        mu, logvar = self.encode_stats(x)
        z = self.reparameterize(mu, logvar)
        recon = self.recon_nll(self.decode_logits(z), target)
        kl = kl_to_standard_normal(mu, logvar)
        total = (recon + beta * kl).mean() / values
        return LossOutput(total, {"recon": recon.mean(), "kl": kl.mean()})

    def log_weight_terms(
        self, x: torch.Tensor, n: int, generator: torch.Generator | None = None, target: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """log p(x|z), log p(z), log q(z|x) for n draws z ~ q(z|x) per sample, each (n, N), in nats."""
        target = x if target is None else target
        mu, logvar = self.encode_stats(x)
        mu, logvar = mu.float(), logvar.float()
        eps = (
            torch.randn((n, *mu.shape), generator=generator).to(mu.device)
            if generator is not None
            else torch.randn((n, *mu.shape), device=mu.device)
        )
        z = mu + torch.exp(0.5 * logvar) * eps  # (n, N, D)
        logits = self.decode_logits(z.reshape(-1, mu.shape[1]))
        tgt = target.unsqueeze(0).expand(n, *target.shape).reshape(-1, *target.shape[1:])
        log_px = -self.recon_nll(logits, tgt).view(n, -1)
        log_pz = (-0.5 * z.pow(2) - HALF_LOG_2PI).sum(-1)
        log_qz = (-0.5 * eps.pow(2) - 0.5 * logvar - HALF_LOG_2PI).sum(-1)
        return log_px, log_pz, log_qz

    def log_importance_weights(self, x: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """log p(x, z) - log q(z|x) for n draws z ~ q(z|x) per sample: (n, N), what the NLL estimator averages."""
        log_px, log_pz, log_qz = self.log_weight_terms(x, n, generator)
        return log_px + log_pz - log_qz

    @torch.no_grad()
    def nelbo_per_sample(
        self, x: torch.Tensor, generator: torch.Generator | None = None, samples: int = 1
    ) -> dict[str, torch.Tensor]:
        """recon, kl and nelbo (= recon + kl, beta = 1) per sample in nats; recon averaged over ``samples`` z draws."""
        was = self.training
        self.eval()
        try:
            mu, logvar = self.encode_stats(x)
            recon = (
                sum(
                    self.recon_nll(self.decode_logits(self.reparameterize(mu, logvar, generator)), x)
                    for _ in range(samples)
                )
                / samples
            )
            kl = kl_to_standard_normal(mu, logvar)
        finally:
            self.train(was)
        return {"recon": recon, "kl": kl, "nelbo": recon + kl}


class DenseVAE(VAEMixin, Autoencoder):
    def __init__(self, cfg: VAEConfig, input_shape: tuple[int, ...]):
        super().__init__(cfg, input_shape)
        d_in = math.prod(input_shape)
        dec_hidden = list(reversed(cfg.hidden)) if cfg.decoder_hidden is None else cfg.decoder_hidden
        n_hidden = len(cfg.hidden) + len(dec_hidden)
        acts = _per_layer(cfg.activation, n_hidden, "model.activation") if n_hidden else []
        drops = _per_layer(cfg.dropout, n_hidden, "model.dropout") if n_hidden else []

        enc: list[nn.Module] = [nn.Flatten()]
        prev = d_in
        for i, h in enumerate(cfg.hidden):
            enc += [nn.Linear(prev, h), make_activation(acts[i])]
            if drops[i] > 0:
                enc.append(nn.Dropout(drops[i]))
            prev = h
        self.encoder = nn.Sequential(*enc)
        self._setup_vae(cfg, prev)
        dec: list[nn.Module] = []
        prev = cfg.code_dim
        for j, h in enumerate(dec_hidden):
            k = len(cfg.hidden) + j
            dec += [nn.Linear(prev, h), make_activation(acts[k])]
            if drops[k] > 0:
                dec.append(nn.Dropout(drops[k]))
            prev = h
        dec += [nn.Linear(prev, d_in), nn.Unflatten(1, tuple(input_shape))]
        self.decoder = nn.Sequential(*dec)
        if cfg.init == "glorot":
            glorot_init(self)


class ConvVAE(VAEMixin, Autoencoder):
    """Conv + pool blocks down to a feature map, flattened into the Gaussian heads; a dense layer
    back up to that feature map, then conv + upsample blocks (the conv autoencoder's blocks)."""

    def __init__(self, cfg: VAEConfig, input_shape: tuple[int, ...]):
        super().__init__(cfg, input_shape)
        if len(input_shape) != 3:
            raise ConfigError(
                f"model.name: '{cfg.name}' needs image data shaped (C, H, W), got samples shaped "
                f"{tuple(input_shape)}; use model.name=vae-dense"
            )
        if not cfg.channels:
            raise ConfigError("model.channels: a conv VAE needs at least one block")
        c, h, w = input_shape
        sizes = conv_sizes((h, w), len(cfg.channels))
        for i, s in enumerate(sizes[:-1]):
            if min(s) < 2:
                raise ConfigError(
                    f"model.channels: {len(cfg.channels)} pooling steps do not fit a {h}x{w} image; "
                    f"use at most {i} blocks"
                )
        dec_channels = list(reversed(cfg.channels)) if cfg.decoder_channels is None else cfg.decoder_channels
        if len(dec_channels) != len(cfg.channels):
            raise ConfigError(
                f"model.decoder_channels: needs {len(cfg.channels)} entries (one per upsampling step), "
                f"got {len(dec_channels)}"
            )
        act = cfg.activation if isinstance(cfg.activation, str) else cfg.activation[0]  # validate refuses lists
        drop = cfg.dropout if isinstance(cfg.dropout, float) else cfg.dropout[0]
        k = cfg.kernel_size

        enc: list[nn.Module] = []
        prev = c
        for ch in cfg.channels:
            enc += _block(prev, ch, k, act, cfg.batch_norm, drop)
            enc.append(nn.MaxPool2d(2, ceil_mode=True))
            prev = ch
        enc.append(nn.Flatten())
        self.encoder = nn.Sequential(*enc)
        fh, fw = sizes[-1]
        features = prev * fh * fw
        self._setup_vae(cfg, features)
        dec: list[nn.Module] = [
            nn.Linear(cfg.code_dim, features),
            make_activation(act),
            nn.Unflatten(1, (prev, fh, fw)),
        ]
        for ch, (th, tw) in zip(dec_channels, reversed(sizes[:-1])):
            dec += _block(prev, ch, k, act, cfg.batch_norm, drop)
            dec.append(nn.Upsample(scale_factor=2, mode="nearest"))
            dec.append(CropTo(th, tw))
            prev = ch
        dec.append(nn.Conv2d(prev, c, k, padding=k // 2))
        self.decoder = nn.Sequential(*ConvAutoencoder._drop_needless_crops(dec, sizes))
        if cfg.init == "glorot":
            glorot_init(self)

    def first_layer_weights(self) -> torch.Tensor:
        return self.encoder[0].weight.detach()


@register_model(
    "vae-dense",
    "variational, fully connected: Gaussian code (model.code_dim), Bernoulli or Gaussian decoder, beta, KL warm-up",
    config=VAEConfig,
    capabilities=VAE_CAPABILITIES,
)
def build_vae_dense(cfg: VAEConfig, input_shape: tuple[int, ...]) -> DenseVAE:
    return DenseVAE(cfg, input_shape)


@register_model(
    "vae-conv",
    "variational, convolutional: conv+pool encoder, dense Gaussian heads, conv+upsample decoder",
    config=VAEConfig,
    capabilities=VAE_CAPABILITIES,
)
def build_vae_conv(cfg: VAEConfig, input_shape: tuple[int, ...]) -> ConvVAE:
    return ConvVAE(cfg, input_shape)


def is_vae(model) -> bool:
    return isinstance(model, VAEMixin)


__all__ = ["DenseVAE", "ConvVAE", "VAEConfig", "kl_to_standard_normal", "warmup_factor", "is_vae"]
