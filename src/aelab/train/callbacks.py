"""Training callbacks: everything around the loop that is not the loop (Keras / Lightning style).

A callback overrides any of the lifecycle methods; each gets the ``Loop``
(model, data, config, optimizer, state, log), so a callback never loads data
or builds anything itself::

    on_train_begin(loop)        after set-up, before the first epoch (resume, Ctrl-C handler)
    on_epoch_begin(loop, epoch) epoch is 0-based
    on_batch_end(loop)          after each optimizer step (keep it cheap: no host sync)
    on_epoch_end(loop, row)     row: the epoch's metrics.csv row; loop.state already holds it
    on_train_end(loop)          after the last epoch, when training ended normally
    teardown(loop)              always, last: release what on_train_begin took

A callback ends training with ``loop.request_stop(reason)``; the loop finishes the
callbacks of that epoch, then stops. Callbacks run in the order given, so the
standard list (``standard_callbacks``) puts the NaN guard first and checkpointing
after every callback that may stop training.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import TrainingError
from ..evaluate.metrics import format_metrics
from .checkpoint import TrainState, load_checkpoint, save_checkpoint
from .interrupt import StopRequest
from .optim import follow_cosine

if TYPE_CHECKING:
    from .loop import Loop


class TrainingInterrupted(TrainingError):
    exit_code = 130


class Callback:
    """Base class: every method does nothing."""

    def on_train_begin(self, loop: Loop) -> None: ...

    def on_epoch_begin(self, loop: Loop, epoch: int) -> None: ...

    def on_batch_end(self, loop: Loop) -> None: ...

    def on_epoch_end(self, loop: Loop, row: dict[str, Any]) -> None: ...

    def on_train_end(self, loop: Loop) -> None: ...

    def teardown(self, loop: Loop) -> None: ...


class CallbackList:
    """Calls a list of callbacks in order; only those that override on_batch_end run per batch."""

    def __init__(self, callbacks: Sequence[Callback]):
        for c in callbacks:
            if not isinstance(c, Callback):
                raise TypeError(f"{type(c).__name__}: a training callback subclasses aelab.train.Callback")
        self.callbacks = list(callbacks)
        self.per_batch = [c for c in self.callbacks if type(c).on_batch_end is not Callback.on_batch_end]

    def on_train_begin(self, loop: Loop) -> None:
        for c in self.callbacks:
            c.on_train_begin(loop)

    def on_epoch_begin(self, loop: Loop, epoch: int) -> None:
        for c in self.callbacks:
            c.on_epoch_begin(loop, epoch)

    def on_batch_end(self, loop: Loop) -> None:
        for c in self.per_batch:
            c.on_batch_end(loop)

    def on_epoch_end(self, loop: Loop, row: dict[str, Any]) -> None:
        for c in self.callbacks:
            c.on_epoch_end(loop, row)

    def on_train_end(self, loop: Loop) -> None:
        for c in self.callbacks:
            c.on_train_end(loop)

    def teardown(self, loop: Loop) -> None:
        for c in reversed(self.callbacks):
            c.teardown(loop)


# -- the standard callbacks ----------------------------------------------------------


class NaNGuard(Callback):
    """Stops with one line when a batch loss is not finite, before anything of that epoch is saved.

    The loop hands over the epoch's batch losses already on the host (one transfer per
    epoch, which it needs for batches.csv anyway), so the guard adds no host sync."""

    def on_epoch_end(self, loop: Loop, row: dict[str, Any]) -> None:
        bad = (~loop.batch_losses.isfinite()).nonzero()
        if len(bad):
            j = int(bad[0])
            saved = loop.saved_epoch
            kept = f"the checkpoint of epoch {saved} is kept" if saved else "no checkpoint was written"
            raise TrainingError(
                f"loss became {loop.batch_losses[j].item()} at epoch {row['epoch']}, batch {j + 1}; "
                f"training stopped and {kept}; try a lower train.lr"
            )


class EpochLog(Callback):
    """One line per epoch through ``loop.log``."""

    def on_epoch_end(self, loop: Loop, row: dict[str, Any]) -> None:
        t = loop.cfg.train
        # each metric once, the loss first; BCE/PSNR only where the row has them (the data-fit rule)
        loop.log(
            f"epoch {row['epoch']}/{t.epochs}  train {row['train_loss']:.4f}  "
            f"val {format_metrics(row, t.loss, prefix='val_')}  {row['seconds']:.2f}s"
        )


class ProgressBar(Callback):
    """A tqdm bar over each epoch's batches, on a terminal only (AELAB_NO_PROGRESS=1 turns it off)."""

    def __init__(self) -> None:
        self.bar: Any = None

    def on_epoch_begin(self, loop: Loop, epoch: int) -> None:
        if sys.stderr.isatty() and not os.environ.get("AELAB_NO_PROGRESS"):
            from tqdm import tqdm

            self.bar = tqdm(
                total=loop.batches_per_epoch,
                desc=f"epoch {epoch + 1}/{loop.cfg.train.epochs}",
                leave=False,
                unit="batch",
                dynamic_ncols=True,
            )

    def on_batch_end(self, loop: Loop) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def on_epoch_end(self, loop: Loop, row: dict[str, Any]) -> None:
        self.teardown(loop)

    def teardown(self, loop: Loop) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class EarlyStopping(Callback):
    """Stops after ``patience`` epochs without a lower validation loss and ends on the best weights.

    Its state (best loss, epochs without improvement, best weights) lives in ``loop.state``,
    so it travels in checkpoints and a resumed run stops where an uninterrupted one does."""

    def __init__(self, patience: int):
        self.patience = patience

    def on_epoch_begin(self, loop: Loop, epoch: int) -> None:
        if loop.state.bad_epochs >= self.patience:  # resumed after it had stopped: no more epochs
            loop.request_stop("early stopping")

    def on_epoch_end(self, loop: Loop, row: dict[str, Any]) -> None:
        s = loop.state
        if s.best_val is None or row["val_loss"] < s.best_val - 1e-6:
            s.best_val, s.bad_epochs = row["val_loss"], 0
            s.best_weights = {k: v.detach().clone() for k, v in loop.model.state_dict().items()}
        else:
            s.bad_epochs += 1
            if s.bad_epochs >= self.patience:
                loop.request_stop("early stopping")
                loop.log(f"early stopping: no improvement for {self.patience} epochs; keeping the best weights")

    def on_train_end(self, loop: Loop) -> None:
        if loop.state.best_weights is not None:
            loop.model.load_state_dict(loop.state.best_weights)


class StopOnCtrlC(Callback):
    """First Ctrl-C: finish this epoch, save it, exit 130 naming the resume command; second: stop at once."""

    def __init__(self) -> None:
        self.request: StopRequest | None = None

    def on_train_begin(self, loop: Loop) -> None:
        self.request = StopRequest(announce=loop.group.is_writer).install()

    def on_epoch_end(self, loop: Loop, row: dict[str, Any]) -> None:
        assert self.request is not None
        if loop.group.any(self.request.requested) and loop.stop_reason is None:
            loop.request_stop("interrupt")

    def on_train_end(self, loop: Loop) -> None:
        if loop.stop_reason == "interrupt" and loop.state.epoch < loop.cfg.train.epochs:
            raise TrainingInterrupted(
                f"stopped by Ctrl-C after epoch {loop.state.epoch}; the checkpoint holds epoch "
                f"{loop.saved_epoch}{loop.resume_hint()}"
            )

    def teardown(self, loop: Loop) -> None:
        if self.request is not None:
            self.request.restore()
            self.request = None


class Checkpointing(Callback):
    """Resumes from ``folder`` when asked, and saves a checkpoint every ``train.checkpoint_every``
    epochs, at the last epoch and whenever training is about to stop (early stopping, Ctrl-C)."""

    def __init__(self, folder: Path | None, resume: bool = False, writes: bool = True):
        self.folder, self.resume, self.writes = folder, resume, writes

    def on_train_begin(self, loop: Loop) -> None:
        loop.checkpoint_dir = self.folder
        if self.resume and self.folder is not None:
            loop.state = load_checkpoint(self.folder, loop.model, loop.opt, loop.sched, loop.gen)
            loop.group.barrier()  # every rank has read it before rank 0 may replace it
            loop.saved_epoch = loop.state.epoch
            loop.log(f"resumed after epoch {loop.state.epoch}")
            # this resume's --set, or that of a resume which crashed before any checkpoint held its changes;
            # once a checkpoint is newer than the change, its optimizer and schedule already carry it
            last = loop.cfg.resumed[-1] if loop.cfg.resumed else None
            changed = last["set"] if last is not None and last["epoch"] == loop.state.epoch else {}
            if changed.get("train.lr") is not None:  # the checkpoint restored the old rate
                for g in loop.opt.param_groups:
                    g["lr"] = changed["train.lr"]
                if loop.sched is not None:
                    loop.sched.base_lrs = [changed["train.lr"]] * len(loop.opt.param_groups)
            if "train.epochs" in changed or changed.get("train.lr") is not None:
                follow_cosine(loop.sched, loop.opt, loop.cfg.train.epochs)  # it spans the run's length

    def on_epoch_end(self, loop: Loop, row: dict[str, Any]) -> None:
        s, t = loop.state, loop.cfg.train
        if (
            self.folder is not None
            and self.writes
            and loop.group.is_writer
            and (s.epoch % t.checkpoint_every == 0 or s.epoch == t.epochs or loop.stop_reason is not None)
        ):
            save_checkpoint(self.folder, loop.model, loop.opt, loop.sched, loop.gen, s)
            loop.saved_epoch = s.epoch


class OnState(Callback):
    """Calls ``fn(state)`` after resuming and after every epoch's checkpoint decision (metrics.csv, ...)."""

    def __init__(self, fn: Callable[[TrainState], None]):
        self.fn = fn

    def on_train_begin(self, loop: Loop) -> None:
        if loop.state.epoch:
            self.fn(loop.state)  # metrics.csv / batches.csv back to what the checkpoint holds

    def on_epoch_end(self, loop: Loop, row: dict[str, Any]) -> None:
        self.fn(loop.state)


def standard_callbacks(
    cfg,
    checkpoint_dir: Path | None = None,
    *,
    resume: bool = False,
    writes: bool = True,
    user: Sequence[Callback] = (),
    on_state: Callable[[TrainState], None] | None = None,
) -> list[Callback]:
    """The callbacks every training gets, in their order, with the caller's (``user``) in the middle:
    NaN guard, epoch log, progress bar, user callbacks, early stopping, Ctrl-C, checkpointing, ``on_state``."""
    cbs: list[Callback] = [NaNGuard(), EpochLog(), ProgressBar(), *user]
    if cfg.train.early_stopping:
        cbs.append(EarlyStopping(cfg.train.early_stopping))
    cbs += [StopOnCtrlC(), Checkpointing(checkpoint_dir, resume=resume, writes=writes)]
    if on_state is not None:
        cbs.append(OnState(on_state))
    return cbs
