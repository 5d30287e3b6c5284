"""The importance-weighted NLL estimator against a model whose log p(x) is known in closed form, and the IWAE bound."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aelab.evaluate.likelihood import binarize_once, importance_weighted_nll, log_likelihood_per_sample

LOG_2PI = math.log(2 * math.pi)


class LinearGaussian(torch.nn.Module):
    """p(z) = N(0, I_d), p(x|z) = N(Wz + b, s^2 I_D); q(z|x) = N(A x + c, diag(v)) given.

    log p(x) = log N(x; b, W W^T + s^2 I) exactly. With W's columns orthogonal the true posterior
    is diagonal, so q can be set to it (then every importance weight equals p(x)).
    """

    def __init__(self, D: int = 6, d: int = 2, s: float = 0.5, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(D, d, generator=g, dtype=torch.float64))
        self.W = q * torch.tensor([1.5, 0.7], dtype=torch.float64)[:d]  # orthogonal columns
        self.b = torch.randn(D, generator=g, dtype=torch.float64)
        self.s = s
        self.dummy = torch.nn.Parameter(torch.zeros(()))  # so .device works
        self.exact_posterior()

    def exact_posterior(self) -> None:
        prec = torch.eye(self.W.shape[1], dtype=torch.float64) + self.W.T @ self.W / self.s**2
        cov = torch.linalg.inv(prec)
        self.A = cov @ self.W.T / self.s**2
        self.c = -self.A @ self.b
        self.v = torch.diagonal(cov).clone()

    def log_px(self, x: torch.Tensor) -> torch.Tensor:
        cov = self.W @ self.W.T + self.s**2 * torch.eye(self.W.shape[0], dtype=torch.float64)
        return torch.distributions.MultivariateNormal(self.b, cov).log_prob(x.double())

    def log_importance_weights(self, x, n, generator=None):
        x = x.double()
        mu = x @ self.A.T + self.c
        eps = torch.randn((n, *mu.shape), generator=generator, dtype=torch.float64)
        z = mu + self.v.sqrt() * eps
        mean = z @ self.W.T + self.b
        log_pxz = (-0.5 * ((x - mean) / self.s) ** 2 - math.log(self.s) - 0.5 * LOG_2PI).sum(-1)
        log_pz = (-0.5 * z**2 - 0.5 * LOG_2PI).sum(-1)
        log_qz = (-0.5 * eps**2 - 0.5 * self.v.log() - 0.5 * LOG_2PI).sum(-1)
        return log_pxz + log_pz - log_qz


def _data(model: LinearGaussian, n: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    z = torch.randn(n, model.W.shape[1], generator=g, dtype=torch.float64)
    return z @ model.W.T + model.b + model.s * torch.randn(n, model.W.shape[0], generator=g, dtype=torch.float64)


def test_exact_posterior_gives_the_exact_likelihood_with_one_sample():
    m = LinearGaussian()
    x = _data(m)
    est = log_likelihood_per_sample(m, x, k=1, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(est, m.log_px(x), rtol=0, atol=1e-9)


def test_a_poor_proposal_converges_to_the_exact_likelihood_as_k_grows():
    m = LinearGaussian()
    x = _data(m)
    m.A = m.A * 0.5  # a worse encoder: means shrunk, variances too wide
    m.v = m.v * 3.0
    exact = m.log_px(x)
    gaps = []
    for k in (1, 10, 5000):
        est = log_likelihood_per_sample(m, x, k=k, chunk=128, generator=torch.Generator().manual_seed(0))
        gaps.append(float((exact - est).mean()))
    assert gaps[0] > 0.1  # K = 1 is the ELBO: a clearly loose bound here
    assert gaps[0] > gaps[1] > gaps[2] > -0.01  # tightens with K, stays (statistically) a lower bound
    assert gaps[2] < 0.01  # K = 5000: within 0.01 nats of log p(x)


def test_chunks_fold_into_the_same_log_mean_exp():
    """The running log-sum-exp over chunks equals one log-mean-exp over all K weights."""
    lw = torch.randn(1000, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 30

    class Fixed:
        pos = 0

        def log_importance_weights(self, x, n, generator=None):
            out = lw[self.pos : self.pos + n]
            self.pos += n
            return out

    est = log_likelihood_per_sample(Fixed(), torch.zeros(5), k=1000, chunk=7)
    torch.testing.assert_close(est, torch.logsumexp(lw, 0) - math.log(1000), rtol=0, atol=1e-9)


def _tiny_vae(iw: int = 1, binarize: bool = True):
    from aelab import Config
    from aelab.models import build_model

    cfg = Config.from_dict(
        {
            "data": {"name": "mnist"},
            "model": {"name": "vae-dense", "hidden": [32], "code_dim": 4, "binarize": binarize, "iw_samples": iw},
            "train": {"loss": "bce"},
        }
    )
    torch.manual_seed(0)
    return build_model(cfg, (1, 8, 8))


def test_vae_nll_is_below_its_elbo_and_repeatable():
    m = _tiny_vae()
    x = np.random.default_rng(0).random((40, 1, 8, 8)).astype(np.float32)
    r1 = importance_weighted_nll(m, x, k=200, seed=0)
    r2 = importance_weighted_nll(m, x, k=200, seed=0)
    assert r1["nll"] == r2["nll"] and r1["nll_binarized"] and r1["nll_samples"] == 40
    xb = binarize_once(x, seed=0)
    elbo = importance_weighted_nll(m, xb.numpy(), k=1, seed=0, binarize=False)["nll"]
    assert r1["nll"] < elbo and r1["nll"] < r1["nll_nelbo"] and abs(r1["nll_nelbo"] - elbo) < 0.05 * elbo
    nelbo = float(m.nelbo_per_sample(xb, torch.Generator().manual_seed(0), samples=50)["nelbo"].mean())
    assert r1["nll"] < nelbo and abs(elbo - nelbo) < 0.05 * nelbo


def test_nll_refuses_a_model_without_a_likelihood():
    from aelab import Config
    from aelab.errors import ConfigError
    from aelab.models import build_model

    m = build_model(Config.from_dict({"model": {"name": "dense", "code_dim": 4}}), (1, 8, 8))
    with pytest.raises(ConfigError, match="no likelihood"):
        importance_weighted_nll(m, np.zeros((2, 1, 8, 8), np.float32), k=2)


def test_iwae_objective_is_a_tighter_bound_than_the_elbo():
    """With the same weights, the k-sample bound is >= the ELBO (its expectation), so its loss is lower."""
    torch.manual_seed(0)
    vae, iwae = _tiny_vae(1, binarize=False), _tiny_vae(20, binarize=False)
    iwae.load_state_dict(vae.state_dict())
    x = torch.rand(64, 1, 8, 8).round()
    torch.manual_seed(1)
    l1 = sum(float(vae.compute_loss(x, x, None, "bce").total.detach()) for _ in range(20)) / 20
    torch.manual_seed(1)
    out = iwae.compute_loss(x, x, None, "bce")
    assert float(out.total) < l1
    assert set(out.parts) == {"iwae", "recon", "kl"}
    out.total.backward()  # gradients flow through the log-sum-exp and the reparameterised draws
    assert all(p.grad is not None for p in iwae.parameters() if p.requires_grad)


def test_iw_samples_must_be_positive():
    from aelab import Config
    from aelab.errors import ConfigError

    with pytest.raises(ConfigError, match="model.iw_samples"):
        Config.from_dict({"model": {"name": "vae-dense", "iw_samples": 0}, "train": {"loss": "bce"}})
