"""aelab probe: logistic regression on codes vs raw pixels and PCA; probe.json in the run directory."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aelab import Config, train
from aelab.cli import main
from aelab.evaluate.probe import center_scale, probe_accuracy


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # lbfgs on a few hundred rows: thread hand-offs cost more than they save
        yield


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A dense 784-64-8 run, 3 epochs on the synthetic blobs (labels = square positions)."""
    from conftest import write_idx_dataset

    root = tmp_path_factory.mktemp("probe")
    d = write_idx_dataset(root / "idx", 400, 150)
    cfg = Config.from_dict(
        {
            "data": {"name": "mnist", "path": str(d)},
            "model": {"name": "dense", "hidden": [64], "code_dim": 8},
            "train": {"epochs": 3, "batch_size": 32},
        }
    )
    return train(cfg, root / "run", log=lambda _m: None).path


def test_probe_writes_json_and_prints_table(run_dir, capsys):
    assert main(["probe", str(run_dir), "--limit", "300", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "autoencoder code" in out and "raw pixels" in out and "PCA" in out
    res = json.loads((run_dir / "probe.json").read_text())
    assert res["code_dim"] == 8 and res["pca_components"] == 8 and res["pixels_dim"] == 784
    assert res["train_size"] == 300 and res["test_size"] == 150
    for k in ("probe_accuracy", "pixels_accuracy", "pca_accuracy"):
        assert 0.0 <= res[k] <= 1.0
    # the blobs' label is the square's position: pixels separate them almost perfectly, far above chance (0.1)
    assert res["pixels_accuracy"] > 0.9
    assert res["probe_accuracy"] > 0.3
    assert "test_bce" in res and res["pca_test_mse"] > 0  # reconstruction quality, to read next to the accuracies


def test_probe_accuracy_sees_signal_and_its_absence():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    informative = rng.normal(size=(300, 5)) + 3 * np.eye(3, 5)[y]
    acc, _ = probe_accuracy(informative[:200], y[:200], informative[200:], y[200:])
    assert acc > 0.9
    noise = rng.normal(size=(300, 5))
    acc, _ = probe_accuracy(noise[:200], y[:200], noise[200:], y[200:])
    assert acc < 0.6


def test_center_scale_keeps_relative_variances():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 3)) * np.array([10.0, 1.0, 0.1]) + 5
    a, b = center_scale(x, x[:10])
    np.testing.assert_allclose(a.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(a.std(), 1, rtol=1e-5)
    sd = a.std(axis=0)
    assert sd[0] / sd[2] == pytest.approx(100, rel=0.1)  # not whitened
    np.testing.assert_allclose(b, a[:10], atol=1e-6)


def test_probe_user_errors(run_dir, tmp_path, capsys):
    assert main(["probe", str(tmp_path / "missing")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    assert main(["probe", str(run_dir), "--limit", "1"]) == 2
    assert "--limit: must be >= 2" in capsys.readouterr().err
    assert main(["probe", str(run_dir), "--threads", "0"]) == 2
    assert "--threads" in capsys.readouterr().err


def test_probe_needs_labels(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.random((60, 12), dtype=np.float32))
    cfg = Config.from_dict(
        {
            "data": {"name": "npy", "path": str(tmp_path / "x.npy")},
            "model": {"name": "dense", "code_dim": 2},
            "train": {"epochs": 1},
        }
    )
    run = train(cfg, tmp_path / "run", log=lambda _m: None)
    assert main(["probe", str(run.path)]) == 2
    err = capsys.readouterr().err
    assert "no labels" in err and err.count("\n") == 1
    assert not (run.path / "probe.json").exists()
