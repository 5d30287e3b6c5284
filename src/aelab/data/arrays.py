"""Datasets given as NumPy files (.npy, .npz) or CSV tables.

A .npz may hold x_train/y_train/x_test/y_test (or x/y); a single array is
split 90/10 into train and test unless ``test_path`` names a test file.
"""

from __future__ import annotations

import math
import tokenize
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError


def read_array(
    path: Path, mmap: bool = False
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """(x_train, y_train, x_test, y_test); the test entries are None when the file has no split."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    suffix = path.suffix.lower()
    return _checked(path, _read(path, suffix, mmap))


def _read(path: Path, suffix: str, mmap: bool):
    try:
        if suffix == ".npy":
            _check_npy_size(path)
            # allow_pickle=False: an object array (the way a .npy can carry code) is refused.
            x = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
            if not isinstance(x, np.ndarray):  # np.load goes by the content: this is a zip (.npz) renamed
                x.close()
                raise DataError(f"{path}: holds an .npz archive, not one .npy array; name it .npz")
            return x, None, None, None
        if suffix == ".npz":
            z = np.load(path, allow_pickle=False)
            if isinstance(z, np.ndarray):
                raise DataError(f"{path}: holds one .npy array, not an .npz archive; name it .npy")
            with z:
                keys = set(z.files)
                if "x_train" in keys:
                    get = lambda k: z[k] if k in keys else None  # noqa: E731
                    return z["x_train"], get("y_train"), get("x_test"), get("y_test")
                if "x" in keys:
                    return z["x"], (z["y"] if "y" in keys else None), None, None
                if len(keys) == 1:
                    return z[next(iter(keys))], None, None, None
                raise DataError(
                    f"{path}: expected arrays named x_train/x_test (or x, y); found {', '.join(sorted(keys))}"
                )
        if suffix in (".csv", ".txt"):
            x = np.loadtxt(path, delimiter="," if suffix == ".csv" else None, dtype=np.float32, ndmin=2)
            return x, None, None, None
    except DataError:  # ours, already naming the file (DataError is a ValueError: keep it from the wrapper below)
        raise
    except MemoryError:  # a header (in an .npz member) claiming more than this machine holds
        raise DataError(
            f"{path}: cannot read as {suffix}: its header claims an array larger than memory; the file is damaged"
        ) from None
    except (
        ValueError,
        OSError,
        OverflowError,
        EOFError,
        zipfile.BadZipFile,
        zlib.error,
        SyntaxError,
        tokenize.TokenError,
    ) as e:
        # numpy parses a damaged header with Python's tokenizer: SyntaxError / TokenError, not ValueError
        if "pickle" in str(e) or "allow_pickle" in str(e):  # numpy's own text suggests loading it unsafely
            raise DataError(
                f"{path}: cannot read as {suffix}: it holds pickled Python objects, which aelab never "
                "loads (unpickling can run code); save plain numeric arrays"
            ) from None
        raise DataError(f"{path}: cannot read as {suffix} ({str(e).splitlines()[0]})") from None
    raise DataError(f"{path}: unsupported file type '{suffix}' (use .npy, .npz or .csv)")


def _check_npy_size(path: Path) -> None:
    """Refuses a .npy whose header asks for more bytes than the file holds, before numpy allocates them."""
    try:
        with open(path, "rb") as f:
            fmt = np.lib.format
            read = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(fmt.read_magic(f))
            if read is None:
                return
            shape, _, dtype = read(f, max_header_size=100_000)
            offset = f.tell()
    except Exception:  # noqa: BLE001 - anything wrong in the header: np.load below says what
        return
    if dtype.hasobject:
        return  # np.load refuses it with the pickle message
    if any(not isinstance(d, int) or d < 0 for d in shape):
        raise DataError(
            f"{path}: .npy header says shape {shape}: sizes must be whole numbers >= 0; the file is damaged"
        )
    need = math.prod(shape) * dtype.itemsize
    have = path.stat().st_size - offset
    if need > have:
        raise DataError(
            f"{path}: .npy header says shape {shape} of {dtype} ({need:,} bytes) but the file holds "
            f"{have:,} bytes of data; it is truncated or damaged"
        )


def _checked(path: Path, arrays: tuple) -> tuple:
    """Every array holds samples: at least one dimension, and labels one per sample."""
    x, y, xt, yt = arrays
    for name, a in (("x", x), ("y", y), ("x_test", xt), ("y_test", yt)):
        if a is not None and np.ndim(a) == 0:
            raise DataError(f"{path}: {name} is a single value, not an array of samples")
    for name, a in (("y", y), ("y_test", yt)):
        if a is not None and (a.ndim != 1 or a.dtype.kind not in "iufb"):
            raise DataError(f"{path}: {name} must be one numeric label per sample, got {a.dtype} shaped {a.shape}")
    return x, y, xt, yt


def byte_divisor(scale: str) -> float:
    """What uint8 samples are divided by (in float32) to become floats: 255, or 1 for scale none."""
    return 1.0 if scale == "none" else 255.0


def to_unit_float(x: np.ndarray, where: str, scale: str = "auto", need_unit_range: bool = True) -> np.ndarray:
    """float32 copy of ``x``: uint8 divided by ``byte_divisor(scale)``, floats checked for NaN/inf and range."""
    if x.dtype == np.uint8:
        divisor = byte_divisor(scale)
        if divisor == 1.0:
            return x.astype(np.float32)
        # one pass into one new array: astype then / wrote a float32 copy and then a second one (MNIST's
        # training set: 0.14-1.2 s and 180 MB more peak memory against 0.04 s), with the same values
        return np.divide(x, np.float32(divisor), dtype=np.float32)
    if x.dtype.kind not in "fiu":
        raise DataError(f"{where}: dtype {x.dtype} is not numeric")
    x = x.astype(np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        i = int(np.argwhere(bad)[0][0])
        raise DataError(
            f"{where}: holds NaN or inf ({int(bad.sum())} values, first in sample {i}); clean the data first"
        )
    if scale == "minmax":
        lo, hi = float(x.min()), float(x.max())
        return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    if need_unit_range and scale in ("auto", "none") and x.size and (x.min() < 0 or x.max() > 1):
        raise DataError(
            f"{where}: values lie in [{x.min():.4g}, {x.max():.4g}] but a sigmoid/BCE model needs [0, 1]; "
            "set data.scale=minmax (or standard with model.output_activation=identity and train.loss=mse)"
        )
    return x
