"""Shared fixtures: tiny synthetic datasets written in the real file formats."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("AELAB_NO_PROGRESS", "1")


def make_blobs(n: int, seed: int = 0, size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (n, size, size) of a bright square whose position depends on the label."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = np.zeros((n, size, size), dtype=np.uint8)
    for i, lab in enumerate(y):
        r, c = 2 + (lab // 5) * 12 + rng.integers(0, 3), 2 + (lab % 5) * 5 + rng.integers(0, 2)
        x[i, r: r + 8, c: c + 4] = 200 + rng.integers(0, 55)
    return x, y.astype(np.uint8)


@pytest.fixture
def idx_dir(tmp_path: Path) -> Path:
    """A folder with the four MNIST-style IDX files (gzipped), 600 train / 100 test."""
    from aelab.data.idx import write_idx

    x, y = make_blobs(600, 0)
    xt, yt = make_blobs(100, 1)
    d = tmp_path / "idx"
    d.mkdir()
    write_idx(d / "train-images-idx3-ubyte.gz", x)
    write_idx(d / "train-labels-idx1-ubyte.gz", y)
    write_idx(d / "t10k-images-idx3-ubyte.gz", xt)
    write_idx(d / "t10k-labels-idx1-ubyte.gz", yt)
    return d


@pytest.fixture
def tiny_cfg(idx_dir: Path):
    """A dense config on the synthetic IDX data, one fast epoch."""
    from aelab import Config

    return Config.from_dict({
        "data": {"name": "mnist", "path": str(idx_dir)},
        "model": {"name": "dense", "hidden": [64], "code_dim": 16},
        "train": {"epochs": 2, "batch_size": 64},
    })


def has_real(name: str) -> bool:
    from aelab.data.fetch import locate

    return locate(name) is not None


needs_fashion = pytest.mark.skipif(not has_real("fashion-mnist"), reason="Fashion-MNIST not installed (make data)")
needs_mnist = pytest.mark.skipif(not has_real("mnist"), reason="MNIST not installed (make data)")
