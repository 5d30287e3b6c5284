"""Optimizers with Keras' defaults (so recipes reproduce the seeds), and LR schedules."""

from __future__ import annotations

import torch

from ..config import TrainConfig

# Keras defaults: adam lr 1e-3 eps 1e-7; adadelta lr 1.0 rho 0.95 eps 1e-7 (Keras 2, as the seeds used)
DEFAULT_LR = {"adam": 1e-3, "adamw": 1e-3, "adadelta": 1.0, "sgd": 0.01, "rmsprop": 1e-3}


def make_optimizer(params, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    lr = cfg.lr if cfg.lr is not None else DEFAULT_LR[cfg.optimizer]
    wd = cfg.weight_decay
    if cfg.optimizer in ("adam", "adamw"):
        cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
        # fused kernels: one pass over all parameters instead of a Python loop per tensor
        return cls(params, lr=lr, eps=1e-7, weight_decay=wd, fused=True)
    if cfg.optimizer == "adadelta":
        return torch.optim.Adadelta(params, lr=lr, rho=0.95, eps=1e-7, weight_decay=wd)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=wd)
    return torch.optim.RMSprop(params, lr=lr, alpha=0.9, eps=1e-7, weight_decay=wd)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig):
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
    return None
