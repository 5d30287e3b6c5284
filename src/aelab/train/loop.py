"""The training loop, readable top to bottom.

The whole training set lives in one tensor on the device; every epoch draws a
permutation and each batch is an index slice of it (no DataLoader, no worker
processes). Batch losses stay on the device until the epoch ends, so the loop
never waits on a host sync; NaN is caught there, before a checkpoint is written.
"""
from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch

from ..config import Config
from ..data import Splits
from ..data.mapped import MappedRows
from ..data.noise import compose
from ..errors import TrainingError
from ..evaluate.evaluate import evaluate
from ..evaluate.metrics import format_metrics, in_unit_range, value_range
from .checkpoint import TrainState, load_checkpoint, save_checkpoint
from .distributed import current as process_group
from .interrupt import StopRequest
from .optim import make_optimizer, make_scheduler
from .precision import autocast_context, resolve_precision


class EpochHook(Protocol):
    def on_epoch_end(self, epoch: int, row: dict[str, Any], model: torch.nn.Module) -> None: ...


class TrainingInterrupted(TrainingError):
    exit_code = 130


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("train.device: cuda was asked for but no CUDA device is available; use train.device=auto or cpu")
    return torch.device(name)


def setup_runtime(cfg: Config) -> None:
    """Process-wide settings that make CPU training fast and repeatable."""
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    # Denormal floats make CPU matmuls crawl as weights shrink; flushing them keeps epochs flat.
    torch.set_flush_denormal(True)


def _as_tensor(a: np.ndarray | None, device: torch.device) -> torch.Tensor | None:
    if a is None:
        return None
    if isinstance(a, np.memmap):  # data.mmap: batches are read from disk, never the whole file
        return MappedRows(a, device)
    t = torch.as_tensor(np.ascontiguousarray(a))
    return t.to(device)


def _progress(total: int, desc: str):
    if sys.stderr.isatty() and not os.environ.get("AELAB_NO_PROGRESS"):
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, leave=False, unit="batch", dynamic_ncols=True)
    return None


def fit(model: torch.nn.Module, data: Splits, cfg: Config, checkpoint_dir: Path | None = None,
        hooks: Sequence[EpochHook] = (), resume: bool = False, log: Callable[[str], None] = print,
        on_checkpoint: Callable[[TrainState], None] | None = None) -> TrainState:
    t = cfg.train
    device = resolve_device(t.device)
    setup_runtime(cfg)
    precision = resolve_precision(t.precision, device)
    model.to(device)
    if any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
        model.to(memory_format=torch.channels_last)  # oneDNN / cuDNN convolutions run faster in NHWC

    x_train = _as_tensor(data.x_train, device)
    y_train = _as_tensor(data.y_train, device)
    x_val, y_val = data.validation
    n = len(x_train)
    if n < 1:
        raise TrainingError("the training split is empty")
    noise = compose(cfg.data.noise)
    gen = torch.Generator().manual_seed(t.seed + 1)  # shuffling and noise, saved in checkpoints

    opt = make_optimizer(model.parameters(), t, device)
    sched = make_scheduler(opt, t)
    scaler = torch.amp.GradScaler("cuda") if (precision == "fp16-mixed" and device.type == "cuda") else None
    group = process_group()  # one process, or this rank's share under torchrun (distributed.py)
    loss_fn = group.loss_fn(model)
    state = TrainState(epoch=0)
    if resume and checkpoint_dir is not None:
        state = load_checkpoint(checkpoint_dir, model, opt, sched, gen)
        group.barrier()  # every rank has read it before rank 0 may replace it
        log(f"resumed after epoch {state.epoch}")
        if on_checkpoint is not None:
            on_checkpoint(state)  # metrics.csv / batches.csv back to what the checkpoint holds
    saved_epoch = state.epoch
    # BCE and PSNR (peak 1) only mean something on targets in [0, 1]: not on standardised data (evaluate.data_metrics)
    unit_range = data.scaler is None and in_unit_range(*value_range(x_val))
    stopped_early = bool(t.early_stopping) and state.bad_epochs >= t.early_stopping  # resumed after it stopped

    ctrl_c = StopRequest(announce=group.is_writer).install()  # first Ctrl-C: finish and save this epoch
    try:
        for epoch in range(state.epoch, state.epoch if stopped_early else t.epochs):
            model.train()
            t0 = time.perf_counter()
            perm = torch.randperm(n, generator=gen).to(device)
            losses = []
            parts: dict[str, list[torch.Tensor]] = {}
            bar = _progress(math.ceil(n / t.batch_size), f"epoch {epoch + 1}/{t.epochs}")
            for i in range(0, n, t.batch_size):
                idx = perm[i: i + t.batch_size]
                xb = x_train[idx]
                if xb.dtype == torch.uint8:  # memory-mapped data arrives as bytes
                    xb = xb.float().div_(255)
                yb = y_train[idx] if y_train is not None else None
                xin = noise(xb, gen if device.type == "cpu" else None) if noise else xb
                with autocast_context(device, precision):
                    out = loss_fn(xin, xb, yb, t.loss, epoch)
                opt.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(out.total).backward()
                    scaler.step(opt)
                    scaler.update()
                else:
                    out.total.backward()
                    opt.step()
                losses.append(out.total.detach())
                for k, v in out.parts.items():
                    parts.setdefault(k, []).append(v.detach())
                if bar is not None:
                    bar.update(1)
            if bar is not None:
                bar.close()
            batch_losses = group.average(torch.stack(losses).float()).cpu()
            bad = (~torch.isfinite(batch_losses)).nonzero()
            if len(bad):
                j = int(bad[0])
                kept = f"the checkpoint of epoch {saved_epoch} is kept" if saved_epoch else "no checkpoint was written"
                raise TrainingError(f"loss became {batch_losses[j].item()} at epoch {epoch + 1}, batch {j + 1}; "
                                    f"training stopped and {kept}; try a lower train.lr")
            train_seconds = time.perf_counter() - t0
            if sched is not None:
                sched.step()
            val = group.evaluate(model, x_val, t.loss)
            row = {
                "epoch": epoch + 1,
                "train_loss": float(batch_losses.mean()),
                "val_loss": val["loss"],
                "val_bce": val["bce"],
                "val_mse": val["mse"],
                "val_psnr": val["psnr"],
                "lr": opt.param_groups[0]["lr"],
                "seconds": train_seconds,
            }
            if getattr(model, "log_extra_metrics", False):  # e.g. the classifier's validation accuracy
                row.update({f"val_{k}": v for k, v in model.extra_metrics(x_val, y_val).items()})
            if len(parts) > 1:  # e.g. recon + penalty, or a VAE's recon + kl
                row.update({f"train_{k}": float(group.average(torch.stack(v).float()).mean()) for k, v in parts.items()})
            first_batch = len(state.batches)
            state.batches.extend({"epoch": epoch + 1, "batch": k + 1, "step": first_batch + k + 1, "loss": float(v)}
                                 for k, v in enumerate(batch_losses))
            state.history.append(row)
            state.epoch = epoch + 1
            shown = {k: val[k] for k in ("loss", "mse", *(("bce", "psnr") if unit_range else ())) if k in val}
            log(f"epoch {epoch + 1}/{t.epochs}  train {row['train_loss']:.4f}  val {format_metrics(shown, t.loss)}  "
                f"{train_seconds:.2f}s")
            for h in hooks:
                h.on_epoch_end(epoch + 1, row, model)

            stop = False
            if t.early_stopping:
                if state.best_val is None or row["val_loss"] < state.best_val - 1e-6:
                    state.best_val, state.bad_epochs = row["val_loss"], 0
                    state.best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    state.bad_epochs += 1
                    stop = state.bad_epochs >= t.early_stopping
            interrupted = group.any(ctrl_c.requested)
            if checkpoint_dir is not None and group.is_writer and (
                    state.epoch % t.checkpoint_every == 0 or state.epoch == t.epochs or stop or interrupted):
                save_checkpoint(checkpoint_dir, model, opt, sched, gen, state)
                saved_epoch = state.epoch
            if on_checkpoint is not None:
                on_checkpoint(state)
            if interrupted and state.epoch < t.epochs and not stop:
                raise TrainingInterrupted(f"stopped by Ctrl-C after epoch {state.epoch}; the checkpoint holds epoch "
                                          f"{saved_epoch}{_resume_hint(checkpoint_dir, saved_epoch)}")
            if stop:
                log(f"early stopping: no improvement for {t.early_stopping} epochs; keeping the best weights")
                break
    except KeyboardInterrupt:
        raise TrainingInterrupted(f"interrupted during epoch {state.epoch + 1}; the checkpoint holds epoch "
                                  f"{saved_epoch}{_resume_hint(checkpoint_dir, saved_epoch)}") from None
    finally:
        ctrl_c.restore()
    if state.best_weights is not None:
        model.load_state_dict(state.best_weights)
    return state


def _resume_hint(checkpoint_dir: Path | None, saved_epoch: int) -> str:
    return f"; resume with: aelab train --resume {checkpoint_dir.parent}" if checkpoint_dir is not None and saved_epoch else ""
