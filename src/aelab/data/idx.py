"""Reader for the IDX format of MNIST and Fashion-MNIST (raw or gzipped).

Checks the magic number, the dimensions against the file size, and that
nothing is left over, so a truncated download fails loudly instead of loading
half a dataset.
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np

from ..errors import DataError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx_bytes(path: str | Path) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(
            f"{path}: cannot read ({e.__class__.__name__}: {e}); the file is damaged, fetch it again"
        ) from None


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise DataError(f"{name}: not an IDX file (wrong magic number {raw[:4].hex() or 'empty'}; expected 0000 08 0n)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{name}: IDX header truncated ({len(raw)} bytes)")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = header + math.prod(dims) * dtype.itemsize  # math.prod: np.prod wraps around int64 on huge dims
    if len(raw) != expected:
        raise DataError(
            f"{name}: IDX file is {len(raw)} bytes but its header {dims} needs {expected}; the file is truncated or damaged"
        )
    try:
        return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    except ValueError:  # e.g. (0, 2**31, 2**31): no bytes needed, yet no array that numpy can shape
        raise DataError(f"{name}: IDX header dims {dims} do not make an array; the file is damaged") from None


def read_idx(path: str | Path) -> np.ndarray:
    return parse_idx(read_idx_bytes(path), str(path))


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Writes uint8 IDX (used by tests and by `aelab data` to cache decompressed copies)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    head = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = head + array.tobytes()
    path = Path(path)
    if path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)


def load_idx_pair(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    x = read_idx(images)
    y = read_idx(labels)
    if x.ndim != 3:
        raise DataError(f"{images}: expected images shaped (N, H, W), got {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"{labels}: holds {len(y)} labels for the {len(x)} images of {images.name}")
    return x, y.astype(np.int64)
