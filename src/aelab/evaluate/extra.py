"""Model-specific test metrics, as named metric sets a family declares in ``Capabilities.metrics``.

``extra_metrics(model, x, y)`` runs every set the model's family declares and
merges their results; keys get a ``test_`` prefix in summary.json (``val_``
when ``Capabilities.epoch_metrics`` logs them every epoch). A set is
``fn(model, x, y) -> dict[str, float]`` where ``x`` is a float array of samples
and ``y`` their labels or None.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..models import capabilities
from .evaluate import batches, eval_mode

MetricSet = Callable[[Any, Any, Any], dict[str, float]]
_SETS: dict[str, MetricSet] = {}


def register_metrics(name: str) -> Callable[[MetricSet], MetricSet]:
    def deco(fn: MetricSet) -> MetricSet:
        if name in _SETS:
            raise ValueError(f"metric set '{name}' is already registered")
        _SETS[name] = fn
        return fn

    return deco


def metric_sets() -> list[str]:
    return sorted(_SETS)


def extra_metrics(model, x, y) -> dict[str, float]:
    """Every metric set the model's family declares, merged in the declared order."""
    out: dict[str, float] = {}
    for name in capabilities(model).metrics:
        if name not in _SETS:
            raise KeyError(
                f"model '{model.cfg.name}' declares metric set '{name}', which evaluate/extra.py does not have"
            )
        out.update(_SETS[name](model, x, y))
    return out


# -- the sets -----------------------------------------------------------------


@register_metrics("elbo")
@torch.no_grad()
def elbo_metrics(model, x, y) -> dict[str, float]:
    """Test negative ELBO in nats per image.

    Bernoulli: ``nelbo`` / ``recon_nats`` / ``kl_nats`` on the test set binarised once with
    seed 0 (pixel ~ Bernoulli(intensity), the literature's protocol), and ``nelbo_grey`` on the
    grey-level targets themselves. Gaussian: the NLL of the real values under the decoder's density.
    """
    gen = torch.Generator().manual_seed(0)
    sums: dict[str, float] = {}
    n = 0
    for b in batches(x, 1024, model.device):
        b = b.float()
        if model.likelihood == "bernoulli":
            grey = model.nelbo_per_sample(b, gen)["nelbo"]
            sums["nelbo_grey"] = sums.get("nelbo_grey", 0.0) + float(grey.double().sum())
            b = torch.bernoulli(b.clamp(0, 1).cpu(), generator=gen).to(b.device)
        res = model.nelbo_per_sample(b, gen)
        for k, name in (("nelbo", "nelbo"), ("recon", "recon_nats"), ("kl", "kl_nats")):
            sums[name] = sums.get(name, 0.0) + float(res[k].double().sum())
        n += len(b)
    out = {k: v / max(n, 1) for k, v in sums.items()}
    if model.likelihood == "gaussian":
        out["sigma"] = float(model.log_sigma.detach().exp())
    return out


@torch.no_grad()
def predict_classes(model, x, batch_size: int = 1024) -> np.ndarray:
    """Predicted class of every sample (a model with ``classify``; eval mode, in batches)."""
    with eval_mode(model):
        return torch.cat([model.classify(b).argmax(1).cpu() for b in batches(x, batch_size, model.device)]).numpy()


@torch.no_grad()
def tap_reconstructions(model, x, batch_size: int = 1024) -> dict[int, np.ndarray]:
    """Reconstructions (after the output activation) from every tap depth of a model with ``tap_logits``."""
    out: dict[int, list[torch.Tensor]] = {}
    act = torch.sigmoid if model.output_activation == "sigmoid" else (lambda t: t)
    with eval_mode(model):
        for b in batches(x, batch_size, model.device):
            for k, logits in model.tap_logits(b).items():
                out.setdefault(k, []).append(act(logits.float()).cpu())
    return {k: torch.cat(v).numpy() for k, v in out.items()}


@register_metrics("classifier")
def classifier_metrics(model, x, y) -> dict[str, float]:
    """Accuracy (when labels are given) and the MSE of each probe's reconstruction."""
    res: dict[str, float] = {}
    if y is not None and len(y):
        res["accuracy"] = float((predict_classes(model, x) == np.asarray(y)).mean())
    if model.probe_taps:
        recs = tap_reconstructions(model, x)
        xs = np.asarray(x, dtype=np.float32)
        for k in model.probe_taps:
            res[f"mse_tap{k}"] = float(((recs[k] - xs) ** 2).mean())
    return res


@torch.no_grad()
def codebook_counts(model, x, batch_size: int = 1024) -> np.ndarray:
    """How often each codebook entry of a VQ-VAE is picked over x, (codebook_size,)."""
    k = model.cfg.codebook_size
    counts = torch.zeros(k, dtype=torch.long)
    with eval_mode(model):
        for b in batches(x, batch_size, model.device):
            counts += torch.bincount(model.encode_indices(b).flatten().cpu(), minlength=k)
    return counts.numpy()


@register_metrics("codebook")
def codebook_metrics(model, x, y) -> dict[str, float]:
    """Codebook perplexity (exp of the entropy of code use; K when all K are used evenly) and codes used."""
    c = codebook_counts(model, x).astype(np.float64)
    p = c / max(c.sum(), 1.0)
    nz = p[p > 0]
    return {"perplexity": float(np.exp(-(nz * np.log(nz)).sum())), "codes_used": float((c > 0).sum()),
            "codes_used_fraction": float((c > 0).mean())}


@torch.no_grad()
def latent_frequencies(model, x, batch_size: int = 1024) -> tuple[np.ndarray, float, float]:
    """A sparse autoencoder over x: how often each latent fires (latents,), mean L0, FVU."""
    fires = torch.zeros(model.n_latents)
    l0 = sq_err = 0.0
    n = 0
    xs = []
    with eval_mode(model):
        for b in batches(x, batch_size, model.device):
            z = model.encode(b)
            active = (z > 0).float()
            fires += active.sum(0).cpu()
            l0 += float(active.sum())
            flat = b.float().flatten(1)
            sq_err += float((model.decode(z).float().flatten(1) - flat).pow(2).double().sum())
            xs.append(flat.double().sum(0))
            n += len(b)
    mean = torch.stack(xs).sum(0) / max(n, 1)
    total_var = 0.0
    for b in batches(x, batch_size, torch.device("cpu")):
        total_var += float((b.double().flatten(1) - mean).pow(2).sum())
    return (fires.cpu().numpy() / max(n, 1)), l0 / max(n, 1), sq_err / max(total_var, 1e-12)


@register_metrics("sae")
def sae_metrics(model, x, y) -> dict[str, float]:
    """L0 (active latents per sample), fraction of variance unexplained, and dead latents: never firing
    on x (``dead_fraction``), and no firing in the last ``model.dead_samples`` training samples
    (``dead_fraction_train``)."""
    freq, l0, fvu = latent_frequencies(model, x)
    return {"l0": l0, "fvu": fvu, "dead_fraction": float((freq == 0).mean()),
            "dead_fraction_train": float(model.dead_mask().float().mean())}
