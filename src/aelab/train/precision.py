"""Which number format the forward pass runs in, and the autocast context for it.

``precision: auto`` (the default) takes bf16 autocast only where the hardware
multiplies bf16 natively: CPUs with AMX or AVX-512 BF16. Elsewhere it stays
fp32, because emulated bf16 is slower, not faster: on an AVX2 CPU aelab bench
measured a bf16 matmul at 1.3 GFLOP/s against 144 fp32 (docs/PERFORMANCE.md).
On CUDA auto stays fp32 as well: the seeds' models are too small for tensor
cores to matter next to kernel-launch time; ask for bf16-mixed or fp16-mixed.
"""
from __future__ import annotations

import contextlib
import functools

import torch

# /proc/cpuinfo flags of CPUs that multiply bf16 natively (oneDNN uses them for bf16 matmuls)
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in NATIVE_BF16_FLAGS)


def resolve_precision(precision: str, device: torch.device, flags: frozenset[str] | None = None) -> str:
    """``auto`` -> the format this device trains fastest in without hurting the result; others as asked."""
    if precision != "auto":
        return precision
    if device.type == "cpu" and cpu_has_native_bf16(flags):
        return "bf16-mixed"
    return "fp32"


def autocast_context(device: torch.device, precision: str):
    """The context the forward pass and loss run in; ``precision`` is a resolved one (not auto)."""
    if precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "fp16-mixed" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()
