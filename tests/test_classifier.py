"""The classifier autoencoder (seed 002): training, accuracy, tap depth, refusals, CIFAR shapes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from aelab import Config
from aelab.errors import ConfigError, DataError
from aelab.models import build_model, list_models
from aelab.recipes import recipe_path

TINY = {
    "name": "classifier-ae",
    "channels": [4, 8],
    "convs_per_block": [1, 2],
    "dropout": [0.0, 0.1],
    "hidden": [16],
    "batch_norm": True,
    "head_dropout": 0.1,
    "probe_taps": [2],
}


def _cfg(idx_dir: Path, **model) -> Config:
    return Config.from_dict(
        {
            "data": {"name": "mnist", "path": str(idx_dir)},
            "model": {**TINY, **model},
            # one thread: on a busy 2-core machine, OpenMP workers waiting on each other made this test 10x slower
            "train": {"epochs": 3, "batch_size": 32, "lr": 0.01, "loss": "mse", "threads": 1},
        }
    )


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """train.threads sets a process-wide torch setting; give the other tests theirs back."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_registered():
    assert "classifier-ae" in list_models()


def test_trains_and_reports_accuracy_above_chance(idx_dir, tmp_path):
    from aelab import train

    run = train(_cfg(idx_dir), tmp_path / "run", log=lambda s: None)
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    # ten equally likely classes: chance is 0.1; the blobs sit at a label-dependent place
    assert s["test_accuracy"] > 0.3
    assert s["code_shape"] == [4, 14, 14]
    assert np.isfinite(s["test_mse_tap2"]) and np.isfinite(s["test_mse"])
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0].split(",")
    for col in ("val_accuracy", "train_ce", "train_recon", "train_recon_tap2"):
        assert col in header
    rows = run.metrics
    assert len(rows) == 3
    assert float(rows[-1]["val_accuracy"]) == pytest.approx(s["test_accuracy"])  # validation = test split here


def test_tap_depth_changes_the_code_shape():
    shapes = {}
    for tap in (1, 2, 3):
        cfg = Config.from_dict(
            {
                "model": {
                    **TINY,
                    "channels": [4, 8, 12],
                    "convs_per_block": 1,
                    "dropout": 0.0,
                    "tap": tap,
                    "probe_taps": [],
                }
            }
        )
        m = build_model(cfg, (1, 28, 28))
        shapes[tap] = m.code_shape
        x = torch.rand(2, 1, 28, 28)
        assert m.decode_logits(m.encode(x)).shape == x.shape
    assert shapes == {1: (4, 14, 14), 2: (8, 7, 7), 3: (12, 4, 4)}


def test_probe_heads_do_not_train_the_classifier():
    torch.manual_seed(0)
    cfg = Config.from_dict({"model": {**TINY, "recon_weight": 0.0}})
    m = build_model(cfg, (1, 28, 28))
    x, y = torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))
    out = m.compute_loss(x, x, y, "mse")
    assert set(out.parts) == {"ce", "recon", "recon_tap2"}
    out.parts["recon_tap2"].backward()
    assert all(p.grad is None for p in m.blocks.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.probes.parameters())


def test_unlabelled_data_is_refused_before_anything_is_written(tmp_path):
    from aelab import train

    np.save(tmp_path / "x.npy", np.random.default_rng(0).integers(0, 255, (40, 1, 28, 28), dtype=np.uint8))
    cfg = Config.from_dict(
        {"data": {"name": "npy", "path": str(tmp_path / "x.npy")}, "model": TINY, "train": {"epochs": 1, "loss": "mse"}}
    )
    with pytest.raises(DataError, match="needs class labels"):
        train(cfg, tmp_path / "run", log=lambda s: None)
    assert not (tmp_path / "run").exists()


def test_unlabelled_data_cli_one_line_exit_2(tmp_path, capsys):
    from aelab.cli import main

    np.save(tmp_path / "x.npy", np.random.default_rng(0).integers(0, 255, (40, 1, 28, 28), dtype=np.uint8))
    rc = main(
        [
            "train",
            str(recipe_path("seed002-fashion")),
            "--set",
            f"data.path={tmp_path / 'x.npy'}",
            "--set",
            "data.name=npy",
            "--out",
            str(tmp_path / "run"),
            "--no-report",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and "needs class labels" in err


def test_too_few_classes_is_a_config_error(idx_dir, tmp_path):
    from aelab import train

    with pytest.raises(ConfigError, match="model.num_classes"):
        train(_cfg(idx_dir, num_classes=5), tmp_path / "run", log=lambda s: None)


@pytest.mark.parametrize(
    "model, match",
    [
        ({"tap": 3}, "model.tap"),
        ({"probe_taps": [1]}, "model.probe_taps"),
        ({"convs_per_block": [1, 1, 1]}, "model.convs_per_block"),
        ({"convs_per_block": 1, "dropout": 0.3}, "model.dropout"),
        ({"channels": [4, 4, 4, 4, 4, 4]}, "model.channels"),
    ],
)
def test_bad_shapes_name_the_key(model, match):
    cfg = Config.from_dict({"model": {**TINY, **model}})
    with pytest.raises(ConfigError, match=match):
        build_model(cfg, (1, 28, 28))


def test_flat_input_is_refused():
    with pytest.raises(ConfigError, match="image data"):
        build_model(Config.from_dict({"model": TINY}), (784,))


def test_cifar_recipe_model_matches_the_seed_table():
    """The seed's Keras summary lists 14,993,677 trainable parameters (its total adds BN running stats)."""
    cfg = Config.from_yaml(recipe_path("seed002-cifar10"), ["model.probe_taps=[]"])
    m = build_model(cfg, (3, 32, 32))
    assert sum(p.numel() for p in m.parameters()) == 14_993_677
    assert m.code_shape == (64, 16, 16)
    x, y = torch.rand(2, 3, 32, 32), torch.tensor([3, 7])
    out = m.compute_loss(x, x, y, "mse")
    out.total.backward()
    assert m(x).shape == x.shape and m.reconstruct(x).shape == x.shape
    m.eval()
    assert m.classify(x).shape == (2, 10)


def test_cifar10_recipe_without_data_says_no_local_copy(tmp_path, monkeypatch):
    from aelab import train

    monkeypatch.setenv("AELAB_DATA", str(tmp_path / "empty"))
    cfg = Config.from_yaml(recipe_path("seed002-cifar10"))
    with pytest.raises(DataError, match="no local copy"):
        train(cfg, tmp_path / "run", log=lambda s: None)
    assert not (tmp_path / "run").exists()


def test_report_figures(idx_dir):
    from aelab.data import load_data

    cfg = _cfg(idx_dir)
    splits = load_data(cfg.data)
    m = build_model(cfg, splits.sample_shape)
    from aelab.report.model_figures import model_figures

    figs = model_figures(m, splits)
    assert [f[0] for f in figs] == ["classifier_taps", "classifier_accuracy"]
    assert all(f[1].axes and f[2] for f in figs)
    assert "block 1" in figs[0][2] and "block 2" in figs[0][2]
