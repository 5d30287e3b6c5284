"""A folder of images (PNG/JPEG), resized to one size; sub-folders name classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
    if not files:
        raise DataError(f"{folder}: no images found (looked for {', '.join(sorted(EXTENSIONS))})")
    return files


def load_folder(
    folder: Path, image_size: list[int] | None = None, channels: int | None = None
) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
    """uint8 (N, C, H, W), labels from first-level sub-folder names (or None), class names.

    Without ``image_size`` every image must already have the same size; a
    mixed folder is refused with the two sizes named rather than silently resized.
    """
    from PIL import Image, UnidentifiedImageError

    files = list_images(folder)
    mode = {1: "L", 3: "RGB", None: None}[channels]
    arrays = []
    first_size = None
    for f in files:
        try:
            with Image.open(f) as im:
                im.load()
                m = mode or ("L" if im.mode in ("L", "1", "I;16", "I") else "RGB")
                mode = m
                im = im.convert(m)
                if image_size is not None:
                    im = im.resize((image_size[1], image_size[0]), Image.BILINEAR)
                elif first_size is None:
                    first_size = (im.size, f)
                elif im.size != first_size[0]:
                    raise DataError(
                        f"{f}: {im.size[0]}x{im.size[1]} but {first_size[1].name} is {first_size[0][0]}x{first_size[0][1]}; "
                        "set data.image_size=[H,W] to resize them all"
                    )
                a = np.asarray(im, dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(f"{f}: not a readable image ({e})") from None
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    x = np.stack(arrays)
    rel = [f.relative_to(folder).parts for f in files]
    if all(len(r) >= 2 for r in rel):
        classes = sorted({r[0] for r in rel})
        y = np.array([classes.index(r[0]) for r in rel], dtype=np.int64)
        return x, y, classes
    return x, None, None
