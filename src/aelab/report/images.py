"""Image grids as PNG bytes (PIL only, no matplotlib): for `aelab decode -o x.png` and reports."""

from __future__ import annotations

import io

import numpy as np


def to_uint8_images(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) floats in [0, 1] -> (N, H, W, C) uint8; values outside are clipped."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 3:
        x = x[:, None]
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)


def grid(x: np.ndarray, ncols: int | None = None, pad: int = 2, pad_value: int = 255) -> np.ndarray:
    """Tiles (N, C, H, W) images into one (rows*H, cols*W, C) uint8 array."""
    imgs = to_uint8_images(x)
    n, h, w, c = imgs.shape
    ncols = ncols or min(n, 10)
    nrows = -(-n // ncols)
    out = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), pad_value, dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, ncols)
        out[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + k * (w + pad) : pad + k * (w + pad) + w] = imgs[i]
    return out


def png_bytes(img: np.ndarray) -> bytes:
    from PIL import Image

    img = img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def grid_png_bytes(x: np.ndarray, ncols: int | None = None) -> bytes:
    return png_bytes(grid(x, ncols))
