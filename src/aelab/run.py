"""Run directories: what a training run leaves on disk, and loading it back.

runs/NAME/
  config.yaml        the full resolved config (`aelab train runs/NAME/config.yaml` reruns it)
  metrics.csv        one row per epoch
  batches.csv        one row per batch
  model.safetensors  weights only; loading never unpickles
  summary.json       final test metrics; written last, so its presence marks a finished run
  checkpoint/        the state to resume from
  figures/, report.html
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open

from ._io import atomic_write_text, csv_text, read_csv, save_safetensors, write_csv, write_json, write_yaml
from .config import Config
from .data.preprocess import Preprocessor
from .errors import ConfigError, RunError
from .models import Autoencoder, build_model, needs_unit_range

# in this order where some row has them: val_bce on targets in [0, 1] only, val_rmse / val_r2 off it
METRIC_COLUMNS = [
    "epoch",
    "train_loss",
    "val_loss",
    "val_bce",
    "val_mse",
    "val_rmse",
    "val_r2",
    "val_psnr",
    "lr",
    "seconds",
]


@dataclass
class Run:
    path: Path | None  # None: trained in memory, nothing written
    config: Config
    model: Autoencoder
    summary: dict[str, Any] = field(default_factory=dict)
    scaler: dict[str, np.ndarray] | None = None
    history: list[dict[str, Any]] | None = field(default=None, repr=False)  # a run trained in this process
    splits: Any = field(default=None, repr=False, compare=False)  # the data it was trained on, when in memory

    @property
    def metrics(self) -> list[dict[str, float]]:
        f = self.path / "metrics.csv" if self.path is not None else None
        if f is None or not f.is_file():
            return list(self.history or [])
        return [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in read_csv(f)]

    @property
    def batches(self) -> list[dict[str, float]]:
        f = self.path / "batches.csv" if self.path is not None else None
        return [{k: float(v) for k, v in r.items()} for r in read_csv(f)] if f is not None and f.is_file() else []

    @property
    def finished(self) -> bool:
        return self.path is not None and (self.path / "summary.json").is_file()

    @property
    def preprocessor(self) -> Preprocessor:
        """How raw input becomes model input for this run: its fitted scaler, else the unit-range rule
        (uint8 / 255; floats must lie in [0, 1] when the model needs it)."""
        return Preprocessor.from_state(self.scaler, unit_range=needs_unit_range(self.config.model, self.config.train))

    def load_data(self):
        """The dataset this run was trained on, loaded as at training time (kept from training when it has it)."""
        from .data import load_data

        if self.splits is not None:
            return self.splits
        return load_data(self.config.data, need_unit_range=needs_unit_range(self.config.model, self.config.train))

    def prepare_input(self, x: np.ndarray) -> np.ndarray:
        """Fits a user array to what the model takes: dtype, scale, layout (see `aelab encode`)."""
        from .errors import DataError

        x = np.asarray(x)
        shape = self.model.input_shape
        if tuple(x.shape) == shape or (x.ndim == 2 and len(shape) == 3 and x.shape == shape[1:]):
            x = x[None]  # one sample
        x = self.preprocessor.transform(x.reshape(len(x), -1) if self.scaler is not None else x, "input")
        if x.ndim == 4 and x.shape[-1] in (1, 3) and tuple(x.shape[1:]) != shape:
            x = x.transpose(0, 3, 1, 2)
        if math.prod(x.shape[1:]) != math.prod(shape):
            raise DataError(f"input: samples shaped {tuple(x.shape[1:])} do not fit the model's input {shape}")
        if x.ndim == 3 and len(shape) == 3 and shape[0] != 1 and x.shape[1:] == shape[1:]:
            raise DataError(f"input: grey samples {tuple(x.shape[1:])} given to a model that takes {shape}")
        return np.ascontiguousarray(x.reshape(len(x), *shape), dtype=np.float32)


def data_key(cfg: Config) -> str:
    """Runs with the same key load the same arrays (``Run.load_data``): the data config without its noise
    (added per batch, not loaded) and the unit-range rule load_data is called with."""
    data = {k: v for k, v in cfg.to_dict()["data"].items() if k != "noise"}
    return json.dumps(data, sort_keys=True, default=str) + f"|{needs_unit_range(cfg.model, cfg.train)}"


# -- writing -------------------------------------------------------------


def default_run_dir(cfg: Config, root: str | Path = "runs") -> Path:
    base = cfg.name or f"{cfg.model.name}-{cfg.data.name}"
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", base)
    return Path(root) / f"{base}-{time.strftime('%Y%m%d-%H%M%S')}"


def write_config(run_dir: Path, cfg: Config) -> None:
    write_yaml(run_dir / "config.yaml", cfg.to_dict())


class HistoryWriter:
    """metrics.csv and batches.csv of a run in progress, each rewritten atomically after every epoch.

    The batch rows already formatted are kept, so an epoch costs the formatting of its own rows, not of
    the whole run's (batches.csv of a 50-epoch run holds ~10,000 rows)."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self._rows: list[dict] | None = None  # the list the formatted lines came from
        self._lines: list[str] = []  # one chunk of CSV lines per call
        self._count = 0

    def __call__(self, history: list[dict], batches: list[dict]) -> None:
        have = {k for r in history for k in r}
        extra = sorted(have - set(METRIC_COLUMNS))
        cols = [c for c in METRIC_COLUMNS if c in have or not history] + extra  # no empty val_bce column on real data
        write_csv(self.run_dir / "metrics.csv", cols, ([r.get(c, "") for c in cols] for r in history))
        if batches is not self._rows or len(batches) < self._count:  # a new list (resume) or a shorter one
            self._rows, self._lines, self._count = batches, [], 0
        new = batches[self._count :]
        self._lines.append(csv_text([b["epoch"], b["batch"], b["step"], b["loss"]] for b in new))
        self._count += len(new)
        atomic_write_text(self.run_dir / "batches.csv", "epoch,batch,step,loss\n" + "".join(self._lines))


def write_weights(run_dir: Path, model: Autoencoder, cfg: Config) -> None:
    meta = {"format": "aelab", "input_shape": ",".join(map(str, model.input_shape)), "model": cfg.model.name}
    save_safetensors(run_dir / "model.safetensors", model.state_dict(), metadata=meta)


def write_scaler(run_dir: Path, scaler: dict[str, np.ndarray] | None) -> None:
    """The fitted preprocessor (``Splits.scaler``: its state) as scaler.safetensors."""
    if scaler is not None:
        Preprocessor.from_state(scaler).save(run_dir / "scaler.safetensors")


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    write_json(run_dir / "summary.json", summary)


def record_nll(run: Run, x, k: int, seed: int = 0, limit: int | None = None, split: str = "test") -> dict[str, Any]:
    """`aelab eval --nll K`: the importance-sampled NLL of x as test_nll* keys, also added to summary.json."""
    from .evaluate.likelihood import importance_weighted_nll

    if split != "test":
        raise ConfigError("--nll: estimated on the test split only")
    if limit is not None and limit < 1:
        raise ConfigError(f"--nll-limit: must be >= 1, got {limit}")
    res = {f"test_{key}": v for key, v in importance_weighted_nll(run.model, x, k, seed, limit=limit).items()}
    if run.path is not None and (run.path / "summary.json").is_file():
        write_summary(run.path, {**json.loads((run.path / "summary.json").read_text()), **res})
    return res


# -- loading -------------------------------------------------------------


def load_config(run_dir: Path) -> Config:
    f = run_dir / "config.yaml"
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run directory")
    if not f.is_file():
        raise RunError(f"{run_dir}: not an aelab run (no config.yaml)")
    try:
        return Config.from_saved(yaml.safe_load(f.read_text()) or {})
    except ConfigError as e:
        raise RunError(f"{f}: {e}") from None
    except yaml.YAMLError:
        raise RunError(f"{f}: not valid YAML") from None


def load_run(path: str | Path, device: str | torch.device = "cpu") -> Run:
    """Rebuilds the model from config.yaml and loads model.safetensors, checking every tensor."""
    run_dir = Path(path)
    cfg = load_config(run_dir)
    wfile = run_dir / "model.safetensors"
    if not wfile.is_file():
        raise RunError(
            f"{run_dir}: no model.safetensors (training did not finish; `aelab train --resume {run_dir}` continues it)"
        )
    try:
        with safe_open(str(wfile), framework="pt") as f:
            meta = f.metadata() or {}
        weights = load_file(wfile)
    except (SafetensorError, OSError, ValueError) as e:
        raise RunError(f"{wfile}: not a readable safetensors file ({e})") from None
    shape_txt = meta.get("input_shape")
    if not shape_txt:
        raise RunError(f"{wfile}: metadata lacks input_shape; not written by aelab")
    input_shape = tuple(int(s) for s in shape_txt.split(","))
    model = build_model(cfg, input_shape)
    check_weights(model, weights, wfile)
    model.load_state_dict(weights)
    model.to(device).eval()
    summary = {}
    if (run_dir / "summary.json").is_file():
        try:
            summary = json.loads((run_dir / "summary.json").read_text())
        except ValueError:
            raise RunError(f"{run_dir / 'summary.json'}: not valid JSON; the file is damaged") from None
    scaler = None
    if (run_dir / "scaler.safetensors").is_file():
        try:
            scaler = Preprocessor.load(run_dir / "scaler.safetensors").state()
        except (SafetensorError, OSError, ValueError) as e:
            raise RunError(f"{run_dir / 'scaler.safetensors'}: not a readable safetensors file ({e})") from None
    return Run(run_dir, cfg, model, summary, scaler)


def check_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor], where: Path) -> None:
    expected = model.state_dict()
    for k, v in expected.items():
        if k not in weights:
            raise RunError(f"{where}: tensor '{k}' is missing; the weights do not match config.yaml")
        if tuple(weights[k].shape) != tuple(v.shape):
            raise RunError(
                f"{where}: tensor '{k}' has shape {tuple(weights[k].shape)} but config.yaml makes {tuple(v.shape)}"
            )
    extra = sorted(set(weights) - set(expected))
    if extra:
        raise RunError(f"{where}: tensor '{extra[0]}' is not in the model config.yaml describes")
