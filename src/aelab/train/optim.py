"""Optimizers with Keras' defaults (so recipes reproduce the seeds), and LR schedules."""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable

import torch
from torch.optim import optimizer as _optimizer_module  # its global step hooks (an import in a step costs 3-15 us)

from ..config import TrainConfig
from .native import AdamJobs, Kernels

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
    784-784-784 step on a CPU, and its first call imports torch._dynamo (1.2-1.5 s; docs/PERFORMANCE.md).
    Called directly, the state (made on the first step by Adam's own ``_init_group``), the update and the
    state_dict are torch's own; anything else (hooks; amsgrad, maximize, a tensor lr; mixed devices or
    dtypes; another optimizer) goes through ``opt.step()``.
    """
    calls = _direct_adam_calls(opt)
    if calls is None:
        opt.step()
        return
    for kernel, lists, kwargs in calls:
        torch._foreach_add_(lists[-1], 1)  # the step counts, as torch's _fused_adam does first
        kernel(*lists[:4], [], lists[-1], **kwargs)
    opt._opt_called = True  # type: ignore[attr-defined]  # what an LR scheduler's wrapper of step() records


def _direct_adam_calls(opt: torch.optim.Optimizer) -> list | None:
    if _hooked(opt):
        return None
    calls = []
    for g in opt.param_groups:
        if not g.get("fused") or not _plain_group(g):
            return None
        params = [p for p in g["params"] if p.grad is not None]
        if not params:
            continue
        if len({(p.device, p.dtype) for p in params}) != 1 or any(
            p.grad.dtype != p.dtype or p.grad.is_sparse or p.is_complex() for p in params
        ):
            return None
        if any(not opt.state.get(p) for p in params):  # the first step: torch's own lazy initialization
            opt._init_group(g, [], [], [], [], [], [])  # type: ignore[attr-defined]
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


class NativeAdam:
    """torch's Adam/AdamW step for a fixed list of float32 parameters, by aelab's C kernel (native.py).

    The gradients are taken as they come (bf16 from a bf16 backward: no cast to float32 first) and a bf16
    copy of each updated parameter is written in the same pass, for the next bf16 forward. The state
    (exp_avg, exp_avg_sq, step) is the optimizer's own, so checkpoints, resume and schedules are unchanged;
    the arithmetic is torch's fused kernel's (tests/test_native.py). ``ready()`` says when it can take the
    step: Adam or AdamW, no amsgrad / maximize / tensor lr / hooks, and every parameter's state made
    (torch's ``opt.step()`` makes it on the first step)."""

    def __init__(self, opt: torch.optim.Optimizer, params: list[torch.Tensor], kernels: Kernels):
        self.opt, self.params, self.kernels = opt, params, kernels
        self._plan: list[tuple[dict, list[tuple[int, torch.Tensor, dict]]]] | None = None
        self._made_from: tuple[int, int] = (0, 0)

    def ready(self) -> bool:
        opt = self.opt
        if _hooked(opt):
            return False
        made_from = (id(opt.state), id(opt.param_groups))  # load_state_dict replaces both
        if self._plan is None or made_from != self._made_from:
            self._plan, self._made_from = self._make_plan(), made_from
        return self._plan is not None and all(_plain_group(g) for g, _ in self._plan)  # lr may become a tensor

    def _make_plan(self):
        opt = self.opt
        if sum(len(g["params"]) for g in opt.param_groups) != len(self.params):
            return None
        index = {id(p): i for i, p in enumerate(self.params)}
        plan = []
        for g in opt.param_groups:
            if not _plain_group(g):
                return None
            members = []
            for p in g["params"]:
                st = opt.state.get(p)
                if id(p) not in index or not st or "exp_avg" not in st or p.dtype != torch.float32:
                    return None
                if p.device.type != "cpu" or not p.is_contiguous():
                    return None
                step = st.get("step")
                if not isinstance(step, torch.Tensor) or step.dtype != torch.float32 or step.numel() != 1:
                    return None  # the kernel counts the step in the state's own float32 tensor
                if step.device.type != "cpu":
                    return None
                members.append((index[id(p)], p, st))
            plan.append((g, members))
        return plan

    def step(self, grads: list[torch.Tensor], copies: list[torch.Tensor], jobs: AdamJobs | None = None) -> None:
        """One step from ``grads`` (``params`` order), writing the bf16 results into ``copies``; with ``jobs``,
        the updates join it and happen when its owner runs them (a stack runs all members' in one call)."""
        own = jobs is None
        jobs = AdamJobs() if jobs is None else jobs
        decoupled = type(self.opt) is torch.optim.AdamW
        for g, members in self._plan or ():
            lr, betas, eps, wd = g["lr"], g["betas"], g["eps"], g["weight_decay"]
            dec = decoupled or bool(g.get("decoupled_weight_decay"))
            for i, p, st in members:
                jobs.add(p, grads[i], st["exp_avg"], st["exp_avg_sq"], copies[i], lr, betas, eps, wd, dec, st["step"])
        if own:
            self.kernels.adam_many(jobs)


def _plain_group(g: dict) -> bool:
    """An Adam/AdamW param group the direct kernels take: no amsgrad, maximize, differentiable or capturable
    step, and plain-number lr and betas."""
    if g["amsgrad"] or g["maximize"] or g.get("differentiable") or g.get("capturable"):
        return False
    return not isinstance(g["lr"], torch.Tensor) and not any(isinstance(b, torch.Tensor) for b in g["betas"])


def _hooked(opt: torch.optim.Optimizer) -> bool:
    """Not plain Adam/AdamW, or something hooks its step (then only ``opt.step()`` honours it)."""
    if type(opt) not in (torch.optim.Adam, torch.optim.AdamW):
        return True
    if opt._optimizer_step_pre_hooks or opt._optimizer_step_post_hooks:
        return True
    return bool(_optimizer_module._global_optimizer_pre_hooks or _optimizer_module._global_optimizer_post_hooks)


# torch.optim marks add_param_group, state_dict, load_state_dict and zero_grad with torch._disable_dynamo, whose
# first call imports torch._dynamo (1.2-1.5 s, a fifth of a 10-epoch `aelab train` of 784-32-784) to make
# them untraceable. Nothing can trace while torch._dynamo is not loaded, so until it is each of them runs as
# it is; the first call after anything loads it hands back to torch's wrapper, which then does what it did.
_DYNAMO_DISABLED = ("add_param_group", "state_dict", "load_state_dict", "zero_grad")
_DISABLE_CACHE = "__dynamo_disable"  # where torch._disable_dynamo's wrapper keeps dynamo's disabled function


def _run_as_is_until_dynamo_loads(method: Callable) -> None:
    fn = getattr(method, "__wrapped__", None)
    if fn is None or getattr(fn, _DISABLE_CACHE, None) is not None:
        return  # not torch's wrapper as we know it, or already resolved: leave it to torch

    def as_is(*args, **kwargs):
        if "torch._dynamo" in sys.modules:
            # torch's wrapper makes and keeps the real one on this call (another thread may have handed over)
            with contextlib.suppress(AttributeError):
                if getattr(fn, _DISABLE_CACHE) is as_is:
                    delattr(fn, _DISABLE_CACHE)
            return method(*args, **kwargs)
        return fn(*args, **kwargs)

    setattr(fn, _DISABLE_CACHE, as_is)


if "torch._dynamo" not in sys.modules:
    for _name in _DYNAMO_DISABLED:
        _run_as_is_until_dynamo_loads(getattr(torch.optim.Optimizer, _name))


def follow_cosine(sched, opt: torch.optim.Optimizer, epochs: int) -> None:
    """A resumed run whose train.epochs or train.lr changed: a cosine schedule spans the run's length
    (T_max = train.epochs) from its base rate, so the epochs left follow the cosine over the new length and
    base from the epoch reached (the rate set to that curve's value now). Without this the loaded schedule
    kept the old length: at its end the rate is 0 and the cosine climbs back up. Other schedules: unchanged."""
    if not isinstance(sched, torch.optim.lr_scheduler.CosineAnnealingLR) or sched.last_epoch >= epochs:
        return
    t, low = sched.last_epoch, sched.eta_min
    sched.T_max = epochs
    lrs = [low + (base - low) * (1 + math.cos(math.pi * t / epochs)) / 2 for base in sched.base_lrs]
    for g, lr in zip(opt.param_groups, lrs):
        g["lr"] = lr
    sched._last_lr = lrs  # what get_last_lr() reports; the next step() goes on from the group's rate


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig):
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
    return None
