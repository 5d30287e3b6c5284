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


def write_idx_dataset(d: Path, n_train: int, n_test: int) -> Path:
    """The four MNIST-style IDX files (gzipped) of synthetic blobs in folder ``d``."""
    from aelab.data.idx import write_idx

    d.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        x, y = make_blobs(n, seed)
        write_idx(d / f"{prefix}-images-idx3-ubyte.gz", x)
        write_idx(d / f"{prefix}-labels-idx1-ubyte.gz", y)
    return d


@pytest.fixture
def idx_dir(tmp_path: Path) -> Path:
    """A folder with the four MNIST-style IDX files (gzipped), 600 train / 100 test."""
    return write_idx_dataset(tmp_path / "idx", 600, 100)


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
