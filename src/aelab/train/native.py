"""aelab's own CPU kernels (native_kernels.c), compiled for this machine on first use and cached.

The written-out dense step (fused_dense.py) spends a third of its time outside its GEMMs in passes that
each read and write the whole batch or the whole model: casts to and from bf16, the loss and its
gradient in four kernels, bias sums, the optimizer. Fused, each is one pass (docs/PERFORMANCE.md).

The source is compiled once per machine with the C compiler Python was built with (``$CC`` overrides it)
for this CPU (``-march=native``; ``$AELAB_KERNELS_MARCH`` names another level), into
``~/.cache/aelab/kernels`` (``$XDG_CACHE_HOME`` is respected), under
a name that hashes the source, the compiler, its flags and the CPU, so a cache shared between machines
never hands one CPU another's build. Linked against OpenMP, the library shares torch's libgomp (already
loaded under the same soname), hence torch's threads and wait policy. Where there is no compiler, or the
build fails, ``load()`` returns None with the reason in ``why_not()``, and training keeps torch's kernels.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import platform
import shlex
import shutil
import subprocess
import sysconfig
import tempfile
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch

SOURCE = Path(__file__).with_name("native_kernels.c")
# -ffp-contract=off: the Adam update must round where torch's does (fused multiply-adds only where written)
FLAGS = ["-O3", "-std=c11", "-shared", "-fPIC", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math"]

# loss kinds and activation codes the C side knows
LOSS_KINDS = {"bce": 0, "mse-sigmoid": 1, "mse": 2}
ACTIVATIONS = {"identity": 0, "relu": 1, "sigmoid": 2, "tanh": 3, "leaky_relu": 4, "elu": 5}

_why_not = "not loaded yet"


def loss_kind(loss: str, output_activation: str) -> str:
    """The loss kernel's kind for ``train.loss`` and the model's output activation (LOSS_KINDS)."""
    if loss == "bce":
        return "bce"
    return "mse-sigmoid" if output_activation == "sigmoid" else "mse"


def why_not() -> str:
    """Why ``load()`` returned None (empty when it did not)."""
    return _why_not


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "aelab" / "kernels"


def compiler() -> str | None:
    """The C compiler: ``$CC``, else the one Python was built with, else ``cc``; None if none is on PATH."""
    for cand in (os.environ.get("CC"), sysconfig.get_config_var("CC"), "cc", "gcc", "clang"):
        if cand:
            exe = shutil.which(shlex.split(cand)[0])
            if exe:
                return exe
    return None


def _torch_uses_libgomp() -> bool:
    """Whether torch's OpenMP is GNU libgomp (mapped into this process), which a -fopenmp build then shares."""
    try:
        with open("/proc/self/maps") as f:
            return any("libgomp" in line for line in f)
    except OSError:
        return False


def _cpu_id() -> str:
    from .precision import cpu_flags, cpu_kind

    return f"{platform.machine()} {cpu_kind()} {' '.join(sorted(cpu_flags()))}"


def _compile(cc: str, flags: list[str], out: Path) -> str | None:
    """Builds the library at ``out`` (atomically); returns None, or the compiler's first error line."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".build-", suffix=".so")
        os.close(fd)
    except OSError as e:
        return f"{out.parent}: {e.strerror or e}"
    try:
        r = subprocess.run([cc, *flags, str(SOURCE), "-o", tmp, "-lm"], capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            lines = [ln for ln in (r.stderr or r.stdout).splitlines() if ln.strip()]
            return (lines[0] if lines else f"{cc} exited with {r.returncode}")[:300]
        os.replace(tmp, out)  # several processes may build at once: each renames a complete file
        return None
    except (OSError, subprocess.SubprocessError) as e:
        return f"{type(e).__name__}: {e}"[:300]
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class ByteRows(NamedTuple):
    """Targets as the bytes they were scaled from: the floats are ``rows / divisor`` (float32 division)."""

    rows: torch.Tensor
    divisor: float


class AdamJobs:
    """Adam/AdamW updates gathered for one ``Kernels.adam_many`` call, one ``add`` per tensor: its parameters,
    gradient (float32 or bf16), moments, bf16 copy to write (or None), hyper-parameters and step count. It holds
    addresses only: the caller keeps the tensors alive until the call."""

    __slots__ = ("ints", "reals")

    def __init__(self) -> None:
        self.ints, self.reals = array("q"), array("d")

    def add(
        self,
        p: torch.Tensor,
        grad: torch.Tensor,
        exp_avg: torch.Tensor,
        exp_avg_sq: torch.Tensor,
        copy: torch.Tensor | None,
        lr: float,
        betas: tuple[float, float],
        eps: float,
        weight_decay: float,
        decoupled: bool,
        step: torch.Tensor,
    ) -> None:
        n = p.numel()
        # the kernel trusts these: a short tensor would be written past its end
        assert grad.numel() == n and exp_avg.numel() == n and exp_avg_sq.numel() == n
        assert p.dtype == exp_avg.dtype == exp_avg_sq.dtype == torch.float32
        assert grad.dtype in (torch.float32, torch.bfloat16)
        assert copy is None or (copy.numel() == n and copy.dtype == torch.bfloat16)
        assert step.dtype == torch.float32 and step.numel() == 1 and step.device.type == "cpu"
        self.ints.extend(
            (
                n,
                p.data_ptr(),
                grad.data_ptr(),
                grad.dtype == torch.bfloat16,
                exp_avg.data_ptr(),
                exp_avg_sq.data_ptr(),
                copy.data_ptr() if copy is not None else 0,
                step.data_ptr(),
                decoupled,
            )
        )
        self.reals.extend((lr, betas[0], betas[1], eps, weight_decay))


class Kernels:
    """The compiled library's functions, taking tensors (contiguous, on the CPU; bf16 or float32)."""

    def __init__(self, lib: ctypes.CDLL, path: Path):
        self.path = path
        i64, f32, f64, i32, vp = ctypes.c_int64, ctypes.c_float, ctypes.c_double, ctypes.c_int, ctypes.c_void_p
        self._loss = lib.aelab_loss_grad
        self._loss.argtypes = [i64, i64, vp, i32, vp, i32, f32, vp, i32, vp, i32, f32, vp]
        self._loss.restype = f64
        self._gather = lib.aelab_gather_bytes
        self._gather.argtypes = [i64, vp, i64, vp, i64, f32, vp, i32, vp]
        self._gather.restype = i32
        self._exact = lib.aelab_byte_division_exact
        self._exact.argtypes = [f32]
        self._exact.restype = i32
        self._exact_for: dict[float, bool] = {}  # asked once per divisor: the loss kernel checks every step
        self._errors = lib.aelab_row_errors
        self._errors.argtypes = [i64, i64, vp, i32, vp, vp, vp]
        self._errors.restype = None
        self._act = lib.aelab_act_backward
        self._act.argtypes = [i64, i64, vp, vp, i32, i32, f32, vp]
        self._act.restype = i32
        self._adam = lib.aelab_adam_many
        self._adam.argtypes = [i64, vp, vp]
        self._adam.restype = i32
        self._c1 = lib.aelab_conv1_relu_pool
        self._c1.argtypes = [i64, i64, i64, i64, i64, vp, vp, vp, vp, i32, vp]
        self._c1.restype = None
        self._c1b = lib.aelab_conv1_relu_pool_backward
        self._c1b.argtypes = [i64, i64, i64, i64, i64, vp, vp, vp, i32, vp, vp, vp]
        self._c1b.restype = i32
        self._u1 = lib.aelab_upconv1
        self._u1.argtypes = [i64, i64, i64, i64, i64, i64, i64, vp, i32, vp, f32, vp]
        self._u1.restype = None
        self._u1b = lib.aelab_upconv1_backward
        self._u1b.argtypes = [i64, i64, i64, i64, i64, i64, i64, vp, i32, vp, vp, vp, i32, vp, vp]
        self._u1b.restype = i32
        self._c3takes = lib.aelab_conv3_takes
        self._c3takes.argtypes = [i64, i64]
        self._c3takes.restype = i32
        self._c3 = lib.aelab_conv3
        self._c3.argtypes = [i64, i64, i64, i64, i64, vp, i32, vp, vp, vp]
        self._c3.restype = i32
        self._c3b = lib.aelab_conv3_backward
        self._c3b.argtypes = [i64, i64, i64, i64, i64, vp, vp, i32, vp, vp, vp, vp]
        self._c3b.restype = i32
        self._d3takes = lib.aelab_conv3_bf16_takes
        self._d3takes.argtypes = [i64, i64, i64]
        self._d3takes.restype = i32
        self._d3 = lib.aelab_conv3_bf16
        self._d3.argtypes = [i64, i64, i64, i64, i64, vp, vp, vp, vp]
        self._d3.restype = i32
        self._d3b = lib.aelab_conv3_bf16_backward
        self._d3b.argtypes = [i64, i64, i64, i64, i64, vp, vp, vp, vp, vp, vp]
        self._d3b.restype = i32

    def loss_grad(
        self,
        z: torch.Tensor,
        target: torch.Tensor | ByteRows,
        g: torch.Tensor,
        bias_grad: torch.Tensor | None,
        kind: str,
        mean: torch.Tensor | None = None,
    ) -> float:
        """Sum over the batch of the loss of logits ``z`` (rows, cols) against ``target`` (float32, or the bytes
        it was scaled from); the mean loss's gradient into ``g``, its column sums into ``bias_grad`` (float32,
        or None), and the mean loss into ``mean`` (a float32 tensor of one element, or None)."""
        rows, cols = z.shape
        scale = (1.0 if kind == "bce" else 2.0) / z.numel()
        if isinstance(target, ByteRows):
            t, t_u8, divisor = target.rows, True, target.divisor
            assert t.dtype == torch.uint8 and z.dtype == g.dtype and self.byte_division_exact(divisor)
        else:
            t, t_u8, divisor = target, False, 1.0
            assert t.dtype == torch.float32
        assert t.numel() == z.numel() and t.is_contiguous()
        return self._loss(
            rows,
            cols,
            z.data_ptr(),
            z.dtype == torch.bfloat16,
            t.data_ptr(),
            t_u8,
            divisor,
            g.data_ptr(),
            g.dtype == torch.bfloat16,
            bias_grad.data_ptr() if bias_grad is not None else None,
            LOSS_KINDS[kind],
            scale,
            mean.data_ptr() if mean is not None else None,
        )

    def act_backward(
        self, g: torch.Tensor, h: torch.Tensor, act: str, a: float, bias_grad: torch.Tensor | None
    ) -> None:
        """``g *= act'`` in place (from the activation's output ``h``), column sums into ``bias_grad``."""
        rows, cols = g.shape
        bias = bias_grad.data_ptr() if bias_grad is not None else None
        if self._act(rows, cols, g.data_ptr(), h.data_ptr(), g.dtype == torch.bfloat16, ACTIVATIONS[act], a, bias):
            raise MemoryError("aelab_act_backward: no memory for its scratch")

    def byte_division_exact(self, divisor: float) -> bool:
        """Whether the kernels divide every byte by ``divisor`` as float32 division does (255 and 1: yes)."""
        if divisor not in self._exact_for:
            self._exact_for[divisor] = bool(self._exact(divisor))
        return self._exact_for[divisor]

    def gather_bytes(
        self, src: torch.Tensor, divisor: float, idx: torch.Tensor, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """``src[idx] / divisor`` (len(idx), *src.shape[1:]), divided in float32 as numpy scales uint8 data, in
        ``dtype`` (float32, or bf16 rounded from it): rows of a uint8 dataset as the floats it was scaled to,
        fetching a quarter of the bytes."""
        return self._gather_rows(src, divisor, idx, dtype, None)

    def gather_batch(
        self, src: torch.Tensor, divisor: float, idx: torch.Tensor, dtype: torch.dtype
    ) -> tuple[torch.Tensor, ByteRows]:
        """``gather_bytes`` and, in the same pass, the rows' bytes: a written-out step's input in its own dtype
        and its targets for ``loss_grad``, with no float32 batch written, read back and cast."""
        rows = torch.empty(len(idx), *src.shape[1:], dtype=torch.uint8)
        return self._gather_rows(src, divisor, idx, dtype, rows), ByteRows(rows, divisor)

    def _gather_rows(
        self, src: torch.Tensor, divisor: float, idx: torch.Tensor, dtype: torch.dtype, rows: torch.Tensor | None
    ) -> torch.Tensor:
        assert src.dtype == torch.uint8 and src.is_contiguous() and dtype in (torch.float32, torch.bfloat16)
        idx = idx.to(torch.int64).contiguous()
        out = torch.empty(len(idx), *src.shape[1:], dtype=dtype)
        cols = src[0].numel() if len(src) else 0
        bf16 = dtype == torch.bfloat16
        ptr = rows.data_ptr() if rows is not None else None
        if self._gather(len(idx), idx.data_ptr(), cols, src.data_ptr(), len(src), divisor, out.data_ptr(), bf16, ptr):
            raise IndexError(f"gather_bytes: an index outside [0, {len(src)})")
        return out

    def row_errors(self, z: torch.Tensor, target: torch.Tensor, bce: torch.Tensor, mse: torch.Tensor) -> None:
        """Per row of logits ``z`` (rows, cols): the mean BCE against ``target`` (float32) into ``bce`` and the
        mean squared error of sigmoid(z) into ``mse`` (float32, rows each)."""
        rows, cols = z.shape
        assert target.shape == z.shape and target.dtype == torch.float32 and target.is_contiguous()
        assert z.is_contiguous() and bce.numel() == mse.numel() == rows
        assert bce.dtype == mse.dtype == torch.float32 and bce.is_contiguous() and mse.is_contiguous()
        self._errors(
            rows, cols, z.data_ptr(), z.dtype == torch.bfloat16, target.data_ptr(), bce.data_ptr(), mse.data_ptr()
        )

    def adam_many(self, jobs: AdamJobs) -> None:
        """Every update ``jobs`` holds (torch's fused Adam/AdamW update of each ``p``, and a bf16 ``copy`` of the
        result; each ``step`` count, a float32 tensor of one element, counted up first as torch does), in one
        call: one parallel region for all the tensors."""
        if jobs.reals:
            if self._adam(len(jobs.reals) // 5, jobs.ints.buffer_info()[0], jobs.reals.buffer_info()[0]):
                raise MemoryError("aelab_adam_many: no memory for its scratch")

    # -- the convolutional autoencoder's first and last layers (fused_conv.py) -------------------------
    # Feature maps are NHWC (channels innermost); weights tap-major (k * k, C), float32.

    def conv1_relu_pool(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, out_dtype: torch.dtype):
        """x (N, H, W) float32 -> maxpool2x2(relu(conv(x) + b)) as (N, ceil(H/2), ceil(W/2), C) in out_dtype,
        and the argmax of each window (uint8) for the backward."""
        n, h, wd = x.shape
        c = b.numel()
        k = math.isqrt(w.shape[0])
        out = torch.empty(n, (h + 1) // 2, (wd + 1) // 2, c, dtype=out_dtype)
        arg = torch.empty(out.shape, dtype=torch.uint8)
        self._c1(
            n, h, wd, c, k, x.data_ptr(), w.data_ptr(), b.data_ptr(), out.data_ptr(), _is_bf16(out), arg.data_ptr()
        )
        return out, arg

    def conv1_relu_pool_backward(self, x, w, dout, out, arg) -> tuple[torch.Tensor, torch.Tensor]:
        """The weight (k * k, C) and bias (C) gradients of ``conv1_relu_pool`` from its output's gradient."""
        n, h, wd = x.shape
        k, c = math.isqrt(w.shape[0]), w.shape[1]
        dw, db = torch.empty(k * k, c), torch.empty(c)
        bf16 = _is_bf16(out)
        assert _is_bf16(dout) == bf16
        if self._c1b(
            n,
            h,
            wd,
            c,
            k,
            x.data_ptr(),
            dout.data_ptr(),
            out.data_ptr(),
            bf16,
            arg.data_ptr(),
            dw.data_ptr(),
            db.data_ptr(),
        ):
            raise MemoryError("aelab_conv1_relu_pool_backward: no memory for its scratch")
        return dw, db

    def upconv1(self, a: torch.Tensor, w: torch.Tensor, b: float, h: int, wd: int) -> torch.Tensor:
        """a (N, Hs, Ws, C) upsampled 2x (nearest), cut to (h, wd), convolved to one channel + b: (N, h, wd)."""
        n, hs, ws, c = a.shape
        k = math.isqrt(w.shape[0])
        z = torch.empty(n, h, wd)
        self._u1(n, hs, ws, c, h, wd, k, a.data_ptr(), _is_bf16(a), w.data_ptr(), b, z.data_ptr())
        return z

    def upconv1_backward(self, a, w, g, relu_mask: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """From g = dLoss/dz (N, h, wd) float32: the gradients of a (a's dtype; times a > 0 with relu_mask),
        of w (k * k, C) and of b (1)."""
        n, hs, ws, c = a.shape
        _, h, wd = g.shape
        k = math.isqrt(w.shape[0])
        da, dw, db = torch.empty_like(a), torch.empty(k * k, c), torch.empty(1)
        if self._u1b(
            n,
            hs,
            ws,
            c,
            h,
            wd,
            k,
            a.data_ptr(),
            _is_bf16(a),
            w.data_ptr(),
            g.data_ptr(),
            da.data_ptr(),
            relu_mask,
            dw.data_ptr(),
            db.data_ptr(),
        ):
            raise MemoryError("aelab_upconv1_backward: no memory for its scratch")
        return da, dw, db

    def conv3_takes(self, cin: int, cout: int) -> bool:
        """Whether ``conv3`` takes a 3x3 convolution with these channel counts (8 or 16 on each side)."""
        return bool(self._c3takes(cin, cout))

    def conv3_dot_takes(self, cin: int, cout: int, width: int) -> bool:
        """Whether this build has the bf16 dot-product convolutions (a CPU with AVX-512 BF16) and they take
        a layer with these channel counts (8 or 16 each side) on maps this wide (even)."""
        return bool(self._d3takes(cin, cout, width))

    def conv3(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, dot: bool = False) -> torch.Tensor:
        """x (N, H, W, CI) -> 3x3 'same' convolution + b, (N, H, W, CO) in x's dtype; w (3, 3, CI, CO) and b
        float32. ``dot``: in bf16 dot products (x bf16, weights rounded to bf16, sums in float32)."""
        n, h, wd, ci = x.shape
        co = w.shape[3]
        out = torch.empty(n, h, wd, co, dtype=x.dtype)
        if dot:
            failed = self._d3(n, h, wd, ci, co, x.data_ptr(), w.data_ptr(), b.data_ptr(), out.data_ptr())
        else:
            failed = self._c3(n, h, wd, ci, co, x.data_ptr(), _is_bf16(x), w.data_ptr(), b.data_ptr(), out.data_ptr())
        if failed:
            raise MemoryError("aelab_conv3: no memory for its scratch")
        return out

    def conv3_backward(self, x: torch.Tensor, g: torch.Tensor, w: torch.Tensor, need_input: bool, dot: bool = False):
        """From g = dLoss/dout (N, H, W, CO), in x's dtype: the gradient of x (None unless ``need_input``), of
        the weights (3, 3, CI, CO) and of the bias (CO), float32; w and ``dot`` as for ``conv3``."""
        n, h, wd, ci = x.shape
        co = g.shape[3]
        assert _is_bf16(g) == _is_bf16(x)
        dx = torch.empty_like(x) if need_input else None
        dw, db = torch.empty(3, 3, ci, co), torch.empty(co)
        dxp = dx.data_ptr() if dx is not None else None
        if dot:
            failed = self._d3b(
                n, h, wd, ci, co, x.data_ptr(), g.data_ptr(), w.data_ptr(), dxp, dw.data_ptr(), db.data_ptr()
            )
        else:
            failed = self._c3b(
                n,
                h,
                wd,
                ci,
                co,
                x.data_ptr(),
                g.data_ptr(),
                _is_bf16(x),
                w.data_ptr(),
                dxp,
                dw.data_ptr(),
                db.data_ptr(),
            )
        if failed:
            raise MemoryError("aelab_conv3_backward: no memory for its scratch")
        return dx, dw, db


def _is_bf16(t: torch.Tensor) -> bool:
    return t.dtype == torch.bfloat16


def cache_dirs() -> list[Path]:
    """Where builds go: the user's cache, else (read-only home, say) a folder of this user's in the temp dir."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return [cache_dir(), Path(tempfile.gettempdir()) / f"aelab-kernels-{uid}"]


_loaded: Kernels | None = None
_tried = False


def load(log: Callable[[str], None] | None = None) -> Kernels | None:
    """The kernels for this machine, built on first use (``log`` hears when that happens: a few seconds,
    once per machine); None (see ``why_not()``) where they cannot be. ``$AELAB_KERNELS_MARCH`` (say
    ``x86-64-v3``) builds them for that CPU level instead of this CPU's, to run what another kind of machine
    would (docs/PERFORMANCE.md measures an AVX2 machine's code paths that way)."""
    global _why_not, _loaded, _tried
    if not _tried:
        march = os.environ.get("AELAB_KERNELS_MARCH", "").strip() or "native"
        _loaded, _why_not = build(compiler(), cache_dirs(), log, march)
        _tried = True
    return _loaded


def build(
    cc: str | None, folders: list[Path], log: Callable[[str], None] | None = None, march: str = "native"
) -> tuple[Kernels | None, str]:
    """Compiles (or finds the cached build of) the kernels with ``cc`` in the first folder that takes it;
    returns them and "", or None and why not. ``march`` builds them for another CPU level than this one's
    (``x86-64-v3``: what an AVX2 machine runs), so that one machine can test the others' code paths."""
    if cc is None:
        return None, "no C compiler on PATH (set CC)"
    torch.get_num_threads()  # torch, and with it its libgomp, is loaded before we look for it
    flags = [*FLAGS, f"-march={march}"] + (["-fopenmp"] if _torch_uses_libgomp() else [])
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"{cc} --version failed: {e}"
    source = SOURCE.read_text()
    error = "no folder to build in"
    # some compilers know no -march=native; an explicit level is built as asked or not at all
    for fl in (flags, [f for f in flags if f != "-march=native"]) if march == "native" else (flags,):
        key = hashlib.sha256("\0".join([source, cc, version, *fl, _cpu_id()]).encode()).hexdigest()[:16]
        for folder in folders:
            path = folder / f"aelab-kernels-{key}.so"
            for attempt in range(2):  # a damaged cached build (a full disk, say) is built again once
                if not path.exists():
                    if log is not None:
                        log(f"building aelab's C kernels for this CPU with {cc} (once; cached in {folder})")
                    err = _compile(cc, fl, path)
                    if err is not None:
                        error = err
                        break
                try:
                    return Kernels(ctypes.CDLL(str(path)), path), ""
                except (OSError, AttributeError) as e:
                    error = f"{path} does not load: {e}"
                    if attempt == 0:
                        path.unlink(missing_ok=True)
    return None, f"the C kernels did not build: {error}"
