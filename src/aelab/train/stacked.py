"""Several runs of one architecture trained together as one stacked model: seeds, learning rates, noise levels.

Every member keeps what ``fit`` would give it alone: its own nn.Module (initialised
from its own seed), its own optimizer and scheduler, and its own generator for
shuffling and noise. Each step stacks the members' parameters (``torch.stack``,
so gradients flow back to each member's own tensors), runs the model once under
``torch.func.vmap`` (batched matmuls instead of M small ones: the per-step
Python and dispatch cost is paid once for all members), and the backward of the
summed losses gives every member the gradient of its own loss. Validation,
early stopping, checkpoints and metrics are per member, so each run directory
is the one ``aelab train`` would write for that config, and a member that stops
(early stopping, a NaN) simply leaves the stack.

Members agree on everything that shapes a step (model, data, batch size, loss,
precision, device) and may differ in :data:`MAY_DIFFER`. ``why_not_stackable``
says why a set of configs cannot be stacked; the sweep then trains them one by one.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from ..config import Config
from ..data import Splits
from ..data.noise import compose
from ..errors import TrainingError
from ..evaluate.evaluate import evaluate
from .checkpoint import TrainState, save_checkpoint
from .loop import _as_tensor, resolve_device, setup_runtime
from .optim import make_optimizer, make_scheduler
from .precision import autocast_context, resolve_precision

# config keys (dotted) whose values may differ between the members of one stack
MAY_DIFFER = frozenset({
    "name", "description", "published", "train.seed", "train.lr", "train.weight_decay", "train.momentum",
    "train.epochs", "train.early_stopping", "train.schedule", "train.step_size", "train.gamma",
    "train.checkpoint_every", "data.noise",
})
FAMILIES = ("dense", "conv")  # models whose loss is a pure function of parameters and input (no sampling, no labels)


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
    if m.name not in FAMILIES:
        return f"model {m.name} (stacking covers {', '.join(FAMILIES)})"
    drop = m.dropout if isinstance(m.dropout, list) else [m.dropout]
    if any(d > 0 for d in drop):
        return "dropout draws from the global random stream, not each member's own"
    if m.batch_norm or m.tied:
        return "batch norm or tied weights"
    if first.data.mmap:
        return "data.mmap reads batches from disk"
    from .distributed import current

    if current().world > 1:
        return "distributed training"
    return None


@dataclass
class Member:
    """One run inside the stack: what fit() would hold for it alone."""
    cfg: Config
    model: nn.Module
    checkpoint_dir: Path | None = None
    on_checkpoint: Callable[[TrainState], None] | None = None
    opt: torch.optim.Optimizer = field(init=False)
    sched: Any = field(init=False)
    gen: torch.Generator = field(init=False)
    noise: Any = field(init=False)
    state: TrainState = field(default_factory=lambda: TrainState(epoch=0))
    error: str | None = None
    done: bool = False


class _Forward(nn.Module):
    """Code and logits as a module's forward, so functional_call can swap in stacked parameters."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        z = self.model.encode(x)
        return z, self.model.decode_logits(z)


def stacked_loss(model: nn.Module, z: torch.Tensor, logits: torch.Tensor, target: torch.Tensor,
                 loss: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Autoencoder.compute_loss for (members, batch, ...) tensors: one loss per member, mean per value.

    Outside vmap on purpose: vmap has no batching rule for BCE with logits and decomposes it into a
    dozen element-wise passes; over the stacked tensor it is one kernel.
    """
    logits = logits.float()
    if loss == "bce":
        per = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    else:
        out = torch.sigmoid(logits) if model.output_activation == "sigmoid" else logits
        per = F.mse_loss(out, target, reduction="none")
    recon = per.flatten(1).mean(1)
    if not (model.cfg.l1 > 0 or (model.cfg.sparsity_target is not None and model.cfg.sparsity_weight > 0)):
        return recon, {"recon": recon}
    pen = vmap(model.code_penalty)(z)
    return recon + pen, {"recon": recon, "penalty": pen}


_ELEMENTWISE = (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.Identity, nn.LeakyReLU, nn.ELU)


def _dense_layers(model: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """The layers of a plain dense autoencoder (Flatten, Linear, element-wise, Unflatten), named; else None."""
    layers = []
    for part in ("encoder", "decoder"):
        seq = getattr(model, part, None)
        if not isinstance(seq, nn.Sequential):
            return None
        for i, m in enumerate(seq):
            if not isinstance(m, (nn.Flatten, nn.Unflatten, nn.Linear, *_ELEMENTWISE)):
                return None
            if isinstance(m, nn.Flatten) and (m.start_dim, m.end_dim) != (1, -1):
                return None
            layers.append((f"{part}.{i}", m))
    return layers


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

    def __init__(self, models: Sequence[nn.Module], opts: Sequence[torch.optim.Optimizer], loss: str,
                 device: torch.device, precision: str):
        self.models, self.opts, self.loss, self.device, self.precision = list(models), list(opts), loss, device, precision
        self.names = [k for k, _ in models[0].named_parameters()]
        self.plist = [dict(m.named_parameters()) for m in models]
        self.model = models[0]
        layers = _dense_layers(self.model)
        if layers is not None:  # dense: batched GEMMs written out (vmap's linear copies more)
            code = len(self.model.encoder) - 1
            self.forward = lambda params, xin: _dense_forward(layers, params, xin, code)
        else:
            buffers = dict(models[0].named_buffers())
            template = _Forward(models[0])
            self.forward = vmap(lambda params, xin: functional_call(
                template, {f"model.{k}": v for k, v in {**params, **buffers}.items()}, (xin,)))

    def __call__(self, xin: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        params = {k: torch.stack([p[k] for p in self.plist]) for k in self.names}
        with autocast_context(self.device, self.precision):
            z, logits = self.forward(params, xin)
            total, parts = stacked_loss(self.model, z, logits, target, self.loss)
        for o in self.opts:
            o.zero_grad(set_to_none=True)
        total.sum().backward()  # member m's parameters get the gradient of member m's loss alone
        for o in self.opts:
            o.step()
        return total.detach(), {k: v.detach() for k, v in parts.items()}


def fit_stacked(members: Sequence[Member], data: Splits, log: Callable[[str], None] = print) -> list[Member]:
    """Trains every member as fit() would alone, in one stacked model; returns them with state, or error set."""
    cfgs = [m.cfg for m in members]
    why = why_not_stackable(cfgs)
    if why is not None:
        raise TrainingError(f"cannot stack these runs: {why}")
    t = cfgs[0].train
    device = resolve_device(t.device)
    setup_runtime(cfgs[0])
    precision = resolve_precision(t.precision, device)
    for m in members:
        m.model.to(device)
        if any(isinstance(x, nn.Conv2d) for x in m.model.modules()):
            m.model.to(memory_format=torch.channels_last)
        m.opt = make_optimizer(m.model.parameters(), m.cfg.train, device)
        m.sched = make_scheduler(m.opt, m.cfg.train)
        m.gen = torch.Generator().manual_seed(m.cfg.train.seed + 1)  # the stream fit() gives this seed
        m.noise = compose(m.cfg.data.noise)
    x_train = _as_tensor(data.x_train, device)
    x_val, _ = data.validation
    n = len(x_train)
    if n < 1:
        raise TrainingError("the training split is empty")
    bs, loss_name = t.batch_size, t.loss
    epoch = 0
    while True:
        active = [m for m in members if not m.done and m.error is None and m.state.epoch < m.cfg.train.epochs]
        if not active:
            break
        epoch = min(m.state.epoch for m in active)
        for m in active:
            m.model.train()
        t0 = time.perf_counter()
        perms = torch.stack([torch.randperm(n, generator=m.gen) for m in active]).to(device)
        noisy = any(m.noise for m in active)
        losses: list[torch.Tensor] = []
        parts: dict[str, list[torch.Tensor]] = {}
        step = StackedStep([m.model for m in active], [m.opt for m in active], loss_name, device, precision)
        for i in range(0, n, bs):
            xb = x_train[perms[:, i: i + bs]]  # (members, batch, ...): one gather
            xin = torch.stack([m.noise(x, m.gen if device.type == "cpu" else None) if m.noise else x
                               for m, x in zip(active, xb)]) if noisy else xb
            total, part = step(xin, xb)
            losses.append(total)
            for k, v in part.items():
                parts.setdefault(k, []).append(v)
        train_seconds = time.perf_counter() - t0
        all_losses = torch.stack(losses).float().cpu()  # (batches, members)
        all_parts = {k: torch.stack(v).float().cpu() for k, v in parts.items()}
        for j, m in enumerate(active):
            _end_epoch(m, j, all_losses[:, j], {k: v[:, j] for k, v in all_parts.items()}, x_val, train_seconds, log)
        vals = "  ".join(f"{m.state.history[-1]['val_loss']:.4f}" for m in active if m.error is None)
        log(f"epoch {epoch + 1}  val {loss_name} {vals}  {train_seconds:.2f}s for {len(active)} runs")
    for m in members:
        if m.state.best_weights is not None:
            m.model.load_state_dict(m.state.best_weights)
    return list(members)


def _end_epoch(m: Member, j: int, batch_losses: torch.Tensor, parts: dict[str, torch.Tensor], x_val,
               train_seconds: float, log: Callable[[str], None]) -> None:
    """fit()'s end of an epoch for one member: NaN check, validation, metrics row, early stopping, checkpoint."""
    t = m.cfg.train
    epoch = m.state.epoch
    bad = (~torch.isfinite(batch_losses)).nonzero()
    if len(bad):
        k = int(bad[0])
        m.error = (f"loss became {batch_losses[k].item()} at epoch {epoch + 1}, batch {k + 1}; training stopped; "
                   f"try a lower train.lr")
        log(f"  {m.cfg.name or 'member'} {j + 1}: {m.error}")
        return
    if m.sched is not None:
        m.sched.step()
    val = evaluate(m.model, x_val, t.loss)
    row = {"epoch": epoch + 1, "train_loss": float(batch_losses.mean()), "val_loss": val["loss"],
           "val_bce": val["bce"], "val_mse": val["mse"], "val_psnr": val["psnr"], "lr": m.opt.param_groups[0]["lr"],
           "seconds": train_seconds}
    if len(parts) > 1:
        row.update({f"train_{k}": float(v.mean()) for k, v in parts.items()})
    first = len(m.state.batches)
    m.state.batches.extend({"epoch": epoch + 1, "batch": k + 1, "step": first + k + 1, "loss": float(v)}
                           for k, v in enumerate(batch_losses))
    m.state.history.append(row)
    m.state.epoch = epoch + 1
    stop = False
    if t.early_stopping:
        if m.state.best_val is None or row["val_loss"] < m.state.best_val - 1e-6:
            m.state.best_val, m.state.bad_epochs = row["val_loss"], 0
            m.state.best_weights = {k: v.detach().clone() for k, v in m.model.state_dict().items()}
        else:
            m.state.bad_epochs += 1
            stop = m.state.bad_epochs >= t.early_stopping
    if m.checkpoint_dir is not None and (m.state.epoch % t.checkpoint_every == 0 or m.state.epoch == t.epochs or stop):
        save_checkpoint(m.checkpoint_dir, m.model, m.opt, m.sched, m.gen, m.state)
    if m.on_checkpoint is not None:
        m.on_checkpoint(m.state)
    m.done = stop


def train_stacked(cfgs: Sequence[Config], run_dirs: Sequence[str | Path], log: Callable[[str], None] = print) -> list:
    """``train(cfg, dir)`` for every pair, trained as one stack; returns the finished Runs in order.

    The data is loaded once (the members share it); each folder gets what train() writes. A member whose
    loss became NaN is reported after the others finished, as one TrainingError naming each.
    """
    from ..data import load_data
    from ..models import build_model
    from ..run import write_history
    from . import finish_run, start_run_dir

    why = why_not_stackable(cfgs)
    if why is not None:
        raise TrainingError(f"cannot stack these runs: {why}")
    first = cfgs[0]
    splits = load_data(first.data, need_unit_range=first.model.output_activation == "sigmoid" and first.train.loss == "bce")
    members = []
    for cfg, d in zip(cfgs, run_dirs):
        d = Path(d)
        torch.manual_seed(cfg.train.seed)  # the init train() gives this seed
        model = build_model(cfg, splits.sample_shape)
        d.mkdir(parents=True, exist_ok=True)
        start_run_dir(d, cfg, splits)

        def on_checkpoint(state, d=d):
            write_history(d, state.history, state.batches)

        members.append(Member(cfg, model, d / "checkpoint", on_checkpoint))
    n_params = sum(p.numel() for p in members[0].model.parameters())
    log(f"training {len(members)} {first.model.name} runs as one stack on {splits.name}: {len(splits.x_train)} train / "
        f"{len(splits.x_test)} test samples; {n_params:,} parameters each")
    fit_stacked(members, splits, log=log)
    runs, failed = [], []
    for m, d in zip(members, run_dirs):
        if m.error is not None:
            failed.append(f"{d}: {m.error}")
            continue
        m.model.eval()
        runs.append(finish_run(Path(d), m.cfg, splits, m.model, m.state, extra={"stacked_members": len(members)}))
    if failed:
        raise TrainingError("; ".join(failed))
    return runs
