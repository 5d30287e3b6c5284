"""Metrics that fit the data: BCE and its floor only for targets in [0, 1], PSNR with the data's range,
regression metrics (MSE, RMSE per feature, R^2) on standardised data, every metric named once."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from aelab import Config, train
from aelab.cli import main
from aelab.evaluate.metrics import RegressionStats, format_metrics, in_unit_range, value_range


def test_regression_stats_match_sklearn():
    from sklearn.metrics import r2_score

    rng = np.random.default_rng(0)
    t = rng.normal(size=(50, 4)) * [1, 10, 0.1, 3]
    r = t + rng.normal(size=t.shape) * 0.5
    s = RegressionStats()
    for i in range(0, 50, 7):  # in batches, as evaluation streams them
        s.update(torch.as_tensor(r[i : i + 7]), torch.as_tensor(t[i : i + 7]))
    assert s.r2() == pytest.approx(r2_score(t, r), rel=1e-9)
    np.testing.assert_allclose(s.rmse_per_feature(), np.sqrt(((r - t) ** 2).mean(0)), rtol=1e-12)


def test_value_range_reads_bytes_as_unit_and_floats_as_they_are():
    assert value_range(np.array([[0, 255]], dtype=np.uint8)) == (0.0, 1.0)
    assert value_range(np.array([[-2.0, 3.0], [0.5, 1.0]], dtype=np.float32)) == (-2.0, 3.0)
    assert in_unit_range(0.0, 1.0) and not in_unit_range(-0.1, 1.0)


def test_format_metrics_names_each_metric_once():
    line = format_metrics({"loss": 0.25, "bce": 0.25, "bce_floor": 0.24, "mse": 0.003, "psnr": 25.0}, "bce")
    assert line == "bce 0.2500 (floor 0.2400)  mse 0.0030  psnr 25.00 dB"
    line = format_metrics({"loss": 0.5, "mse": 0.5, "rmse": 0.7071, "r2": 0.5}, "mse")
    assert line == "mse 0.5000  rmse 0.7071  r2 0.5000"


def _last_test_line(lines: list[str]) -> str:
    (line,) = [s for s in lines if s.startswith("test ")]
    return line


def test_image_run_reports_bce_floor_and_psnr_once(tiny_cfg, tmp_path, capsys):
    lines: list[str] = []
    run = train(tiny_cfg, tmp_path / "r", log=lines.append)
    s = run.summary
    for k in ("test_bce", "test_bce_floor", "test_bce_above_floor", "test_mse", "test_psnr"):
        assert k in s
    assert "test_r2" not in s and "test_rmse_per_feature" not in s
    line = _last_test_line(lines)
    words = re.findall(r"[a-z]+", line)
    assert words.count("bce") == 1 and words.count("mse") == 1 and words.count("psnr") == 1, line
    assert f"{s['test_bce']:.4f}" in line and f"{s['test_bce_floor']:.4f}" in line
    # `aelab eval` gives the same keys and values as summary.json
    assert main(["eval", str(run.path)]) == 0
    ev = json.loads(capsys.readouterr().out)
    for k in ("test_bce", "test_bce_floor", "test_mse", "test_psnr"):
        assert ev[k] == pytest.approx(s[k], rel=1e-6)


def _tabular(tmp_path, n=300, d=6, offset=50.0, spread=20.0):
    rng = np.random.default_rng(1)
    z = rng.normal(size=(n, 2))
    x = (z @ rng.normal(size=(2, d)) + 0.1 * rng.normal(size=(n, d))) * spread + offset
    np.save(tmp_path / "tab.npy", x.astype(np.float32))
    return tmp_path / "tab.npy"


def _tabular_cfg(path, epochs: int) -> Config:
    """A linear dense autoencoder with MSE on the standardised table at ``path``."""
    return Config.from_dict(
        {
            "data": {"name": "npy", "path": str(path), "scale": "standard"},
            "model": {
                "name": "dense",
                "hidden": [16],
                "code_dim": 2,
                "output_activation": "identity",
                "code_activation": "identity",
            },
            "train": {"epochs": epochs, "batch_size": 32, "loss": "mse"},
        }
    )


def test_standardised_data_reports_mse_rmse_per_feature_and_r2(tmp_path, capsys):
    path = _tabular(tmp_path)
    cfg = _tabular_cfg(path, epochs=30)
    lines: list[str] = []
    run = train(cfg, tmp_path / "r", log=lines.append)
    s = run.summary
    assert not any(k.startswith(("test_bce", "test_psnr")) for k in s), s
    assert len(s["test_rmse_per_feature"]) == 6
    assert s["test_rmse"] == pytest.approx(np.sqrt(s["test_mse"]))
    # a rank-2 signal through a 2-value code: most of the variance comes back (R^2 near 1, far above 0)
    assert 0.5 < s["test_r2"] <= 1.0
    # RMSE per feature in the data's units: the features spread by about 20, so errors are not in standard units
    x_test = np.load(path)[-30:]
    recon = run.model.reconstruct(torch.as_tensor(run.prepare_input(x_test))).detach().numpy()
    recon = recon * run.scaler["std"] + run.scaler["mean"]
    np.testing.assert_allclose(s["test_rmse_per_feature"], np.sqrt(((recon - x_test) ** 2).mean(0)), rtol=1e-3)
    line = _last_test_line(lines)
    assert line.startswith("test mse ") and "bce" not in line and "psnr" not in line and "r2" in line
    assert main(["eval", str(run.path)]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert "test_bce" not in ev and "test_psnr" not in ev and ev["test_r2"] == pytest.approx(s["test_r2"], rel=1e-6)
    assert main(["report", str(run.path)]) == 0
    shown = re.sub(
        r"<script.*?</script>", "", (run.path / "report.html").read_text(), flags=re.S
    )  # not the en/ja table
    shown = re.sub(r"data:[^\"']+", "", shown)  # the words, not the inlined images
    assert "R²" in shown and "RMSE per feature" in shown and "BCE" not in shown and "PSNR" not in shown


def test_unscaled_real_data_gets_psnr_with_its_own_range(tmp_path):
    path = _tabular(tmp_path, offset=0.0, spread=1.0)
    cfg = Config.from_dict(
        {
            "data": {"name": "npy", "path": str(path), "scale": "none"},
            "model": {"name": "dense", "hidden": [], "code_dim": 2, "output_activation": "identity"},
            "train": {"epochs": 2, "batch_size": 64, "loss": "mse"},
        }
    )
    run = train(cfg, tmp_path / "r", log=lambda s: None)
    s = run.summary
    x_test = np.load(path)[-30:]
    assert s["test_psnr_peak"] == pytest.approx(float(x_test.max() - x_test.min()), rel=1e-6)
    assert "test_bce" not in s and "test_r2" in s


def _csv_columns(run) -> list[str]:
    return (run.path / "metrics.csv").read_text().splitlines()[0].split(",")


def test_metrics_csv_follows_the_same_rule_as_the_summary(tiny_cfg, tmp_path):
    # images in [0, 1]: BCE and PSNR every epoch, as in summary.json
    lines: list[str] = []
    img = train(tiny_cfg, tmp_path / "img", log=lines.append)
    cols = _csv_columns(img)
    assert {"val_loss", "val_bce", "val_mse", "val_psnr"} <= set(cols) and "val_r2" not in cols
    epoch_line = next(s for s in lines if s.startswith("epoch 1/"))
    words = re.findall(r"[a-z]+", epoch_line.split(" val ", 1)[1])
    assert words.count("bce") == 1 and words.count("psnr") == 1, epoch_line
    # standardised data: a regression every epoch too (no BCE, no PSNR; RMSE and R^2 instead)
    path = _tabular(tmp_path)
    cfg = _tabular_cfg(path, epochs=3)
    lines = []
    run = train(cfg, tmp_path / "tab", log=lines.append)
    cols = _csv_columns(run)
    assert not any(c.startswith(("val_bce", "val_psnr")) for c in cols), cols
    assert {"val_loss", "val_mse", "val_rmse", "val_r2"} <= set(cols)
    last = run.metrics[-1]
    assert last["val_rmse"] == pytest.approx(np.sqrt(last["val_mse"]), rel=1e-6)
    assert -10 < last["val_r2"] <= 1.0
    assert not any("bce" in s or "psnr" in s for s in lines if s.startswith("epoch ")), lines


def test_topk_sae_on_standardised_embeddings_gets_regression_metrics(tmp_path):
    """A new family follows the data-fit rule too: the SAE's own metric sets, and no BCE/PSNR on standardised data."""
    rng = np.random.default_rng(0)
    atoms = rng.normal(size=(12, 16)).astype(np.float32)
    codes = rng.random((400, 12)) * (rng.random((400, 12)) < 0.2)
    np.save(tmp_path / "emb.npy", (codes @ atoms * 5 + 3).astype(np.float32))
    cfg = Config.from_dict(
        {
            "data": {"name": "npy", "path": str(tmp_path / "emb.npy"), "scale": "standard"},
            "model": {"name": "topk-sae", "output_activation": "identity", "expansion": 2, "k": 4},
            "train": {"epochs": 2, "batch_size": 64, "loss": "mse"},
        }
    )
    run = train(cfg, tmp_path / "sae", log=lambda s: None)
    s = run.summary
    assert not any(k.startswith(("test_bce", "test_psnr")) for k in s), s
    assert {"test_rmse", "test_r2", "test_l0", "test_fvu"} <= set(s) and len(s["test_rmse_per_feature"]) == 16
    cols = _csv_columns(run)
    assert not any(c.startswith(("val_bce", "val_psnr")) for c in cols), cols
    assert {"val_rmse", "val_r2", "val_l0", "val_fvu"} <= set(cols)
