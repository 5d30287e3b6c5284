"""The training step of a plain dense autoencoder with its backward written out: no autograd graph, no autocast.

A dense autoencoder's step on a CPU is a few GEMMs wrapped in per-op overhead: autograd records a node
per op, autocast casts every weight and bias forward and every gradient back, and a 784-32-784 step spends
half its time outside its kernels (docs/PERFORMANCE.md). Here the forward keeps what the backward needs,
the gradients are the closed forms (d BCE-with-logits / d logits = (sigmoid - target) / n, activations
differentiated from their outputs), and the optimizer is the run's own, so its state, schedules and
checkpoints are those of the autograd path. The arithmetic is autocast's: bf16 GEMMs (bf16-mixed) with
the loss in fp32; results equal the autograd step's within rounding (tests/test_fused_dense.py).

``plan`` says whether a model qualifies; anything else (dropout, batch norm, tied weights, a code
penalty, other activations, CUDA, several processes) takes the autograd path, and so does
``train.fused_dense: false``.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..evaluate.evaluate import batches
from ..evaluate.metrics import psnr
from ..models.base import Autoencoder, LossOutput
from .native import AdamJobs, ByteRows, Kernels, loss_kind
from .optim import NativeAdam, step_optimizer

# the activations aelab's dense models use; each one's derivative follows from its output alone
ELEMENTWISE = (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.Identity, nn.LeakyReLU, nn.ELU)


def dense_layers(model: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """The layers of a plain dense autoencoder (Flatten, Linear, element-wise, Unflatten), named; else None."""
    layers: list[tuple[str, nn.Module]] = []
    for part in ("encoder", "decoder"):
        seq = getattr(model, part, None)
        if not isinstance(seq, nn.Sequential):
            return None
        for i, m in enumerate(seq):
            if not isinstance(m, (nn.Flatten, nn.Unflatten, nn.Linear, *ELEMENTWISE)):
                return None
            if isinstance(m, nn.Flatten) and (m.start_dim, m.end_dim) != (1, -1):
                return None
            layers.append((f"{part}.{i}", m))
    return layers


def plan(model: nn.Module, loss: str) -> list[tuple[nn.Linear, nn.Module | None]] | None:
    """(Linear, the activation after it or None) in order, when the written-out step computes this model's
    loss exactly as ``compute_loss`` does; None when it does not."""
    cls = type(model)
    if not all(getattr(cls, f, None) is getattr(Autoencoder, f) for f in ("encode", "decode_logits", "compute_loss")):
        return None  # a VAE, SAE, classifier...: its loss is not encoder -> decoder -> reconstruction
    layers = dense_layers(model)
    if layers is None or loss not in ("bce", "mse"):
        return None
    ae = cast(Autoencoder, model)  # its class's encode / decode_logits / compute_loss are Autoencoder's
    if len(ae.code_shape) != 1 or ae.code_penalty(torch.zeros(1, *ae.code_shape)) is not None:
        return None
    steps: list[tuple[nn.Linear, nn.Module | None]] = []
    for _, m in layers:
        if isinstance(m, nn.Linear):
            steps.append((m, None))
        elif isinstance(m, ELEMENTWISE):
            if not steps or steps[-1][1] is not None:
                return None  # two activations in a row, or one before any Linear
            steps[-1] = (steps[-1][0], m)
    if not steps or steps[-1][1] is not None:  # the last Linear gives the logits
        return None
    return steps


def _activation_code(act: nn.Module | None) -> tuple[str, float]:
    """An element-wise activation's name (native.ACTIVATIONS, which the C kernels take too) and parameter."""
    if isinstance(act, nn.ReLU):
        return "relu", 0.0
    if isinstance(act, nn.Sigmoid):
        return "sigmoid", 0.0
    if isinstance(act, nn.Tanh):
        return "tanh", 0.0
    if isinstance(act, nn.LeakyReLU):
        return "leaky_relu", float(act.negative_slope)
    if isinstance(act, nn.ELU):
        return "elu", float(act.alpha)
    return "identity", 0.0


def _activate(act: nn.Module | None, z: torch.Tensor) -> torch.Tensor:
    name, a = _activation_code(act)
    if name == "relu":
        return z.relu_()
    if name == "sigmoid":
        return z.sigmoid_()
    if name == "tanh":
        return z.tanh_()
    if name == "leaky_relu":
        return F.leaky_relu_(z, a)
    if name == "elu":
        return F.elu_(z, a)
    return z


def _targets(target: torch.Tensor | ByteRows, *lead: int) -> torch.Tensor | ByteRows:
    """The loss kernel's targets shaped (*lead, values): float32, or the bytes as they came."""
    if isinstance(target, ByteRows):
        return ByteRows(target.rows.reshape(*lead, -1), target.divisor)
    return target.reshape(*lead, -1).float().contiguous()


def _floats(target: torch.Tensor | ByteRows) -> torch.Tensor:
    """The targets as floats (bytes divided as the dataset was scaled: float32 division)."""
    return target.rows.float().div_(target.divisor) if isinstance(target, ByteRows) else target


def _times_derivative(act: nn.Module | None, g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """g * act'(z), from the activation's output h = act(z): the one-pass kernels autograd itself calls."""
    name, a = _activation_code(act)
    if name == "relu":
        return torch.ops.aten.threshold_backward(g, h, 0.0)
    if name == "sigmoid":
        return torch.ops.aten.sigmoid_backward(g, h)
    if name == "tanh":
        return torch.ops.aten.tanh_backward(g, h)
    if name == "leaky_relu":  # a negative slope keeps the sign, so the output tells the branch
        return torch.ops.aten.leaky_relu_backward(g, h, a, True)
    if name == "elu":
        return torch.ops.aten.elu_backward(g, a, 1.0, 1.0, True, h)
    return g


class FusedDenseStep:
    """Loss, gradients and the optimizer step of one batch, for the layers ``plan(model, loss)`` returned.

    With ``kernels`` (native.load()), the passes around the GEMMs are aelab's C kernels: the loss, its
    gradient and the last bias gradient in one pass; each activation's derivative with the bias gradient
    of its layer in one pass; and, for Adam/AdamW in bf16, the update straight from the bf16 gradients,
    writing the bf16 copies of the weights that the next forward multiplies with (no casts either way).
    Without them, torch's ops do the same arithmetic in more passes."""

    def __init__(
        self,
        steps: list[tuple[nn.Linear, nn.Module | None]],
        opt: torch.optim.Optimizer,
        loss: str,
        output_activation: str,
        precision: str,
        kernels: Kernels | None = None,
    ):
        self.steps, self.opt, self.loss, self.output_activation = steps, opt, loss, output_activation
        self.dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float32
        self.kernels = kernels
        self.loss_kind = loss_kind(loss, output_activation)
        self.acts = [_activation_code(act) for _, act in steps]
        self.params = [p for lin, _ in steps for p in (lin.weight, lin.bias)]
        # in bf16 the C kernel's Adam reads the bf16 gradients and writes the bf16 weights (fp32: torch's own
        # fused Adam is already one pass, and bit for bit what the autograd path does)
        bf16 = self.dtype == torch.bfloat16
        self.adam = NativeAdam(opt, self.params, kernels) if kernels is not None and bf16 else None
        # bf16 copies of the parameters the forward multiplies with, written by the native Adam step (or cast
        # again): valid while `_fresh` and `_stamp` hold. A stack of members hands in views of its own buffers.
        self._copies: list[torch.Tensor] | None = None
        self._fresh = False
        self._stamp: list[tuple[int, int, int, int]] = []
        # each weight gradient's buffer, written every step: fresh multi-megabyte tensors each step grow
        # glibc's heap (relu-1000 in fp32: 0.7-1.2 GB resident after a validation instead of 0.6; PERFORMANCE.md)
        self._weight_grads: list[torch.Tensor] = []

    # -- the weights the forward multiplies with -------------------------------------------
    def _stamps(self) -> list[tuple[int, int, int, int]]:
        """What changes when anyone but the native step touches a parameter: its version counter (copy_,
        load_state_dict, in-place edits), its storage, or its step count's version or storage (another
        optimizer step counts it in place with a tensor op; load_state_dict replaces it). No reads of values."""
        state = self.opt.state
        out = []
        for p in self.params:
            step = state[p].get("step") if p in state else None
            if isinstance(step, torch.Tensor):
                out.append((p._version, p.data_ptr(), step._version, step.data_ptr()))
            else:
                out.append((p._version, p.data_ptr(), -1, -1))
        return out

    def _weights(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        dt = self.dtype
        if dt == torch.float32:
            return [(lin.weight, lin.bias) for lin, _ in self.steps]
        c = self.copies()
        return [(c[2 * i], c[2 * i + 1]) for i in range(len(self.steps))]

    def copies(self) -> list[torch.Tensor]:
        """The bf16 copies of ``params``, cast again (in place) when anything else touched a parameter."""
        if self._copies is None:
            self._copies = [torch.empty_like(p, dtype=torch.bfloat16) for p in self.params]
        if not self._fresh or self._stamps() != self._stamp:
            for c, p in zip(self._copies, self.params):
                c.copy_(p.detach())
            self._fresh, self._stamp = True, self._stamps()
        return self._copies

    def use_copies(self, views: list[torch.Tensor]) -> None:
        """Keep the bf16 copies in ``views`` (slices of a stack's buffers), cast on the next use."""
        self._copies, self._fresh = views, False

    # -- forward and backward ----------------------------------------------------------------
    def backward(self, xin: torch.Tensor, target: torch.Tensor | ByteRows) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The mean loss over the batch and the gradient of every parameter (``self.params`` order):
        weights' in the compute dtype (in buffers this step keeps: valid until its next call), biases' in
        float32. ``target`` may come as the bytes it was scaled from (a byte dataset's batch,
        Loop.byte_batch), ``xin`` already in the compute dtype."""
        dt, k = self.dtype, self.kernels
        n = xin.shape[0]
        weights = self._weights()
        inputs: list[torch.Tensor] = []  # each Linear's input, which is also the previous activation's output
        h = self._logits(xin.reshape(n, -1).to(dt), weights, inputs)
        if not self._weight_grads:
            self._weight_grads = [torch.empty_like(lin.weight, dtype=dt) for lin, _ in self.steps]
        grads: list[torch.Tensor] = [torch.empty(0)] * len(self.params)
        if k is not None:
            g = torch.empty_like(h)
            bias_grad = torch.empty(h.shape[1])
            loss = torch.empty(())
            k.loss_grad(h, _targets(target, n), g, bias_grad, self.loss_kind, loss)
        else:
            loss, g = self._torch_loss(h, _floats(target).reshape(n, -1))
            bias_grad = g.sum(0, dtype=torch.float32)
        for i in range(len(self.steps) - 1, -1, -1):
            grads[2 * i] = torch.mm(g.t(), inputs[i], out=self._weight_grads[i])
            grads[2 * i + 1] = bias_grad
            if i:
                g = g @ weights[i][0]
                if k is not None:
                    bias_grad = torch.empty(g.shape[1])
                    name, a = self.acts[i - 1]
                    k.act_backward(g, inputs[i], name, a, bias_grad)
                else:
                    g = _times_derivative(self.steps[i - 1][1], g, inputs[i])
                    bias_grad = g.sum(0, dtype=torch.float32)
        return loss, grads

    def _logits(
        self, h: torch.Tensor, weights: list[tuple[torch.Tensor, torch.Tensor]], inputs: list | None = None
    ) -> torch.Tensor:
        """The forward from ``h`` (batch, values) in the compute dtype; each Linear's input into ``inputs``."""
        for (_, module), (w, b) in zip(self.steps, weights):
            if inputs is not None:
                inputs.append(h)
            h = _activate(module, torch.addmm(b, h, w.t()))
        return h

    def validates(self) -> bool:
        """Whether ``errors`` can stand in for evaluate.per_sample_errors: the C kernels and a sigmoid output."""
        return self.kernels is not None and self.output_activation == "sigmoid"

    def errors(self, x: np.ndarray | torch.Tensor, batch_size: int = 1024) -> dict[str, torch.Tensor]:
        """evaluate.per_sample_errors of this model on ``x`` (values in [0, 1], batched as it batches them): the
        same logits, from the forward's own GEMMs in the training precision (as the autocast validation pass
        computes them), then each sample's BCE and MSE in one pass of the C kernel instead of seven of
        torch's (``validates()``)."""
        k = self.kernels
        assert k is not None and self.output_activation == "sigmoid"
        n = len(x)
        bce, mse = torch.empty(n), torch.empty(n)
        with torch.no_grad():
            weights = self._weights()
            i = 0
            for xb in batches(x, batch_size, torch.device("cpu")):
                t = xb.reshape(len(xb), -1).float().contiguous()
                k.row_errors(self._logits(t.to(self.dtype), weights), t, bce[i : i + len(t)], mse[i : i + len(t)])
                i += len(t)
        return {"bce": bce, "mse": mse, "psnr": psnr(mse), "loss": bce if self.loss == "bce" else mse}

    def _torch_loss(self, h: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = h.float()  # autocast computes the loss in fp32
        count = logits.numel()
        if self.loss == "bce":
            loss = F.binary_cross_entropy_with_logits(logits, t)
            g = torch.sigmoid(logits).sub_(t).div_(count)
        elif self.output_activation == "sigmoid":
            s = torch.sigmoid(logits)
            loss = F.mse_loss(s, t)
            g = (s - t).mul_(s * (1 - s)).mul_(2 / count)
        else:
            loss = F.mse_loss(logits, t)
            g = (logits - t).mul_(2 / count)
        return loss, g.to(self.dtype)

    def gradients(self, xin: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Sets every parameter's ``.grad`` (fp32) for the mean loss over the batch; returns the loss."""
        loss, grads = self.backward(xin, target)
        for p, g in zip(self.params, grads):
            p.grad = g.float()
        return loss

    # -- the optimizer step ------------------------------------------------------------------
    def __call__(self, xin: torch.Tensor, target: torch.Tensor | ByteRows) -> LossOutput:
        with torch.no_grad():
            loss, grads = self.backward(xin, target)
            self.update(grads)
        return LossOutput(loss, {"recon": loss})

    def update(self, grads: list[torch.Tensor], jobs: AdamJobs | None = None) -> None:
        """The optimizer step from ``grads`` (``params`` order, as ``backward`` gives them). With ``jobs``, a
        native Adam step joins it instead, done when the caller runs them (before the next forward)."""
        if self.adam is not None and self.adam.ready():
            # the kernel writes the copies and bumps no version: the stamps copies() took this step still hold
            # (and if anything touched a parameter since, the next copies() sees it and casts again)
            self.adam.step(grads, self.copies() if self._copies is None else self._copies, jobs)
            self._fresh = True
        else:
            for p, g in zip(self.params, grads):
                p.grad = g.float()
            step_optimizer(self.opt)
            self._fresh = False  # torch's fused Adam leaves _version alone: the stamps cannot tell


class StackedDenseStep:
    """One step of several members' written-out dense steps at once (train/stacked.py): every layer's GEMMs
    as one batched GEMM over the members, the loss, activation and optimizer kernels per member on its own
    slice. In bf16 the members' weight copies are views of stacked buffers, which each member's Adam kernel
    writes in place, so the batched GEMMs need no per-step stacking."""

    def __init__(self, members: list[FusedDenseStep]):
        self.members = members
        first = members[0]
        self.dtype, self.kernels, self.loss_kind = first.dtype, first.kernels, first.loss_kind
        self.acts = first.acts
        self.bf16 = self.dtype == torch.bfloat16
        if self.bf16:
            self.buffers = [torch.empty(len(members), *p.shape, dtype=torch.bfloat16) for p in first.params]
            for j, m in enumerate(members):
                m.use_copies([b[j] for b in self.buffers])

    def _stacked_weights(self) -> list[torch.Tensor]:
        if self.bf16:
            for m in self.members:
                m.copies()  # cast again where something touched a member's parameters
            return self.buffers
        return [torch.stack([m.params[i].detach() for m in self.members]) for i in range(len(self.members[0].params))]

    def __call__(
        self, xin: torch.Tensor, target: torch.Tensor | ByteRows
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """xin, target: (members, batch, ...); returns each member's mean loss (members,) and its parts."""
        k = self.kernels
        assert k is not None
        n_m, n = xin.shape[:2]
        with torch.no_grad():
            w = self._stacked_weights()
            h = xin.reshape(n_m, n, -1).to(self.dtype)
            layers = len(w) // 2
            inputs = []
            for i in range(layers):
                inputs.append(h)
                h = _activate(
                    self.members[0].steps[i][1], torch.baddbmm(w[2 * i + 1].unsqueeze(1), h, w[2 * i].transpose(1, 2))
                )
            t = _targets(target, n_m, n)  # (members, batch, values)
            g = torch.empty_like(h)
            grads: list[list[torch.Tensor]] = [[torch.empty(0)] * len(w) for _ in self.members]
            loss = torch.empty(n_m)
            for j in range(n_m):
                bias = torch.empty(h.shape[2])
                tj = ByteRows(t.rows[j], t.divisor) if isinstance(t, ByteRows) else t[j]
                k.loss_grad(h[j], tj, g[j], bias, self.loss_kind, loss[j])
                grads[j][2 * layers - 1] = bias
            for i in range(layers - 1, -1, -1):
                dw = torch.bmm(g.transpose(1, 2), inputs[i])
                for j in range(n_m):
                    grads[j][2 * i] = dw[j]
                if i:
                    g = torch.bmm(g, w[2 * i])
                    name, a = self.acts[i - 1]
                    for j in range(n_m):
                        bias = torch.empty(g.shape[2])
                        k.act_backward(g[j], inputs[i][j], name, a, bias)
                        grads[j][2 * i - 1] = bias
            jobs = AdamJobs()  # every member's native Adam step in one call
            for m, gr in zip(self.members, grads):
                m.update(gr, jobs)
            k.adam_many(jobs)
        return loss, {"recon": loss}
