"""Variational autoencoders: reparameterisation, KL, warm-up, sampling, training, metrics, figures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aelab import Config, ConfigError, ModelConfig, build_model, load_run, train
from aelab.models.vae import kl_to_standard_normal, warmup_factor
from aelab.report.model_figures import model_figures


def vae_cfg(name="vae-dense", code_dim=2, **model):
    return Config.from_dict(
        {
            "data": {"name": "mnist"},
            "model": {"name": name, "hidden": [32], "code_dim": code_dim, "channels": [4, 4], **model},
        }
    )


@pytest.mark.parametrize("name", ["vae-dense", "vae-conv"])
def test_reparameterisation_shapes_and_deterministic_code(name):
    torch.manual_seed(0)
    m = build_model(vae_cfg(name, code_dim=3))
    x = torch.rand(5, 1, 28, 28)
    mu, logvar = m.encode_stats(x)
    assert mu.shape == logvar.shape == (5, 3)
    z = m.reparameterize(mu, logvar)
    assert z.shape == (5, 3) and not torch.allclose(z, mu)
    # with a vanishing variance the sample is the mean
    assert torch.allclose(m.reparameterize(mu, torch.full_like(logvar, -30.0)), mu, atol=1e-5)
    m.eval()
    assert torch.equal(m.encode(x), m.encode(x)) and torch.equal(m.encode(x), mu)
    assert m.code_shape == (3,)
    with torch.no_grad():
        assert m.reconstruct(x).shape == x.shape and 0 <= float(m.reconstruct(x).min())


def test_kl_matches_torch_distributions():
    mu, logvar = torch.randn(4, 6), torch.randn(4, 6)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(6), torch.ones(6))
    expect = torch.distributions.kl_divergence(q, p).sum(1)
    assert torch.allclose(kl_to_standard_normal(mu, logvar), expect, atol=1e-5)
    assert torch.allclose(kl_to_standard_normal(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2))


def test_kl_warmup_ramps_the_weight_in_compute_loss():
    assert [warmup_factor(e, 3) for e in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert warmup_factor(0, 0) == 1.0
    m = build_model(vae_cfg(beta=2.0, kl_warmup_epochs=3))
    x = torch.rand(8, 1, 28, 28)
    for epoch, f in [(0, 0.25), (1, 0.5), (7, 1.0)]:
        torch.manual_seed(1)
        with torch.no_grad():
            out = m.compute_loss(x, x, None, "bce", epoch)
        expect = (out.parts["recon"] + 2.0 * f * out.parts["kl"]) / 784
        assert math.isclose(float(out.total), float(expect), rel_tol=1e-5)
        assert set(out.parts) == {"recon", "kl"}


def test_prior_samples_shape():
    m = build_model(vae_cfg("vae-conv", code_dim=4))
    s = m.sample(7, torch.Generator().manual_seed(0))
    assert s.shape == (7, 1, 28, 28) and float(s.min()) >= 0 and float(s.max()) <= 1
    assert torch.equal(s, m.sample(7, torch.Generator().manual_seed(0)))


def test_config_checks():
    with pytest.raises(ConfigError, match="train.loss: a VAE with model.likelihood=bernoulli trains with bce"):
        Config.from_dict({"model": {"name": "vae-dense"}, "train": {"loss": "mse"}})
    with pytest.raises(ConfigError, match="model.binarize"):
        build_model(ModelConfig(name="vae-dense", likelihood="gaussian", binarize=True, code_dim=2), (1, 28, 28))
    with pytest.raises(ConfigError, match="model.output_activation: a Bernoulli VAE"):
        build_model(vae_cfg(output_activation="identity"))
    with pytest.raises(ConfigError, match="needs image data"):
        build_model(vae_cfg("vae-conv"), input_shape=(10,))
    with pytest.raises(ConfigError, match="kl_warmup_epochs"):
        vae_cfg(kl_warmup_epochs=-1)


@pytest.mark.parametrize("name,binarize", [("vae-dense", True), ("vae-conv", False)])
def test_vae_trains_elbo_finite_and_decreasing(tmp_path, idx_dir, name, binarize):
    cfg = Config.from_dict(
        {
            "data": {"name": "mnist", "path": str(idx_dir), "limit": 256},
            "model": {"name": name, "hidden": [64], "code_dim": 2, "channels": [8], "binarize": binarize},
            "train": {"epochs": 2, "batch_size": 32, "lr": 3e-3, "threads": 1},
        }
    )
    run = train(cfg, tmp_path / "run", log=lambda *_: None)
    rows = run.metrics
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert {"train_recon", "train_kl"} <= set(rows[0])
    s = run.summary
    for k in ("test_nelbo", "test_recon_nats", "test_kl_nats", "test_nelbo_grey"):
        assert math.isfinite(s[k]), k
    assert s["test_kl_nats"] > 0
    assert math.isclose(s["test_nelbo"], s["test_recon_nats"] + s["test_kl_nats"], rel_tol=1e-6)
    # the run loads back to the same deterministic codes
    back = load_run(run.path)
    x = torch.as_tensor(run.load_data().x_test[:4])
    assert torch.allclose(
        back.model.encode(x), run.model.eval().encode(x), atol=1e-6
    )  # saved/loaded weights, fp32 eval in any precision


def test_gaussian_vae_on_standardised_tabular_data(tmp_path):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(300, 2)) @ rng.normal(size=(2, 8)) * 50 + 1000).astype(np.float32)
    np.save(tmp_path / "t.npy", x)
    cfg = Config.from_dict(
        {
            "data": {"name": "npy", "path": str(tmp_path / "t.npy"), "scale": "standard"},
            "model": {
                "name": "vae-dense",
                "hidden": [16],
                "code_dim": 2,
                "likelihood": "gaussian",
                "output_activation": "identity",
            },
            "train": {"epochs": 2, "batch_size": 32, "loss": "mse", "lr": 3e-3, "threads": 1},
        }
    )
    run = train(cfg, tmp_path / "run", log=lambda *_: None)
    assert math.isfinite(run.summary["test_nelbo"]) and run.summary["test_sigma"] > 0
    assert "test_nelbo_grey" not in run.summary
    assert model_figures(run.model, run.load_data()) == []  # no pictures of tabular rows
    from aelab.report import write_run_report

    page = write_run_report(run).read_text()  # the family declares a likelihood: the report says how to get its NLL
    assert "not estimated" in page and f"aelab eval {run.path} --nll 5000" in page


def test_report_figures():
    from aelab.data import Splits

    x = np.random.default_rng(0).random((12, 1, 28, 28), dtype=np.float32)
    y = np.arange(12) % 3
    splits = Splits("mnist", x, y, x, y)
    stems = [s for s, fig, cap in model_figures(build_model(vae_cfg(code_dim=2)), splits)]
    assert stems == ["vae_prior_samples", "vae_interpolation", "vae_manifold"]
    figs = model_figures(build_model(vae_cfg(code_dim=5)), splits)
    assert [s for s, _, _ in figs] == ["vae_prior_samples", "vae_interpolation"]
    assert all(isinstance(c, str) and c for _, _, c in figs)
    assert len(figs[0][1].axes) == 1
