"""Datasets: every source ends as float32 arrays, whole in memory, split in train and test.

Images are shaped (N, C, H, W); tabular data (N, D). Labels are int64 where
the source has them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import DATASETS as DATASET_NAMES
from ..config import DataConfig
from ..errors import DataError
from . import fetch as _fetch
from .arrays import byte_divisor, read_array
from .cifar import CLASSES as CIFAR_CLASSES
from .cifar import load_cifar10
from .folder import load_folder
from .idx import load_idx_pair
from .preprocess import Preprocessor

FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


@dataclass
class Splits:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray | None
    classes: list[str] | None = None
    scaler: dict[str, np.ndarray] | None = None  # mean/std when data.scale=standard
    x_val: np.ndarray | None = None  # a held-out part of train when data.val_fraction > 0
    y_val: np.ndarray | None = None
    extra: dict = field(default_factory=dict)
    # x_train as the uint8 it was scaled from and the divisor: x_train == bytes.astype(float32) / divisor,
    # exactly; a training loop gathers a quarter of the bytes from it (train/native.py gather_bytes)
    train_bytes: tuple[np.ndarray, float] | None = None

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def validation(self) -> tuple[np.ndarray, np.ndarray | None]:
        """What the per-epoch validation loss is computed on (the test split unless val_fraction > 0)."""
        return (self.x_val, self.y_val) if self.x_val is not None else (self.x_test, self.y_test)


Raw = tuple[np.ndarray, "np.ndarray | None", np.ndarray, "np.ndarray | None", "list[str] | None"]


def _idx(name: str, classes: list[str]) -> Callable[[DataConfig], Raw]:
    def load(cfg: DataConfig) -> Raw:
        root = Path(cfg.path) if cfg.path else (_fetch.locate(name) or _missing(name))
        files = {}
        for f in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        ):
            p = _fetch.find_file(root, f)
            if p is None:
                raise DataError(f"{root / f}: missing (also looked for {f}.gz); {_fetch.SOURCES[name].how_to_get}")
            files[f] = p
        x, y = load_idx_pair(files["train-images-idx3-ubyte"], files["train-labels-idx1-ubyte"])
        xt, yt = load_idx_pair(files["t10k-images-idx3-ubyte"], files["t10k-labels-idx1-ubyte"])
        return x[:, None], y, xt[:, None], yt, classes

    return load


def _missing(name: str):
    raise DataError(f"{name}: no local copy found in {_fetch.data_root() / name}; {_fetch.SOURCES[name].how_to_get}")


def _cifar(cfg: DataConfig) -> Raw:
    root = Path(cfg.path) if cfg.path else (_fetch.locate("cifar10") or _missing("cifar10"))
    x, y, xt, yt = load_cifar10(root)
    return x, y, xt, yt, CIFAR_CLASSES


def _folder(cfg: DataConfig) -> Raw:
    x, y, classes = load_folder(Path(cfg.path), cfg.image_size, cfg.channels)
    if cfg.test_path:
        xt, yt, _ = load_folder(Path(cfg.test_path), cfg.image_size or list(x.shape[2:]), x.shape[1])
        return x, y, xt, yt, classes
    return (*_split(x, y), classes)


def _npy(cfg: DataConfig) -> Raw:
    x, y, xt, yt = read_array(Path(cfg.path), cfg.mmap)
    if cfg.test_path:
        xt, yt, _, _ = read_array(Path(cfg.test_path), cfg.mmap)
    if xt is None:
        x, y, xt, yt = _split(x, y)
    return x, y, xt, yt, None


def _split(x: np.ndarray, y: np.ndarray | None):
    """Last 10% as test: deterministic, and the same file always gives the same split."""
    if len(x) < 2:
        raise DataError(f"need at least 2 samples to split into train and test, got {len(x)}")
    n = len(x) - max(1, len(x) // 10)
    return x[:n], (y[:n] if y is not None else None), x[n:], (y[n:] if y is not None else None)


DATASETS: dict[str, Callable[[DataConfig], Raw]] = {
    "mnist": _idx("mnist", [str(i) for i in range(10)]),
    "fashion-mnist": _idx("fashion-mnist", FASHION_CLASSES),
    "cifar10": _cifar,
    "folder": _folder,
    "npy": _npy,
}


assert tuple(DATASETS) == DATASET_NAMES, "config.DATASETS names the loaders here, in this order"


def dataset_names() -> list[str]:
    return list(DATASETS)


def _shape_samples(x: np.ndarray, where: str) -> np.ndarray:
    """(N, H, W) -> (N, 1, H, W); (N, H, W, C) with C in 1/3 -> (N, C, H, W); (N, D) and (N, C, H, W) kept."""
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        return x.transpose(0, 3, 1, 2)
    if x.ndim in (2, 4):
        return x
    raise DataError(f"{where}: expected samples shaped (N, D), (N, H, W) or (N, C, H, W), got {x.shape}")


def load_data(cfg: DataConfig, need_unit_range: bool = True) -> Splits:
    """Reads, checks, scales and subsets the dataset that ``cfg`` names."""
    if cfg.name not in DATASETS:
        raise DataError(f"unknown dataset '{cfg.name}'; known: {', '.join(DATASETS)}")
    x, y, xt, yt, classes = DATASETS[cfg.name](cfg)
    where = cfg.path or cfg.name
    x = _shape_samples(x, where)
    xt = _shape_samples(xt, cfg.test_path or where)
    if math.prod(x.shape[1:]) == 0:
        raise DataError(f"{where}: samples shaped {x.shape[1:]} hold no values")
    if x.shape[1:] != xt.shape[1:]:
        raise DataError(f"{where}: train samples are {x.shape[1:]} but test samples are {xt.shape[1:]}")
    for arr, lab, part in ((x, y, "train"), (xt, yt, "test")):
        if lab is not None and len(lab) != len(arr):
            raise DataError(f"{where}: {len(lab)} {part} labels for {len(arr)} {part} samples")
    if cfg.exclude_classes:
        if y is None:
            raise DataError(f"data.exclude_classes: {where} has no labels")
        keep = ~np.isin(y, cfg.exclude_classes)
        x, y = x[keep], y[keep]
    if cfg.limit:
        x, y = x[: cfg.limit], (y[: cfg.limit] if y is not None else None)
    if cfg.test_limit:
        xt, yt = xt[: cfg.test_limit], (yt[: cfg.test_limit] if yt is not None else None)
    if len(x) == 0 or len(xt) == 0:
        raise DataError(f"{where}: the {'training' if len(x) == 0 else 'test'} split is empty")

    if cfg.mmap and x.dtype == np.uint8 and byte_divisor(cfg.scale) != 255.0:
        # the mapped bytes are divided by 255 batch by batch (train loop, evaluation, metrics), never by 1
        raise DataError(
            f"{where}: data.mmap reads uint8 samples as bytes and divides them by 255 per batch, so "
            f"data.scale: {cfg.scale} (keep 0-255) cannot hold; set data.scale: auto, or data.mmap: false"
        )
    prep = Preprocessor(cfg.scale, unit_range=need_unit_range and cfg.scale != "standard")
    raw = None
    if not (cfg.mmap and x.dtype == np.uint8 and not prep.fitted_scale):  # memory-mapped bytes are scaled per batch
        if x.dtype == np.uint8 and not prep.fitted_scale:  # kept, with what transform divides them by
            raw = (np.ascontiguousarray(x), byte_divisor(cfg.scale))
        x = prep.fit_transform(x, where)
        xt = prep.transform(xt, cfg.test_path or where)

    splits = Splits(cfg.name, x, y, xt, yt, classes, prep.state(), train_bytes=raw)
    if cfg.val_fraction > 0:
        n_val = max(1, int(round(len(x) * cfg.val_fraction)))
        if n_val >= len(x):
            raise DataError(f"data.val_fraction: {cfg.val_fraction} leaves no training samples out of {len(x)}")
        splits.x_train, splits.x_val = x[:-n_val], x[-n_val:]
        if raw is not None:
            splits.train_bytes = (raw[0][:-n_val], raw[1])
        if y is not None:
            splits.y_train, splits.y_val = y[:-n_val], y[-n_val:]
    return splits


def raw_split(name: str, split: str, path: str | None = None) -> np.ndarray:
    """One split of a dataset as its files hold it (uint8 images, unscaled): what `aelab data export` writes.

    Unscaled on purpose: `aelab encode` scales uint8 by 1/255 as training did, and the bytes stay small.
    """
    if name not in _fetch.SOURCES:
        raise DataError(
            f"data export: '{name}' is not a built-in dataset; known: {', '.join(_fetch.SOURCES)} "
            "(your own .npy/.npz/folder is already an input for `aelab encode`)"
        )
    if split not in ("train", "test"):
        raise DataError(f"data export: --split must be train or test, got '{split}'")
    x, _, xt, _, _ = DATASETS[name](DataConfig(name=name, path=path))
    return _shape_samples(x if split == "train" else xt, path or name)


def info(name: str) -> dict:
    """What `aelab data info` prints: where the files are and what they hold."""
    if name in _fetch.SOURCES:
        src = _fetch.SOURCES[name]
        folder = _fetch.locate(name)
        out = {
            "name": name,
            "description": src.description,
            "location": str(folder) if folder else None,
            "how_to_get": src.how_to_get,
        }
        if folder:
            s = load_data(DataConfig(name=name))
            out.update(
                train=list(s.x_train.shape),
                test=list(s.x_test.shape),
                classes=s.classes,
                mean=round(float(s.x_train.mean()), 4),
            )
        return out
    if name in DATASETS:
        return {"name": name, "description": "user data: set data.path (see docs)", "location": None}
    raise DataError(f"unknown dataset '{name}'; known: {', '.join(DATASETS)}")
