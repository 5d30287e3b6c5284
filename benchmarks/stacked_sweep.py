"""Throughput of N seeds trained as one stack (train/stacked.py) against the same N runs one after another.

    python benchmarks/stacked_sweep.py                         # 5 seeds of seed004-dense32, 2 epochs, precision auto
    python benchmarks/stacked_sweep.py seed004-dense32 5 2 fp32
    E2E=1 python benchmarks/stacked_sweep.py seed004-dense32 5 2   # whole sweeps: `aelab sweep --seeds 5` vs --no-stack

Loop only (default): the data is loaded once; both sides run aelab's own code (``fit`` per seed, ``fit_stacked``
for all), validation after every epoch included, checkpoints and run folders left out. E2E=1: ``sweep.run_all``
with and without stacking into fresh folders, i.e. everything `aelab sweep` does but the comparison page (data
loading, checkpoints, test metrics, summary, weights). The two sides alternate for 2 rounds so load on a shared
machine hits both; prints wall seconds per round and the ratio.
"""
import os
import sys
import time

import aelab  # noqa: F401  (picks the OpenMP wait policy before torch loads it)
import torch
from aelab._threads import wait_policy
from aelab.bench.cases import CASES
from aelab.config import Config
from aelab.data import load_data
from aelab.models import build_model
from aelab.train import NaNGuard, fit, resolve_device
from aelab.train.precision import resolve_precision
from aelab.train.stacked import fit_stacked

name = sys.argv[1] if len(sys.argv) > 1 else "seed004-dense32"
seeds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 2
prec = sys.argv[4] if len(sys.argv) > 4 else "auto"
base = Config.from_dict(CASES[name].config).replace([f"train.epochs={epochs}", f"train.precision={prec}"])
cfgs = [base.replace([f"train.seed={s}"]) for s in range(seeds)]
splits = load_data(base.data, need_unit_range=True)


def models():
    out = []
    for c in cfgs:
        torch.manual_seed(c.train.seed)
        out.append(build_model(c, splits.sample_shape))
    return out


def sequential():
    vals = []
    for c, m in zip(cfgs, models()):
        vals.append(fit(m, splits, c, [NaNGuard()], log=lambda s: None).history[-1]["val_loss"])
    return vals


def stacked():
    ms = fit_stacked(models(), cfgs, splits, [[NaNGuard()] for _ in cfgs], log=lambda s: None)
    return [m.state.history[-1]["val_loss"] for m in ms]


def e2e(stack: bool, r: int):
    import shutil
    import tempfile
    from pathlib import Path

    from aelab.sweep import PlannedRun, run_all

    out = Path(tempfile.mkdtemp(prefix="aelab-stack-"))
    plans = [PlannedRun(f"seed-{c.train.seed}", c, out / f"seed-{c.train.seed}") for c in cfgs]
    try:
        run_all(plans, stack=stack, log=lambda s: None)
        return [json.loads((p.path / "summary.json").read_text())["test_loss"] for p in plans]
    finally:
        shutil.rmtree(out)


if os.environ.get("E2E"):
    import json

    def sequential():  # noqa: F811
        return e2e(False, 0)

    def stacked():  # noqa: F811
        return e2e(True, 0)


print(f"{'whole sweeps' if os.environ.get('E2E') else 'training loops'}: {name}: {seeds} seeds x {epochs} epochs, {len(splits.x_train)} samples, precision "
      f"{resolve_precision(prec, resolve_device('cpu'))}, threads {torch.get_num_threads()}, {wait_policy}")
ratios = []
for r in range(2):
    load0 = os.getloadavg()[0]
    t = time.perf_counter()
    v_seq = sequential()
    t_seq = time.perf_counter() - t
    t = time.perf_counter()
    v_st = stacked()
    t_st = time.perf_counter() - t
    ratios.append(t_seq / t_st)
    print(f"round {r + 1} (load {load0:.1f}): one after another {t_seq:.2f} s, stacked {t_st:.2f} s -> "
          f"{t_seq / t_st:.2f}x; val loss max |diff| {max(abs(a - b) for a, b in zip(v_seq, v_st)):.2e}")
print(f"stacked / sequential throughput: {', '.join(f'{x:.2f}x' for x in ratios)}")
