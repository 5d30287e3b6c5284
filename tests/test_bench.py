"""aelab bench: runs end to end on tiny data, JSON parses, Keras is skipped cleanly when absent."""

from __future__ import annotations

import json
import math

import pytest
import torch

from aelab.bench import format_table, select_cases
from aelab.bench.timing import summarize_epochs, train_flops_per_sample
from aelab.cli import main
from aelab.errors import ConfigError


def test_bench_tiny_json_and_keras_skipped(idx_dir, capsys, monkeypatch):
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")  # a code path chosen by hand is named in the result
    monkeypatch.delenv("AELAB_KERNELS_MARCH", raising=False)
    rc = main(
        [
            "bench",
            "--cases",
            "tiny",
            "--epochs",
            "2",
            "--limit",
            "200",
            "--set",
            f"data.path={idx_dir}",
            "--vs",
            "keras",
            "--keras-python",
            str(idx_dir / "no-such-python"),
            "--json",
        ]
    )
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["keras"] == {"asked": True, "available": False, "reason": res["keras"]["reason"]}
    assert "no-such-python" in res["keras"]["reason"]
    (case,) = res["cases"]
    a = case["aelab"]
    assert case["case"] == "tiny" and "keras" not in case and "speedup_vs_keras" not in case
    assert a["train_samples"] == 200 and len(a["epoch_seconds"]) == 2
    assert a["seconds_per_epoch"] == a["epoch_seconds"][1] > 0
    assert math.isfinite(a["val_loss"]) and 0 < a["val_loss"] < 1
    assert a["samples_per_second"] == pytest.approx(200 / a["seconds_per_epoch"])
    assert a["peak_rss_mb"] > 50 and res["peak"]["fp32_gflops"] > 0
    from aelab.train.precision import cpu_kind

    assert res["cpu"] == cpu_kind() and res["torch"] == torch.__version__  # every result names its machine
    assert res["environment"]["ATEN_CPU_CAPABILITY"] == "default" and "AELAB_KERNELS_MARCH" not in res["environment"]
    assert res["peak"]["cpu_capability"] == "DEFAULT"  # and the children ran with it
    table = format_table(res)
    assert "matmul peak" in table and "keras: skipped" in table and table.startswith(res["cpu"])
    assert "\nATEN_CPU_CAPABILITY=default\n" in table
    assert any(line.startswith("tiny ") and " aelab " in line for line in table.splitlines())


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--cases", "nope"], "--cases: unknown case 'nope'"),
        (["--epochs", "1"], "--epochs: must be >= 2"),
        (["--cases", "tiny", "--set", "train.precision=fp8"], "train.precision"),
    ],
)
def test_bench_bad_input_is_one_line(argv, needle, capsys):
    assert main(["bench", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_train_flops_of_a_dense_autoencoder_match_the_matmuls():
    """784-16-784: forward 2 matmuls, backward both weight grads and one input grad (the input needs none)."""
    from aelab.config import Config
    from aelab.models import build_model

    cfg = Config.from_dict({"model": {"name": "dense", "code_dim": 16}})
    model = build_model(cfg, (1, 28, 28))
    mac = 784 * 16
    assert train_flops_per_sample(model, torch.rand(8, 1, 28, 28), "bce") == 2 * mac * (2 + 2 + 1)


def test_summarize_epochs_drops_the_warmup():
    s = summarize_epochs([9.0, 1.0, 3.0, 2.0])
    assert s["warmup_seconds"] == 9.0 and s["seconds_per_epoch"] == 2.0
    assert summarize_epochs([4.0])["seconds_per_epoch"] == 4.0


def test_select_cases_default_and_order():
    assert [c.name for c in select_cases(None)] == [
        "seed000-dense784",
        "seed004-dense32",
        "seed004-conv",
        "seed003-relu1000",
    ]
    assert [c.name for c in select_cases("tiny,seed004-conv")] == ["tiny", "seed004-conv"]
    with pytest.raises(ConfigError):
        select_cases(" , ")


def test_keras_runner_tiny(tmp_path):
    """Only where tensorflow/keras are installed (pip install -e '.[bench]')."""
    pytest.importorskip("keras")
    import numpy as np

    from aelab.bench import keras_runner

    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.random((64, 784), dtype=np.float32))
    np.save(tmp_path / "t.npy", rng.random((16, 784), dtype=np.float32))
    spec = {
        "model": "dense",
        "units": [8],
        "activation": "relu",
        "output_activation": "sigmoid",
        "loss": "bce",
        "batch_size": 32,
        "epochs": 2,
        "x_train": str(tmp_path / "x.npy"),
        "x_test": str(tmp_path / "t.npy"),
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    res = keras_runner.main(str(tmp_path / "spec.json"))
    assert len(res["epoch_seconds"]) == 2 and res["parameters"] == 784 * 8 + 8 + 8 * 784 + 784
