"""``train(cfg) -> Run``: the one training entry point (CLI, Python, sklearn, anomaly, bench, sweep).

Data is loaded once (or handed over), the model built, the standard callbacks
assembled around the caller's, ``train.fit`` run, the model evaluated, and the
run directory written (unless ``is_writer=False``: then nothing touches the disk).
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from . import _threads, runlock
from .config import Config, resume_overrides
from .data import Splits, load_data
from .errors import RunError, TrainingError
from .evaluate.evaluate import data_metrics
from .evaluate.extra import extra_metrics
from .evaluate.health import latent_health
from .evaluate.metrics import format_metrics
from .models import Autoencoder, build_model, needs_unit_range
from .run import (
    HistoryWriter,
    Run,
    default_run_dir,
    load_config,
    write_config,
    write_scaler,
    write_summary,
    write_weights,
)
from .train import Callback, TrainState, distributed, fit, resolve_device, standard_callbacks
from .train.checkpoint import checkpoint_epoch
from .train.loop import native_kernels
from .train.precision import cpu_kind, resolve_precision

__all__ = ["train", "train_stacked"]


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
    The run folder is locked while it trains (runlock.py): a second writer is refused in one line.
    """
    target = resume if resume is not None else out  # a default folder name holds the clock: nobody else has it
    locked = target is not None and is_writer and distributed.writes_run_dir()
    with runlock.writing(target) if target is not None and locked else contextlib.nullcontext():
        return _train(
            cfg,
            out,
            resume=resume,
            data=data,
            user=[*hooks, *callbacks],
            overwrite=overwrite,
            log=log,
            is_writer=is_writer,
            overrides=overrides,
        )


def _train(
    cfg: Config | None,
    out: str | Path | None,
    *,
    resume: str | Path | None,
    data: Splits | None,
    user: list[Callback],
    overwrite: bool,
    log: Callable[[str], None],
    is_writer: bool,
    overrides: Sequence[str],
) -> Run:
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
    device = resolve_device(cfg.train.device)  # auto: cuda when available, else cpu; refused before anything is written
    precision = resolve_precision(cfg.train.precision, device)  # likewise a bad AELAB_PRECISION
    if device.type == "cpu" and cfg.train.kernels == "native":
        native_kernels(cfg.train, log)  # refused here without a C compiler, before anything is written
    group = distributed.setup(cfg.train.device)  # under torchrun: join the process group; else a world of one
    if run_dir is not None:
        run_dir = Path(group.agree(str(run_dir)))  # rank 0's folder (a default name holds the clock)
    writes = is_writer and group.is_writer and run_dir is not None
    if not group.is_writer:
        log, user = (lambda s: None), []
    splits = data if data is not None else load_data(cfg.data, need_unit_range=needs_unit_range(cfg.model, cfg.train))
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg, splits.sample_shape)
    model.check_data(splits)  # e.g. a classifier refuses unlabelled data before anything is written
    if writes:
        assert run_dir is not None
        if resume is None:
            start_run_dir(run_dir, cfg, splits)
        elif overrides:
            write_config(run_dir, cfg)  # with the changes and the epoch they took effect
    log(
        f"training {cfg.model.name} on {splits.name}: {len(splits.x_train)} train / {len(splits.x_test)} test samples "
        f"shaped {splits.sample_shape}; {sum(p.numel() for p in model.parameters()):,} parameters"
        + (f" -> {run_dir}" if run_dir is not None else "")
    )
    log(_device_line(device, precision))  # part of the run's start: what the numbers below ran on
    ckpt = run_dir / "checkpoint" if run_dir is not None and (writes or group.world > 1) else None
    cbs = _callbacks(cfg, run_dir if writes else None, ckpt, resume=resume is not None, writes=writes, user=user)
    state = fit(model, splits, cfg, cbs, log=log)
    run = finish_run(run_dir, cfg, model, splits, state, device, precision, writes=writes)
    distributed.shutdown()
    log(f"test {format_metrics(run.summary, cfg.train.loss, prefix='test_')}")  # each metric that fits the data, once
    return run


def train_stacked(
    cfgs: Sequence[Config],
    run_dirs: Sequence[str | Path],
    *,
    data: Splits | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> list[Run]:
    """``train(cfg, run_dir)`` for every pair, trained as one stacked model (train/stacked.py); the finished Runs.

    Every folder is locked, refused when it holds a run (unless ``overwrite``), started, given the standard
    callbacks and finished by the same functions ``train`` uses, so it holds what ``train`` would write, its
    summary.json plus ``stacked_members``. The data is loaded once. A member whose training failed (a NaN
    loss) is reported after the others finished, as one TrainingError naming each.
    """
    from .train.stacked import fit_stacked, why_not_stackable

    why = why_not_stackable(cfgs)
    if why is not None:
        raise TrainingError(f"cannot stack these runs: {why}")
    if len(run_dirs) != len(cfgs):
        raise ValueError("train_stacked: one run folder per config")
    dirs = [Path(d) for d in run_dirs]
    with contextlib.ExitStack() as locks:
        for d in dirs:
            locks.enter_context(runlock.writing(d))
            if (d / "config.yaml").exists() and not overwrite:
                raise RunError(f"{d}: already holds a run; choose another --out, or pass --overwrite")
        first = cfgs[0]
        device = resolve_device(first.train.device)
        precision = resolve_precision(first.train.precision, device)
        if device.type == "cpu" and first.train.kernels == "native":
            native_kernels(first.train, log)  # refused here, before any folder holds a config
        splits = (
            data
            if data is not None
            else load_data(first.data, need_unit_range=needs_unit_range(first.model, first.train))
        )
        models = []
        for cfg, d in zip(cfgs, dirs):
            torch.manual_seed(cfg.train.seed)  # the init train() gives this seed
            model = build_model(cfg, splits.sample_shape)
            model.check_data(splits)
            start_run_dir(d, cfg, splits)
            models.append(model)
        log(
            f"training {len(models)} {first.model.name} runs as one stack on {splits.name}: {len(splits.x_train)} train / "
            f"{len(splits.x_test)} test samples; {sum(p.numel() for p in models[0].parameters()):,} parameters each"
        )
        log(_device_line(device, precision))
        cbs = [_callbacks(cfg, d, d / "checkpoint") for cfg, d in zip(cfgs, dirs)]
        members = fit_stacked(models, cfgs, splits, cbs, log=log)
        runs, failed = [], []
        for m, cfg, d in zip(members, cfgs, dirs):
            if m.error is not None:
                failed.append(f"{d}: {m.error}")
                continue
            runs.append(
                finish_run(d, cfg, m.model, splits, m.state, device, precision, extra={"stacked_members": len(members)})
            )
    if failed:
        raise TrainingError("; ".join(failed))
    return runs


def start_run_dir(run_dir: Path, cfg: Config, splits: Splits) -> None:
    """A fresh run's folder: what an earlier run left there goes; config.yaml and the scaler are written."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("summary.json", "model.safetensors", "metrics.csv", "batches.csv", "checkpoint/latest.json"):
        (run_dir / stale).unlink(missing_ok=True)
    write_config(run_dir, cfg)
    write_scaler(run_dir, splits.scaler)


def _device_line(device: torch.device, precision: str) -> str:
    where = f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else f"cpu ({cpu_kind()})"
    return f"device {where}, precision {precision}"


def _callbacks(
    cfg: Config,
    run_dir: Path | None,
    ckpt: Path | None,
    *,
    resume: bool = False,
    writes: bool = True,
    user: Sequence[Callback] = (),
) -> list[Callback]:
    """The standard callbacks of one run; metrics.csv and batches.csv go to ``run_dir`` (None: nowhere)."""

    history = HistoryWriter(run_dir) if run_dir is not None else None

    def on_state(state: TrainState) -> None:
        if history is not None:
            history(state.history, state.batches)

    return standard_callbacks(cfg, ckpt, resume=resume, writes=writes, user=user, on_state=on_state)


def finish_run(
    run_dir: Path | None,
    cfg: Config,
    model: Autoencoder,
    splits: Splits,
    state: TrainState,
    device: torch.device,
    precision: str,
    *,
    writes: bool = True,
    extra: dict[str, Any] | None = None,
) -> Run:
    """A trained model's Run: test metrics into summary.json (``extra`` joins it), then, when ``writes``,
    the weights and the summary into ``run_dir``."""
    model.eval()
    summary = _summary(cfg, model, splits, state, device, precision)
    summary.update(extra or {})
    run = Run(run_dir, cfg, model, summary, splits.scaler, history=state.history, splits=splits)
    if writes and run_dir is not None:
        write_weights(run_dir, model, cfg)
        write_summary(run_dir, summary)  # last: marks the run finished
    return run


def _summary(
    cfg: Config, model, splits: Splits, state: TrainState, device: torch.device, precision: str
) -> dict[str, Any]:
    """summary.json: what was trained, how it did on the test split, how long it took."""
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
        "train_step": state.step,  # autograd, or the written-out dense step with torch's or aelab's kernels
        "threads": torch.get_num_threads(),
        "cpu": cpu_kind(),
        "omp_wait_policy": _threads.wait_policy,
        "torch": torch.__version__,
    }
    summary.update({f"test_{k}": v for k, v in extra_metrics(model, splits.x_test, splits.y_test).items()})
    health, health_details = latent_health(model, splits.x_test)  # dead units; a VAE's active units
    summary.update({f"test_{k}": v for k, v in health.items()})
    summary["latent_health"] = health_details
    if state.history:
        summary["final_train_loss"] = state.history[-1]["train_loss"]
    return summary
