"""ms per step: one StackedStep of N members against N plain aelab steps, interleaved (A/B in one process).

    python benchmarks/stacked_step.py seed004-dense32 5 [prec] ; PROF=1 for a profiler table of the stacked step
"""
import os
import sys
import time

import aelab  # noqa: F401
import torch
from aelab.bench.cases import CASES
from aelab.config import Config
from aelab.models import build_model
from aelab.train.optim import make_optimizer
from aelab.train.precision import autocast_context, resolve_precision
from aelab.train.stacked import StackedStep

torch.set_flush_denormal(True)
name, M = sys.argv[1], int(sys.argv[2])
cpu = torch.device("cpu")
prec = resolve_precision(sys.argv[3] if len(sys.argv) > 3 else "auto", cpu)
cfg = Config.from_dict(CASES[name].config)
B, shape = cfg.train.batch_size, (1, 28, 28)


def members():
    ms = []
    for s in range(M):
        torch.manual_seed(s)
        ms.append(build_model(cfg, shape))
    return ms, [make_optimizer(m.parameters(), cfg.train, cpu) for m in ms]


X = torch.rand(M, 32 * B, *shape)
sm, so = members()
stacked = StackedStep(sm, so, cfg.train.loss, cpu, prec)
pm, po = members()


def run_stacked(i):
    xb = X[:, (i % 32) * B:(i % 32 + 1) * B]
    stacked(xb, xb)


def run_plain(i):
    for j, (m, o) in enumerate(zip(pm, po)):
        xb = X[j, (i % 32) * B:(i % 32 + 1) * B]
        with autocast_context(cpu, prec):
            out = m.compute_loss(xb, xb, None, cfg.train.loss, 0)
        o.zero_grad(set_to_none=True)
        out.total.backward()
        o.step()


for f in (run_stacked, run_plain):
    for i in range(10):
        f(i)
ts = {run_stacked: [], run_plain: []}
for r in range(7):
    for f in ts:
        t = time.perf_counter()
        for i in range(10):
            f(i)
        ts[f].append((time.perf_counter() - t) / 10)
a, b = sorted(ts[run_stacked])[3], sorted(ts[run_plain])[3]
print(f"{name} x{M} {prec} (load {os.getloadavg()[0]:.1f}): stacked {a * 1000:.2f} ms/step, {M} plain steps "
      f"{b * 1000:.2f} ms -> {b / a:.2f}x")
if os.environ.get("PROF"):
    from torch.profiler import profile

    with profile() as p:
        for i in range(20):
            run_stacked(i)
    print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))
