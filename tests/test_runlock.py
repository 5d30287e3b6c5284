"""One run folder, several processes: a trainer holds it, a second trainer or a report is told who in one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from aelab import runlock
from aelab.cli import main
from aelab.errors import RunError

AELAB = [sys.executable, "-m", "aelab"]


def _config(tmp_path: Path, idx_dir: Path, epochs: int) -> Path:
    f = tmp_path / f"c{epochs}.yaml"
    f.write_text(
        yaml.safe_dump(
            {
                "data": {"name": "mnist", "path": str(idx_dir), "limit": 200, "test_limit": 50},
                "model": {"name": "dense", "hidden": [], "code_dim": 4},
                "train": {"epochs": epochs, "batch_size": 100, "threads": 1},
            }
        )
    )
    return f


def _wait_for_holder(run: Path, pid: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if runlock.holder(run).get("pid") == pid and (run / "config.yaml").is_file():
            return
        if proc.poll() is not None:
            pytest.fail(f"trainer ended early: {proc.stderr.read()}")
        time.sleep(0.1)
    pytest.fail("the trainer never took the lock")


def _one_line(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    return res.stderr.strip()


def test_second_trainer_and_report_are_refused_while_a_run_trains(tmp_path, idx_dir):
    run = tmp_path / "run"
    env = {**os.environ, "AELAB_NO_PROGRESS": "1"}
    long = subprocess.Popen(
        [*AELAB, "train", str(_config(tmp_path, idx_dir, 100000)), "--out", str(run), "--no-report"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_holder(run, long.pid, long)
        second = subprocess.run(
            [*AELAB, "train", str(_config(tmp_path, idx_dir, 1)), "--out", str(run), "--overwrite", "--no-report"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        line = _one_line(second)
        assert f"in use by aelab train (pid {long.pid} on " in line, line
        assert (run / "config.yaml").is_file() and yaml.safe_load((run / "config.yaml").read_text())["train"][
            "epochs"
        ] == 100000
        report = subprocess.run([*AELAB, "report", str(run)], env=env, capture_output=True, text=True, timeout=300)
        assert f"being written by aelab train (pid {long.pid} on " in _one_line(report)
        assert not (run / "report.html").exists()
        assert long.poll() is None  # neither disturbed the trainer
    finally:
        long.send_signal(signal.SIGKILL)
        long.wait()
    # the OS dropped the lock with the killed process: the folder can be trained again at once
    assert (run / runlock.LOCK_NAME).exists()  # SIGKILL left the file, not the lock
    assert main(["train", str(_config(tmp_path, idx_dir, 1)), "--out", str(run), "--overwrite", "--no-report"]) == 0
    assert not (run / runlock.LOCK_NAME).exists()  # the last holder removes it
    assert json.loads((run / "summary.json").read_text())["epochs"] == 1


def test_trainer_is_refused_while_a_report_reads_the_run(tmp_path, idx_dir):
    run = tmp_path / "run"
    env = {**os.environ, "AELAB_NO_PROGRESS": "1"}
    cfg = _config(tmp_path, idx_dir, 1)
    assert main(["train", str(cfg), "--out", str(run), "--no-report"]) == 0
    before = (run / "model.safetensors").read_bytes()
    with runlock.reading(run):  # what `aelab report RUN` holds while it reads and writes figures
        res = subprocess.run(
            [*AELAB, "train", str(cfg), "--out", str(run), "--overwrite", "--no-report", "--set", "train.seed=5"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert "is reading this run; try again when it has finished" in _one_line(res)
    assert (run / "model.safetensors").read_bytes() == before  # the reader saw the run it started with
    assert not (run / runlock.LOCK_NAME).exists()


def test_locks_are_reentrant_and_a_failed_start_leaves_no_folder(tmp_path):
    run = tmp_path / "new"
    with pytest.raises(ValueError):
        with runlock.writing(run):
            raise ValueError("bad input found after the lock was taken")
    assert not run.exists()  # nothing but the lock was there: the folder went with it
    with runlock.writing(run):
        with runlock.writing(run), runlock.reading(run):  # train() inside `aelab train`, then its report
            assert runlock.holder(run)["pid"] == os.getpid()
    with runlock.reading(run):
        with pytest.raises(RunError, match="reads the run and cannot also write it"):
            with runlock.writing(run):
                pass
    with runlock.reading(tmp_path / "missing"):  # the command's own check names a missing folder
        pass
