"""DistributedDataParallel under torchrun: 2 CPU processes (gloo) follow 1 process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from aelab import train
from aelab.train.distributed import Single, current, shard_bounds, world_from_env

TORCHRUN = Path(sys.executable).with_name("torchrun")


@pytest.mark.parametrize("n, world", [(45, 2), (7, 3), (2, 4), (64, 2)])
def test_shards_are_disjoint_and_cover_the_batch(n, world):
    seen = []
    for r in range(world):
        lo, hi = shard_bounds(n, r, world)
        seen.extend(range(lo, hi))
        assert hi - lo in (n // world, n // world + 1)
    assert seen == list(range(n))


def test_without_torchrun_it_is_one_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert world_from_env() == 1 and isinstance(current(), Single) and current().is_writer


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed next to python")
def test_two_gloo_ranks_match_one_process(tiny_cfg, tmp_path):
    # batch 45 splits 23/22 on every step: the per-rank loss weights must make DDP's average the global mean.
    # Input noise is on: both ranks must draw it for the whole global batch, as one process does.
    # fp32 pinned: this compares summation orders, and bf16 autocast (precision auto on AVX-512 BF16 CPUs)
    # rounds each half-batch's activations separately, which measured 5.7e-4 apart, far above the order effect.
    cfg = tiny_cfg.replace(
        ["train.batch_size=45", "train.threads=1", "train.precision=fp32", "data.noise=[{kind: gaussian, amount: 0.3}]"]
    )
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(cfg.to_yaml())
    env = {**os.environ, "AELAB_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    res = subprocess.run(
        [
            str(TORCHRUN),
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "aelab",
            "train",
            str(cfg_file),
            "--out",
            str(tmp_path / "ddp"),
            "--no-report",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("run written to") == 1  # rank 1 is quiet
    one = train(cfg, tmp_path / "one", log=lambda s: None)

    ddp_dir = tmp_path / "ddp"
    assert sorted(p.name for p in ddp_dir.iterdir()) == [
        "batches.csv",
        "checkpoint",
        "config.yaml",
        "metrics.csv",
        "model.safetensors",
        "summary.json",
    ]
    a, b = load_file(ddp_dir / "model.safetensors"), load_file(tmp_path / "one" / "model.safetensors")
    # Tolerance: the two runs differ only in float summation order (two half-batch means vs one mean);
    # measured max difference 3e-8 on weights of size ~0.3, so 1e-5 leaves room for other CPUs.
    for k in b:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-5)
    s_ddp = json.loads((ddp_dir / "summary.json").read_text())
    assert s_ddp["epochs"] == 2
    assert s_ddp["test_loss"] == pytest.approx(one.summary["test_loss"], rel=1e-5)
    m_ddp = [r for r in (ddp_dir / "metrics.csv").read_text().splitlines()[1:]]
    for r_ddp, r_one in zip(m_ddp, one.metrics):
        vals = r_ddp.split(",")
        assert float(vals[1]) == pytest.approx(r_one["train_loss"], rel=1e-5)  # reduced over both ranks
        assert float(vals[2]) == pytest.approx(r_one["val_loss"], rel=1e-5)  # each rank scored half the split
    assert len(one.batches) == len((ddp_dir / "batches.csv").read_text().splitlines()) - 1 == 2 * 14


@pytest.fixture(autouse=True)
def _keep_thread_count():
    """train.threads=1 sets torch's process-wide thread count; give the rest of the suite its threads back."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)
