"""Measuring one case: matmul peak, FLOPs per sample, seconds per epoch, peak memory.

Each case runs in its own child process (``python -m aelab.bench.timing``), so
its peak resident memory is its own and thread pools or allocator state left
by an earlier case (or by TensorFlow) cannot slow the next one.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time

import torch

from .. import _threads


def matmul_peak(dtype: torch.dtype = torch.float32, n: int = 1024, seconds: float = 0.5) -> float:
    """Best GFLOP/s of an n x n matmul: the ceiling the epochs are compared with."""
    torch.set_flush_denormal(True)
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    t0 = time.perf_counter()
    a @ b  # first call picks and caches the kernel
    best = time.perf_counter() - t0
    if best > seconds:  # an emulated dtype (bf16 without AVX-512/AMX): one call says enough
        return 2 * n**3 / best / 1e9
    end = time.perf_counter() + seconds
    reps = 0
    while time.perf_counter() < end or reps < 2:
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
        reps += 1
    return 2 * n**3 / best / 1e9


def train_flops_per_sample(model: torch.nn.Module, x: torch.Tensor, loss: str) -> float:
    """FLOPs of one training step (forward + backward, as executed) divided by the batch size."""
    from torch.utils.flop_counter import FlopCounterMode

    model.train()
    with FlopCounterMode(display=False) as fc:
        out = model.compute_loss(x, x, None, loss, 0)
        out.total.backward()
    model.zero_grad(set_to_none=True)
    return fc.get_total_flops() / len(x)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def summarize_epochs(seconds: list[float]) -> dict:
    """The first epoch is the warm-up; the median of the rest is the figure (the first alone if only one)."""
    timed = seconds[1:] or seconds
    return {
        "epoch_seconds": seconds,
        "warmup_seconds": seconds[0] if seconds else None,
        "seconds_per_epoch": statistics.median(timed) if timed else None,
    }


def run_torch_case(config: dict, epochs: int, overrides: list[str], limit: int | None) -> dict:
    """Trains the case with aelab's own loop and reports what the parent needs."""
    from ..config import Config
    from ..data import load_data
    from ..models import build_model, needs_unit_range
    from ..runner import train
    from ..train.loop import resolve_device, setup_runtime
    from ..train.precision import resolve_precision

    cfg = Config.from_dict(config).replace([f"train.epochs={epochs}", *overrides])
    if limit is not None:
        cfg = cfg.replace([f"data.limit={limit}", f"data.test_limit={max(limit // 6, 1)}"])
    t0 = time.perf_counter()
    splits = load_data(cfg.data, need_unit_range=needs_unit_range(cfg.model, cfg.train))
    load_seconds = time.perf_counter() - t0
    setup_runtime(cfg)
    torch.manual_seed(cfg.train.seed)
    probe = build_model(cfg, splits.sample_shape)
    xb = torch.as_tensor(splits.x_train[: cfg.train.batch_size])
    flops = train_flops_per_sample(probe, xb, cfg.train.loss)
    del probe
    run = train(cfg, data=splits, log=lambda s: None, is_writer=False)  # the entry point every caller uses
    model, history = run.model, run.metrics
    secs = [r["seconds"] for r in history]
    return {
        "impl": "aelab",
        "versions": f"torch {torch.__version__}",
        "precision": resolve_precision(cfg.train.precision, resolve_device(cfg.train.device)),
        "threads": torch.get_num_threads(),
        "omp_wait_policy": _threads.wait_policy,
        "train_step": run.summary.get("train_step"),
        "train_samples": int(len(splits.x_train)),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "train_flops_per_sample": flops,
        "load_seconds": load_seconds,
        **summarize_epochs(secs),
        # the test split's loss in fp32 (summary.json's): the per-epoch validation runs in the training precision
        "val_loss": run.summary["test_loss"],
        "peak_rss_mb": peak_rss_mb(),
    }


def main(argv: list[str]) -> int:
    """Child-process entry: one JSON argument in, one JSON line out."""
    job = json.loads(argv[0])
    if job["kind"] == "peak":
        # bf16 at 512: where it is emulated (no AVX-512 BF16 / AMX) a 1024 matmul alone takes seconds
        res = {
            "fp32_gflops": matmul_peak(torch.float32),
            "bf16_gflops": matmul_peak(torch.bfloat16, n=512),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(),
            "omp_wait_policy": _threads.wait_policy,
        }
    else:
        res = run_torch_case(job["config"], job["epochs"], job.get("overrides", []), job.get("limit"))
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
