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


def step_optimizer(opt: torch.optim.Optimizer) -> None:
    """``opt.step()``; for torch's fused Adam/AdamW, the same kernel on the same state, called directly.

    ``Optimizer.step`` spends about 0.1 ms of Python per call (hooks, grouping tensors, checks), 5% of a
    784-784-784 step on a CPU (docs/PERFORMANCE.md). Called directly, the update and the state_dict are
    torch's own; anything else (the first step, which creates the state; a parameter without state; hooks;
    amsgrad, maximize, a tensor lr; mixed devices or dtypes; another optimizer) goes through ``opt.step()``.
    """
    calls = _direct_adam_calls(opt)
    if calls is None:
        opt.step()
        return
    for kernel, lists, kwargs in calls:
        torch._foreach_add_(lists[-1], 1)  # the step counts, as torch's _fused_adam does first
        kernel(*lists[:4], [], lists[-1], **kwargs)


def _direct_adam_calls(opt: torch.optim.Optimizer) -> list | None:
    from torch.optim import optimizer as base

    if type(opt) not in (torch.optim.Adam, torch.optim.AdamW):
        return None
    if opt._optimizer_step_pre_hooks or opt._optimizer_step_post_hooks:
        return None
    if base._global_optimizer_pre_hooks or base._global_optimizer_post_hooks:
        return None
    calls = []
    for g in opt.param_groups:
        if not g.get("fused") or g["amsgrad"] or g["maximize"] or g["differentiable"] or g["capturable"]:
            return None
        if isinstance(g["lr"], torch.Tensor) or any(isinstance(b, torch.Tensor) for b in g["betas"]):
            return None
        params = [p for p in g["params"] if p.grad is not None]
        if not params:
            continue
        if any(p not in opt.state or "exp_avg" not in opt.state[p] for p in params):
            return None
        if len({(p.device, p.dtype) for p in params}) != 1 or any(
            p.grad.dtype != p.dtype or p.grad.is_sparse for p in params
        ):
            return None
        st = [opt.state[p] for p in params]
        lists = [params, [p.grad for p in params], [s["exp_avg"] for s in st], [s["exp_avg_sq"] for s in st]]
        lists.append([s["step"] for s in st])
        kernel = torch._fused_adamw_ if g.get("decoupled_weight_decay") else torch._fused_adam_
        kwargs = {
            "amsgrad": False,
            "lr": g["lr"],
            "beta1": g["betas"][0],
            "beta2": g["betas"][1],
            "weight_decay": g["weight_decay"],
            "eps": g["eps"],
            "maximize": False,
            "grad_scale": None,
            "found_inf": None,
        }
        calls.append((kernel, lists, kwargs))
    return calls


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig):
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
    return None
