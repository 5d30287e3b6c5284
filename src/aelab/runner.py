"""``train(cfg) -> Run``: the one training entry point (CLI, Python, sklearn, anomaly, bench, sweep).

Data is loaded once (or handed over), the model built, the standard callbacks
assembled around the caller's, ``train.fit`` run, the model evaluated, and the
run directory written (unless ``is_writer=False``: then nothing touches the disk).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from . import _threads
from .config import Config, resume_overrides
from .data import Splits, load_data
from .errors import RunError
from .evaluate.evaluate import evaluate
from .evaluate.extra import extra_metrics
from .evaluate.health import latent_health
from .evaluate.metrics import entropy_floor
from .models import build_model, needs_unit_range
from .run import (
    Run,
    default_run_dir,
    load_config,
    write_config,
    write_history,
    write_scaler,
    write_summary,
    write_weights,
)
from .train import Callback, TrainState, distributed, fit, resolve_device, standard_callbacks
from .train.checkpoint import checkpoint_epoch
from .train.precision import resolve_precision

__all__ = ["train"]


def train(
    cfg: Config | None = None,
    out: str | Path | None = None,
    *,
    resume: str | Path | None = None,
    data: Splits | None = None,
    callbacks: Sequence[Callback] = (),
    hooks: Sequence[Callback] = (),
    overwrite: bool = False,
    log: Callable[[str], None] = print,
    is_writer: bool = True,
    overrides: Sequence[str] = (),
) -> Run:
    """Trains the model ``cfg`` describes and returns the finished Run.

    ``resume`` continues the run in that folder from its last checkpoint (its own
    config.yaml wins). ``data`` skips loading when the caller has it. ``callbacks``
    (``hooks`` is the older name) run inside the standard ones (train/callbacks.py).
    ``is_writer=False`` trains in memory: nothing is written, ``out`` may be None.
    ``overrides`` with ``resume`` change what a resume may change (``config.RESUMABLE``: train.epochs,
    lr, early stopping, checkpoint cadence); config.yaml records them under ``resumed`` with their epoch.
    """
    run_dir: Path | None
    if resume is not None:
        run_dir = resumed = Path(resume)
        cfg = load_config(resumed)
        if not (resumed / "checkpoint" / "latest.json").is_file():
            raise RunError(f"{resumed}: no checkpoint to resume from")
        if overrides:
            cfg = resume_overrides(cfg, list(overrides), checkpoint_epoch(resumed / "checkpoint"))
    else:
        if cfg is None:
            raise ValueError("train() needs a config or resume=")
        run_dir = Path(out) if out is not None else (default_run_dir(cfg) if is_writer else None)
        if is_writer and run_dir is not None and (run_dir / "config.yaml").exists() and not overwrite:
            raise RunError(f"{run_dir}: already holds a run; choose another --out, --resume it, or pass --overwrite")
    group = distributed.setup(cfg.train.device)  # under torchrun: join the process group; else a world of one
    if run_dir is not None:
        run_dir = Path(group.agree(str(run_dir)))  # rank 0's folder (a default name holds the clock)
    writes = is_writer and group.is_writer and run_dir is not None
    user = [*hooks, *callbacks]
    if not group.is_writer:
        log, user = (lambda s: None), []
    splits = data if data is not None else load_data(cfg.data, need_unit_range=needs_unit_range(cfg.model, cfg.train))
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg, splits.sample_shape)
    model.check_data(splits)  # e.g. a classifier refuses unlabelled data before anything is written
    if writes:
        assert run_dir is not None
        run_dir.mkdir(parents=True, exist_ok=True)
        if resume is None:
            for stale in ("summary.json", "model.safetensors", "metrics.csv", "batches.csv", "checkpoint/latest.json"):
                (run_dir / stale).unlink(missing_ok=True)
            write_config(run_dir, cfg)
            write_scaler(run_dir, splits.scaler)
        elif overrides:
            write_config(run_dir, cfg)  # with the changes and the epoch they took effect
    log(
        f"training {cfg.model.name} on {splits.name}: {len(splits.x_train)} train / {len(splits.x_test)} test samples "
        f"shaped {splits.sample_shape}; {sum(p.numel() for p in model.parameters()):,} parameters"
        + (f" -> {run_dir}" if run_dir is not None else "")
    )

    def on_state(state: TrainState) -> None:
        if writes:
            assert run_dir is not None
            write_history(run_dir, state.history, state.batches)

    ckpt = run_dir / "checkpoint" if run_dir is not None and (writes or group.world > 1) else None
    cbs = standard_callbacks(cfg, ckpt, resume=resume is not None, writes=writes, user=user, on_state=on_state)
    state = fit(model, splits, cfg, cbs, log=log)
    model.eval()
    summary = _summary(cfg, model, splits, state)
    run = Run(run_dir, cfg, model, summary, splits.scaler, history=state.history, splits=splits)
    if writes:
        assert run_dir is not None
        write_weights(run_dir, model, cfg)
        write_summary(run_dir, summary)  # last: marks the run finished
    distributed.shutdown()
    log(
        f"test {cfg.train.loss} {summary['test_loss']:.4f}  bce {summary['test_bce']:.4f}  "
        f"mse {summary['test_mse']:.4f}  psnr {summary['test_psnr']:.2f} dB"
    )
    return run


def _summary(cfg: Config, model, splits: Splits, state: TrainState) -> dict[str, Any]:
    """summary.json: what was trained, how it did on the test split, how long it took."""
    test = evaluate(model, splits.x_test, cfg.train.loss)
    secs = [r["seconds"] for r in state.history]
    device = resolve_device(cfg.train.device)
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
        "test_loss": test["loss"],
        "test_bce": test["bce"],
        "test_mse": test["mse"],
        "test_psnr": test["psnr"],
        "seconds_per_epoch": statistics.median(secs) if secs else None,
        "seconds_total": sum(secs),
        "device": str(device),
        "precision": resolve_precision(cfg.train.precision, device),
        "threads": torch.get_num_threads(),
        "omp_wait_policy": _threads.wait_policy,
        "torch": torch.__version__,
    }
    if splits.scaler is None and cfg.model.output_activation == "sigmoid":
        floor = entropy_floor(splits.x_test)
        summary["test_bce_floor"] = floor
        summary["test_bce_above_floor"] = test["bce"] - floor
    summary.update({f"test_{k}": v for k, v in extra_metrics(model, splits.x_test, splits.y_test).items()})
    health, health_details = latent_health(model, splits.x_test)  # dead units; a VAE's active units
    summary.update({f"test_{k}": v for k, v in health.items()})
    summary["latent_health"] = health_details
    if state.history:
        summary["final_train_loss"] = state.history[-1]["train_loss"]
    return summary
