"""Crash safety: a run killed at any moment and resumed ends exactly where an
uninterrupted run ends (same epochs, bit-identical weights on CPU), SIGINT
saves and says how to resume, and a failed write keeps the previous checkpoint.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from aelab import train
from aelab.cli import main
from aelab.train import Callback
from aelab.train.checkpoint import TrainState, load_checkpoint

AELAB = [sys.executable, "-m", "aelab"]
QUIET = dict(log=lambda s: None)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "model.safetensors")


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"tensor {k} differs"


def _csv_without_seconds(path: Path) -> list[list[str]]:
    rows = [line.split(",") for line in path.read_text().splitlines()]
    drop = rows[0].index("seconds") if "seconds" in rows[0] else None
    return [[v for i, v in enumerate(r) if i != drop] for r in rows]


def _same_history(a: Path, b: Path) -> None:
    assert _csv_without_seconds(a / "metrics.csv") == _csv_without_seconds(b / "metrics.csv")
    assert (a / "batches.csv").read_text() == (b / "batches.csv").read_text()


def _latest_epoch(run_dir: Path) -> int:
    try:
        return json.loads((run_dir / "checkpoint" / "latest.json").read_text())["epoch"]
    except (OSError, ValueError):
        return 0


# Dropout, input noise, a schedule and early-stopping state all draw on or carry state that a resume must restore.
RNG_HEAVY = [
    "model.dropout=0.2",
    "data.noise=[{kind: gaussian, amount: 0.3}]",
    "train.schedule=cosine",
    "train.early_stopping=50",
    "train.threads=1",
]


def test_sigkill_mid_epoch_then_resume_is_bit_identical(tiny_cfg, tmp_path):
    """A real `aelab train` process is killed with SIGKILL halfway through epoch 3 of 4."""
    cfg = tiny_cfg.replace([*RNG_HEAVY, "train.epochs=4", "train.batch_size=8", "data.limit=320"])
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(cfg.to_yaml())
    killed, ref = tmp_path / "killed", tmp_path / "ref"
    env = {**os.environ, "AELAB_NO_PROGRESS": "1"}
    proc = subprocess.Popen(
        [*AELAB, "train", str(cfg_file), "--out", str(killed)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        seen: dict[int, float] = {}
        deadline = time.monotonic() + 120
        while len(seen) < 2 and time.monotonic() < deadline and proc.poll() is None:
            e = _latest_epoch(killed)
            if e and e not in seen:
                seen[e] = time.monotonic()
            time.sleep(0.01)
        assert sorted(seen)[:2] == [1, 2], f"checkpoints seen: {seen}, exit {proc.poll()}"
        epoch_s = seen[2] - seen[1]
        time.sleep(epoch_s / 2)  # halfway through epoch 3
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "summary.json").exists(), "the run finished before it could be killed; make epochs longer"
    at = _latest_epoch(killed)
    assert at in (2, 3)  # 3 when a busy machine stretched the wait past the end of epoch 3
    leftovers = [p.name for p in killed.rglob(".*.tmp")]  # a kill mid-write may leave one; resume must not trip on it

    res = subprocess.run(
        [*AELAB, "train", "--resume", str(killed)], env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr
    assert f"resumed after epoch {at}" in res.stdout

    train(cfg, ref, **QUIET)
    s_killed = json.loads((killed / "summary.json").read_text())
    s_ref = json.loads((ref / "summary.json").read_text())
    assert s_killed["epochs"] == s_ref["epochs"] == 4
    assert s_killed["test_loss"] == s_ref["test_loss"]
    _same_weights(killed, ref)
    _same_history(killed, ref)
    assert len(leftovers) <= 1


class Crash(Exception):
    """Stands in for a power cut: not an AelabError, so nothing catches it."""


class CrashAt(Callback):
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, loop, row):
        if row["epoch"] == self.epoch:
            raise Crash


@pytest.mark.parametrize(
    "overrides",
    [
        RNG_HEAVY,
        ["train.optimizer=sgd", "train.schedule=step", "train.step_size=1", "train.gamma=0.5"],
        ["train.optimizer=rmsprop", "data.noise=[{kind: masking, amount: 0.3}, {kind: salt_pepper, amount: 0.1}]"],
        ["train.checkpoint_every=2", "train.epochs=5", "model.dropout=0.3"],
        # a growing lr makes epoch 2 the best and stops at 5: the best weights (and patience) must
        # travel in the checkpoint for early stopping to end on the right weights after a crash at 3
        [
            "train.lr=0.01",
            "train.schedule=step",
            "train.step_size=1",
            "train.gamma=8",
            "train.early_stopping=3",
            "train.epochs=6",
        ],
        ["model.name=vae-dense", "train.epochs=3"],
    ],
)
def test_crash_then_resume_matches_uninterrupted(tiny_cfg, tmp_path, overrides):
    cfg = tiny_cfg.replace(["train.epochs=4", *overrides])
    ref = train(cfg, tmp_path / "ref", **QUIET)
    with pytest.raises(Crash):
        train(cfg, tmp_path / "crashed", hooks=[CrashAt(3)], **QUIET)
    resumed = train(resume=tmp_path / "crashed", **QUIET)
    assert resumed.summary["epochs"] == ref.summary["epochs"]
    _same_weights(tmp_path / "crashed", tmp_path / "ref")
    _same_history(tmp_path / "crashed", tmp_path / "ref")


def test_resume_of_a_finished_checkpoint_writes_the_missing_files(tiny_cfg, tmp_path):
    """Killed after the last checkpoint but before model.safetensors: resume only finishes the run."""
    ref = train(tiny_cfg, tmp_path / "r", **QUIET)
    for f in ("model.safetensors", "summary.json", "metrics.csv"):
        (tmp_path / "r" / f).unlink()
    again = train(resume=tmp_path / "r", **QUIET)
    assert again.summary["test_loss"] == ref.summary["test_loss"]
    assert len(again.metrics) == 2


def test_resume_without_checkpoint_is_one_line(tiny_cfg, tmp_path, capsys):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.yaml").write_text(tiny_cfg.to_yaml())
    assert main(["train", "--resume", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint to resume from" in err and len(err.strip().splitlines()) == 1


def test_sigint_saves_and_says_how_to_resume(tiny_cfg, tmp_path):
    """Ctrl-C in epoch 2: the epoch is finished and saved, the process exits 130 naming the resume command."""
    cfg = tiny_cfg.replace(["train.epochs=4", "train.batch_size=8", "data.limit=320", "train.threads=1"])
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(cfg.to_yaml())
    run = tmp_path / "r"
    env = {**os.environ, "AELAB_NO_PROGRESS": "1"}
    proc = subprocess.Popen(
        [*AELAB, "train", str(cfg_file), "--out", str(run)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while _latest_epoch(run) < 1 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert f"resume with: aelab train --resume {run}" in last
    saved = _latest_epoch(run)
    assert 2 <= saved < 4  # the epoch running at Ctrl-C was finished and saved
    assert f"stopped by Ctrl-C after epoch {saved}; the checkpoint holds epoch {saved}" in last
    assert "press Ctrl-C again" in err
    assert not (run / "summary.json").exists()
    assert train(resume=run, **QUIET).summary["epochs"] == 4


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_failed_checkpoint_write_keeps_previous(tiny_cfg, tmp_path, monkeypatch, capsys, code):
    """A full disk or a read-only folder at epoch 2: one line, exit 2, epoch 1's checkpoint still loads."""
    from aelab import _io

    real = _io.atomic_write_bytes

    def failing(path, data):
        if "state-00002" in Path(path).name:
            raise OSError(code, os.strerror(code), str(path))
        return real(path, data)

    monkeypatch.setattr(_io, "atomic_write_bytes", failing)
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(tiny_cfg.to_yaml())
    run = tmp_path / "r"
    capsys.readouterr()
    assert main(["train", str(cfg_file), "--out", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and os.strerror(code) in err and "epoch 1" in err
    assert _latest_epoch(run) == 1
    assert not list(run.rglob("*.tmp")) and not (run / "model.safetensors").exists()
    from aelab.models import build_model
    from aelab.train.optim import make_optimizer

    model = build_model(tiny_cfg, (1, 28, 28))
    opt = make_optimizer(model.parameters(), tiny_cfg.train, torch.device("cpu"))
    state = load_checkpoint(run / "checkpoint", model, opt, None, torch.Generator())
    assert isinstance(state, TrainState) and state.epoch == 1
    monkeypatch.setattr(_io, "atomic_write_bytes", real)
    assert main(["train", "--resume", str(run)]) == 0


@pytest.fixture(autouse=True)
def _keep_thread_count():
    """train.threads=1 sets torch's process-wide thread count; give the rest of the suite its threads back."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_checkpoint_keeps_batch_losses_exactly_and_reads_the_older_json_rows(tmp_path):
    """The per-batch rows travel as tensors (float64 losses: the same floats back); a checkpoint written
    when they were JSON still loads."""
    from aelab.train.checkpoint import save_checkpoint

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    rows = [{"epoch": 1, "batch": k + 1, "step": k + 1, "loss": 0.1 + k / 3} for k in range(5)]
    state = TrainState(1, [{"epoch": 1, "train_loss": 0.5}], rows)
    folder = tmp_path / "ck"
    save_checkpoint(folder, model, opt, None, torch.Generator(), state)
    meta_file = folder / json.loads((folder / "latest.json").read_text())["meta"]
    assert "batches" not in json.loads(meta_file.read_text())
    back = load_checkpoint(folder, model, opt, None, torch.Generator())
    assert back.batches == rows and back.history == state.history

    meta = json.loads(meta_file.read_text())  # the older layout: rows in the JSON, no batch tensors
    meta["batches"] = rows[:2]
    meta_file.write_text(json.dumps(meta))
    assert load_checkpoint(folder, model, opt, None, torch.Generator()).batches == rows[:2]


def test_history_writer_appends_each_epoch_and_starts_over_on_a_new_list(tmp_path):
    from aelab._io import write_csv
    from aelab.run import HistoryWriter

    rows: list[dict] = []
    history: list[dict] = []
    w = HistoryWriter(tmp_path)
    for epoch in (1, 2, 3):
        rows.extend({"epoch": epoch, "batch": b, "step": len(rows) + 1, "loss": 1 / (len(rows) + 3)} for b in (1, 2))
        history.append({"epoch": epoch, "train_loss": 0.5})
        w(history, rows)
    got = (tmp_path / "batches.csv").read_text()
    write_csv(
        tmp_path / "whole.csv",
        ["epoch", "batch", "step", "loss"],
        ([r["epoch"], r["batch"], r["step"], r["loss"]] for r in rows),
    )
    assert got == (tmp_path / "whole.csv").read_text() and got.count("\n") == 7
    w(history[:1], rows[:2])  # what a resume hands over: a new list, shorter than what was written
    assert (tmp_path / "batches.csv").read_text().count("\n") == 3
    assert (tmp_path / "metrics.csv").read_text().count("\n") == 2
