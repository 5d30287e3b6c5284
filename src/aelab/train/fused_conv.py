"""The training step of a plain convolutional autoencoder with its backward written out.

The seed-004 conv autoencoder spends most of its step in the two layers oneDNN does worst: the first
(1 input channel) and the last (1 output channel), at 20-40 GFLOP/s, and in the pooling and upsampling
around them (docs/PERFORMANCE.md). Here those two run as aelab's C kernels (native.py), fused with their
neighbours: the first convolution with its ReLU and 2x2 max-pooling, the last with the 2x upsampling
before it and the ReLU before that. The 3x3 layers between with 8 or 16 channels are C kernels too (bf16 dot
products on CPUs with AVX-512 BF16; float32 on small maps elsewhere); pooling, upsampling and any other
convolution keep torch's kernels (oneDNN) called directly, forward and backward, in the autocast precision:
bf16 with float32 weights cast per step under bf16-mixed. The loss and its gradient are one C kernel's pass.
The optimizer is the run's own, so checkpoints and schedules are unchanged.

``plan`` says whether a model qualifies: encoder and decoder Sequentials of stride-1 'same' convolutions
with biases, element-wise activations, 2x2 ceil-mode max-pooling, 2x nearest upsampling and crops, a
Conv2d last, no code penalty, and the fused first or last layer (else the step would be autograd's with
more Python). Anything else, ``train.kernels: torch``, CUDA or several processes take autograd.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..models.base import Autoencoder, LossOutput
from .fused_dense import ELEMENTWISE, _activate, _times_derivative
from .native import Kernels, loss_kind
from .optim import step_optimizer

aten = torch.ops.aten
MAX_NATIVE_CHANNELS = 256  # the C kernels keep one window's channels on the stack
NATIVE_CONV_MAX_PIXELS = 64  # middle layers on maps up to 8x8 take the C kernel (docs/PERFORMANCE.md)


@dataclass
class Op:
    """One layer of the plan: kind is conv, act, pool, up, crop, head (first conv + ReLU + pool, native)
    or tail (upsample [+ crop] + last conv, native); ``relu_before`` marks a tail whose input came out of a
    ReLU (its backward is fused into the tail's)."""

    kind: str
    module: Any = None  # the layer's nn.Module (Conv2d, activation, MaxPool2d, Upsample, CropTo)
    size: tuple[int, int] | None = None  # crop: (h, w); tail: the output size
    relu_before: bool = False


def _is_same_conv(m: nn.Module) -> bool:
    if not isinstance(m, nn.Conv2d) or m.bias is None or m.groups != 1 or m.padding_mode != "zeros":
        return False
    k = m.kernel_size
    return (
        k[0] == k[1]
        and k[0] % 2 == 1
        and m.stride == (1, 1)
        and m.dilation == (1, 1)
        and m.padding == (k[0] // 2, k[0] // 2)
    )


def _is_pool(m: nn.Module) -> bool:
    return (
        isinstance(m, nn.MaxPool2d)
        and m.kernel_size in (2, (2, 2))
        and m.stride in (2, (2, 2))
        and m.padding in (0, (0, 0))
        and m.dilation in (1, (1, 1))
        and not m.return_indices
    )


def _is_upsample(m: nn.Module) -> bool:
    return isinstance(m, nn.Upsample) and m.mode == "nearest" and m.size is None and m.scale_factor in (2, 2.0)


def _crop_size(m: nn.Module) -> tuple[int, int] | None:
    """(h, w) of the conv family's CropTo (x[:, :, :h, :w]), known by its shape so train/ names no family."""
    h, w = getattr(m, "h", None), getattr(m, "w", None)
    if type(m).__name__ == "CropTo" and isinstance(h, int) and isinstance(w, int):
        return h, w
    return None


def plan(model: nn.Module, loss: str) -> list[Op] | None:
    """The ops of a plain conv autoencoder, with its first and last layers fused where the C kernels take
    them; None when the written-out step would not compute this model's loss exactly as ``compute_loss``."""
    cls = type(model)
    if not all(getattr(cls, f, None) is getattr(Autoencoder, f) for f in ("encode", "decode_logits", "compute_loss")):
        return None
    if loss not in ("bce", "mse"):
        return None
    modules: list[nn.Module] = []
    for part in ("encoder", "decoder"):
        seq = getattr(model, part, None)
        if not isinstance(seq, nn.Sequential):
            return None
        modules.extend(seq)
    ops: list[Op] = []
    for m in modules:
        if _is_same_conv(m):
            ops.append(Op("conv", m))
        elif isinstance(m, ELEMENTWISE):
            ops.append(Op("act", m))
        elif _is_pool(m):
            ops.append(Op("pool", m))
        elif _is_upsample(m):
            ops.append(Op("up", m))
        elif _crop_size(m) is not None:
            ops.append(Op("crop", m, size=_crop_size(m)))
        else:
            return None
    if not ops or ops[-1].kind != "conv":
        return None
    ae = model if isinstance(model, Autoencoder) else None
    if ae is None or len(ae.input_shape) != 3:
        return None
    with torch.no_grad():
        if ae.code_penalty(torch.zeros(1, *ae.code_shape)) is not None:
            return None
    return _fuse(ops, ae.input_shape)


def _fuse(ops: list[Op], input_shape: tuple[int, ...]) -> list[Op] | None:
    first = ops[0]
    if (
        len(ops) >= 3
        and first.kind == "conv"
        and first.module.in_channels == 1
        and first.module.out_channels <= MAX_NATIVE_CHANNELS
        and isinstance(ops[1].module, nn.ReLU)
        and ops[2].kind == "pool"
    ):
        ops = [Op("head", first.module), *ops[3:]]
    last = ops[-1]
    conv = last.module
    assert isinstance(conv, nn.Conv2d)
    if conv.out_channels == 1 and conv.in_channels <= MAX_NATIVE_CHANNELS:
        body = ops[:-1]
        crop = body.pop() if body and body[-1].kind == "crop" else None
        if body and body[-1].kind == "up":
            body.pop()
            relu_before = bool(body) and isinstance(body[-1].module, nn.ReLU)
            ops = [*body, Op("tail", conv, size=crop.size if crop else None, relu_before=relu_before)]
    if not any(op.kind in ("head", "tail") for op in ops):
        return None  # nothing for the C kernels: autograd does the rest as well, with less code
    return ops


class ConvStep:
    """Loss, gradients and the optimizer step of one batch, for the ops ``plan`` returned."""

    def __init__(
        self,
        ops: list[Op],
        opt: torch.optim.Optimizer,
        loss: str,
        output_activation: str,
        precision: str,
        kernels: Kernels,
    ):
        self.ops, self.opt, self.kernels = ops, opt, kernels
        self.loss_kind = loss_kind(loss, output_activation)
        self.dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float32
        self.native_conv_pixels = NATIVE_CONV_MAX_PIXELS  # an attribute so an A/B can turn the fp32 kernels off

    def _native_conv(self, m: nn.Conv2d, h: torch.Tensor) -> str | None:
        """Which C kernel takes this 3x3 conv with 8 or 16 channels each side: in bf16 on a CPU with AVX-512
        BF16 the dot-product one on any map of even width (1.3-4x oneDNN's bf16); else the float32 one on maps
        up to 8x8, where oneDNN's set-up outweighs its arithmetic (on 14x14 oneDNN's bf16 is faster)."""
        if m.kernel_size != (3, 3) or not self.kernels.conv3_takes(m.in_channels, m.out_channels):
            return None
        if h.dtype == torch.bfloat16 and self.kernels.conv3_dot_takes(m.in_channels, m.out_channels, h.shape[3]):
            return "bf16-dot"
        return "fp32" if h.shape[2] * h.shape[3] <= self.native_conv_pixels else None

    def backward(self, xin: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[nn.Conv2d, tuple]]:
        """The mean loss over the batch and each conv's (weight, bias) gradients in float32."""
        k, dt = self.kernels, self.dtype
        n = xin.shape[0]
        saved: list[tuple] = []  # per op, what its backward needs
        h = xin
        for op in self.ops:
            m = op.module
            if op.kind == "head":
                assert isinstance(m, nn.Conv2d)
                x = h.reshape(n, h.shape[-2], h.shape[-1]).float().contiguous()
                w = _taps(m.weight)
                out, arg = k.conv1_relu_pool(x, w, _bias(m).detach().float(), dt)
                saved.append((x, w, out, arg))
                h = out.permute(0, 3, 1, 2)  # NCHW view of NHWC memory: channels_last
            elif op.kind == "conv":
                assert isinstance(m, nn.Conv2d)
                h = _as_input(h, dt)
                which = self._native_conv(m, h)
                if which is not None:
                    x = h.permute(0, 2, 3, 1)  # NHWC, contiguous
                    w = m.weight.detach().permute(2, 3, 1, 0).contiguous()  # (3, 3, CI, CO)
                    saved.append((x, which, w))
                    h = k.conv3(x, w, _bias(m).detach(), dot=which == "bf16-dot").permute(0, 3, 1, 2)
                    continue
                w, b = m.weight.detach().to(dt), _bias(m).detach().to(dt)
                saved.append((h, w))
                h = aten.convolution(h, w, b, [1, 1], list(m.padding), [1, 1], False, [0, 0], 1)
            elif op.kind == "act":
                h = _activate(m, h)
                saved.append((h,))
            elif op.kind == "pool":
                out, idx = aten.max_pool2d_with_indices(h, [2, 2], [2, 2], [0, 0], [1, 1], True)
                saved.append((h, idx))
                h = out
            elif op.kind == "up":
                saved.append((tuple(h.shape),))
                h = aten.upsample_nearest2d(h, [h.shape[2] * 2, h.shape[3] * 2], 2.0, 2.0)
            elif op.kind == "crop":
                assert op.size is not None
                hh, ww = op.size
                saved.append((tuple(h.shape),))
                h = h[:, :, :hh, :ww]
            else:  # tail
                assert isinstance(m, nn.Conv2d)
                a = _as_input(h, dt).permute(0, 2, 3, 1)  # NHWC, contiguous
                size = op.size or (2 * a.shape[1], 2 * a.shape[2])
                w = _taps(m.weight)
                saved.append((a, w, op.relu_before))
                h = k.upconv1(a, w, float(_bias(m)), *size).unsqueeze(1)
        z = h
        t = target.reshape(n, -1).float().contiguous()
        logits = z.reshape(n, -1) if z.is_contiguous() else z.contiguous().reshape(n, -1)
        g = torch.empty(logits.shape, dtype=torch.float32 if self.ops[-1].kind == "tail" else logits.dtype)
        loss = torch.empty(())
        k.loss_grad(logits, t, g, None, self.loss_kind, loss)

        grads: dict[nn.Conv2d, tuple] = {}
        gh = g.reshape(z.shape)
        skip_act = False  # the tail's backward already applied the ReLU before it
        for i in range(len(self.ops) - 1, -1, -1):
            op, m, sv = self.ops[i], self.ops[i].module, saved[i]
            if op.kind == "tail":
                a, w, relu_mask = sv
                da, dw, db = k.upconv1_backward(a, w, gh.reshape(n, *gh.shape[2:]).contiguous(), relu_mask)
                grads[m] = (_untaps(dw, m.weight), db)
                gh = da.permute(0, 3, 1, 2)
                skip_act = relu_mask
            elif op.kind == "act":
                if skip_act:
                    skip_act = False
                    continue
                gh = _times_derivative(m, _as_input(gh, gh.dtype), sv[0])
            elif op.kind == "conv" and isinstance(sv[1], str):  # a C kernel's
                x, which, w = sv
                g = _as_input(gh, x.dtype).permute(0, 2, 3, 1)
                dx, dw, db = k.conv3_backward(x, g, w, i > 0, dot=which == "bf16-dot")
                grads[m] = (dw.permute(3, 2, 0, 1), db)
                if dx is not None:  # None for the first layer: nothing before it learns
                    gh = dx.permute(0, 3, 1, 2)
            elif op.kind == "conv":
                x, w = sv
                need_input = i > 0
                gin, gw, gb = aten.convolution_backward(
                    _as_input(gh, x.dtype),
                    x,
                    w,
                    [w.shape[0]],
                    [1, 1],
                    list(m.padding),
                    [1, 1],
                    False,
                    [0, 0],
                    1,
                    [need_input, True, True],
                )
                grads[m] = (gw, gb)  # in the compute dtype, as autocast's backward gives them
                gh = gin
            elif op.kind == "pool":
                x, idx = sv
                gh = aten.max_pool2d_with_indices_backward(
                    _as_input(gh, x.dtype), x, [2, 2], [2, 2], [0, 0], [1, 1], True, idx
                )
            elif op.kind == "up":
                (shape,) = sv
                gh = aten.upsample_nearest2d_backward(
                    _as_input(gh, gh.dtype), [shape[2] * 2, shape[3] * 2], list(shape), 2.0, 2.0
                )
            elif op.kind == "crop":
                (shape,) = sv
                full = gh.new_zeros(shape).contiguous(memory_format=torch.channels_last)
                full[:, :, : gh.shape[2], : gh.shape[3]] = gh
                gh = full
            else:  # head
                x, w, out, arg = sv
                dout = _as_input(gh, out.dtype).permute(0, 2, 3, 1)
                dw, db = k.conv1_relu_pool_backward(x, w, dout, out, arg)
                grads[m] = (_untaps(dw, m.weight), db)
        return loss, grads

    def gradients(self, xin: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Sets every parameter's ``.grad`` (float32, laid out as the parameter) for the mean loss; returns it."""
        loss, grads = self.backward(xin, target)
        for m, (gw, gb) in grads.items():
            for p, g in ((m.weight, gw), (_bias(m), gb)):
                p.grad = torch.empty_like(p).copy_(g.reshape(p.shape))
        return loss

    def __call__(self, xin: torch.Tensor, target: torch.Tensor) -> LossOutput:
        with torch.no_grad():
            loss = self.gradients(xin, target)
        step_optimizer(self.opt)
        return LossOutput(loss, {"recon": loss})


def _bias(conv: nn.Conv2d) -> torch.Tensor:
    assert conv.bias is not None  # plan() takes only convolutions with biases
    return conv.bias


def _taps(weight: torch.Tensor) -> torch.Tensor:
    """A conv weight with one input or one output channel, (C, 1, k, k) or (1, C, k, k), as the C kernels
    take it: tap-major (k * k, C), float32."""
    c = weight.shape[0] * weight.shape[1]
    return weight.detach().float().reshape(c, -1).t().contiguous()


def _untaps(dw: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return dw.t().reshape(weight.shape)


def _as_input(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """In ``dtype`` and channels_last (NHWC memory), as oneDNN and the C kernels read feature maps."""
    return t.to(dtype).contiguous(memory_format=torch.channels_last)
