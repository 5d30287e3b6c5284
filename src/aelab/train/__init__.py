"""``train(cfg) -> Run``: data -> model -> loop -> run directory."""
from __future__ import annotations

import contextlib
import statistics
from pathlib import Path
from typing import Callable, Sequence

import torch

from .. import _threads, runlock
from ..config import Config
from ..data import Splits, load_data
from ..errors import RunError
from ..evaluate.evaluate import data_metrics
from ..evaluate.metrics import format_metrics
from ..models import build_model
from ..run import (Run, default_run_dir, load_config, write_config, write_history, write_scaler, write_summary,
                   write_weights)
from . import distributed
from .loop import EpochHook, TrainingInterrupted, fit, resolve_device
from .precision import cpu_kind, resolve_precision

__all__ = ["train", "fit", "EpochHook", "TrainingInterrupted"]


def train(cfg: Config | None = None, out: str | Path | None = None, *, resume: str | Path | None = None,
          data: Splits | None = None, hooks: Sequence[EpochHook] = (), overwrite: bool = False,
          log: Callable[[str], None] = print, is_writer: bool = True) -> Run:
    """Trains the model ``cfg`` describes and returns the finished Run.

    ``resume`` continues the run in that folder from its last checkpoint (its
    own config.yaml wins). ``data`` skips loading when the caller has it.
    The run folder is locked while it trains (runlock.py): a second writer is refused.
    """
    target = resume if resume is not None else out  # a default folder name holds the clock: nobody else has it
    locked = target is not None and is_writer and distributed.writes_run_dir()
    with runlock.writing(target) if locked else contextlib.nullcontext():
        return _train(cfg, out, resume=resume, data=data, hooks=hooks, overwrite=overwrite, log=log, is_writer=is_writer)


def _train(cfg: Config | None, out: str | Path | None, *, resume: str | Path | None, data: Splits | None,
           hooks: Sequence[EpochHook], overwrite: bool, log: Callable[[str], None], is_writer: bool) -> Run:
    if resume is not None:
        run_dir = Path(resume)
        cfg = load_config(run_dir)
        if not (run_dir / "checkpoint" / "latest.json").is_file():
            raise RunError(f"{run_dir}: no checkpoint to resume from")
    else:
        if cfg is None:
            raise ValueError("train() needs a config or resume=")
        run_dir = Path(out) if out is not None else default_run_dir(cfg)
        if (run_dir / "config.yaml").exists() and not overwrite:
            raise RunError(f"{run_dir}: already holds a run; choose another --out, --resume it, or pass --overwrite")
    device = resolve_device(cfg.train.device)  # auto: cuda when available, else cpu; refused before anything is written
    precision = resolve_precision(cfg.train.precision, device)  # likewise a bad AELAB_PRECISION
    group = distributed.setup(cfg.train.device)  # under torchrun: join the process group; else a world of one
    run_dir = Path(group.agree(str(run_dir)))  # rank 0's folder (a default name holds the clock)
    is_writer = is_writer and group.is_writer
    if not group.is_writer:
        log, hooks = (lambda s: None), ()
    splits = data if data is not None else load_data(cfg.data, need_unit_range=cfg.model.output_activation == "sigmoid" and cfg.train.loss == "bce")
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg, splits.sample_shape)
    if hasattr(model, "check_data"):  # e.g. a classifier refuses unlabelled data before anything is written
        model.check_data(splits)
    if is_writer:
        run_dir.mkdir(parents=True, exist_ok=True)
        if resume is None:
            for stale in ("summary.json", "model.safetensors", "metrics.csv", "batches.csv", "checkpoint/latest.json"):
                (run_dir / stale).unlink(missing_ok=True)
            write_config(run_dir, cfg)
            write_scaler(run_dir, splits.scaler)
    log(f"training {cfg.model.name} on {splits.name}: {len(splits.x_train)} train / {len(splits.x_test)} test samples "
        f"shaped {splits.sample_shape}; {sum(p.numel() for p in model.parameters()):,} parameters -> {run_dir}")

    where = f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else f"cpu ({cpu_kind()})"
    log(f"device {where}, precision {precision}")

    def on_checkpoint(state):
        if is_writer:
            write_history(run_dir, state.history, state.batches)

    state = fit(model, splits, cfg, run_dir / "checkpoint" if is_writer or group.world > 1 else None, hooks=hooks,
                resume=resume is not None, log=log, on_checkpoint=on_checkpoint)
    model.eval()
    test = data_metrics(model, splits.x_test, cfg.train.loss, splits.scaler)  # only the metrics that fit the data
    secs = [r["seconds"] for r in state.history]
    summary = {
        "name": cfg.name,
        "model": cfg.model.name,
        "data": splits.name,
        "train_size": int(len(splits.x_train)),
        "test_size": int(len(splits.x_test)),
        "input_shape": list(splits.sample_shape),
        "code_shape": list(model.code_shape),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "epochs": state.epoch,
        "loss": cfg.train.loss,
        **{f"test_{k}": v for k, v in test.items()},
        "seconds_per_epoch": statistics.median(secs) if secs else None,
        "seconds_total": sum(secs),
        "device": str(device),
        "precision": precision,
        "threads": torch.get_num_threads(),
        "cpu": cpu_kind(),
        "omp_wait_policy": _threads.wait_policy,
        "torch": torch.__version__,
    }
    summary.update({f"test_{k}": v for k, v in model.extra_metrics(splits.x_test, splits.y_test).items()})
    if state.history:
        summary["final_train_loss"] = state.history[-1]["train_loss"]
    run = Run(run_dir, cfg, model, summary, splits.scaler)
    if is_writer:
        write_weights(run_dir, model, cfg)
        write_summary(run_dir, summary)  # last: marks the run finished
    distributed.shutdown()
    log(f"test {format_metrics(test, cfg.train.loss)}")
    return run
