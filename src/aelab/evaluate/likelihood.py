"""The importance-weighted estimate of a latent-variable model's negative log-likelihood.

Burda et al. 2016: log p(x) >= log (1/K) sum_k p(x, z_k) / q(z_k|x), z_k ~ q(z|x); the bound
tightens as K grows and is the standard "test NLL" of VAEs at K = 5000. The K draws are taken
in chunks and folded into a running log-sum-exp, so memory is (chunk x batch) decoder outputs
whatever K is.

A family takes part by declaring ``Capabilities(likelihood=True)``, which promises that its models
have ``log_importance_weights(x, n, generator) -> (n, N)``: log p(x, z) - log q(z|x) for n draws
per sample, in nats (tests/test_families.py holds every family to that promise both ways).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from ..errors import ConfigError
from ..models import capabilities
from .evaluate import batches, eval_mode


def supports_nll(model) -> bool:
    """Whether the model's family declares a likelihood (``Capabilities.likelihood``); False for bare modules."""
    cfg = getattr(model, "cfg", None)
    return cfg is not None and capabilities(cfg).likelihood


@torch.no_grad()
def log_likelihood_per_sample(
    model, x: torch.Tensor, k: int, chunk: int = 500, generator: torch.Generator | None = None, with_elbo: bool = False
):
    """log p(x) estimated with k importance samples for every row of x (one batch), float64, (N,).

    ``with_elbo``: also the mean of the k log-weights, the ELBO of the same rows (its Monte-Carlo
    error shrinks with k), as a second (N,) tensor.
    """
    acc = torch.full((len(x),), -math.inf, dtype=torch.float64)
    total = torch.zeros(len(x), dtype=torch.float64)
    done = 0
    while done < k:
        n = min(chunk, k - done)
        lw = model.log_importance_weights(x, n, generator).double().cpu()
        acc = torch.logaddexp(acc, torch.logsumexp(lw, 0))
        total += lw.sum(0)
        done += n
    logp = acc - math.log(k)
    return (logp, total / k) if with_elbo else logp


def binarize_once(x: np.ndarray | torch.Tensor, seed: int = 0, batch_size: int = 1024) -> torch.Tensor:
    """Every pixel drawn once as 0/1 ~ Bernoulli(grey level) with a fixed seed: the fixed binarised
    test set of the VAE literature (same draws as the VAE's ``extra_metrics`` for a given seed)."""
    gen = torch.Generator().manual_seed(seed)
    out = [torch.bernoulli(b.float().clamp(0, 1), generator=gen) for b in batches(x, batch_size, torch.device("cpu"))]
    return torch.cat(out)


def importance_weighted_nll(
    model,
    x,
    k: int = 5000,
    seed: int = 0,
    binarize: bool | None = None,
    batch_size: int = 100,
    chunk: int | None = None,
    limit: int | None = None,
) -> dict:
    """Test NLL in nats per sample: mean over x of -log p(x), each from k importance samples.

    ``binarize`` (default: the model's own ``binarize`` setting) binarises x once with ``seed``;
    the importance draws use ``seed`` too, so a run gives the same number twice. ``limit`` takes
    the first ``limit`` rows (for quick estimates; the literature's numbers use the whole test set).
    """
    if not supports_nll(model):
        raise ConfigError(
            f"--nll: {type(model).__name__} has no likelihood (only families that declare one, the VAEs, "
            "define log p(x, z) - log q(z|x))"
        )
    if k < 1:
        raise ConfigError(f"--nll: needs K >= 1 importance samples, got {k}")
    if limit is not None:
        x = x[:limit]
    binarize = bool(getattr(model, "binarize", False)) if binarize is None else binarize
    xs = binarize_once(x, seed) if binarize else torch.cat(list(batches(x, 1024, torch.device("cpu"))))
    if chunk is None:  # keep a chunk's decoder output near 40 M values
        chunk = max(1, min(k, 40_000_000 // max(1, batch_size * int(np.prod(xs.shape[1:])))))
    gen = torch.Generator().manual_seed(seed + 1)
    t0 = time.perf_counter()
    logp, elbo = [], []
    with eval_mode(model):
        for b in batches(xs, batch_size, model.device):
            lp_b, elbo_b = log_likelihood_per_sample(model, b, k, chunk, gen, with_elbo=True)
            logp.append(lp_b)
            elbo.append(elbo_b)
    nll = -torch.cat(logp)
    return {
        "nll": float(nll.mean()),
        "nll_sem": float(nll.std() / math.sqrt(len(nll))) if len(nll) > 1 else 0.0,
        "nll_nelbo": float(-torch.cat(elbo).mean()),  # -ELBO of the same images, averaged over the k draws
        "nll_k": int(k),
        "nll_samples": int(len(nll)),
        "nll_seed": int(seed),
        "nll_binarized": bool(binarize),
        "nll_seconds": time.perf_counter() - t0,
    }
