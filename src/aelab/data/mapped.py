"""Training on a memory-mapped .npy larger than memory: rows are read from disk batch by batch.

Touching a mapped file pulls its pages into the process, and the kernel maps 64 KB around
every page fault: gathering 4096 random rows of 4 KB through the mapping puts ~256 MB in the
process's resident memory, and an epoch would end with the whole file there. So training
batches are read with pread() into one batch-sized buffer (the file stays in the OS page
cache, not in the process), and sequential readers (evaluation) drop the mapped pages after
each batch with MADV_DONTNEED. Peak memory is then the model plus a few batches.

One more thing grows with the dataset unless told not to: glibc raises its mmap threshold
each time a large block is freed, after which batch-sized temporaries come from the heap and
fragment it (measured: +19 KB resident per evaluated 4096-value row). ``pin_malloc_threshold``
fixes the threshold so batch-sized blocks always go back to the OS.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os

import numpy as np
import torch

from ..errors import DataError

_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
_pinned = False


def pin_malloc_threshold(nbytes: int = 1 << 20) -> None:
    """Blocks of ``nbytes`` and more are mmapped and returned on free (glibc; a no-op elsewhere)."""
    global _pinned
    if _pinned:
        return
    _pinned = True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, nbytes)
    except (OSError, AttributeError):
        pass


def release_pages(array: np.ndarray) -> None:
    """Drops the pages of ``array``'s file mapping from this process (a no-op for ordinary arrays)."""
    mm = getattr(array, "_mmap", None)  # np.memmap and its views share the mmap object
    if mm is not None:
        pin_malloc_threshold()
    if mm is not None and hasattr(mmap, "MADV_DONTNEED"):
        try:
            mm.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):
            pass


def file_rows(array: np.ndarray) -> tuple[str, int, int] | None:
    """(file, byte offset of row 0, bytes from one row to the next) when each row of ``array`` is one
    contiguous run of bytes in its file, in the row's own C order; else None."""
    root = array
    while isinstance(root.base, np.ndarray):
        root = root.base
    if not isinstance(root, np.memmap) or not root.filename or len(array) == 0:
        return None
    if not array[0].flags.c_contiguous or array.strides[0] < array[0].nbytes:
        return None
    start = root.offset + array.__array_interface__["data"][0] - root.__array_interface__["data"][0]
    return str(root.filename), start, array.strides[0]


class MappedRows:
    """``rows[idx]`` with an index tensor gives those rows as a tensor on ``device``, read from the file."""

    def __init__(self, array: np.memmap, device: torch.device):
        self.array = array
        self.device = device
        self.shape = array.shape
        self.layout = file_rows(array)
        pin_malloc_threshold()
        self._fd = os.open(self.layout[0], os.O_RDONLY) if self.layout else None

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, idx) -> torch.Tensor:
        i = idx.cpu().numpy() if torch.is_tensor(idx) else np.asarray(idx)
        rows = np.empty((len(i), *self.shape[1:]), dtype=self.array.dtype)
        if self.layout is None:  # rows not contiguous in the file (e.g. an NHWC array shown as NCHW)
            order = np.argsort(i, kind="stable")
            rows[order] = self.array[i[order]]
            release_pages(self.array)
        else:
            self._pread(i, rows)
        return torch.from_numpy(rows).to(self.device)

    def _pread(self, i: np.ndarray, rows: np.ndarray) -> None:
        _, start, stride = self.layout
        size = rows[0].nbytes if len(rows) else 0
        flat = memoryview(rows.reshape(-1).view(np.uint8))
        for k in np.argsort(i, kind="stable"):  # in file order: the disk reads ahead
            got = os.preadv(self._fd, [flat[k * size : (k + 1) * size]], start + int(i[k]) * stride)
            if got != size:
                raise DataError(f"{self.layout[0]}: file ended at row {int(i[k])}; it was truncated while training")

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None
