"""aelab's AnomalyDetector side by side with PyOD on Fashion-MNIST, every class held out in turn.

Task k (k = 0..9): train on N images of the other nine classes drawn from the training set
(the same N images for every detector, drawn with seed (k, seed)), score the whole test set
(10,000 images), the held-out class k is the anomaly. ROC-AUC and average precision per task,
then the mean over the ten classes, for each seed.

    python benchmarks/anomaly_vs_pyod.py --train-per-task 4000 --seeds 0 1 2 \\
        --pyod-python /tmp/pyodvenv/bin/python --out benchmarks/anomaly-vs-pyod.json

aelab runs in this interpreter; PyOD (AutoEncoder and VAE, their defaults) runs in the
interpreter given by --pyod-python (a separate venv: PyOD and aelab need not share one),
which executes this same file with --worker and needs only numpy, torch and pyod.
``--aelab NAME=JSON`` adds aelab variants (keyword arguments of AnomalyDetector); every
aelab fit is also scored with the other scores its model allows (mse, bce; nelbo for a VAE),
recorded as NAME[score], so one fit shows which score ranks best.
Every fit runs on one thread. Results merge into --out (keyed by detector), so aelab and
PyOD can be run separately (--skip-aelab / --skip-pyod).
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path("/usr/share/datasets/fashion-mnist")


def read_idx(path: Path) -> np.ndarray:
    """IDX reader that needs only numpy (the PyOD worker has no aelab)."""
    with gzip.open(path) as f:
        b = f.read()
    nd = b[3]
    dims = [int.from_bytes(b[4 + 4 * i: 8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(b, np.uint8, offset=4 + 4 * nd).reshape(dims)


def load(data: Path):
    return (read_idx(data / "train-images-idx3-ubyte.gz"), read_idx(data / "train-labels-idx1-ubyte.gz"),
            read_idx(data / "t10k-images-idx3-ubyte.gz"), read_idx(data / "t10k-labels-idx1-ubyte.gz"))


def subsample(y_train: np.ndarray, k: int, seed: int, n: int) -> np.ndarray:
    """Indices of n training images not of class k: the same for every detector."""
    normal = np.flatnonzero(y_train != k)
    rng = np.random.default_rng([k, seed])
    return np.sort(rng.choice(normal, size=min(n, len(normal)), replace=False))


def cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                keep = [f for f in line.split(":", 1)[1].split() if f.startswith(("avx", "amx", "fma"))]
                return " ".join(sorted(keep))
    except OSError:
        pass
    return platform.processor()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


# -- PyOD side (runs in --pyod-python) -----------------------------------------

def worker(tasks_file: str, out_dir: str, data: str) -> None:
    import torch

    torch.set_num_threads(1)
    from pyod.models.auto_encoder import AutoEncoder
    from pyod.models.vae import VAE
    import pyod

    x, _, xt, _ = load(Path(data))
    x = (x.reshape(len(x), -1) / 255.0).astype(np.float32)
    xt = (xt.reshape(len(xt), -1) / 255.0).astype(np.float32)
    tasks = np.load(tasks_file)
    for key in tasks.files:
        k, seed = (int(v) for v in key.split("_"))
        out = Path(out_dir) / f"{key}.npz"
        if out.exists():
            continue
        res = {}
        for name, cls in (("pyod-autoencoder", AutoEncoder), ("pyod-vae", VAE)):
            t = time.perf_counter()
            det = cls(verbose=0, random_state=seed).fit(x[tasks[key]])
            fit_s = time.perf_counter() - t
            res[name] = det.decision_function(xt).astype(np.float64)
            res[name + "_fit_s"] = np.float64(fit_s)
        np.savez(out, **res)
        print(f"pyod class {k} seed {seed}: fits {float(res['pyod-autoencoder_fit_s']):.1f} s, "
              f"{float(res['pyod-vae_fit_s']):.1f} s", flush=True)
    (Path(out_dir) / "versions.json").write_text(json.dumps({"pyod": pyod.__version__, "torch": torch.__version__}))


# -- aelab side -------------------------------------------------------------------

def aelab_scores(kwargs: dict, x: np.ndarray, xt: np.ndarray, seed: int) -> tuple[dict, float]:
    """Default score under the variant's name, then every other score its model allows as [score]."""
    from aelab import AnomalyDetector
    from aelab.anomaly import prepare, score_array
    from aelab.models import capabilities

    t = time.perf_counter()
    det = AnomalyDetector(seed=seed, threads=1, **kwargs).fit(x)
    fit_s = time.perf_counter() - t
    out = {"": det.decision_function(xt)}
    xp = prepare(det.run_, xt, "X")
    model = det.run_.model
    allowed = capabilities(model).anomaly_scores  # the scores the family declares (mse, bce; nelbo for a VAE)
    others = [m for m in ("mse", "bce", "nelbo") if m in allowed and (m != "bce" or model.output_activation == "sigmoid")]
    for m in others:
        out[f"[{m}]"] = score_array(model, xp, m)
    out["default_metric"] = det.metric_
    return out, fit_s


def summarise(per_task: dict) -> dict:
    """Per detector: mean over classes per seed, then mean and spread (min, max) over seeds."""
    summary = {}
    for det, rows in per_task.items():
        by_seed: dict[int, list] = {}
        for r in rows:
            by_seed.setdefault(r["seed"], []).append(r)
        means = {s: {m: float(np.mean([r[m] for r in rs])) for m in ("roc_auc", "average_precision")}
                 for s, rs in by_seed.items() if len(rs) == len({r["class"] for r in rows})}
        if not means:
            continue
        entry = {"seeds": sorted(means), "classes": sorted({r["class"] for r in rows})}
        for m in ("roc_auc", "average_precision"):
            v = [means[s][m] for s in sorted(means)]
            entry[m] = {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v)), "per_seed": v}
            entry[m + "_per_class"] = {str(c): float(np.mean([r[m] for r in rows if r["class"] == c]))
                                       for c in entry["classes"]}
        if any("fit_s" in r for r in rows):
            entry["fit_s_mean"] = float(np.mean([r["fit_s"] for r in rows if "fit_s" in r]))
        summary[det] = entry
    return summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train-per-task", type=int, default=4000, help="normal training images per task (default 4000)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--classes", type=int, nargs="+", default=list(range(10)))
    p.add_argument("--aelab", action="append", default=[], metavar="NAME=JSON",
                   help='an aelab variant, e.g. aelab-vae=\'{"model": "vae-dense"}\' (default: aelab={} = the defaults)')
    p.add_argument("--pyod-python", help="interpreter with pyod installed; without it PyOD is skipped")
    p.add_argument("--skip-aelab", action="store_true")
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--work", help="folder for PyOD's score files (kept, so an interrupted run resumes)")
    p.add_argument("--out", required=True)
    p.add_argument("--worker", nargs=2, metavar=("TASKS", "OUT_DIR"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        return worker(a.worker[0], a.worker[1], a.data)

    from sklearn.metrics import average_precision_score, roc_auc_score

    x, y, xt, yt = load(Path(a.data))
    tasks = {f"{k}_{s}": subsample(y, k, s, a.train_per_task) for k in a.classes for s in a.seeds}
    out_path = Path(a.out)
    result = json.loads(out_path.read_text()) if out_path.is_file() else {}
    per_task: dict = result.get("per_task", {})

    def record(name: str, k: int, s: int, scores: np.ndarray, fit_s: float | None = None, **extra) -> None:
        truth = yt == k
        row = {"class": k, "seed": s, "roc_auc": float(roc_auc_score(truth, scores)),
               "average_precision": float(average_precision_score(truth, scores)), **extra}
        if fit_s is not None:
            row["fit_s"] = round(fit_s, 2)
        rows = [r for r in per_task.get(name, []) if (r["class"], r["seed"]) != (k, s)]
        per_task[name] = rows + [row]

    def save() -> None:
        result.update(per_task=per_task, summary=summarise(per_task))
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(result, indent=1) + "\n")

    result.setdefault("settings", {}).update(
        task="Fashion-MNIST, class k held out of training, whole test set scored, k anomalous",
        train_per_task=a.train_per_task, seeds=a.seeds, classes=a.classes, threads=1,
        cpu=cpu_model(), cpu_flags=cpu_flags(), command=" ".join(sys.argv))

    if not a.skip_aelab:
        import torch
        import aelab

        variants = [v.split("=", 1) for v in a.aelab] or [["aelab", "{}"]]
        result["settings"]["aelab"] = {"version": getattr(aelab, "__version__", "?"), "torch": torch.__version__,
                                       "variants": {n: json.loads(kw) for n, kw in variants}}
        for key, idx in tasks.items():
            k, s = (int(v) for v in key.split("_"))
            for name, kw in variants:
                scores, fit_s = aelab_scores(json.loads(kw), x[idx], xt, s)
                metric = scores.pop("default_metric")
                for suffix, sc in scores.items():
                    record(name + suffix, k, s, sc, fit_s if suffix == "" else None,
                           **({"metric": metric} if suffix == "" else {}))
                print(f"{name} class {k} seed {s}: fit {fit_s:.1f} s, ROC-AUC "
                      f"{per_task[name][-1]['roc_auc']:.4f}", flush=True)
            save()

    if a.pyod_python:
        work = Path(a.work or tempfile.mkdtemp(prefix="pyod-"))
        work.mkdir(parents=True, exist_ok=True)
        tasks_file = work / "tasks.npz"
        np.savez(tasks_file, **tasks)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        subprocess.run([a.pyod_python, __file__, "--out", str(out_path), "--data", a.data,
                        "--worker", str(tasks_file), str(work)], check=True, env=env)
        for key in tasks:
            k, s = (int(v) for v in key.split("_"))
            got = np.load(work / f"{key}.npz")
            for name in ("pyod-autoencoder", "pyod-vae"):
                record(name, k, s, got[name], float(got[name + "_fit_s"]))
        result["settings"]["pyod"] = {**json.loads((work / "versions.json").read_text()),
                                      "detectors": "AutoEncoder(), VAE() with their defaults (verbose=0, "
                                                   "random_state=seed); input: pixels / 255, flattened"}
        save()
    save()
    for name, e in result["summary"].items():
        print(f"{name:28s} ROC-AUC {e['roc_auc']['mean']:.4f} [{e['roc_auc']['min']:.4f}, {e['roc_auc']['max']:.4f}]  "
              f"AP {e['average_precision']['mean']:.4f} [{e['average_precision']['min']:.4f}, "
              f"{e['average_precision']['max']:.4f}]  seeds {e['seeds']}")


if __name__ == "__main__":
    main()
