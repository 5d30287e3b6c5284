"""TopK sparse autoencoder: TopK / BatchTopK, unit-norm decoder, AuxK, metrics, and a run on (N, D) data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from aelab import Config, ConfigError, build_model
from aelab.evaluate.sae_metrics import sae_metrics
from aelab.models.sae import topk_mask


def _sae(shape=(20,), **kw):
    cfg = Config.from_dict(
        {
            "model": {"name": "topk-sae", "output_activation": "identity", "expansion": 4, "k": 3, **kw},
            "train": {"loss": "mse"},
        }
    )
    torch.manual_seed(0)
    return build_model(cfg, shape)


def test_topk_keeps_the_k_largest_then_relu():
    pre = torch.tensor([[0.5, -1.0, 2.0, 0.1, 3.0], [-0.5, -0.2, -0.1, -3.0, 0.3]])
    z = topk_mask(pre, 2)
    torch.testing.assert_close(z, torch.tensor([[0, 0, 2.0, 0, 3.0], [0, 0, 0, 0, 0.3]]))


def test_codes_are_k_sparse_and_batch_topk_spends_k_per_sample_on_average():
    m = _sae()
    x = torch.randn(16, 20)
    m.train()
    assert int((m.encode(x) > 0).sum(1).max()) <= 3
    b = _sae(batch_topk=True)
    b.train()
    z = b.encode(x)
    assert int((z > 0).sum()) <= 3 * 16 and int((z > 0).sum(1).max()) > 0
    b.eval()  # inference: a threshold, not the batch
    torch.testing.assert_close(b.encode(x[:1]), b.encode(x)[:1])


def test_decoder_columns_stay_unit_norm_and_lose_the_parallel_gradient():
    m = _sae()
    x = torch.randn(32, 20)
    out = m.compute_loss(x, x, None, "mse")
    out.total.backward()
    g, w = m.W_dec.grad, m.W_dec.detach()
    assert float((g * w).sum(0).abs().max()) < 1e-5  # no component along any column
    opt = torch.optim.Adam(m.parameters(), lr=0.1)
    opt.step()
    m.eval()
    torch.testing.assert_close(m.W_dec.norm(dim=0), torch.ones(m.n_latents))


def test_b_pre_starts_at_the_data_mean_and_loss_parts():
    m = _sae()
    x = torch.randn(64, 20) + 5
    out = m.compute_loss(x, x, None, "mse")
    torch.testing.assert_close(m.b_pre.detach(), x.mean(0))
    assert {"recon", "fvu", "l0", "dead_fraction"} <= set(out.parts) and float(out.parts["l0"]) <= 3


def test_auxk_switches_on_for_dead_latents_and_trains_them():
    m = _sae(dead_samples=10, aux_k=4)
    x = torch.randn(64, 20)
    with torch.no_grad():
        m.samples_since_fired[:40] = 100  # these latents have been silent for 100 samples
        m.b_enc[:40] = 1.0  # positive pre-activations ...
        m.b_enc[40:] = 100.0  # ... that never win the TopK against these
    out = m.compute_loss(x, x, None, "mse")
    assert "auxk" in out.parts and float(out.parts["dead_fraction"]) > 0
    out.total.backward()
    assert float(m.W_enc.grad[:40].abs().sum()) > 0  # the AuxK gradient reaches the dead latents
    assert int((m.encode(x)[:, :40] > 0).sum()) == 0


def test_metrics_on_data_with_a_known_answer():
    m = _sae(k=20, latents=40)  # k = input size: enough to reproduce x exactly in principle
    x = np.random.default_rng(0).normal(size=(50, 20)).astype(np.float32)
    res = sae_metrics(m.eval(), x, None)
    assert 0 < res["l0"] <= 20 and res["fvu"] > 0 and 0 <= res["dead_fraction"] <= 1
    with torch.no_grad():  # a decoder that returns b_pre only: FVU = 1 when b_pre is the mean
        m.W_dec.zero_()
        m.b_pre.copy_(torch.as_tensor(x.mean(0)))
    assert sae_metrics(m, x, None)["fvu"] == pytest.approx(1.0, rel=1e-5)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="model.k"):
        Config.from_dict({"model": {"name": "topk-sae", "k": 0}, "train": {"loss": "mse"}})
    with pytest.raises(ConfigError, match="model.k: 50 active latents need"):
        _sae(k=50, latents=40)


def test_trains_on_an_npy_array_saves_loads_and_round_trips(tmp_path):
    from aelab import train
    from aelab.cli import main
    from aelab.run import load_run

    rng = np.random.default_rng(0)
    atoms = rng.normal(size=(12, 16)).astype(np.float32)
    codes = rng.random((600, 12)) * (rng.random((600, 12)) < 0.2)
    np.save(tmp_path / "emb.npy", (codes @ atoms).astype(np.float32))
    cfg = Config.from_dict(
        {
            "data": {"name": "npy", "path": str(tmp_path / "emb.npy"), "scale": "none"},
            "model": {"name": "topk-sae", "output_activation": "identity", "expansion": 2, "k": 4},
            "train": {"epochs": 3, "batch_size": 64, "loss": "mse", "precision": "fp32"},
        }
    )
    run = train(cfg, tmp_path / "run", log=lambda s: None)
    s = json.loads((run.path / "summary.json").read_text())
    assert s["test_l0"] <= 4 and 0 < s["test_fvu"] < 1 and "test_dead_units" in s
    again = load_run(run.path)
    x = torch.as_tensor(np.load(tmp_path / "emb.npy")[:5])
    with torch.no_grad():
        torch.testing.assert_close(again.model.decode(again.model.encode(x)), run.model.eval()(x))
    assert main(["export", str(run.path), "--format", "onnx", "-o", str(tmp_path / "onnx")]) == 0  # onnxruntime agrees
    assert json.loads((tmp_path / "onnx" / "export.json").read_text())["model"] == cfg.model.name
    assert main(["report", str(run.path)]) == 0
    assert (run.path / "figures" / "sae_feature_density.png").is_file()


def test_sae_codes_recipe_on_the_codes_of_another_run(idx_dir, tmp_path, monkeypatch, capsys):
    """The documented sequence on tiny data: train a run, export its images, encode them, fit the SAE on the codes."""
    from aelab.cli import main

    monkeypatch.chdir(tmp_path)  # the recipe reads codes/dense32-{train,test}.npy relative to here
    base = tmp_path / "dense32"
    tiny = ["--set", f"data.path={idx_dir}", "--set", "train.epochs=1", "--set", "data.limit=128"]
    assert main(["train", "seed004-dense32-adam", "--out", str(base), "--no-report", *tiny]) == 0
    for split, n in (("train", 600), ("test", 100)):
        img = tmp_path / f"{split}.npy"
        assert main(["data", "export", "mnist", "--split", split, "--path", str(idx_dir), "-o", str(img)]) == 0
        x = np.load(img)
        assert x.dtype == np.uint8 and x.shape == (n, 1, 28, 28)
        assert main(["encode", str(base), str(img), "-o", f"codes/dense32-{split}.npy"]) == 0
        codes = np.load(tmp_path / "codes" / f"dense32-{split}.npy")
        assert codes.shape == (n, 32) and codes.dtype == np.float32
    out = tmp_path / "sae"
    assert main(["train", "sae-codes", "--out", str(out), "--no-report", "--set", "train.epochs=2"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert 0 < s["test_l0"] <= 8 and np.isfinite(s["test_fvu"]) and 0 <= s["test_dead_fraction"] <= 1


def test_data_export_bad_input_is_one_line_and_writes_nothing(idx_dir, tmp_path, capsys):
    from aelab.cli import main

    out = tmp_path / "x.npy"
    for args in (
        ["data", "export", "npy", "-o", str(out)],
        ["data", "export", "mnist", "--path", str(idx_dir), "-o", str(tmp_path / "x.txt")],
        ["data", "export", "mnist", "--path", str(idx_dir), "--limit", "0", "-o", str(out)],
        ["data", "export", "mnist", "--path", str(tmp_path / "none"), "-o", str(out)],
    ):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
    assert not out.exists()
    assert main(["data", "export", "mnist", "--path", str(idx_dir), "--limit", "5", "-o", str(out)]) == 0
    assert np.load(out).shape == (5, 1, 28, 28)
