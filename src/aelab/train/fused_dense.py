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

import torch
import torch.nn.functional as F
from torch import nn

from ..models.base import Autoencoder, LossOutput
from .optim import step_optimizer

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


def _activate(act: nn.Module | None, z: torch.Tensor) -> torch.Tensor:
    if isinstance(act, nn.ReLU):
        return z.relu_()
    if isinstance(act, nn.Sigmoid):
        return z.sigmoid_()
    if isinstance(act, nn.Tanh):
        return z.tanh_()
    if isinstance(act, nn.LeakyReLU):
        return F.leaky_relu_(z, act.negative_slope)
    if isinstance(act, nn.ELU):
        return F.elu_(z, act.alpha)
    return z


def _times_derivative(act: nn.Module | None, g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """g * act'(z), from the activation's output h = act(z): the one-pass kernels autograd itself calls."""
    if isinstance(act, nn.ReLU):
        return torch.ops.aten.threshold_backward(g, h, 0.0)
    if isinstance(act, nn.Sigmoid):
        return torch.ops.aten.sigmoid_backward(g, h)
    if isinstance(act, nn.Tanh):
        return torch.ops.aten.tanh_backward(g, h)
    if isinstance(act, nn.LeakyReLU):  # a negative slope keeps the sign, so the output tells the branch
        return torch.ops.aten.leaky_relu_backward(g, h, act.negative_slope, True)
    if isinstance(act, nn.ELU):
        return torch.ops.aten.elu_backward(g, act.alpha, 1.0, 1.0, True, h)
    return g


class FusedDenseStep:
    """Loss, gradients and the optimizer step of one batch, for the layers ``plan(model, loss)`` returned."""

    def __init__(
        self,
        steps: list[tuple[nn.Linear, nn.Module | None]],
        opt: torch.optim.Optimizer,
        loss: str,
        output_activation: str,
        precision: str,
    ):
        self.steps, self.opt, self.loss, self.output_activation = steps, opt, loss, output_activation
        self.dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float32

    def gradients(self, xin: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Sets every parameter's ``.grad`` (fp32) for the mean loss over the batch; returns the loss."""
        dt = self.dtype
        n = xin.shape[0]
        h = xin.reshape(n, -1).to(dt)
        weights = [(lin.weight.to(dt), lin.bias.to(dt)) for lin, _ in self.steps]
        inputs = []  # each Linear's input, which is also the previous activation's output
        for (_, act), (w, b) in zip(self.steps, weights):
            inputs.append(h)
            h = _activate(act, torch.addmm(b, h, w.t()))
        logits = h.float()  # autocast computes the loss in fp32
        t = target.reshape(n, -1)
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
        g = g.to(dt)
        for k in range(len(self.steps) - 1, -1, -1):
            lin = self.steps[k][0]
            lin.weight.grad = (g.t() @ inputs[k]).float()
            lin.bias.grad = g.sum(0, dtype=torch.float32)
            if k:
                g = _times_derivative(self.steps[k - 1][1], g @ weights[k][0], inputs[k])
        return loss

    def __call__(self, xin: torch.Tensor, target: torch.Tensor) -> LossOutput:
        with torch.no_grad():
            loss = self.gradients(xin, target)
        step_optimizer(self.opt)
        return LossOutput(loss, {"recon": loss})
