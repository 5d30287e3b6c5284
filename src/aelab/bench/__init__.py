"""``aelab bench``: how fast aelab trains the seeds' models here, and how that compares with Keras.

``run_bench(["seed000-dense784"], epochs=5, vs_keras=True)`` returns a dict
(what ``--json`` prints): the matmul peak measured at the start, then one
entry per case with aelab's and, when asked, Keras's numbers and their ratio.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .._threads import without_ours
from ..errors import AelabError, ConfigError
from ..train.precision import cpu_kind
from .cases import CASES, BenchCase, default_cases, select_cases

__all__ = ["run_bench", "CASES", "BenchCase", "default_cases", "select_cases", "keras_available", "format_table"]

KERAS_RUNNER = Path(__file__).with_name("keras_runner.py")


class BenchError(AelabError):
    pass


def _child(args: list[str], what: str, timeout: float | None = None) -> dict:
    """Runs a child that prints one JSON line last; its stderr tail becomes the error."""
    env = {**without_ours(dict(os.environ)), "AELAB_NO_PROGRESS": "1"}  # each child picks its own OpenMP wait policy
    p = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"{what} failed (exit {p.returncode}): {tail}")
    return json.loads(lines[-1])


def _torch_job(job: dict) -> dict:
    return _child([sys.executable, "-m", "aelab.bench.timing", json.dumps(job)], f"case {job.get('name', job['kind'])}")


def keras_available(python: str) -> tuple[bool, str]:
    """Whether ``python`` can import tensorflow and keras; the reason when not."""
    try:
        p = subprocess.run(
            [python, "-c", "import keras, tensorflow"],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"{python}: {e}"
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or ["import failed"])[-1]
        return (
            False,
            f"{python} cannot import tensorflow/keras ({last}); pip install -e '.[bench]' or pass --keras-python",
        )
    return True, ""


def _keras_job(case: BenchCase, epochs: int, data_dir: Path, python: str) -> dict:
    spec = {
        **case.keras,
        "epochs": epochs,
        "seed": case.config["train"].get("seed", 0),
        "x_train": str(data_dir / "x_train.npy"),
        "x_test": str(data_dir / "x_test.npy"),
    }
    path = data_dir / "spec.json"
    path.write_text(json.dumps(spec))
    return _child([python, str(KERAS_RUNNER), str(path)], f"keras case {case.name}")


def _write_case_data(case: BenchCase, overrides: list[str], limit: int | None, out: Path) -> None:
    """The arrays aelab trains on, flattened, for the Keras child (scratch files, not run outputs)."""
    import numpy as np

    from ..config import Config
    from ..data import load_data

    cfg = Config.from_dict(case.config).replace(overrides)
    if limit is not None:
        cfg = cfg.replace([f"data.limit={limit}", f"data.test_limit={max(limit // 6, 1)}"])
    s = load_data(cfg.data)
    np.save(out / "x_train.npy", np.ascontiguousarray(s.x_train.reshape(len(s.x_train), -1), dtype=np.float32))
    x_val, _ = s.validation
    np.save(out / "x_test.npy", np.ascontiguousarray(x_val.reshape(len(x_val), -1), dtype=np.float32))


def _derive(res: dict, flops: float | None, n: int | None, peak: dict) -> dict:
    spe = res.get("seconds_per_epoch")
    if spe and n:
        res["samples_per_second"] = n / spe
    if spe and flops and n:
        g = flops * n / spe / 1e9
        res["gflops"] = g
        res["share_fp32_peak"] = g / peak["fp32_gflops"]
        res["share_bf16_peak"] = g / peak["bf16_gflops"]
    return res


# Variables that change which code a run executes or how many threads it takes: a result measured with any of
# them set (an AVX2 machine's code paths on an AVX-512 one, say) must say so beside its CPU.
CODE_PATH_VARS = (
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "MKL_ENABLE_INSTRUCTIONS",
    "AELAB_KERNELS_MARCH",
    "AELAB_PRECISION",
    "AELAB_OMP_WAIT",
    "OMP_NUM_THREADS",
)


def code_path_environment() -> dict[str, str]:
    return {k: os.environ[k] for k in CODE_PATH_VARS if os.environ.get(k, "").strip()}


def run_bench(
    cases: list[str] | str | None = None,
    epochs: int = 5,
    vs_keras: bool = False,
    overrides: list[str] | None = None,
    limit: int | None = None,
    keras_python: str | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> dict:
    if epochs < 2:
        raise ConfigError(f"--epochs: must be >= 2 (the first epoch is the warm-up), got {epochs}")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit: must be >= 1, got {limit}")
    chosen = select_cases(",".join(cases) if isinstance(cases, list) else cases)
    overrides = list(overrides or [])
    for c in chosen:  # a bad --set fails here, before any case has run
        from ..config import Config

        Config.from_dict(c.config).replace(overrides)
    keras_python = keras_python or sys.executable
    keras_ok, keras_why = keras_available(keras_python) if vs_keras else (False, "not asked (--vs keras)")
    if vs_keras and not keras_ok:
        log(f"keras: skipped: {keras_why}")

    out: dict = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "host": platform.node(),
        "cpu": cpu_kind(),
        "cpu_count": os.cpu_count(),
        "environment": code_path_environment(),
        "torch": importlib.metadata.version("torch"),
        "load_average_start": list(os.getloadavg()),
        "epochs": epochs,
        "overrides": overrides,
        "limit": limit,
        "keras": {"asked": vs_keras, "available": keras_ok, "reason": keras_why or None},
    }
    log("measuring the matmul peak (fp32, bf16) ...")
    peak = _torch_job({"kind": "peak"})
    out["peak"] = peak
    log(
        f"peak: fp32 {peak['fp32_gflops']:.0f} GFLOP/s, bf16 {peak['bf16_gflops']:.0f} GFLOP/s "
        f"({peak['cpu_capability']}, {peak['threads']} threads)"
    )
    out["cases"] = []
    for case in chosen:
        log(f"{case.name}: aelab, {epochs} epochs ...")
        a = _torch_job(
            {
                "kind": "case",
                "name": case.name,
                "config": case.config,
                "epochs": epochs,
                "overrides": overrides,
                "limit": limit,
            }
        )
        flops, n = a["train_flops_per_sample"], a["train_samples"]
        entry = {"case": case.name, "description": case.description, "aelab": _derive(a, flops, n, peak)}
        if keras_ok and case.keras is not None:
            log(f"{case.name}: keras, {epochs} epochs ...")
            with tempfile.TemporaryDirectory(prefix="aelab-bench-") as tmp:
                _write_case_data(case, overrides, limit, Path(tmp))
                k = _keras_job(case, epochs, Path(tmp), keras_python)
            k.update(_summarize(k["epoch_seconds"]))
            entry["keras"] = _derive(k, flops, n, peak)
            entry["speedup_vs_keras"] = k["seconds_per_epoch"] / a["seconds_per_epoch"]
            entry["val_loss_minus_keras"] = a["val_loss"] - k["val_loss"]
        out["cases"].append(entry)
    out["load_average_end"] = list(os.getloadavg())
    return out


def _summarize(seconds: list[float]) -> dict:
    from .timing import summarize_epochs

    return summarize_epochs(seconds)


def format_table(res: dict) -> str:
    """A plain-text table, one row per case and implementation."""
    p = res["peak"]
    head = (
        (f"{res['cpu']}, {res['cpu_count']} CPUs\n" if "cpu" in res else "")
        + "".join(f"{k}={v}\n" for k, v in res.get("environment", {}).items())
        + f"matmul peak: fp32 {p['fp32_gflops']:.0f} GFLOP/s, bf16 {p['bf16_gflops']:.0f} GFLOP/s "
        f"({p['cpu_capability']}, {p['threads']} threads); load average {res['load_average_start'][0]:.1f} "
        f"at start, {res['load_average_end'][0]:.1f} at end; {res['epochs']} epochs, first is warm-up"
    )
    cols = [
        "case",
        "impl",
        "s/epoch",
        "warm-up s",
        "samples/s",
        "GFLOP/s",
        "%fp32",
        "%bf16",
        "peak MB",
        "val loss",
        "vs keras",
    ]
    rows = []
    for e in res["cases"]:
        for impl in ("aelab", "keras"):
            r = e.get(impl)
            if r is None:
                continue
            ratio = ""
            if impl == "aelab" and "speedup_vs_keras" in e:
                ratio = (
                    f"{e['speedup_vs_keras']:.2f}x faster"
                    if e["speedup_vs_keras"] >= 1
                    else f"{1 / e['speedup_vs_keras']:.2f}x slower"
                )
            rows.append(
                [
                    e["case"],
                    impl,
                    f"{r['seconds_per_epoch']:.3f}",
                    f"{r['warmup_seconds']:.3f}",
                    f"{r.get('samples_per_second', 0):,.0f}",
                    f"{r.get('gflops', 0):.1f}",
                    f"{100 * r.get('share_fp32_peak', 0):.0f}%",
                    f"{100 * r.get('share_bf16_peak', 0):.0f}%",
                    f"{r['peak_rss_mb']:.0f}",
                    f"{r['val_loss']:.4f}",
                    ratio,
                ]
            )
    widths = [max(len(str(x)) for x in col) for col in zip(cols, *rows)]
    lines = [head, "  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(str(x).ljust(w) for x, w in zip(r, widths)) for r in rows]
    k = res["keras"]
    if k["asked"] and not k["available"]:
        lines.append(f"keras: skipped: {k['reason']}")
    return "\n".join(lines)
