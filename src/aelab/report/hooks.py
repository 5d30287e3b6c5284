"""Training callbacks for `aelab.train(callbacks=...)`: reconstructions over training, and TensorBoard.

Both see the same test images the report shows (``collect.sample_indices``),
so the animation, TensorBoard's image tab and the report agree.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write_bytes
from ..config import Config, NoiseConfig
from ..errors import ConfigError
from ..evaluate.evaluate import reconstruct
from ..train import Callback
from .collect import bare, model_input, sample_indices
from .images import grid

PROGRESS_FILE = "figures/progress.npz"  # inside the run directory; report.html turns it into progress.gif


def _as_uint8(x: np.ndarray) -> np.ndarray:
    return (np.clip(np.asarray(x, dtype=np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)


def _finite_scalars(row: dict[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in row.items():
        if k != "epoch" and isinstance(v, (int, float)) and math.isfinite(v):
            out[k] = float(v)
    return out


class ReconstructionProgress(Callback):
    """Reconstructs the same few test images after every epoch and keeps them in figures/progress.npz.

    The file is rewritten (atomically) every epoch, so a resumed run continues
    the animation where the checkpoint left it. Without ``x`` the images are
    picked from the training's test split when training begins.
    """

    def __init__(
        self, run_dir: str | Path, x: np.ndarray | None = None, noise: Sequence[NoiseConfig] = (), resume: bool = False
    ):
        self.path = Path(run_dir) / PROGRESS_FILE
        self.resume = resume
        self.x: np.ndarray | None = None
        if x is not None:
            self._setup(x, noise)

    def _setup(self, x: np.ndarray, noise: Sequence[NoiseConfig]) -> None:
        self.x = np.asarray(x, dtype=np.float32)
        self.input, self.noisy = model_input(self.x, noise)
        self.epochs: list[int] = []
        self.frames: list[np.ndarray] = []
        if self.resume and self.path.is_file():
            saved = load_progress(self.path)
            if saved is not None and saved["frames"].shape[1:] == self.x.shape:
                self.epochs = [int(e) for e in saved["epochs"]]
                self.frames = list(saved["frames"])

    def on_train_begin(self, loop) -> None:
        if self.x is None:
            self._setup(sample_images(loop.data.x_test, loop.data.y_test), loop.cfg.data.noise)

    def on_epoch_end(self, loop, row: dict[str, Any]) -> None:
        if self.x is not None and _is_images(self.x):  # no animation of tabular rows
            self.record(row["epoch"], loop.model)

    def record(self, epoch: int, model) -> None:
        """Adds (or, after a resume, replaces) the frame of ``epoch`` and rewrites the file."""
        assert self.x is not None, "ReconstructionProgress: no images yet (pass x, or train with it)"
        keep = [i for i, e in enumerate(self.epochs) if e < epoch]  # a resumed run redoes later epochs
        self.epochs = [self.epochs[i] for i in keep] + [epoch]
        self.frames = [self.frames[i] for i in keep] + [_as_uint8(reconstruct(bare(model), self.input))]
        arrays = {
            "epochs": np.array(self.epochs, dtype=np.int64),
            "originals": _as_uint8(self.x),
            "frames": np.stack(self.frames),
        }
        if self.noisy is not None:
            arrays["noisy"] = _as_uint8(self.noisy)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(self.path, buf.getvalue())


def load_progress(path: str | Path) -> dict[str, np.ndarray] | None:
    """The saved frames as float arrays in [0, 1] (epochs stay integers); None when unreadable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
    except (OSError, ValueError):
        return None
    if not {"epochs", "originals", "frames"} <= set(d) or len(d["frames"]) != len(d["epochs"]) or not len(d["epochs"]):
        return None
    return {k: (v if k == "epochs" else v.astype(np.float32) / 255) for k, v in d.items()}


class TensorBoardLogger(Callback):
    """Per-epoch scalars (every number in the epoch's metrics row) and a reconstruction image grid.

    Scalar tags are the metrics.csv column names (train_loss, val_loss, val_mse, ...);
    the image tag is ``reconstructions`` (top: input, bottom: output). Without ``x``
    the images are picked from the training's test split when training begins.
    """

    def __init__(self, log_dir: str | Path, x: np.ndarray | None = None, noise: Sequence[NoiseConfig] = ()):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("--tensorboard: needs the tensorboard package (pip install tensorboard)") from None
        self.log_dir = Path(log_dir)
        self._writer_class = SummaryWriter
        self.writer: Any = None
        self.x: np.ndarray | None = None
        if x is not None:
            self._setup(x, noise)

    def _setup(self, x: np.ndarray, noise: Sequence[NoiseConfig]) -> None:
        self.x = np.asarray(x, dtype=np.float32)
        self.input, _ = model_input(self.x, noise)

    def on_train_begin(self, loop) -> None:
        if self.x is None:
            self._setup(sample_images(loop.data.x_test, loop.data.y_test), loop.cfg.data.noise)

    def on_epoch_end(self, loop, row: dict[str, Any]) -> None:
        if self.writer is None:
            self.writer = self._writer_class(log_dir=str(self.log_dir))
        epoch = row["epoch"]
        for k, v in _finite_scalars(row).items():
            self.writer.add_scalar(k, v, epoch)
        assert self.x is not None
        if self.x.ndim == 4 and self.x.shape[1] in (1, 3):
            rec = reconstruct(bare(loop.model), self.input)
            g = grid(np.concatenate([self.input, rec]), ncols=len(self.x))
            self.writer.add_image(
                "reconstructions", np.repeat(g, 3, axis=-1) if g.shape[-1] == 1 else g, epoch, dataformats="HWC"
            )
        self.writer.flush()

    def teardown(self, loop) -> None:
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def sample_images(x_test: np.ndarray, y_test: np.ndarray | None) -> np.ndarray:
    """The test images every picture of a run shows: the first of each class (``collect.sample_indices``)."""
    return np.asarray(x_test[sample_indices(y_test, 10)], dtype=np.float32)


def training_hooks(
    cfg: Config,
    run_dir: str | Path,
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    *,
    progress: bool = True,
    tensorboard: bool = False,
    resume: bool = False,
) -> list[Callback]:
    """The callbacks `aelab train` adds: the reconstruction animation (image data only) and, when asked,
    TensorBoard in RUN/tensorboard. Without ``x_test`` they pick their images when training begins."""
    run_dir = Path(run_dir)
    x = sample_images(x_test, y_test) if x_test is not None else None
    hooks: list[Callback] = []
    if progress and (x is None or _is_images(x)):
        hooks.append(ReconstructionProgress(run_dir, x, cfg.data.noise, resume=resume))
    if tensorboard:
        hooks.append(TensorBoardLogger(run_dir / "tensorboard", x, cfg.data.noise))
    return hooks


def _is_images(x: np.ndarray) -> bool:
    return x.ndim == 4 and x.shape[1] in (1, 3)
