"""Which number format the forward pass runs in, and the autocast context for it.

``precision: auto`` (the default) takes bf16 autocast only where the hardware
multiplies bf16 natively: CPUs with AMX or AVX-512 BF16. Elsewhere it stays
fp32, because emulated bf16 is slower, not faster: on an AVX2 CPU aelab bench
measured a bf16 matmul at 1.3 GFLOP/s against 144 fp32 (docs/PERFORMANCE.md).
On CUDA auto stays fp32 as well: the seeds' models are too small for tensor
cores to matter next to kernel-launch time; ask for bf16-mixed or fp16-mixed.
``AELAB_PRECISION=fp32`` (or ``bf16-mixed``) in the environment decides what auto
means on any machine: `make test` uses it to run the precision-sensitive tests in
the format this CPU would not pick.
"""

from __future__ import annotations

import contextlib
import functools
import os

import torch

from ..errors import ConfigError

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


# the flags that decide how fast (and in which format) a CPU trains; named beside every result
KIND_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpu_kind() -> str:
    """'AMD EPYC (family 26 model 2), avx2 avx512f avx512_bf16': the CPU model, its family and model numbers
    (marketing names hide the generation: family 25 is AMD Zen 3/4, 26 is Zen 5) and the flags that matter
    here (summary.json, aelab bench, docs)."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "cpu family", "model") and key not in info:
                    info[key] = value.strip()
                if not line.strip():  # the first processor's block is enough
                    break
    except OSError:
        pass
    import platform

    name = info.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in info and "model" in info:
        name += f" (family {info['cpu family']} model {info['model']})"
    flags = " ".join(f for f in KIND_FLAGS if f in cpu_flags())
    return f"{name}, {flags or 'no avx2'}"


def cpu_has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in NATIVE_BF16_FLAGS)


def resolve_precision(precision: str, device: torch.device, flags: frozenset[str] | None = None) -> str:
    """``auto`` -> the format this device trains fastest in without hurting the result; others as asked."""
    if precision != "auto":
        return precision
    forced = os.environ.get("AELAB_PRECISION", "").strip()
    if forced:  # what auto means here, whatever the CPU: the test suite's second pass, or matching another machine
        if forced not in ("fp32", "bf16-mixed"):
            raise ConfigError(
                f"AELAB_PRECISION: must be fp32 or bf16-mixed (what train.precision auto resolves to), got '{forced}'"
            )
        return forced
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
