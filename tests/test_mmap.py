"""data.mmap: a 2 GB uint8 .npy is mapped, batches are read from disk, and the training process's
peak resident memory stays far below the file's size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from aelab.data.mapped import MappedRows, file_rows

ROWS, WIDTH = 524288, 4096  # 2 GiB of uint8


def test_mapped_rows_read_the_right_rows(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (300, 3, 5, 7), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    m = np.load(tmp_path / "x.npy", mmap_mode="r")
    for view in (m, m[10:250], m[:, None][5:] if m.ndim == 2 else m[5:]):
        rows = MappedRows(view, torch.device("cpu"))
        assert rows.layout is not None and rows.layout[2] == x[0].nbytes
        idx = torch.tensor([17, 3, 3, 199, 0])
        assert np.array_equal(rows[idx].numpy(), np.asarray(view)[idx.numpy()])
    nhwc = m.transpose(0, 2, 3, 1)  # rows not contiguous in this order: read through the mapping instead
    assert file_rows(nhwc) is None
    assert np.array_equal(
        MappedRows(nhwc, torch.device("cpu"))[torch.tensor([4, 1])].numpy(), x.transpose(0, 2, 3, 1)[[4, 1]]
    )


def _write_big(path: Path) -> None:
    """2 GiB of uint8 in 64 MiB chunks, so the test itself never holds the array."""
    from numpy.lib.format import open_memmap

    a = open_memmap(path, mode="w+", dtype=np.uint8, shape=(ROWS, WIDTH))
    rng = np.random.default_rng(0)
    step = 16384
    for i in range(0, ROWS, step):
        a[i : i + step] = rng.integers(0, 256, (step, WIDTH), dtype=np.uint8)
    a.flush()
    del a


@pytest.mark.slow
def test_two_gigabyte_npy_trains_in_bounded_memory(tmp_path):
    big = tmp_path / "big.npy"
    try:
        _write_big(big)
        assert big.stat().st_size > 2 * 1024**3
        cfg = tmp_path / "c.yaml"
        # the whole file is mapped; training reads 65536 random rows of it in batches, and validation
        # and test stream 16384 rows each; loading it instead would need 2 GiB (+8 GiB as float32)
        cfg.write_text(
            f"data: {{name: npy, path: '{big}', mmap: true, limit: 65536, test_limit: 16384}}\n"
            "model: {name: dense, code_dim: 4}\ntrain: {epochs: 1, batch_size: 2048}\n"
        )
        probe = (
            "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
            "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
        )
        res = subprocess.run(
            [
                sys.executable,
                "-c",
                probe,
                sys.executable,
                "-m",
                "aelab",
                "train",
                str(cfg),
                "--out",
                str(tmp_path / "run"),
                "--no-report",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            env={**os.environ, "AELAB_NO_PROGRESS": "1"},
        )
        code, peak_kb = map(int, res.stdout.strip().splitlines()[-1].split())
        assert code == 0, res.stderr[-2000:]
        summary = json.loads((tmp_path / "run" / "summary.json").read_text())
        assert summary["train_size"] == 65536 and summary["test_size"] == 16384
        peak_mb = peak_kb / 1024
        print(f"peak RSS {peak_mb:.0f} MB for a {big.stat().st_size / 2**20:.0f} MB file")
        assert peak_mb < 800, f"peak RSS {peak_mb:.0f} MB"
    finally:
        big.unlink(missing_ok=True)
