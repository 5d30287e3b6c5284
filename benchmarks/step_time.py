"""Milliseconds per training step of one bench case, for A/B tests: variants interleaved in one process.

    python benchmarks/step_time.py seed000-dense784                       # precision auto, as aelab trains
    python benchmarks/step_time.py seed000-dense784 prec=fp32 prec=bf16   # A/B: ratios against the first
    python benchmarks/step_time.py seed004-conv prec=bf16 prec=bf16,cl=0 prec=bf16,compile=1
    python benchmarks/step_time.py seed004-dense32 opt=fused opt=foreach opt=loop
    PROF=1 python benchmarks/step_time.py seed004-conv prec=bf16           # + a torch.profiler table per variant

A variant is comma-separated key=value: prec (auto|fp32|bf16), opt (fused|foreach|loop), cl (1: channels_last
for conv models, the default; 0: NCHW), threads (torch intra-op threads for this variant's blocks), compile (1: torch.compile of the loss, inductor, default mode),
Each variant gets its own model and optimizer; after a warm-up the variants take turns, one block of
STEPS steps each, 7 rounds, so load on a shared machine hits them alike. Prints the median ms/step per
variant and its ratio to the first. Random inputs in [0, 1], not the dataset.
"""
import os
import sys
import time

import aelab  # noqa: F401  (picks the OpenMP wait policy before torch loads it)
import torch
from aelab._threads import wait_policy
from aelab.bench.cases import CASES
from aelab.config import Config
from aelab.models import build_model
from aelab.train.optim import make_optimizer
from aelab.train.precision import autocast_context, resolve_precision

torch.set_flush_denormal(True)
name = sys.argv[1]
specs = [a for a in sys.argv[2:] if "=" in a] or ["prec=auto"]
steps = int(os.environ.get("STEPS", "10"))
cfg = Config.from_dict(CASES[name].config)
shape = (1, 28, 28)
B = cfg.train.batch_size
X = torch.rand(64 * B, *shape)
cpu = torch.device("cpu")


def make(spec: str):
    kv = dict(p.split("=", 1) for p in spec.split(","))
    prec = {"bf16": "bf16-mixed"}.get(kv.get("prec", "auto"), kv.get("prec", "auto"))
    prec = resolve_precision(prec, cpu)
    torch.manual_seed(0)
    model = build_model(cfg, shape)
    if kv.get("cl", "1") == "1" and any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
        model.to(memory_format=torch.channels_last)
    opt_kind = kv.get("opt", "fused")
    if opt_kind == "fused":
        opt = make_optimizer(model.parameters(), cfg.train, cpu)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7, foreach=opt_kind == "foreach")
    loss_fn = model.compute_loss
    if kv.get("compile") == "1":
        loss_fn = torch.compile(model.compute_loss)

    def step(i):
        xb = X[(i % 64) * B:(i % 64 + 1) * B]
        with autocast_context(cpu, prec):
            out = loss_fn(xb, xb, None, cfg.train.loss, 0)
        opt.zero_grad(set_to_none=True)
        out.total.backward()
        opt.step()

    step.threads = int(kv.get("threads", torch.get_num_threads()))
    return step


variants = {s: make(s) for s in specs}
for s, step in variants.items():
    torch.set_num_threads(step.threads)
    t = time.perf_counter()
    step(0)
    first = time.perf_counter() - t
    for i in range(1, 20):
        step(i)
    print(f"{s}: first step {first * 1000:.0f} ms")
times: dict[str, list[float]] = {s: [] for s in specs}
for r in range(7):
    for s, step in variants.items():
        torch.set_num_threads(step.threads)
        t = time.perf_counter()
        for i in range(steps):
            step(i)
        times[s].append((time.perf_counter() - t) / steps)
base = sorted(times[specs[0]])[3]
print(f"{name}: threads {torch.get_num_threads()}; {wait_policy}; load {os.getloadavg()[0]:.1f}; "
      f"{steps} steps x 7 rounds per variant")
for s in specs:
    ts = sorted(times[s])
    print(f"  {s:40s} {ts[3] * 1000:7.2f} ms/step median ({ts[0] * 1000:.2f} fastest)  x{base / ts[3]:.2f} vs {specs[0]}")
if os.environ.get("PROF"):
    from torch.profiler import ProfilerActivity, profile

    for s, step in variants.items():
        with profile(activities=[ProfilerActivity.CPU]) as p:
            for i in range(20):
                step(i)
        print(f"--- {s}")
        print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))
