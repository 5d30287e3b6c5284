"""Helpers the sub-commands share: reading input arrays and writing output arrays."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..errors import DataError


def read_input_array(path: Path) -> np.ndarray:
    """An .npy/.npz array, a PNG/JPEG file, or a folder of images."""
    from ..data.arrays import read_array
    from ..data.folder import EXTENSIONS, load_folder

    if path.is_dir():
        x, _, _ = load_folder(path)
        return x
    if path.suffix.lower() in EXTENSIONS:
        from PIL import Image

        if not path.is_file():
            raise DataError(f"{path}: file not found")
        with Image.open(path) as im:
            a = np.asarray(im.convert("L") if im.mode in ("L", "1", "I") else im.convert("RGB"))
        return a[None, None] if a.ndim == 2 else a.transpose(2, 0, 1)[None]
    x, _, _, _ = read_array(path)
    return x


def write_output_array(path: Path, x: np.ndarray, image_shape: tuple[int, ...] | None = None) -> None:
    from .._io import atomic_write_bytes

    if path.suffix.lower() == ".png":
        from ..report.images import grid_png_bytes

        if image_shape is None or len(image_shape) != 3:
            raise DataError(f"{path}: a PNG grid needs image outputs, these are shaped {x.shape[1:]}; use .npy")
        atomic_write_bytes(path, grid_png_bytes(x.reshape(len(x), *image_shape)))
        return
    if path.suffix.lower() != ".npy":
        raise DataError(f"{path}: output must end in .npy (or .png for a grid of images)")
    buf = io.BytesIO()
    np.save(buf, x)
    atomic_write_bytes(path, buf.getvalue())
