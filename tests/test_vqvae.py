"""VQ-VAE: the quantiser by hand, its codebook upkeep, and a short run through the registry."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from aelab import Config, ConfigError, build_model
from aelab.models.vqvae import VectorQuantizer, kmeans, perplexity


def test_quantiser_picks_the_nearest_entry_with_a_straight_through_gradient():
    q = VectorQuantizer(3, 2, commitment=0.25, ema=False, kmeans_init=False, dead_code_threshold=0)
    with torch.no_grad():
        q.codebook.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [-2.0, 0.0]]))
    z_e = torch.tensor([[0.9, 1.2], [-1.5, 0.1]]).T.reshape(1, 2, 1, 2).requires_grad_()  # two positions
    q.train()
    z_q, loss, idx, m = q(z_e)
    assert idx.flatten().tolist() == [1, 2]
    torch.testing.assert_close(z_q.detach().reshape(2, 2).T, torch.tensor([[1.0, 1.0], [-2.0, 0.0]]))
    flat = torch.tensor([[0.9, 1.2], [-1.5, 0.1]])
    target = torch.tensor([[1.0, 1.0], [-2.0, 0.0]])
    mse = ((flat - target) ** 2).mean()
    torch.testing.assert_close(loss.detach(), 0.25 * mse + mse)  # commitment + codebook term
    (z_q.sum() + loss).backward()
    # the straight-through gradient of sum(z_q) w.r.t. z_e is 1, plus the commitment term's
    expected = 1 + 0.25 * 2 * (z_e.detach() - z_q.detach()) / 4
    torch.testing.assert_close(z_e.grad, expected)
    assert float(m["codes_used"]) == pytest.approx(2 / 3) and float(m["perplexity"]) == pytest.approx(2.0)


def test_perplexity_and_kmeans():
    assert float(perplexity(torch.tensor([5, 5, 5, 5]))) == pytest.approx(4.0)
    assert float(perplexity(torch.tensor([7, 0, 0]))) == pytest.approx(1.0)
    x = torch.cat([torch.randn(50, 2) * 0.05 + c for c in (torch.tensor([3.0, 0]), torch.tensor([-3.0, 0]))])
    c = kmeans(x, 2, 10, torch.Generator().manual_seed(0))
    assert sorted(round(float(v)) for v in c[:, 0]) == [-3, 3]


def test_kmeans_init_ema_update_and_dead_code_restart():
    torch.manual_seed(0)
    q = VectorQuantizer(8, 2, ema=True, decay=0.5, kmeans_init=True, kmeans_iters=5, dead_code_threshold=0.5)
    z = torch.randn(4, 2, 4, 4) + 10  # far from the random initial codebook
    q.train()
    q(z)
    assert bool(q.initted)
    assert float(torch.cdist(q.codebook, z.permute(0, 2, 3, 1).reshape(-1, 2)).min(1).values.max()) < 3.0
    # one code hogs everything: the others' usage decays below the threshold and they are re-seeded from the batch
    z2 = torch.full((4, 2, 4, 4), 10.0)
    q.codebook.data[:] = torch.tensor([10.0, 10.0])  # all equal: argmin always picks entry 0
    q.embed_avg.copy_(q.codebook)
    for _ in range(4):
        q(z2 + 0.01 * torch.randn_like(z2))
    assert float(q.cluster_size.min()) >= 0.5 * 0.5  # restarted entries start again at the threshold
    with torch.no_grad():  # EMA, not gradient: the codebook is a buffer
        assert not any(p is q.codebook for p in q.parameters())


def test_config_keys_are_checked():
    with pytest.raises(ConfigError, match="model.codebook_size"):
        Config.from_dict({"model": {"name": "vq-vae", "codebook_size": 0}})
    with pytest.raises(ConfigError, match="model.ema_decay"):
        Config.from_dict({"model": {"name": "vq-vae", "ema_decay": 1.0}})
    cfg = Config.from_dict({"model": {"name": "vq-vae", "hidden": [8, 8, 8]}})
    with pytest.raises(ConfigError, match="model.hidden: 3 stride-2 blocks need H and W divisible by 8"):
        build_model(cfg, (1, 28, 28))
    with pytest.raises(ConfigError, match="model.name: a VQ-VAE needs images"):
        build_model(Config.from_dict({"model": {"name": "vq-vae"}}), (10,))


def test_trains_saves_loads_and_round_trips(tmp_path, idx_dir):
    from aelab import train
    from aelab.cli import main
    from aelab.run import load_run

    cfg = Config.from_dict(
        {
            "data": {"name": "mnist", "path": str(idx_dir)},
            "model": {"name": "vq-vae", "hidden": [8, 16], "code_dim": 4, "codebook_size": 16},
            "train": {"epochs": 2, "batch_size": 64, "loss": "mse", "precision": "fp32"},
        }
    )
    run = train(cfg, tmp_path / "run", log=lambda s: None)
    rows = run.metrics if isinstance(run.metrics, list) else run.metrics()
    assert {"train_perplexity", "train_codes_used", "val_perplexity", "val_codes_used"} <= set(rows[-1])
    s = json.loads((run.path / "summary.json").read_text())
    assert 1.0 <= s["test_perplexity"] <= 16 and 1 <= s["test_codes_used"] <= 16
    again = load_run(run.path)
    x = torch.as_tensor(np.asarray(run.load_data().x_test[:8])).float() / 255
    with torch.no_grad():
        z = again.model.encode(x)
        assert z.shape == (8, 4, 7, 7)
        torch.testing.assert_close(again.model.decode(z), again.model(x))  # codes snap to themselves
        torch.testing.assert_close(again.model(x), run.model.eval()(x))
    assert main(["sample", str(run.path), "-n", "4", "--components", "2", "-o", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (4, 1, 28, 28)
    assert main(["export", str(run.path), "--format", "onnx", "-o", str(tmp_path / "onnx")]) == 0  # onnxruntime agrees
    assert json.loads((tmp_path / "onnx" / "export.json").read_text())["model"] == cfg.model.name
    assert main(["report", str(run.path)]) == 0
    assert {"vq_codebook_usage.png", "vq_reconstructions.png", "vq_single_codes.png"} <= {
        p.name for p in (run.path / "figures").iterdir()
    }
