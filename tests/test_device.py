"""train.device: auto by default (CUDA when there is one, else the CPU), said at the start of every run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from aelab import Config, train
from aelab.cli import main
from aelab.errors import TrainingError
from aelab.train.loop import resolve_device
from aelab.train.precision import resolve_precision


def test_auto_is_the_default_and_follows_cuda(monkeypatch):
    assert Config().train.device == "auto"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(TrainingError, match="no CUDA device is available; use train.device=auto or cpu"):
        resolve_device("cuda")


def test_cuda_asked_without_one_is_refused_before_anything_is_written(tiny_cfg, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(tiny_cfg.replace(["train.device=cuda"]).to_dict()))
    assert main(["train", str(f), "--out", str(tmp_path / "r"), "--no-report"]) == 2
    assert "no CUDA device is available" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_run_says_its_device_first_and_auto_on_cpu_changes_nothing(tiny_cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    lines: list[str] = []
    auto = train(tiny_cfg, tmp_path / "auto", log=lines.append)
    prec = resolve_precision("auto", torch.device("cpu"))
    device_lines = [s for s in lines if s.startswith("device ")]
    assert device_lines == [f"device cpu ({auto.summary['cpu']}), precision {prec}"]
    assert lines.index(device_lines[0]) < min(i for i, s in enumerate(lines) if s.startswith("epoch "))
    assert auto.summary["device"] == "cpu" and auto.summary["precision"] == prec
    cpu = train(tiny_cfg.replace(["train.device=cpu"]), tmp_path / "cpu", log=lambda s: None)
    for k in ("test_loss", "test_bce", "test_mse", "test_psnr"):  # the same run, bit for bit
        assert auto.summary[k] == cpu.summary[k]
    for a, b in zip(auto.model.state_dict().values(), cpu.model.state_dict().values()):
        assert torch.equal(a, b)


def test_the_cli_prints_the_device_line(tiny_cfg, tmp_path, capsys):
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(tiny_cfg.replace(["train.epochs=1"]).to_dict()))
    assert main(["train", str(f), "--out", str(tmp_path / "r"), "--no-report"]) == 0
    out = capsys.readouterr().out
    want = "cuda" if torch.cuda.is_available() else "cpu ("
    assert f"\ndevice {want}" in out and "precision " in out


def test_a_bad_aelab_precision_is_refused_before_anything_is_written(tiny_cfg, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AELAB_PRECISION", "fp16")
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(tiny_cfg.to_dict()))
    assert main(["train", str(f), "--out", str(tmp_path / "r"), "--no-report"]) == 2
    assert capsys.readouterr().err == (
        "aelab train: error: AELAB_PRECISION: must be fp32 or bf16-mixed (what "
        "train.precision auto resolves to), got 'fp16'\n"
    )
    assert not (tmp_path / "r").exists()
    monkeypatch.setenv("AELAB_PRECISION", "fp32")  # decides what auto means, whatever the CPU
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("bf16-mixed", torch.device("cpu")) == "bf16-mixed"  # an explicit setting wins


def test_training_leaves_the_callers_denormal_setting_as_it_found_it(tiny_cfg, tmp_path):
    """Training flushes denormals (fast CPU matmuls) and restores the caller's setting when it ends."""
    tiny = np.float32(1e-40)  # a denormal float32

    def survives() -> bool:  # numpy and torch both read the thread's flush/denormals-are-zero bits
        return (
            float(torch.tensor([1e-40], dtype=torch.float64).float().item()) != 0.0
            and float(tiny * np.float32(1)) != 0.0
        )

    torch.set_flush_denormal(False)
    assert survives()
    train(tiny_cfg.replace(["train.epochs=1"]), tmp_path / "a", log=lambda s: None)
    assert survives()  # after an in-process aelab.train() the caller's tiny floats are still there
    if torch.set_flush_denormal(True):  # a caller that flushes keeps flushing (where the CPU can)
        try:
            train(tiny_cfg.replace(["train.epochs=1"]), tmp_path / "b", log=lambda s: None)
            assert not survives()
        finally:
            torch.set_flush_denormal(False)
    # an error during training restores it as well
    from aelab.train import Callback

    class Boom(Callback):
        def on_epoch_end(self, loop, row):
            assert not survives()  # flushing is on while training runs
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        train(tiny_cfg.replace(["train.epochs=1"]), tmp_path / "c", log=lambda s: None, callbacks=[Boom()])
    assert survives()
