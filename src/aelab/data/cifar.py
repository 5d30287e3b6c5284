"""CIFAR-10 readers: the binary version, and the python version through a
restricted unpickler that builds nothing but dicts, lists, bytes and numbers.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from ..errors import DataError

RECORD = 1 + 3 * 32 * 32
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def read_binary_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, 32, 32) uint8 images and (N,) labels from one data_batch_K.bin."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    raw = path.read_bytes()
    if len(raw) == 0 or len(raw) % RECORD:
        raise DataError(
            f"{path}: {len(raw)} bytes is not a whole number of CIFAR-10 records ({RECORD} bytes each); the file is damaged"
        )
    a = np.frombuffer(raw, dtype=np.uint8).reshape(-1, RECORD)
    labels = a[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataError(f"{path}: label {labels.max()} out of range 0-9; not a CIFAR-10 binary batch")
    return a[:, 1:].reshape(-1, 3, 32, 32), labels


class _RestrictedUnpickler(pickle.Unpickler):
    """Allows only the few numpy globals an array needs; any other global (the
    way a crafted pickle runs code) is refused before it is looked up."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            import importlib

            return getattr(importlib.import_module(module), name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a CIFAR batch")


def read_python_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        d = _RestrictedUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise DataError(f"{path}: refused or damaged CIFAR python batch ({e})") from None
    if not isinstance(d, dict):
        raise DataError(f"{path}: expected a dict in a CIFAR python batch, got {type(d).__name__}")
    data, labels = d.get(b"data"), d.get(b"labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: 'data' must be a uint8 array of shape (N, 3072)")
    if (
        not isinstance(labels, list)
        or len(labels) != len(data)
        or not all(isinstance(v, int) and 0 <= v <= 9 for v in labels)
    ):
        raise DataError(f"{path}: 'labels' must be {len(data)} integers in 0-9")
    return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)


def load_cifar10(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Reads from ``root`` (or ``root/cifar-10-batches-bin`` / ``-py``), binary first."""
    for folder in (root, root / "cifar-10-batches-bin"):
        if (folder / "data_batch_1.bin").exists():
            parts = [read_binary_batch(folder / f"data_batch_{i}.bin") for i in range(1, 6)]
            xt, yt = read_binary_batch(folder / "test_batch.bin")
            break
    else:
        for folder in (root, root / "cifar-10-batches-py"):
            if (folder / "data_batch_1").exists():
                parts = [read_python_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
                xt, yt = read_python_batch(folder / "test_batch")
                break
        else:
            raise DataError(f"{root}: no CIFAR-10 batches (data_batch_1.bin or data_batch_1) found")
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return x, y, xt, yt
