"""A model as a list of simple ops and one float32 buffer, for the page's JavaScript engine.

Every op works on one sample stored flat in C, H, W order (a dense vector is C = D,
H = W = 1), so Flatten and Unflatten cost nothing. Batch norm (eval mode) becomes a
per-channel scale and shift, dropout disappears (eval mode), and nearest-neighbour
upsampling ships the source row and column of every output pixel as PyTorch computes
them, so the page cannot disagree with PyTorch about rounding.

``run_ops`` is the same engine in NumPy: the exporter checks its own output against
the model before the page is written, so a model whose forward pass the ops do not
describe is refused with the reason instead of showing wrong pictures.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AelabError
from ..models.base import Autoencoder

TOLERANCE = 1e-4  # max |page - PyTorch|, the explorer's parity bar
ACTIVATIONS = {
    nn.ReLU: "relu",
    nn.Sigmoid: "sigmoid",
    nn.Tanh: "tanh",
    nn.Identity: "identity",
    nn.LeakyReLU: "leaky_relu",
    nn.ELU: "elu",
}


class Unsupported(AelabError):
    """The page cannot run this model; the message says why."""


@dataclass
class Exported:
    encoder: list[dict]  # input -> code (a VAE: the mean)
    decoder: list[dict]  # code -> output after the output activation
    logvar: list[dict] | None  # VAE: input features -> log-variance head (clamped)
    trunk_len: int  # VAE: ops of `encoder` shared with the log-variance head
    input_shape: tuple[int, ...]
    code_shape: tuple[int, ...]
    buffer: np.ndarray  # float32, every op's weights at their offsets
    first_layer: dict | None = None  # the first linear/conv op (seed 003's weights as images)


class _Packer:
    def __init__(self):
        self.parts: list[np.ndarray] = []
        self.size = 0

    def add(self, t: torch.Tensor | np.ndarray) -> int:
        a = np.ascontiguousarray(
            t.detach().cpu().float().numpy() if isinstance(t, torch.Tensor) else t, dtype=np.float32
        ).ravel()
        off = self.size
        self.parts.append(a)
        self.size += a.size
        return off

    def buffer(self) -> np.ndarray:
        return np.concatenate(self.parts) if self.parts else np.zeros(0, np.float32)


def _chw(shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) == 3:
        return tuple(shape)  # type: ignore[return-value]
    return (math.prod(shape), 1, 1)


def _upsample_index(n_in: int, m: nn.Upsample, axis: int, other: int) -> list[int]:
    """The source index of every output index, read off PyTorch itself."""
    size = [other, other]
    size[axis] = n_in
    probe = (
        torch.arange(n_in, dtype=torch.float32).view(1, 1, n_in, 1)
        if axis == 0
        else torch.arange(n_in, dtype=torch.float32).view(1, 1, 1, n_in)
    )
    if m.size is not None:
        s = m.size if isinstance(m.size, (tuple, list)) else (m.size, m.size)
        out_size = [s[0], 1] if axis == 0 else [1, s[1]]
        up = F.interpolate(probe, size=tuple(out_size), mode="nearest")
    else:
        if m.scale_factor is None:
            raise Unsupported("Upsample without size or scale_factor")
        f = m.scale_factor if isinstance(m.scale_factor, (tuple, list)) else (m.scale_factor, m.scale_factor)
        sf = (float(f[0]), 1.0) if axis == 0 else (1.0, float(f[1]))
        up = F.interpolate(probe, scale_factor=sf, mode="nearest")
    return [int(v) for v in up.flatten().tolist()]


def _walk(modules, shape: tuple[int, ...], pack: _Packer, where: str) -> tuple[list[dict], tuple[int, int, int]]:
    """Ops for a sequence of modules, and the (C, H, W) shape they leave."""
    from ..models.conv import CropTo
    from ..models.dense import TiedLinear

    ops: list[dict] = []
    c, h, w = shape
    for m in modules:
        name = type(m).__name__
        if isinstance(m, nn.Sequential):
            sub, (c, h, w) = _walk(m, (c, h, w), pack, where)
            ops += sub
        elif isinstance(m, (nn.Flatten, nn.Dropout)):
            if isinstance(m, nn.Flatten):
                c, h, w = c * h * w, 1, 1
        elif isinstance(m, nn.Unflatten):
            shp = tuple(m.unflattened_size)
            if math.prod(shp) != c * h * w:
                raise Unsupported(f"{where}: Unflatten to {shp} does not fit {c * h * w} values")
            c, h, w = _chw(shp)
        elif isinstance(m, (nn.Linear, TiedLinear)):
            if h * w != 1:
                raise Unsupported(f"{where}: a Linear layer on an unflattened {c}x{h}x{w} map")
            weight: torch.Tensor = m.source[0].weight.t() if isinstance(m, TiedLinear) else m.weight
            n_out, n_in = weight.shape
            if n_in != c:
                raise Unsupported(f"{where}: Linear expects {n_in} inputs, gets {c}")
            bias: torch.Tensor = m.bias if m.bias is not None else torch.zeros(n_out)
            ops.append({"op": "linear", "in": n_in, "out": n_out, "w": pack.add(weight), "b": pack.add(bias)})
            c = n_out
        elif type(m) in ACTIVATIONS:
            fn = ACTIVATIONS[type(m)]
            if fn == "leaky_relu" and m.negative_slope != 0.01 or fn == "elu" and m.alpha != 1.0:
                raise Unsupported(f"{where}: {name} with non-default parameters")
            if fn != "identity":
                ops.append({"op": "act", "fn": fn})
        elif isinstance(m, nn.Conv2d):
            k = m.kernel_size
            if (
                m.stride != (1, 1)
                or m.dilation != (1, 1)
                or m.groups != 1
                or k[0] != k[1]
                or m.padding_mode != "zeros"
                or isinstance(m.padding, str)
                or m.padding[0] != m.padding[1]
            ):
                raise Unsupported(
                    f"{where}: {name} with stride/dilation/groups/padding other than aelab's "
                    f"(stride 1, square kernel, zero padding) is not supported"
                )
            if m.in_channels != c:
                raise Unsupported(f"{where}: Conv2d expects {m.in_channels} channels, gets {c}")
            p = m.padding[0]
            bias = m.bias if m.bias is not None else torch.zeros(m.out_channels)
            ops.append(
                {
                    "op": "conv",
                    "cin": c,
                    "cout": m.out_channels,
                    "k": k[0],
                    "pad": p,
                    "h": h,
                    "w": w,
                    "wt": pack.add(m.weight),
                    "b": pack.add(bias),
                }
            )
            c, h, w = m.out_channels, h + 2 * p - k[0] + 1, w + 2 * p - k[0] + 1
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            mean, var = m.running_mean, m.running_var
            if mean is None or var is None:
                raise Unsupported(f"{where}: {name} without running statistics")
            scale = (m.weight if m.affine else torch.ones_like(var)) / torch.sqrt(var + m.eps)
            shift = (m.bias if m.affine else torch.zeros_like(mean)) - mean * scale
            ops.append({"op": "affine", "c": c, "hw": h * w, "scale": pack.add(scale), "shift": pack.add(shift)})
        elif isinstance(m, nn.MaxPool2d):
            ks, st = m.kernel_size, m.stride
            if (
                ks not in (2, (2, 2))
                or st not in (2, (2, 2))
                or m.padding not in (0, (0, 0))
                or m.dilation not in (1, (1, 1))
            ):
                raise Unsupported(f"{where}: MaxPool2d other than 2x2 / stride 2 is not supported")
            oh, ow = ((h + 1) // 2, (w + 1) // 2) if m.ceil_mode else (h // 2, w // 2)
            ops.append({"op": "maxpool", "c": c, "h": h, "w": w, "oh": oh, "ow": ow})
            h, w = oh, ow
        elif isinstance(m, nn.Upsample):
            if m.mode != "nearest":
                raise Unsupported(f"{where}: Upsample mode '{m.mode}' (only nearest is supported)")
            rows, cols = _upsample_index(h, m, 0, w), _upsample_index(w, m, 1, h)
            ops.append({"op": "gather", "c": c, "h": h, "w": w, "rows": rows, "cols": cols})
            h, w = len(rows), len(cols)
        elif isinstance(m, CropTo):
            ops.append(
                {
                    "op": "gather",
                    "c": c,
                    "h": h,
                    "w": w,
                    "rows": list(range(min(m.h, h))),
                    "cols": list(range(min(m.w, w))),
                }
            )
            h, w = min(m.h, h), min(m.w, w)
        else:
            raise Unsupported(f"{where}: layer {name} is not one the page can run")
    return ops, (c, h, w)


def export_model(model: Autoencoder) -> Exported:
    """The model's encode and decode as ops; Unsupported names the first thing the page cannot do."""
    from ..models.classifier import ClassifierAutoencoder
    from ..models.sae import TopKSAE
    from ..models.vae import LOGVAR_RANGE, VAEMixin
    from ..models.vqvae import VectorQuantizer

    model = model.eval()
    kind = type(model).__name__
    if any(isinstance(m, VectorQuantizer) for m in model.modules()):
        raise Unsupported(
            f"{kind}: the code is snapped to the nearest codebook vector (a vector quantiser) and the "
            "encoder and decoder use stride-2 and transposed convolutions, which the page does not run"
        )
    if len(model.input_shape) != 3:
        raise Unsupported(
            f"{kind}: the page draws images and this run's samples are vectors shaped {tuple(model.input_shape)}"
        )
    if model.input_shape[0] not in (1, 3):
        raise Unsupported(f"{kind}: the page draws grey or RGB images; this run's have {model.input_shape[0]} channels")
    shape: tuple[int, ...] = tuple(model.input_shape)
    pack = _Packer()
    code: tuple[int, ...]
    logvar = None
    trunk_len = 0
    if isinstance(model, VAEMixin):
        trunk, feat = _walk(model.encoder, shape, pack, "encoder")
        mu, _ = _walk([model.mu_head], feat, pack, "mu head")
        lv, _ = _walk([model.logvar_head], feat, pack, "log-variance head")
        logvar = lv + [{"op": "clamp", "lo": LOGVAR_RANGE[0], "hi": LOGVAR_RANGE[1]}]
        enc, trunk_len = trunk + mu, len(trunk)
        code = (model.code_dim,)
    elif isinstance(model, ClassifierAutoencoder):
        enc, code = _walk(list(model.blocks[: model.tap]), shape, pack, "encoder")
    elif isinstance(model, TopKSAE):
        return _export_topk(model, shape, pack)
    else:
        cls = type(model)
        for meth in ("encode", "decode_logits", "decode"):
            if getattr(cls, meth) is not getattr(Autoencoder, meth):
                raise Unsupported(f"{kind}: computes {meth} in its own way, which the page does not reproduce")
        enc, code = _walk(model.encoder, shape, pack, "encoder")
    code_shape = tuple(int(s) for s in (model.code_shape if not isinstance(model, VAEMixin) else code))
    dec, out = _walk(model.decoder, _chw(code_shape), pack, "decoder")
    if model.output_activation == "sigmoid":
        dec.append({"op": "act", "fn": "sigmoid"})
    if out != shape and math.prod(out) != math.prod(shape):
        raise Unsupported(f"{kind}: the decoder ends in {out}, not the input's {shape}")
    first = next((op for op in enc if op["op"] in ("linear", "conv")), None)
    return Exported(enc, dec, logvar, trunk_len, shape, code_shape, pack.buffer(), first)


def _export_topk(model, shape: tuple[int, ...], pack: _Packer) -> Exported:
    """A TopK sparse autoencoder: z = TopK(W_enc (x - b_pre) + b_enc) (BatchTopK at inference: the
    pre-activations above its threshold), x_hat = W_dec z + b_pre, then the output activation."""
    d, n = model.d_in, model.n_latents
    enc = [
        {"op": "affine", "c": d, "hw": 1, "scale": pack.add(torch.ones(d)), "shift": pack.add(-model.b_pre)},
        {"op": "linear", "in": d, "out": n, "w": pack.add(model.W_enc), "b": pack.add(model.b_enc)},
    ]
    if model.cfg.batch_topk:
        enc.append({"op": "threshold", "t": float(model.threshold)})
    else:
        enc.append({"op": "topk", "k": int(model.k)})
    dec = [{"op": "linear", "in": n, "out": d, "w": pack.add(model.W_dec), "b": pack.add(model.b_pre)}]
    if model.output_activation == "sigmoid":
        dec.append({"op": "act", "fn": "sigmoid"})
    return Exported(enc, dec, None, 0, shape, (n,), pack.buffer(), enc[1])


# -- the same engine in NumPy (the exporter's self-check, and the tests' reference) -------------

_ACT: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda x: np.maximum(x, 0),
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "tanh": np.tanh,
    "leaky_relu": lambda x: np.where(x > 0, x, 0.01 * x),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
}


def run_ops(ops: list[dict], buf: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Applies ops to a batch ``x`` (N, ...) in float64; returns (N, values)."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    n = len(x)
    for op in ops:
        kind = op["op"]
        if kind == "linear":
            w = buf[op["w"] : op["w"] + op["in"] * op["out"]].reshape(op["out"], op["in"]).astype(np.float64)
            x = x @ w.T + buf[op["b"] : op["b"] + op["out"]]
        elif kind == "act":
            x = _ACT[op["fn"]](x)
        elif kind == "topk":  # the k largest of each row, then ReLU; the rest zero (models.sae.topk_mask)
            idx = np.argpartition(-x, op["k"] - 1, axis=1)[:, : op["k"]]
            kept = np.take_along_axis(x, idx, axis=1)
            x = np.zeros_like(x)
            np.put_along_axis(x, idx, np.maximum(kept, 0), axis=1)
        elif kind == "threshold":  # BatchTopK at inference: what exceeds the threshold
            x = np.where(x > op["t"], x, 0.0)
        elif kind == "clamp":
            x = np.clip(x, op["lo"], op["hi"])
        elif kind == "affine":
            c, hw = op["c"], op["hw"]
            s = np.repeat(buf[op["scale"] : op["scale"] + c], hw)
            t = np.repeat(buf[op["shift"] : op["shift"] + c], hw)
            x = x * s + t
        elif kind == "conv":
            cin, cout, k, p, h, w = op["cin"], op["cout"], op["k"], op["pad"], op["h"], op["w"]
            wt = buf[op["wt"] : op["wt"] + cout * cin * k * k].reshape(cout, cin, k, k).astype(np.float64)
            xi = np.pad(x.reshape(n, cin, h, w), ((0, 0), (0, 0), (p, p), (p, p)))
            oh, ow = h + 2 * p - k + 1, w + 2 * p - k + 1
            y = np.zeros((n, cout, oh, ow)) + buf[op["b"] : op["b"] + cout].reshape(1, cout, 1, 1)
            for dy in range(k):
                for dx in range(k):
                    y += np.einsum("nchw,oc->nohw", xi[:, :, dy : dy + oh, dx : dx + ow], wt[:, :, dy, dx])
            x = y.reshape(n, -1)
        elif kind == "maxpool":
            c, h, w, oh, ow = op["c"], op["h"], op["w"], op["oh"], op["ow"]
            xi = np.full((n, c, oh * 2, ow * 2), -np.inf)
            xi[:, :, :h, :w] = x.reshape(n, c, h, w)
            x = xi.reshape(n, c, oh, 2, ow, 2).max(axis=(3, 5)).reshape(n, -1)
        elif kind == "gather":
            xi = x.reshape(n, op["c"], op["h"], op["w"])
            x = xi[:, :, op["rows"], :][:, :, :, op["cols"]].reshape(n, -1)
        else:
            raise ValueError(f"unknown op {kind}")
    return x


@torch.no_grad()
def check_parity(model: Autoencoder, ex: Exported, x: np.ndarray) -> dict[str, float]:
    """max |NumPy engine - PyTorch| for encode and decode on ``x``; Unsupported above the bar."""
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
    model = model.eval()
    z = model.encode(xt).float()
    y = model.decode(z).float()
    z_np = run_ops(ex.encoder, ex.buffer, x)
    y_np = run_ops(ex.decoder, ex.buffer, z.numpy())
    res = {
        "encode": float(np.abs(z_np - z.reshape(len(x), -1).numpy()).max()),
        "decode": float(np.abs(y_np - y.reshape(len(x), -1).numpy()).max()),
    }
    if not all(np.isfinite(v) and v <= TOLERANCE for v in res.values()):
        raise Unsupported(
            f"{type(model).__name__}: the page's version of this model differs from PyTorch by "
            f"{max(res.values()):.3g} (> {TOLERANCE}); it has a layer the export misreads"
        )
    return res
