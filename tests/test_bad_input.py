"""Bad input through the real CLI: one line on stderr, exit code 2, no traceback, no partial output.

(Wrong encode/decode shapes, a code size mismatch, --set typos and `eval` of a non-run are in
test_cli.py; the parsers themselves in test_data.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aelab.cli import main
from aelab.data.idx import write_idx
from conftest import make_blobs


def _run(argv, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err.strip()


def _one_line(code: int, err: str, match: str) -> None:
    assert code == 2, err
    assert match in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err


def _cfg(tmp_path: Path, data: str, extra: str = "") -> Path:
    f = tmp_path / "c.yaml"
    f.write_text(f"data: {data}\nmodel: {{name: dense, code_dim: 4}}\ntrain: {{epochs: 1{extra}}}\n")
    return f


def _train_fails(tmp_path, capsys, cfg: Path, match: str, *extra) -> str:
    out = tmp_path / "run"
    code, err = _run(["train", cfg, "--out", out, "--no-report", *extra], capsys)
    _one_line(code, err, match)
    assert not out.exists(), "a failed start must not leave a run folder"
    return err


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda raw: raw[:-100], "the file is truncated or damaged"),
        (lambda raw: b"\x12\x34" + raw[2:], "wrong magic number"),
        (lambda raw: raw[:6], "IDX header truncated"),
    ],
)
def test_damaged_idx(idx_dir, tmp_path, capsys, damage, match):
    f = idx_dir / "train-images-idx3-ubyte"
    raw = __import__("gzip").decompress((idx_dir / "train-images-idx3-ubyte.gz").read_bytes())
    (idx_dir / "train-images-idx3-ubyte.gz").unlink()
    f.write_bytes(damage(raw))
    _train_fails(tmp_path, capsys, _cfg(tmp_path, f"{{name: mnist, path: '{idx_dir}'}}"), match)


def test_images_of_mixed_sizes_and_empty_folder(tmp_path, capsys):
    from PIL import Image

    d = tmp_path / "imgs"
    d.mkdir()
    _train_fails(tmp_path, capsys, _cfg(tmp_path, f"{{name: folder, path: '{d}'}}"), "no images found")
    for i in range(4):
        Image.fromarray(np.full((12, 12), 50 * i, np.uint8)).save(d / f"{i}.png")
    Image.fromarray(np.zeros((9, 7), np.uint8)).save(d / "odd.png")
    _train_fails(tmp_path, capsys, _cfg(tmp_path, f"{{name: folder, path: '{d}'}}"), "set data.image_size=[H,W]")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_in_npy(tmp_path, capsys, bad):
    x = np.random.default_rng(0).random((30, 6)).astype(np.float32)
    x[7, 2] = bad
    np.save(tmp_path / "x.npy", x)
    _train_fails(tmp_path, capsys, _cfg(tmp_path, f"{{name: npy, path: '{tmp_path / 'x.npy'}'}}"), "holds NaN or inf")


def test_values_outside_unit_range_offer_scale(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(30, 6)).astype(np.float32))
    cfg = _cfg(tmp_path, f"{{name: npy, path: '{tmp_path / 'x.npy'}'}}")
    err = _train_fails(tmp_path, capsys, cfg, "a sigmoid/BCE model needs [0, 1]")
    assert "data.scale=minmax" in err
    code, _ = _run(["train", cfg, "--out", tmp_path / "ok", "--no-report", "--set", "data.scale=minmax"], capsys)
    assert code == 0


def test_unknown_key_in_a_config_file(tmp_path, capsys):
    f = tmp_path / "c.yaml"
    f.write_text("model: {name: dense}\ntrain: {epoch: 3}\n")
    _train_fails(tmp_path, capsys, f, "unknown config key 'train.epoch'; did you mean 'train.epochs'?")


def test_not_a_run_folder(tmp_path, capsys):
    (tmp_path / "x.npy").write_bytes(b"")
    for argv in (
        ["train", "--resume", tmp_path],
        ["encode", tmp_path, tmp_path / "x.npy", "-o", tmp_path / "z.npy"],
        ["decode", tmp_path / "missing", tmp_path / "x.npy", "-o", tmp_path / "z.npy"],
    ):
        code, err = _run(argv, capsys)
        _one_line(code, err, "not an aelab run" if "missing" not in str(argv[1]) else "no such run directory")
    assert not (tmp_path / "z.npy").exists()


def test_empty_dataset_is_refused(tmp_path, capsys):
    np.save(tmp_path / "empty.npy", np.zeros((0, 6), np.float32))
    _train_fails(
        tmp_path, capsys, _cfg(tmp_path, f"{{name: npy, path: '{tmp_path / 'empty.npy'}'}}"), "need at least 2 samples"
    )
    np.save(tmp_path / "tr.npy", np.zeros((0, 6), np.float32))
    np.save(tmp_path / "te.npy", np.zeros((4, 6), np.float32))
    _train_fails(
        tmp_path,
        capsys,
        _cfg(tmp_path, f"{{name: npy, path: '{tmp_path / 'tr.npy'}', test_path: '{tmp_path / 'te.npy'}'}}"),
        "the training split is empty",
    )


def test_dataset_smaller_than_one_batch_trains_one_partial_batch(tmp_path, capsys):
    """Decision (docs/RELIABILITY.md): as in Keras, a dataset smaller than train.batch_size is one batch per epoch."""
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((11, 6)).astype(np.float32))
    cfg = _cfg(tmp_path, f"{{name: npy, path: '{tmp_path / 'x.npy'}'}}", ", batch_size: 128, epochs: 2")
    code, err = _run(["train", cfg, "--out", tmp_path / "run", "--no-report"], capsys)
    assert code == 0, err
    assert (tmp_path / "run" / "batches.csv").read_text().count("\n") == 1 + 2  # header + one batch per epoch


MSE_MLP = ["--set", "model.output_activation=identity", "--set", "model.hidden=[64]", "--set", "model.code_dim=16"]


def test_nan_loss_names_epoch_and_batch(idx_dir, tmp_path, capsys):
    # MSE on an identity output overflows to inf within a few steps (BCE on logits with ReLUs stays
    # finite at lr=1e6: the units die and the loss plateaus near 90, see docs/RELIABILITY.md)
    cfg = _cfg(tmp_path, f"{{name: mnist, path: '{idx_dir}'}}", ", optimizer: sgd, loss: mse")
    code, err = _run(
        ["train", cfg, "--out", tmp_path / "run", "--no-report", "--set", "train.lr=1e6", *MSE_MLP], capsys
    )
    _one_line(code, err, "at epoch 1, batch ")
    assert "loss became" in err and "no checkpoint was written" in err and "train.lr" in err
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_nan_loss_later_keeps_the_last_good_checkpoint(idx_dir, tmp_path, capsys):
    # the lr grows 1e9-fold after epoch 1: epoch 1 is fine and saved, epoch 2 diverges
    cfg = _cfg(
        tmp_path,
        f"{{name: mnist, path: '{idx_dir}'}}",
        ", epochs: 3, optimizer: sgd, loss: mse, lr: 0.01, schedule: step, step_size: 1, gamma: 1e9",
    )
    code, err = _run(["train", cfg, "--out", tmp_path / "run", "--no-report", *MSE_MLP], capsys)
    _one_line(code, err, "at epoch 2, batch ")
    assert "the checkpoint of epoch 1 is kept" in err
    run = tmp_path / "run"
    assert json.loads((run / "checkpoint" / "latest.json").read_text())["epoch"] == 1
    assert not (run / "model.safetensors").exists() and not (run / "summary.json").exists()
    assert (run / "metrics.csv").read_text().count("\n") == 2  # header + the good epoch


def test_subprocess_prints_no_traceback(tmp_path):
    """The real console script: stderr holds exactly one line for a damaged IDX file."""
    d = tmp_path / "idx"
    d.mkdir()
    x, y = make_blobs(20)
    write_idx(d / "train-images-idx3-ubyte", x)
    (d / "train-images-idx3-ubyte").write_bytes((d / "train-images-idx3-ubyte").read_bytes()[:-5])
    for f in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        write_idx(d / f, y)
    write_idx(d / "t10k-images-idx3-ubyte", x)
    cfg = _cfg(tmp_path, f"{{name: mnist, path: '{d}'}}")
    res = subprocess.run(
        [sys.executable, "-m", "aelab", "train", str(cfg), "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "AELAB_NO_PROGRESS": "1"},
    )
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"aelab train: error: {d / 'train-images-idx3-ubyte'}: IDX file is 15691 bytes but its header (20, 28, 28) "
        "needs 15696; the file is truncated or damaged"
    ]
    assert not (tmp_path / "run").exists()
