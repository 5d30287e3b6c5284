"""Milliseconds per training step in each of aelab's C kernels, for one bench case and one build of them.

    python benchmarks/kernel_times.py seed004-conv                    # this CPU's build (-march=native)
    python benchmarks/kernel_times.py seed004-conv x86-64-v3          # what an AVX2 machine builds
    python benchmarks/kernel_times.py seed004-conv /path/to/build.so  # any build
    python benchmarks/kernel_times.py seed004-dense32 native train.precision=fp32   # then --set overrides

Trains the case's real loop (the written-out step aelab trains with) on its first 12,800 samples: one epoch
to warm up, then one epoch with every kernel call timed. An AVX2 machine's code paths on an AVX-512 one:
also set ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 AELAB_PRECISION=fp32
(docs/PERFORMANCE.md, eighth session).
"""

import collections
import ctypes
import functools
import sys
import time
from pathlib import Path

import aelab  # noqa: F401  (picks the OpenMP wait policy before torch loads it)
from aelab import Config, load_data
from aelab.bench.cases import CASES
from aelab.models import build_model
from aelab.train import native
from aelab.train.callbacks import CallbackList
from aelab.train.loop import Loop

name = sys.argv[1]
build = sys.argv[2] if len(sys.argv) > 2 else "native"
if build.endswith(".so"):
    kernels, why = native.Kernels(ctypes.CDLL(build), Path(build)), ""
else:
    kernels, why = native.build(native.compiler(), native.cache_dirs(), march=build)
if kernels is None:
    sys.exit(f"no {build} build: {why}")
native._loaded, native._tried, native._why_not = kernels, True, ""

seconds: collections.Counter = collections.Counter()
calls: collections.Counter = collections.Counter()
KERNELS = ["loss_grad", "act_backward", "gather_bytes", "gather_batch", "adam_many", "conv1_relu_pool",
           "conv1_relu_pool_backward", "upconv1", "upconv1_backward", "conv3", "conv3_backward", "row_errors"]


def timed(method, label):
    @functools.wraps(method)
    def call(*args, **kwargs):
        t = time.perf_counter()
        out = method(*args, **kwargs)
        seconds[label] += time.perf_counter() - t
        calls[label] += 1
        return out

    return call


for label in KERNELS:
    setattr(native.Kernels, label, timed(getattr(native.Kernels, label), label))

cfg = Config.from_dict(CASES[name].config).replace(["data.limit=12800", *sys.argv[3:]])
data = load_data(cfg.data, cfg.model)
loop = Loop(build_model(cfg, data.sample_shape), data, cfg, log=lambda s: None)
loop.train_epoch(0, CallbackList([]))
seconds.clear()
calls.clear()
t = time.perf_counter()
loop.train_epoch(1, CallbackList([]))
steps = len(loop.x_train) // cfg.train.batch_size
print(f"{name}, build {build}: {loop.step_kind}, {loop.precision}: {1000 * (time.perf_counter() - t) / steps:.2f} ms/step")
for label, s in seconds.most_common():
    print(f"   {label:26s} {1000 * s / steps:7.3f} ms/step ({calls[label] // steps} calls)")
