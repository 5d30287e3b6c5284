"""Milliseconds per training step of one bench case, without the epoch loop: for A/B tests of runtime settings.

    python benchmarks/step_time.py seed000-dense784 70
    AELAB_OMP_WAIT=passive python benchmarks/step_time.py seed004-dense32 70
    PROF=1 python benchmarks/step_time.py seed004-conv 70     # + a torch.profiler table

Random inputs (not the dataset), 20 warm-up steps, then 7 blocks of steps; prints the median and the
fastest block. docs/PERFORMANCE.md has the wait-policy sweep run with it.
"""
import os
import sys
import time

import aelab
import torch
from aelab._threads import wait_policy
from aelab.bench.cases import CASES
from aelab.config import Config
from aelab.models import build_model
from aelab.train.optim import make_optimizer

torch.set_flush_denormal(True)
name = sys.argv[1]
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 70
cfg = Config.from_dict(CASES[name].config)
shape = (1, 28, 28)
torch.manual_seed(0)
model = build_model(cfg, shape)
if any(isinstance(x, torch.nn.Conv2d) for x in model.modules()):
    model.to(memory_format=torch.channels_last)
opt = make_optimizer(model.parameters(), cfg.train, torch.device("cpu"))
B = cfg.train.batch_size
X = torch.rand(400 * B, *shape)


def step(i):
    xb = X[i * B:(i + 1) * B]
    out = model.compute_loss(xb, xb, None, cfg.train.loss, 0)
    opt.zero_grad(set_to_none=True)
    out.total.backward()
    opt.step()


for i in range(20):
    step(i)
blocks = []
for b in range(7):
    t = time.perf_counter()
    for i in range(steps // 7):
        step(i % 400)
    blocks.append((time.perf_counter() - t) / (steps // 7))
blocks.sort()
print(f"{name}: {blocks[3] * 1000:.2f} ms/step median, {blocks[0] * 1000:.2f} fastest; "
      f"threads {torch.get_num_threads()}; {wait_policy}")
if os.environ.get("PROF"):
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as p:
        for i in range(30):
            step(i)
    print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
