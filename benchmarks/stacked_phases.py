"""Where a stacked step of N 784-32-784 members goes, phase by phase, against one member's step (MNIST bytes).

    python benchmarks/stacked_phases.py [MEMBERS] [RECIPE]      # default 5 seed004-dense32-adam

Copies fused_dense.StackedDenseStep.__call__ (N members) and FusedDenseStep's backward and update (one member,
the step `aelab train` runs) with a clock between their phases (the CPU work is synchronous, so each interval is
that phase's), runs three epochs of each in turn after a warm-up one, and prints the median of each phase. Compare phase by phase: a phase that costs N times one member's (or
more) gains nothing from stacking.
"""

import statistics
import sys
import time

import aelab  # noqa: F401  (picks the OpenMP wait policy before torch loads it)
import torch
from aelab.config import Config
from aelab.data import load_data
from aelab.models import build_model
from aelab.recipes import resolve_config
from aelab.train.fused_dense import StackedDenseStep, _activate, _targets
from aelab.train.loop import Loop
from aelab.train.native import AdamJobs, ByteRows

torch.set_flush_denormal(True)
MEMBERS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
RECIPE = sys.argv[2] if len(sys.argv) > 2 else "seed004-dense32-adam"
ROUNDS = 3
base = resolve_config(RECIPE, [])
data = load_data(base.data, need_unit_range=True)


def setup(members: int):
    loops = []
    for s in range(members):
        d = base.to_dict()
        cfg = Config.from_dict({**d, "train": {**d["train"], "seed": s}})
        torch.manual_seed(s)
        loops.append(Loop(build_model(cfg, data.sample_shape), data, cfg, log=lambda s: None))
    assert all(lp.byte_batches for lp in loops), "needs the C kernels and a byte dataset"
    st = StackedDenseStep([lp.fused for lp in loops])
    k, bs, n = st.kernels, base.train.batch_size, len(loops[0].x_train)
    times: dict[str, list[float]] = {}

    def tick(name: str, t0: float) -> float:
        t = time.perf_counter()
        times.setdefault(name, []).append(t - t0)
        return t

    def step(idx: torch.Tensor) -> None:
        t0 = time.perf_counter()
        xin, t_b = loops[0].byte_batch(idx.reshape(-1))
        xin, target = xin.view(*idx.shape, -1), ByteRows(t_b.rows.view(*idx.shape, -1), t_b.divisor)
        t0 = tick("gather", t0)
        with torch.no_grad():
            w = st._stacked_weights()
            h = xin.reshape(members, bs, -1)
            layers, inputs = len(w) // 2, []
            for i in range(layers):
                inputs.append(h)
                h = _activate(st.members[0].steps[i][1], torch.baddbmm(w[2 * i + 1].unsqueeze(1), h, w[2 * i].mT))
                t0 = tick(f"forward {i}", t0)
            t = _targets(target, members, bs)
            g, loss = torch.empty_like(h), torch.empty(members)
            grads = [[torch.empty(0)] * len(w) for _ in st.members]
            for j in range(members):
                bias = torch.empty(h.shape[2])
                k.loss_grad(h[j], ByteRows(t.rows[j], t.divisor), g[j], bias, st.loss_kind, loss[j])
                grads[j][2 * layers - 1] = bias
            t0 = tick("loss kernel", t0)
            for i in range(layers - 1, -1, -1):
                dw = torch.bmm(g.transpose(1, 2), inputs[i])
                for j in range(members):
                    grads[j][2 * i] = dw[j]
                t0 = tick(f"weight grad {i}", t0)
                if i:
                    g = torch.bmm(g, w[2 * i])
                    t0 = tick(f"input grad {i}", t0)
                    name, a = st.acts[i - 1]
                    for j in range(members):
                        bias = torch.empty(g.shape[2])
                        k.act_backward(g[j], inputs[i][j], name, a, bias)
                        grads[j][2 * i - 1] = bias
                    t0 = tick(f"activation {i}", t0)
            jobs = AdamJobs()
            for m, gr in zip(st.members, grads):
                m.update(gr, jobs)
            t0 = tick("Adam (Python)", t0)
            k.adam_many(jobs)
            tick("Adam kernel", t0)

    def single(idx: torch.Tensor) -> None:  # FusedDenseStep.backward + update, as Loop.train_epoch runs it
        f = loops[0].fused
        t0 = time.perf_counter()
        xin, target = loops[0].byte_batch(idx.reshape(-1))
        t0 = tick("gather", t0)
        with torch.no_grad():
            weights, inputs = f._weights(), []
            h = xin.reshape(bs, -1)
            for i, ((_, module), (wt, b)) in enumerate(zip(f.steps, weights)):
                inputs.append(h)
                h = _activate(module, torch.addmm(b, h, wt.t()))
                t0 = tick(f"forward {i}", t0)
            grads = [torch.empty(0)] * len(f.params)
            g, bias_grad, loss = torch.empty_like(h), torch.empty(h.shape[1]), torch.empty(())
            k.loss_grad(h, _targets(target, bs), g, bias_grad, f.loss_kind, loss)
            t0 = tick("loss kernel", t0)
            for i in range(len(f.steps) - 1, -1, -1):
                grads[2 * i], grads[2 * i + 1] = g.t() @ inputs[i], bias_grad
                t0 = tick(f"weight grad {i}", t0)
                if i:
                    g = g @ weights[i][0]
                    t0 = tick(f"input grad {i}", t0)
                    bias_grad = torch.empty(g.shape[1])
                    name, a = f.acts[i - 1]
                    k.act_backward(g, inputs[i], name, a, bias_grad)
                    t0 = tick(f"activation {i}", t0)
            jobs = AdamJobs()
            f.update(grads, jobs)
            t0 = tick("Adam (Python)", t0)
            k.adam_many(jobs)
            tick("Adam kernel", t0)

    gen = torch.Generator().manual_seed(members)

    def epoch(warm: bool) -> None:
        perm = torch.stack([torch.randperm(n, generator=gen) for _ in range(members)])
        for i in range(0, n - bs + 1, bs):
            idx = perm[:, i : i + bs]
            if warm and i < 4 * bs:  # the real step first: it makes the optimizer state
                xin, tb = loops[0].byte_batch(idx.reshape(-1))
                st(xin.view(members, bs, -1), ByteRows(tb.rows.view(members, bs, -1), tb.divisor))
            elif members == 1:
                single(idx)
            else:
                step(idx)
        if warm:
            times.clear()

    return epoch, times


runs = {m: setup(m) for m in (1, MEMBERS)}
for r in range(ROUNDS + 1):  # one epoch each in turn, so that the machine's load falls on both alike
    for m, (epoch, _) in runs.items():
        epoch(warm=r == 0)
one, many = ({k: statistics.median(v) * 1e3 for k, v in runs[m][1].items()} for m in (1, MEMBERS))
print(f"{RECIPE}, batch {base.train.batch_size}, {MEMBERS} members, torch threads {torch.get_num_threads()}")
print(f"{'phase':16s} {'1 member':>9s} {f'{MEMBERS} members':>11s} {'per member':>11s} {'ratio':>6s}")
for name in many:
    a, b = one[name], many[name]
    print(f"{name:16s} {a:8.3f}  {b:10.3f}  {b / MEMBERS:10.3f}  {b / MEMBERS / a:5.2f}")
a, b = sum(one.values()), sum(many.values())
print(
    f"{'step':16s} {a:8.3f}  {b:10.3f}  {b / MEMBERS:10.3f}  {b / MEMBERS / a:5.2f}   (ms; ratio: per member / alone)"
)
