"""Latent health (dead units, VAE active units, histograms) and `aelab sample`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from aelab.evaluate.health import code_histogram, dead_units, latent_health, unit_activity, vae_active_units


def test_activity_and_dead_units_on_known_codes():
    codes = np.zeros((100, 4), np.float32)
    codes[:50, 0] = 1.0  # active half the time
    codes[:, 1] = np.linspace(0.1, 1, 100)  # always active
    codes[:, 2] = 3.0  # always non-zero but constant: dead (carries nothing)
    # unit 3 never fires
    np.testing.assert_allclose(unit_activity(codes), [0.5, 1.0, 1.0, 0.0])
    assert dead_units(codes).tolist() == [False, False, True, True]
    h = code_histogram(codes, bins=5)
    assert sum(h["counts"]) == 400 and len(h["edges"]) == 6


def test_vae_active_units_threshold():
    rng = np.random.default_rng(0)
    mu = np.stack([rng.normal(0, 1, 1000), rng.normal(0, 0.05, 1000), rng.normal(0, 0.2, 1000)], 1)
    assert vae_active_units(mu).tolist() == [True, False, True]  # variances 1, 0.0025, 0.04 against 0.01


def _model(name: str, **kw):
    from aelab import Config
    from aelab.models import build_model

    m = {"name": name, "code_dim": 8, "hidden": [32], **kw}
    cfg = Config.from_dict({"model": m, "train": {"loss": "bce"}})
    torch.manual_seed(0)
    return build_model(cfg, (1, 8, 8))


def test_latent_health_of_a_relu_code_and_a_vae():
    x = np.random.default_rng(0).random((64, 1, 8, 8)).astype(np.float32)
    ae = _model("dense")
    with torch.no_grad():  # kill three code units: their pre-activations are always negative
        lin = ae.encoder[3]
        lin.weight[:3] = 0
        lin.bias[:3] = -1
    h, d = latent_health(ae, x)
    assert h["code_units"] == 8 and h["dead_units"] >= 3 and "active_units" not in h
    assert sum(d["unit_activity_histogram"]["counts"]) == 8
    v, d = latent_health(_model("vae-dense"), x)
    assert 0 <= v["active_units"] <= 8 and len(d["posterior_mean_variance"]) == 8


def test_sampler_prior_for_vae_and_gmm_for_others():
    from aelab.evaluate.sampling import sample

    x = np.random.default_rng(0).random((200, 1, 8, 8)).astype(np.float32)
    vae = _model("vae-dense")
    s = sample(vae, 5)
    assert s.shape == (5, 1, 8, 8) and np.isfinite(s).all()
    assert np.array_equal(s, sample(vae, 5))  # seeded
    g = sample(_model("dense"), 7, x, components=3)
    assert g.shape == (7, 1, 8, 8) and ((g >= 0) & (g <= 1)).all()
    from aelab.errors import ConfigError

    with pytest.raises(ConfigError, match="no prior"):
        sample(_model("dense"), 3, x, source="prior")


def test_cli_sample_and_eval_nll(tmp_path, idx_dir):
    from aelab import Config, train
    from aelab.cli import main

    cfg = Config.from_dict(
        {
            "data": {"name": "mnist", "path": str(idx_dir)},
            "model": {"name": "vae-dense", "hidden": [32], "code_dim": 4, "binarize": True},
            "train": {"epochs": 1, "batch_size": 64, "loss": "bce"},
        }
    )
    run = train(cfg, tmp_path / "run", log=lambda s: None)
    s = json.loads((run.path / "summary.json").read_text())
    assert "test_active_units" in s and "test_dead_units" in s and "code_histogram" in s["latent_health"]
    assert main(["sample", str(run.path), "-n", "12", "-o", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    assert (
        main(["sample", str(run.path), "-n", "6", "--from", "gmm", "--components", "2", "-o", str(tmp_path / "s.npy")])
        == 0
    )
    assert np.load(tmp_path / "s.npy").shape == (6, 1, 28, 28)
    assert main(["eval", str(run.path), "--nll", "20", "--nll-limit", "10"]) == 0
    s = json.loads((run.path / "summary.json").read_text())
    assert s["test_nll_k"] == 20 and s["test_nll_samples"] == 10 and s["test_nll"] > 0
    # a bad output suffix: one line, exit 2, no file
    assert main(["sample", str(run.path), "-o", str(tmp_path / "s.txt")]) == 2 and not (tmp_path / "s.txt").exists()
