"""The training loop and its callbacks; it knows models, data and evaluation, not run directories.

``aelab.train(cfg)`` (runner.py) is the one entry point: it loads the data, builds the
model, assembles the callbacks and writes the run directory around ``fit``.
"""

from __future__ import annotations

from .callbacks import (
    Callback,
    CallbackList,
    Checkpointing,
    EarlyStopping,
    EpochLog,
    NaNGuard,
    OnState,
    ProgressBar,
    StopOnCtrlC,
    TrainingInterrupted,
    standard_callbacks,
)
from .checkpoint import TrainState
from .loop import Loop, fit, resolve_device, setup_runtime

__all__ = [
    "Callback",
    "CallbackList",
    "Checkpointing",
    "EarlyStopping",
    "EpochLog",
    "Loop",
    "NaNGuard",
    "OnState",
    "ProgressBar",
    "StopOnCtrlC",
    "TrainState",
    "TrainingInterrupted",
    "fit",
    "resolve_device",
    "setup_runtime",
    "standard_callbacks",
]
