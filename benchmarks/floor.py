"""The floor of a training step: only the kernels no implementation can skip, each timed alone at the case's shapes.

    python benchmarks/floor.py                                   # the four seed cases, precision auto
    python benchmarks/floor.py --keras benchmarks/2026-11-25-vs-keras-zen4-quiet.json   # + the best possible ratio

Per case, in this one process (so the ratios hold on a shared machine):
- the GEMMs (dense) or convolutions (conv) of one forward + backward, at the exact shapes and layout aelab trains
  in (bf16 where ``precision: auto`` picks it; channels_last convolutions), each timed alone, hot in cache;
- one fused Adam pass over the model's parameters (fp32 master weights and moments: memory-bound);
- the loss and its gradient on the batch's (batch, 784) output, in fp32 as autocast runs it.
Everything else a real step does (casts, activations, bias gradients, pooling, the autograd graph, Python) is left
out, so the sum is a lower bound. Divided into the step's training FLOPs it gives the highest share of the matmul
peak (measured here too) that any step built from these kernels can reach; with --keras, the Keras seconds per
epoch from a bench file over that bound gives the highest ratio to Keras such a step could reach.
"""

import argparse
import json
import math
import statistics
import time

import torch
import torch.nn.functional as F

import aelab  # noqa: F401  (picks the OpenMP wait policy before torch loads it)
from aelab.bench.cases import CASES
from aelab.bench.timing import matmul_peak, train_flops_per_sample
from aelab.config import Config
from aelab.models import build_model
from aelab.train.precision import resolve_precision

CPU = torch.device("cpu")
TRAIN_SAMPLES = 60_000


def timed(fn, reps: int = 30) -> float:
    """Median seconds of one call over 7 blocks of ``reps`` calls, after a warm-up block."""
    for _ in range(reps):
        fn()
    blocks = []
    for _ in range(7):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        blocks.append((time.perf_counter() - t) / reps)
    return statistics.median(blocks)


def layer_inputs(model: torch.nn.Module, x: torch.Tensor) -> list[tuple[torch.nn.Module, torch.Size]]:
    """(layer, input shape) of every Linear and Conv2d, in forward order."""
    seen: list[tuple[torch.nn.Module, torch.Size]] = []
    hooks = [
        m.register_forward_hook(lambda m, args, out: seen.append((m, args[0].shape)))
        for m in model.modules()
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


def kernel_seconds(layers, dtype: torch.dtype) -> float:
    """One forward + backward of every layer alone; the first layer computes no input gradient."""
    total = 0.0
    for k, (m, shape) in enumerate(layers):
        first = k == 0
        if isinstance(m, torch.nn.Linear):
            x = torch.rand(shape[0], m.in_features, dtype=dtype)
            w = (m.weight.detach() * 1).to(dtype)
            b = m.bias.detach().to(dtype)
            dy = torch.randn(shape[0], m.out_features, dtype=dtype)
            total += timed(lambda x=x, w=w, b=b: torch.addmm(b, x, w.t()))  # forward
            total += timed(lambda x=x, dy=dy: dy.t() @ x)  # weight gradient
            if not first:
                total += timed(lambda w=w, dy=dy: dy @ w)  # input gradient
        else:
            cl = torch.channels_last
            x = torch.rand(*shape, dtype=dtype).contiguous(memory_format=cl).requires_grad_(not first)
            w = m.weight.detach().to(dtype).contiguous(memory_format=cl).requires_grad_()
            b = m.bias.detach().to(dtype).requires_grad_()
            pad = m.padding
            dy = torch.randn_like(F.conv2d(x, w, b, padding=pad))

            def step(x=x, w=w, b=b, pad=pad, dy=dy):
                F.conv2d(x, w, b, padding=pad).backward(dy)

            total += timed(step)
    return total


def adam_seconds(model: torch.nn.Module) -> float:
    params = [p.detach().clone() for p in model.parameters()]
    grads = [torch.randn_like(p) * 1e-3 for p in params]
    m1 = [torch.zeros_like(p) for p in params]
    m2 = [torch.zeros_like(p) for p in params]
    steps = [torch.tensor(1.0) for _ in params]

    def step():
        torch._fused_adam_(
            params,
            grads,
            m1,
            m2,
            [],
            steps,
            lr=1e-3,
            beta1=0.9,
            beta2=0.999,
            weight_decay=0.0,
            eps=1e-7,
            amsgrad=False,
            maximize=False,
        )

    return timed(step)


def loss_seconds(batch: int, loss: str) -> float:
    z = torch.randn(batch, 784, requires_grad=True)
    t = torch.rand(batch, 784)
    fn = F.binary_cross_entropy_with_logits if loss == "bce" else F.mse_loss
    return timed(lambda: fn(z, t).backward())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="seed000-dense784,seed004-dense32,seed004-conv,seed003-relu1000")
    ap.add_argument("--keras", help="a bench JSON whose Keras seconds per epoch to hold the bound against")
    ap.add_argument("--out", help="write the results as JSON here")
    a = ap.parse_args()
    keras = {}
    if a.keras:
        for c in json.load(open(a.keras))["cases"]:
            if c.get("keras"):
                keras[c["case"]] = c["keras"]["seconds_per_epoch"]
    peak = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16, n=512)}
    print(
        f"matmul peak: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s; "
        f"threads {torch.get_num_threads()}; {aelab._threads.wait_policy}"
    )
    rows = []
    for name in a.cases.split(","):
        cfg = Config.from_dict(CASES[name].config)
        prec = resolve_precision(cfg.train.precision, CPU)
        dtype = torch.bfloat16 if prec == "bf16-mixed" else torch.float32
        torch.manual_seed(0)
        model = build_model(cfg, (1, 28, 28))
        bs = cfg.train.batch_size
        xb = torch.rand(bs, 1, 28, 28)
        flops = train_flops_per_sample(model, xb, cfg.train.loss) * bs
        parts = {
            "kernels": kernel_seconds(layer_inputs(model, xb), dtype),
            "adam": adam_seconds(model),
            "loss": loss_seconds(bs, cfg.train.loss),
        }
        step = sum(parts.values())
        epoch = step * math.ceil(TRAIN_SAMPLES / bs)
        ref = peak["bf16" if dtype == torch.bfloat16 else "fp32"]
        row = {
            "case": name,
            "precision": prec,
            "step_ms": {k: v * 1e3 for k, v in parts.items()},
            "floor_step_ms": step * 1e3,
            "floor_seconds_per_epoch": epoch,
            "max_share_of_peak": flops / step / 1e9 / ref,
            "kernels_only_share_of_peak": flops / parts["kernels"] / 1e9 / ref,
        }
        line = (
            f"{name:17s} {prec:10s} kernels {parts['kernels'] * 1e3:6.3f} + adam {parts['adam'] * 1e3:5.3f} + "
            f"loss {parts['loss'] * 1e3:5.3f} = {step * 1e3:6.3f} ms/step -> {epoch:6.3f} s/epoch at best; "
            f"<= {row['max_share_of_peak']:.0%} of the {'bf16' if dtype == torch.bfloat16 else 'fp32'} peak "
            f"(kernels alone {row['kernels_only_share_of_peak']:.0%})"
        )
        if name in keras:
            row["keras_seconds_per_epoch"] = keras[name]
            row["max_ratio_vs_keras"] = keras[name] / epoch
            line += f"; Keras {keras[name]:.3f} s/epoch -> at most {row['max_ratio_vs_keras']:.2f}x"
        print(line)
        rows.append(row)
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"peak_gflops": peak, "cases": rows}, f, indent=1)


if __name__ == "__main__":
    main()
