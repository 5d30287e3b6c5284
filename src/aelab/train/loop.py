"""The training loop, readable top to bottom.

The whole training set lives in one tensor on the device; every epoch draws a
permutation and each batch is an index slice of it (no DataLoader, no worker
processes). Batch losses stay on the device until the epoch ends, so the loop
never waits on a host sync; the NaN guard reads them there, before a checkpoint
is written. Everything around the loop (NaN guard, log, progress bar, early
stopping, Ctrl-C, checkpoints, run files, pictures) is a callback (callbacks.py).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from ..config import Config, TrainConfig
from ..data import Splits
from ..data.mapped import MappedRows
from ..data.noise import compose
from ..errors import TrainingError
from ..evaluate.evaluate import data_fit, fitting_metrics
from ..evaluate.extra import extra_metrics
from ..evaluate.metrics import RegressionStats, summarize_errors
from ..models import capabilities
from ..models.base import LossOutput
from . import native
from .callbacks import Callback, CallbackList, TrainingInterrupted
from .checkpoint import TrainState
from .distributed import Group
from .distributed import current as process_group
from .fused_conv import ConvStep
from .fused_conv import plan as conv_plan
from .fused_dense import FusedDenseStep, plan
from .native import ByteRows, Kernels
from .optim import make_optimizer, make_scheduler, step_optimizer
from .precision import autocast_context, resolve_precision


def fit(
    model: torch.nn.Module,
    data: Splits,
    cfg: Config,
    callbacks: Sequence[Callback] = (),
    log: Callable[[str], None] = print,
) -> TrainState:
    """Trains ``model`` on ``data`` for ``cfg.train.epochs`` epochs; returns the final TrainState.

    ``callbacks`` do everything else (``standard_callbacks`` gives the usual list); callers
    go through the one entry point, ``aelab.train`` (runner.py), which assembles them."""
    flush_before = flush_denormal_enabled()
    try:
        return _fit(model, data, cfg, callbacks, log)
    finally:
        torch.set_flush_denormal(
            flush_before
        )  # setup_runtime turned it on for training: the caller's floats are theirs


def _fit(
    model: torch.nn.Module, data: Splits, cfg: Config, callbacks: Sequence[Callback], log: Callable[[str], None]
) -> TrainState:
    loop = Loop(model, data, cfg, log)
    cbs = CallbackList(callbacks)
    try:
        cbs.on_train_begin(loop)  # e.g. resume from the checkpoint, install the Ctrl-C handler
        for epoch in range(loop.state.epoch, cfg.train.epochs):
            cbs.on_epoch_begin(loop, epoch)
            if loop.stop_reason is not None:
                break
            t0 = time.perf_counter()
            loop.batch_losses, parts = loop.train_epoch(epoch, cbs)
            seconds = time.perf_counter() - t0
            if loop.sched is not None:
                loop.sched.step()
            row = loop.validate(epoch, parts, seconds)
            loop.record(row)
            cbs.on_epoch_end(loop, row)  # NaN guard first, checkpoint after every callback that may stop
            if loop.stop_reason is not None:
                break
        cbs.on_train_end(loop)
    except KeyboardInterrupt:
        raise TrainingInterrupted(
            f"interrupted during epoch {loop.state.epoch + 1}; the checkpoint holds epoch "
            f"{loop.saved_epoch}{loop.resume_hint()}"
        ) from None
    finally:
        cbs.teardown(loop)
    loop.state.step = loop.step_kind
    return loop.state


class Loop:
    """What one training holds: model, data on the device, optimizer, schedule, generator, state.

    Callbacks read and change it; ``train_epoch`` is the hot path."""

    def __init__(self, model: torch.nn.Module, data: Splits, cfg: Config, log: Callable[[str], None] = print):
        t = cfg.train
        self.model, self.data, self.cfg, self.log = model, data, cfg, log
        self.device = resolve_device(t.device)
        setup_runtime(cfg)
        self.precision = resolve_precision(t.precision, self.device)
        model.to(self.device)
        if any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
            # oneDNN / cuDNN convolutions run faster in NHWC
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.x_train: Any = _as_tensor(data.x_train, self.device)  # a tensor, or MappedRows for data.mmap
        # labels only for the families trained on them: gathering them costs a kernel per batch (6% of a small step)
        needs_labels = capabilities(cfg.model).needs_labels
        self.y_train: Any = _as_tensor(data.y_train, self.device) if needs_labels else None
        self.x_val, self.y_val = data.validation
        if len(data.x_train) < 1:
            raise TrainingError("the training split is empty")
        self.batches_per_epoch = math.ceil(len(data.x_train) / t.batch_size)
        self.noise = compose(cfg.data.noise)
        self.gen = torch.Generator().manual_seed(t.seed + 1)  # shuffling and noise, saved in checkpoints
        self.opt = make_optimizer(model.parameters(), t, self.device)
        self.sched = make_scheduler(self.opt, t)
        self.scaler = (
            torch.amp.GradScaler("cuda") if (self.precision == "fp16-mixed" and self.device.type == "cuda") else None
        )
        self.group = process_group()  # one process, or this rank's share under torchrun (distributed.py)
        self.loss_fn = self.group.loss_fn(model)
        # plain dense and conv models on a CPU skip autograd and autocast: the backward is written out
        # (fused_dense.py, fused_conv.py), the passes around the GEMMs in aelab's C kernels (native.py)
        writable = (
            self.device.type == "cpu" and self.precision in ("fp32", "bf16-mixed") and not isinstance(self.group, Group)
        )
        dense = plan(model, t.loss) if writable and t.fused_dense else None
        conv = conv_plan(model, t.loss) if writable and dense is None else None
        kernels = native_kernels(t, log) if dense or conv else None  # built only for a model that uses them
        self.fused: FusedDenseStep | ConvStep | None = None
        if dense:
            self.fused = FusedDenseStep(dense, self.opt, t.loss, cfg.model.output_activation, self.precision, kernels)
            self.step_kind = "written-out dense step, " + ("aelab C kernels" if kernels else "torch kernels")
        elif conv and kernels is not None:
            self.fused = ConvStep(conv, self.opt, t.loss, cfg.model.output_activation, self.precision, kernels)
            self.step_kind = "written-out conv step, aelab C kernels"
        else:
            self.step_kind = "autograd"
        self.kernels = kernels
        # the uint8 the training set was scaled from, to gather batches from (None: x_train's floats); without
        # noise the written-out dense step takes them as they are: its input gathered straight into its own
        # dtype, its targets as bytes (no float32 batch written, read back and cast)
        self.x_bytes = _byte_rows(data, self.x_train, kernels)
        self.byte_batches = (
            self.x_bytes is not None
            and kernels is not None
            and isinstance(self.fused, FusedDenseStep)
            and not self.noise
            and kernels.byte_division_exact(self.x_bytes[1])
        )
        # which validation metrics fit the data: BCE and PSNR (peak 1) on targets in [0, 1] only, as in summary.json
        self.data_fit = data_fit(self.x_val, data.scaler)
        self.epoch_metrics = capabilities(cfg.model).epoch_metrics  # e.g. the classifier's validation accuracy
        self.state = TrainState(epoch=0)
        self.batch_losses = torch.empty(0)  # the last epoch's, on the host
        self.stop_reason: str | None = None
        self.saved_epoch = 0  # the epoch the newest checkpoint holds (0: none)
        self.checkpoint_dir: Path | None = None

    def request_stop(self, reason: str) -> None:
        """Ends training after this epoch's callbacks (the first reason wins)."""
        if self.stop_reason is None:
            self.stop_reason = reason

    def resume_hint(self) -> str:
        d = self.checkpoint_dir
        return f"; resume with: aelab train --resume {d.parent}" if d is not None and self.saved_epoch else ""

    def train_epoch(self, epoch: int, cbs: CallbackList) -> tuple[torch.Tensor, dict[str, list[torch.Tensor]]]:
        """One pass over the shuffled training set; batch losses (host) and loss parts (device)."""
        t, model, dev = self.cfg.train, self.model, self.device
        model.train()
        n = len(self.x_train)
        perm = torch.randperm(n, generator=self.gen).to(dev)
        losses = []
        parts: dict[str, list[torch.Tensor]] = {}
        for i in range(0, n, t.batch_size):
            idx = perm[i : i + t.batch_size]
            if self.byte_batches:
                out = cast(FusedDenseStep, self.fused)(*self.byte_batch(idx))
            else:
                xb = self.rows(idx)
                if xb.dtype == torch.uint8:  # memory-mapped data arrives as bytes
                    xb = xb.float().div_(255)
                yb = _rows(self.y_train, idx) if self.y_train is not None else None
                xin = self.noise(xb, self.gen if dev.type == "cpu" else None) if self.noise else xb
                if self.fused is not None:  # loss, gradients and the optimizer step in one
                    out = self.fused(xin, xb)
                else:
                    out = self.autograd_step(xin, xb, yb, epoch)
            losses.append(out.total.detach())
            for k, v in out.parts.items():
                parts.setdefault(k, []).append(v.detach())
            cbs.on_batch_end(self)
        return self.group.average(torch.stack(losses).float()).cpu(), parts

    def rows(self, idx: torch.Tensor) -> torch.Tensor:
        """The training samples ``idx``: gathered from the bytes they were scaled from where the training set was
        bytes (a quarter of the memory to fetch, in random order; the same floats), else from x_train."""
        if self.x_bytes is not None and self.kernels is not None:
            src, divisor = self.x_bytes
            return self.kernels.gather_bytes(src, divisor, idx)
        return _rows(self.x_train, idx)

    def byte_batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, ByteRows]:
        """The written-out dense step's batch ``idx`` from the bytes (``byte_batches``): its input in its
        compute dtype and its targets as bytes, gathered in one pass."""
        assert self.byte_batches and self.x_bytes is not None and isinstance(self.fused, FusedDenseStep)
        src, divisor = self.x_bytes
        return cast(Kernels, self.kernels).gather_batch(src, divisor, idx, self.fused.dtype)

    def autograd_step(self, xin: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor | None, epoch: int) -> LossOutput:
        """Loss under autocast, backward, optimizer step (through the GradScaler for fp16 on CUDA)."""
        t, opt, scaler = self.cfg.train, self.opt, self.scaler
        with autocast_context(self.device, self.precision):
            out = self.loss_fn(xin, xb, yb, t.loss, epoch)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(out.total).backward()
            scaler.step(opt)
            scaler.update()
        else:
            out.total.backward()
            step_optimizer(opt)
        return out

    def validate(self, epoch: int, parts: dict[str, list[torch.Tensor]], seconds: float) -> dict[str, Any]:
        """The epoch's metrics.csv row: train loss, the validation metrics that fit the data
        (evaluate.fitting_metrics: the rule summary.json follows), lr, seconds, loss parts.

        The forward runs in the training precision, as Lightning validates (a 784-784-784 model's
        validation pass is 4x faster in bf16 than in fp32); the losses themselves are computed in fp32,
        and the final test metrics of summary.json in fp32 throughout."""
        stats = None if self.data_fit.unit_range else RegressionStats()
        fused = self.fused
        if isinstance(fused, FusedDenseStep) and stats is None and fused.validates():
            errors = summarize_errors(fused.errors(self.x_val))  # one C pass, not seven
        else:
            with autocast_context(self.device, self.precision):
                errors = self.group.evaluate(self.model, self.x_val, self.cfg.train.loss, stats)
        val = fitting_metrics(errors, stats, self.data_fit)
        row = {
            "epoch": epoch + 1,
            "train_loss": float(self.batch_losses.mean()),
            **{f"val_{k}": v for k, v in val.items() if k != "psnr_peak"},  # the peak is the split's, not the epoch's
            "lr": self.opt.param_groups[0]["lr"],
            "seconds": seconds,
        }
        if self.epoch_metrics:
            row.update({f"val_{k}": v for k, v in extra_metrics(self.model, self.x_val, self.y_val).items()})
        if len(parts) > 1:  # e.g. recon + penalty, or a VAE's recon + kl
            row.update(
                {f"train_{k}": float(self.group.average(torch.stack(v).float()).mean()) for k, v in parts.items()}
            )
        return row

    def record(self, row: dict[str, Any]) -> None:
        s = self.state
        first = len(s.batches)
        s.batches.extend(
            {"epoch": row["epoch"], "batch": k + 1, "step": first + k + 1, "loss": float(v)}
            for k, v in enumerate(self.batch_losses)
        )
        s.history.append(row)
        s.epoch = row["epoch"]


def native_kernels(t: TrainConfig, log: Callable[[str], None] | None = None) -> Kernels | None:
    """aelab's C kernels for ``train.kernels``: auto takes them where they build; native insists."""
    if t.kernels == "torch":
        return None
    kernels = native.load(log)
    if kernels is None and t.kernels == "native":
        raise TrainingError(f"train.kernels: native was asked for, but {native.why_not()}; use train.kernels=auto")
    return kernels


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError(
            "train.device: cuda was asked for but no CUDA device is available; use train.device=auto or cpu"
        )
    return torch.device(name)


def flush_denormal_enabled() -> bool:
    """Whether this thread flushes denormal floats to zero now (torch can set it but not read it back):
    a denormal float32 multiplied by one survives unless flushing is on."""
    tiny = torch.tensor([1e-40], dtype=torch.float64).float()  # made while flushing may be on, so built in float64
    return bool((tiny * 1.0).item() == 0.0)


def setup_runtime(cfg: Config) -> None:
    """Process-wide settings that make CPU training fast and repeatable (``fit`` restores flush-denormal after)."""
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    # Denormal floats make CPU matmuls crawl as weights shrink; flushing them keeps epochs flat.
    torch.set_flush_denormal(True)


def _rows(a: torch.Tensor | MappedRows, idx: torch.Tensor) -> torch.Tensor:
    """The batch's rows: index_select on a tensor (3x faster than ``a[idx]``'s advanced indexing on CPU)."""
    return a.index_select(0, idx) if isinstance(a, torch.Tensor) else a[idx]


def _byte_rows(data: Splits, x_train: Any, kernels: Kernels | None) -> tuple[torch.Tensor, float] | None:
    """``data.train_bytes`` as a tensor for ``Kernels.gather_bytes``, where they gather what x_train holds: the
    same shape, and the first and last rows equal (a Splits made by hand may pair them wrongly)."""
    if kernels is None or data.train_bytes is None or not isinstance(x_train, torch.Tensor):
        return None
    raw, divisor = data.train_bytes
    with warnings.catch_warnings():  # the file's read-only bytes: only ever read here
        warnings.simplefilter("ignore", UserWarning)
        src = torch.as_tensor(np.ascontiguousarray(raw))
    if src.shape != x_train.shape or src.dtype != torch.uint8 or x_train.dtype != torch.float32 or not len(src):
        return None
    ends = torch.arange(min(64, len(src)))
    idx = torch.cat([ends, len(src) - 1 - ends])
    return (src, divisor) if torch.equal(kernels.gather_bytes(src, divisor, idx), _rows(x_train, idx)) else None


def _as_tensor(a: np.ndarray | None, device: torch.device) -> torch.Tensor | MappedRows | None:
    if a is None:
        return None
    if isinstance(a, np.memmap):  # data.mmap: batches are read from disk, never the whole file
        return MappedRows(a, device)
    t = torch.as_tensor(np.ascontiguousarray(a))
    return t.to(device)
