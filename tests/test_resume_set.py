"""`aelab train --resume RUN --set ...`: what a resume may change, what it refuses, and that extending
a run gives the weights of a run trained straight to the longer length (fp32, CPU, same seed)."""

from __future__ import annotations

import pytest
import torch
import yaml
from safetensors.torch import load_file

from aelab import train
from aelab.cli import main

QUIET = dict(log=lambda s: None)


@pytest.fixture(autouse=True)
def _keep_thread_count():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_resume_extends_to_the_weights_of_a_straight_run(tiny_cfg, tmp_path):
    cfg = tiny_cfg.replace(["train.precision=fp32", "train.threads=1", "model.dropout=0.2"])
    straight = train(cfg.replace(["train.epochs=4"]), tmp_path / "straight", **QUIET)
    train(cfg.replace(["train.epochs=2"]), tmp_path / "short", **QUIET)
    assert main(["train", "--resume", str(tmp_path / "short"), "--set", "train.epochs=4", "--no-report"]) == 0
    a, b = load_file(tmp_path / "short" / "model.safetensors"), load_file(tmp_path / "straight" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    saved = yaml.safe_load((tmp_path / "short" / "config.yaml").read_text())
    assert saved["train"]["epochs"] == 4
    assert saved["resumed"] == [{"epoch": 2, "set": {"train.epochs": 4}}]
    assert straight.summary["epochs"] == 4


def test_resume_applies_a_new_learning_rate(tiny_cfg, tmp_path):
    train(tiny_cfg.replace(["train.precision=fp32"]), tmp_path / "r", **QUIET)
    run = train(resume=tmp_path / "r", overrides=["train.epochs=3", "train.lr=0.0005"], **QUIET)
    assert run.metrics[-1]["lr"] == pytest.approx(0.0005) and run.metrics[0]["lr"] == pytest.approx(0.001)
    assert run.config.resumed[-1] == {"epoch": 2, "set": {"train.epochs": 3, "train.lr": 0.0005}}


@pytest.mark.parametrize("key", ["model.code_dim=8", "data.limit=10", "train.batch_size=32"])
def test_resume_refuses_what_the_checkpoint_fixes(tiny_cfg, tmp_path, capsys, key):
    train(tiny_cfg, tmp_path / "r", **QUIET)
    before = (tmp_path / "r" / "config.yaml").read_text()
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "r"), "--set", key]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--set {key.split('=')[0]}: cannot change on a resumed run" in err
    assert (tmp_path / "r" / "config.yaml").read_text() == before


def test_extending_a_cosine_run_follows_the_cosine_of_the_new_length(tiny_cfg, tmp_path):
    """A cosine schedule spans train.epochs: extended on resume, the epochs left take the rates of a run planned
    that long from the start (the loaded schedule would end at rate 0, then climb back up), as does a new lr."""
    cfg = tiny_cfg.replace(["train.precision=fp32", "train.schedule=cosine"])
    straight = train(cfg.replace(["train.epochs=4"]), tmp_path / "straight", **QUIET)
    train(cfg.replace(["train.epochs=2"]), tmp_path / "short", **QUIET)
    run = train(resume=tmp_path / "short", overrides=["train.epochs=4"], **QUIET)
    lrs = [m["lr"] for m in run.metrics]  # each row: the rate after that epoch's schedule step
    assert lrs[1] == pytest.approx(0.0, abs=1e-12)  # the 2-epoch schedule's end, as it was trained
    assert lrs[2:] == pytest.approx([m["lr"] for m in straight.metrics[2:]])
    train(cfg.replace(["train.epochs=2"]), tmp_path / "lr", **QUIET)
    run = train(resume=tmp_path / "lr", overrides=["train.epochs=4", "train.lr=0.002"], **QUIET)
    assert [m["lr"] for m in run.metrics[2:]] == pytest.approx([2 * m["lr"] for m in straight.metrics[2:]])


def test_a_changed_rate_is_applied_once_not_again_at_a_later_resume(tiny_cfg, tmp_path):
    """--set train.lr on a resume with a step schedule, a crash two epochs later, a plain resume: the same
    rates, weights and history as without the crash (the second resume must not reset the rate)."""
    from test_resume import Crash, CrashAt

    cfg = tiny_cfg.replace(["train.precision=fp32", "train.threads=1", "train.schedule=step", "train.step_size=1"])
    for name in ("a", "b"):
        train(cfg.replace(["train.epochs=2"]), tmp_path / name, **QUIET)
    ref = train(resume=tmp_path / "a", overrides=["train.epochs=5", "train.lr=0.002"], **QUIET)
    with pytest.raises(Crash):
        train(resume=tmp_path / "b", overrides=["train.epochs=5", "train.lr=0.002"], hooks=[CrashAt(4)], **QUIET)
    again = train(resume=tmp_path / "b", **QUIET)
    assert [m["lr"] for m in again.metrics] == [m["lr"] for m in ref.metrics]
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
