"""Several runs of one architecture trained together as one stacked model: seeds, learning rates, noise levels.

Every member keeps what ``fit`` would give it alone: its own ``Loop`` (model initialised
from its own seed, optimizer, scheduler, generator for shuffling and noise) and its own
standard callbacks (NaN guard, early stopping, checkpointing, metrics.csv). Each step stacks
the members' parameters (``torch.stack``, so gradients flow back to each member's own
tensors), runs the model once (batched GEMMs for plain dense models, ``torch.func.vmap``
otherwise: the per-step Python and dispatch cost is paid once for all members), and the
backward of the summed losses gives every member the gradient of its own loss. Validation
and the end of each epoch go through the member's ``Loop.validate`` / ``record`` and its
callbacks, so each member's state is the one ``fit`` would reach; a member that stops (early
stopping, a NaN) simply leaves the stack. The run directories are written by runner.py
(``aelab.runner.train_stacked``) with the code that writes a single run's.

Members agree on everything that shapes a step (model, data, batch size, loss, precision,
device) and may differ in :data:`MAY_DIFFER`; the family must declare ``Capabilities.stackable``
and its config may refuse (``ModelConfig.stack_refusal``). ``why_not_stackable`` says why a set
of configs cannot be stacked; the sweep then trains them one by one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn
from torch.func import functional_call, vmap

from ..config import Config
from ..data import Splits
from ..errors import TrainingError
from ..models import Autoencoder, capabilities
from ..models.base import reconstruction_loss
from .callbacks import Callback, CallbackList, EpochLog, ProgressBar, StopOnCtrlC
from .checkpoint import TrainState
from .fused_dense import FusedDenseStep, StackedDenseStep, dense_layers
from .loop import Loop, flush_denormal_enabled
from .native import ByteRows
from .optim import step_optimizer
from .precision import autocast_context

# config keys (dotted) whose values may differ between the members of one stack
MAY_DIFFER = frozenset(
    {
        "name",
        "description",
        "published",
        "train.seed",
        "train.lr",
        "train.weight_decay",
        "train.momentum",
        "train.epochs",
        "train.early_stopping",
        "train.schedule",
        "train.step_size",
        "train.gamma",
        "train.checkpoint_every",
        "data.noise",
    }
)


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key not in MAY_DIFFER:
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def shape_key(cfg: Config) -> tuple:
    """What members of one stack must share: the config without the keys that may differ."""
    return tuple(sorted((k, repr(v)) for k, v in _flat(cfg.to_dict()).items() if k not in MAY_DIFFER))


def why_not_stackable(cfgs: Sequence[Config]) -> str | None:
    """None when these configs can train as one stack; else the reason, in a few words."""
    if len(cfgs) < 2:
        return "a single run"
    first = cfgs[0]
    if any(shape_key(c) != shape_key(first) for c in cfgs[1:]):
        return "the configs differ in more than seed, lr, weight decay, schedule, epochs, early stopping or noise"
    m = first.model
    if not capabilities(m).stackable:
        return f"model {m.name} (its family does not declare Capabilities.stackable)"
    refusal = m.stack_refusal()
    if refusal is not None:
        return refusal
    if first.data.mmap:
        return "data.mmap reads batches from disk"
    from .distributed import current

    if current().world > 1:
        return "distributed training"
    return None


@dataclass
class Member:
    """One run inside the stack: the ``Loop`` and callbacks ``fit`` would hold for it alone."""

    model: Autoencoder
    loop: Loop
    callbacks: CallbackList
    error: str | None = None
    done: bool = False

    @property
    def state(self) -> TrainState:
        return self.loop.state


class _Forward(nn.Module):
    """Code and logits as a module's forward, so functional_call can swap in stacked parameters."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        z = self.model.encode(x)
        return z, self.model.decode_logits(z)


def stacked_loss(
    model: Autoencoder, z: torch.Tensor, logits: torch.Tensor, target: torch.Tensor, loss: str, penalised: bool
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Autoencoder.compute_loss for (members, batch, ...) tensors: one loss per member, mean per value.

    Outside vmap on purpose: vmap has no batching rule for BCE with logits and decomposes it into a
    dozen element-wise passes. Member by member rather than over the whole stack: one member's
    (batch, values) slice stays in L2 through the loss and its gradient, the stack does not.
    """
    pairs = zip(logits.unbind(0), target.unbind(0))
    recon = torch.stack([reconstruction_loss(lg, t, loss, model.output_activation) for lg, t in pairs])
    if not penalised:
        return recon, {"recon": recon}
    pen = cast(torch.Tensor, vmap(model.code_penalty)(z))
    return recon + pen, {"recon": recon, "penalty": pen}


def _dense_forward(layers, params: dict[str, torch.Tensor], x: torch.Tensor, code_layer: int):
    """(members, batch, ...) through stacked Linear weights with baddbmm: one batched GEMM per layer, no vmap."""
    m_, b_ = x.shape[:2]
    z = None
    for i, (name, mod) in enumerate(layers):
        if isinstance(mod, nn.Flatten):
            x = x.reshape(m_, b_, -1)
        elif isinstance(mod, nn.Unflatten):
            x = x.reshape(m_, b_, *mod.unflattened_size)
        elif isinstance(mod, nn.Linear):
            w, b = params[f"{name}.weight"], params[f"{name}.bias"]
            x = torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))
        else:
            x = mod(x)
        if i == code_layer:
            z = x
    return z, x


class StackedStep:
    """One optimizer step of every model at once: stack parameters, vmapped forward, one backward, each optimizer.

    ``models`` share an architecture; returns the detached per-member loss (members,) and its parts.
    """

    def __init__(
        self,
        models: Sequence[Autoencoder],
        opts: Sequence[torch.optim.Optimizer],
        loss: str,
        device: torch.device,
        precision: str,
    ):
        self.models, self.opts, self.loss, self.device, self.precision = (
            list(models),
            list(opts),
            loss,
            device,
            precision,
        )
        self.names = [k for k, _ in models[0].named_parameters()]
        self.plist = [dict(m.named_parameters()) for m in models]
        self.model = models[0]
        self.penalised: bool | None = None  # does the model add a code penalty (asked of it on the first step)
        layers = dense_layers(self.model)
        if layers is not None:  # dense: batched GEMMs written out (vmap's linear copies more)
            code = len(self.model.get_submodule("encoder")) - 1  # type: ignore[arg-type]  # an nn.Sequential
            self.forward: Callable[..., tuple[torch.Tensor, torch.Tensor]] = lambda params, xin: _dense_forward(
                layers, params, xin, code
            )
        else:
            buffers = dict(models[0].named_buffers())
            template = _Forward(models[0])

            def one(params: dict[str, torch.Tensor], xin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                return functional_call(template, {f"model.{k}": v for k, v in {**params, **buffers}.items()}, (xin,))

            self.forward = vmap(one)

    def __call__(self, xin: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        params = {k: torch.stack([p[k] for p in self.plist]) for k in self.names}
        with autocast_context(self.device, self.precision):
            z, logits = self.forward(params, xin)
            if self.penalised is None:
                with torch.no_grad():
                    self.penalised = self.model.code_penalty(z[0]) is not None
            total, parts = stacked_loss(self.model, z, logits, target, self.loss, self.penalised)
        for o in self.opts:
            o.zero_grad(set_to_none=True)
        total.sum().backward()  # member m's parameters get the gradient of member m's loss alone
        for o in self.opts:
            step_optimizer(o)
        return total.detach(), {k: v.detach() for k, v in parts.items()}


# a stack logs one line per epoch for all members, and Ctrl-C ends the whole stack; the rest of the standard
# callbacks (NaN guard, early stopping, checkpointing, metrics.csv, the caller's) run per member as in fit()
_PER_STACK = (EpochLog, ProgressBar, StopOnCtrlC)


def fit_stacked(
    models: Sequence[Autoencoder],
    cfgs: Sequence[Config],
    data: Splits,
    callbacks: Sequence[Sequence[Callback]],
    log: Callable[[str], None] = print,
) -> list[Member]:
    """Trains every model as ``fit(model, data, cfg, callbacks)`` would alone, in one stacked model.

    Returns the members in order, each with its final state, or ``error`` set (e.g. a NaN loss) when its
    callbacks stopped it with a TrainingError; the others go on."""
    why = why_not_stackable(cfgs)
    if why is not None:
        raise TrainingError(f"cannot stack these runs: {why}")
    flush_before = flush_denormal_enabled()
    try:
        return _fit_stacked(models, cfgs, data, callbacks, log)
    finally:
        torch.set_flush_denormal(flush_before)  # as fit() does: the caller's floats are theirs


def _fit_stacked(
    models: Sequence[Autoencoder],
    cfgs: Sequence[Config],
    data: Splits,
    callbacks: Sequence[Sequence[Callback]],
    log: Callable[[str], None],
) -> list[Member]:
    members = []
    for i, (model, cfg, cbs) in enumerate(zip(models, cfgs, callbacks)):
        name = cfg.name or f"run {i + 1}"
        loop = Loop(model, data, cfg, log=_prefixed(log, f"  {name}: "))
        members.append(Member(model, loop, CallbackList([c for c in cbs if not isinstance(c, _PER_STACK)])))
    t = cfgs[0].train
    device, precision = members[0].loop.device, members[0].loop.precision
    x_train = members[0].loop.x_train
    n, bs = len(x_train), t.batch_size
    try:
        for m in members:
            m.callbacks.on_train_begin(m.loop)
        while True:
            active = [m for m in members if not m.done and m.error is None and m.state.epoch < m.loop.cfg.train.epochs]
            for m in active:
                m.callbacks.on_epoch_begin(m.loop, m.state.epoch)
                m.done = m.loop.stop_reason is not None
            active = [m for m in active if not m.done]
            if not active:
                break
            epoch = min(m.state.epoch for m in active)
            t0 = time.perf_counter()
            for m in active:
                m.loop.model.train()
            perms = torch.stack([torch.randperm(n, generator=m.loop.gen) for m in active]).to(device)
            noisy = any(m.loop.noise for m in active)
            losses: list[torch.Tensor] = []
            parts: dict[str, list[torch.Tensor]] = {}
            step = stacked_step(active, t.loss, device, precision)
            for m in active:  # summary.json's train_step
                m.state.step = "stacked, " + (m.loop.step_kind if isinstance(step, StackedDenseStep) else "autograd")
            bytes_in = isinstance(step, StackedDenseStep) and all(m.loop.byte_batches for m in active)
            for i in range(0, n, bs):
                idx = perms[:, i : i + bs]
                target: torch.Tensor | ByteRows
                if bytes_in:  # input in the step's dtype, targets as bytes, one gather for all (Loop.byte_batch)
                    xin, t_b = active[0].loop.byte_batch(idx.reshape(-1))
                    xin, target = xin.view(*idx.shape, -1), ByteRows(t_b.rows.view(*idx.shape, -1), t_b.divisor)
                else:  # (members, batch, ...): one gather for all members (the members share the data)
                    target = members[0].loop.rows(idx.reshape(-1)).view(*idx.shape, *x_train.shape[1:])
                    xin = (
                        torch.stack(
                            [
                                m.loop.noise(x, m.loop.gen if device.type == "cpu" else None) if m.loop.noise else x
                                for m, x in zip(active, target)
                            ]
                        )
                        if noisy
                        else target
                    )
                total, part = step(xin, target)
                losses.append(total)
                for k, v in part.items():
                    parts.setdefault(k, []).append(v)
            seconds = time.perf_counter() - t0
            all_losses = torch.stack(losses).float().cpu()  # (batches, members): one transfer per epoch
            for j, m in enumerate(active):
                _end_epoch(m, epoch, all_losses[:, j], {k: [b[j] for b in v] for k, v in parts.items()}, seconds)
            vals = "  ".join(f"{m.state.history[-1]['val_loss']:.4f}" for m in active if m.error is None)
            log(f"epoch {epoch + 1}  val {t.loss} {vals}  {seconds:.2f}s for {len(active)} runs")
        for m in members:
            if m.error is None:
                m.callbacks.on_train_end(m.loop)  # e.g. early stopping puts the best weights back
    finally:
        for m in members:
            m.callbacks.teardown(m.loop)
    return members


def stacked_step(active: list[Member], loss: str, device: torch.device, precision: str):
    """The members' written-out dense steps batched (fused_dense.StackedDenseStep) where every member's loop
    has one with aelab's C kernels; else the autograd stack."""
    fused = [m.loop.fused for m in active]
    if all(isinstance(f, FusedDenseStep) and f.kernels is not None for f in fused):
        return StackedDenseStep(cast(list[FusedDenseStep], fused))
    return StackedStep([m.model for m in active], [m.loop.opt for m in active], loss, device, precision)


def _prefixed(log: Callable[[str], None], prefix: str) -> Callable[[str], None]:
    return lambda s: log(prefix + s)


def _end_epoch(
    m: Member, epoch: int, batch_losses: torch.Tensor, parts: dict[str, list[torch.Tensor]], seconds: float
) -> None:
    """fit()'s end of an epoch for one member: schedule, validation row, record, its callbacks."""
    loop = m.loop
    loop.batch_losses = batch_losses
    if loop.sched is not None:
        loop.sched.step()
    row = loop.validate(epoch, parts, seconds)
    loop.record(row)
    try:
        m.callbacks.on_epoch_end(loop, row)  # NaN guard first, checkpointing and metrics.csv last
    except TrainingError as e:
        m.error = str(e)
        loop.log(m.error)
        return
    m.done = loop.stop_reason is not None
