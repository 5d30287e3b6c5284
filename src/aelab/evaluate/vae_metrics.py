"""The VAE families' metric set "elbo": the test negative ELBO in nats per image."""

from __future__ import annotations

import torch

from .evaluate import batches
from .metric_sets import register_metrics


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
