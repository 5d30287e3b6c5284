"""Datasets given as NumPy files (.npy, .npz) or CSV tables.

A .npz may hold x_train/y_train/x_test/y_test (or x/y); a single array is
split 90/10 into train and test unless ``test_path`` names a test file.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..errors import DataError


def read_array(path: Path, mmap: bool = False) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """(x_train, y_train, x_test, y_test); the test entries are None when the file has no split."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            # allow_pickle=False: an object array (the way a .npy can carry code) is refused.
            x = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
            return x, None, None, None
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                keys = set(z.files)
                if "x_train" in keys:
                    get = lambda k: z[k] if k in keys else None  # noqa: E731
                    return z["x_train"], get("y_train"), get("x_test"), get("y_test")
                if "x" in keys:
                    return z["x"], (z["y"] if "y" in keys else None), None, None
                if len(keys) == 1:
                    return z[next(iter(keys))], None, None, None
                raise DataError(f"{path}: expected arrays named x_train/x_test (or x, y); found {', '.join(sorted(keys))}")
        if suffix in (".csv", ".txt"):
            x = np.loadtxt(path, delimiter="," if suffix == ".csv" else None, dtype=np.float32, ndmin=2)
            return x, None, None, None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        if "pickle" in str(e) or "allow_pickle" in str(e):  # numpy's own text suggests loading it unsafely
            raise DataError(f"{path}: cannot read as {suffix}: it holds pickled Python objects, which aelab never "
                            "loads (unpickling can run code); save plain numeric arrays") from None
        raise DataError(f"{path}: cannot read as {suffix} ({str(e).splitlines()[0]})") from None
    raise DataError(f"{path}: unsupported file type '{suffix}' (use .npy, .npz or .csv)")


def to_unit_float(x: np.ndarray, where: str, scale: str = "auto", need_unit_range: bool = True) -> np.ndarray:
    """float32 copy of ``x``: uint8 scaled by 1/255, floats checked for NaN/inf and range."""
    if x.dtype == np.uint8:
        return (x.astype(np.float32) / 255.0) if scale != "none" else x.astype(np.float32)
    if x.dtype.kind not in "fiu":
        raise DataError(f"{where}: dtype {x.dtype} is not numeric")
    x = x.astype(np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        i = int(np.argwhere(bad)[0][0])
        raise DataError(f"{where}: holds NaN or inf ({int(bad.sum())} values, first in sample {i}); clean the data first")
    if scale == "minmax":
        lo, hi = float(x.min()), float(x.max())
        return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    if need_unit_range and scale in ("auto", "none") and x.size and (x.min() < 0 or x.max() > 1):
        raise DataError(
            f"{where}: values lie in [{x.min():.4g}, {x.max():.4g}] but a sigmoid/BCE model needs [0, 1]; "
            "set data.scale=minmax (or standard with model.output_activation=identity and train.loss=mse)"
        )
    return x
