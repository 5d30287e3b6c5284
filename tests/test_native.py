"""aelab's C kernels (train/native.py, native_kernels.c): each against the torch ops it replaces, the
optimizer step bit for bit against torch's fused Adam, the build and its failures, and whole runs."""

import platform
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aelab import Config, load_data, train
from aelab.errors import TrainingError
from aelab.models import build_model
from aelab.train import native
from aelab.train.callbacks import CallbackList
from aelab.train.fused_dense import FusedDenseStep, plan
from aelab.train.loop import Loop
from aelab.train.optim import NativeAdam, make_optimizer

BF16 = torch.bfloat16
CPU = torch.device("cpu")


X86 = platform.machine().lower() in ("x86_64", "amd64")  # where x86 levels (-march=x86-64-v3, ...) build


@pytest.fixture(scope="module")
def kernels(request) -> native.Kernels:
    k = native.load()
    if k is None:  # a machine without a C compiler trains with torch's kernels; nothing here applies
        pytest.skip(f"aelab's C kernels are not available here: {native.why_not()}")
    march = getattr(request, "param", "native")  # EACH_BUILD
    if march == "native":
        return k
    if not X86:
        pytest.skip(f"{march} is an x86 level; this machine is {platform.machine()}")
    other, why = native.build(native.compiler(), native.cache_dirs(), march=march)
    if other is None:
        pytest.skip(f"no {march} build here: {why}")
    return other


# A kernel's test over the build this machine makes (-march=native) and two x86 levels below it: an AVX2-only
# CPU (x86-64-v3) and a compiler without -march=native (the baseline) compile the same source into other
# code paths (8-float vectors, no AVX-512 BF16 conversions) that an AVX-512 machine would otherwise never run.
EACH_BUILD = pytest.mark.parametrize("kernels", ["native", "x86-64-v3", "x86-64"], indirect=True)


def _logits(rows: int, cols: int, dtype: torch.dtype) -> torch.Tensor:
    torch.manual_seed(rows * 1000 + cols)
    z = torch.randn(rows, cols) * 6
    z.view(-1)[:4] = torch.tensor([0.0, 90.0, -90.0, 1e-3])[: z.numel()]  # the branches of the stable forms
    return z.to(dtype)


def _close_in(dtype: torch.dtype, a: torch.Tensor, b: torch.Tensor, scale: float = 1.0) -> bool:
    """Equal up to one rounding of ``dtype``, plus a few float32 roundings of terms of size ``scale``
    (the kernels and torch compute exp and sigmoid differently, and s - t may cancel)."""
    a, b = a.float(), b.float()
    ulp = 2.0**-7 if dtype == BF16 else 2.0**-22
    return bool(((a - b).abs() <= ulp * b.abs() + 2.0**-21 * scale).all())


@EACH_BUILD
@pytest.mark.parametrize("dtype", [BF16, torch.float32])
@pytest.mark.parametrize("rows, cols", [(1, 1), (3, 17), (64, 784)])
@pytest.mark.parametrize("kind", ["bce", "mse-sigmoid", "mse"])
def test_loss_and_gradient_match_torch(kernels, kind, rows, cols, dtype):
    z = _logits(rows, cols, dtype)
    t = torch.rand(rows, cols)
    zf = z.float()
    n = z.numel()
    if kind == "bce":
        ref_loss = F.binary_cross_entropy_with_logits(zf, t, reduction="sum")
        ref_g = (torch.sigmoid(zf) - t) / n
    elif kind == "mse-sigmoid":
        s = torch.sigmoid(zf)
        ref_loss = F.mse_loss(s, t, reduction="sum")
        ref_g = 2 * (s - t) * s * (1 - s) / n
    else:
        ref_loss = F.mse_loss(zf, t, reduction="sum")
        ref_g = 2 * (zf - t) / n
    g = torch.empty_like(z)
    bias = torch.empty(cols)
    mean = torch.empty(())
    total = kernels.loss_grad(z, t, g, bias, kind, mean)
    assert total == pytest.approx(ref_loss.item(), rel=1e-5)
    assert float(mean) == pytest.approx(ref_loss.item() / n, rel=1e-5)
    assert _close_in(dtype, g, ref_g.to(dtype), scale=2.0 / n)
    # the bias gradient sums the gradient as stored (rounded to dtype), as the torch path does
    assert torch.allclose(bias, g.float().sum(0), rtol=1e-5, atol=1e-9)


@EACH_BUILD
@pytest.mark.parametrize("dtype", [torch.float32, BF16])
def test_row_errors_are_the_validation_passs(kernels, dtype):
    """Per-sample BCE from logits and MSE of their sigmoid, as evaluate.metrics computes them, extreme
    logits included; a NaN logit makes its own row NaN and no other."""
    from aelab.evaluate import metrics as M

    z = _logits(37, 129, dtype)
    t = torch.rand(37, 129)
    z[5, 7] = float("nan")
    bce, mse = torch.empty(37), torch.empty(37)
    kernels.row_errors(z, t, bce, mse)
    ref_bce, ref_mse = M.bce_logits(z, t), M.mse(torch.sigmoid(z.float()), t)
    assert bce[5].isnan() and mse[5].isnan()
    ok = torch.arange(37) != 5
    assert torch.allclose(bce[ok], ref_bce[ok], rtol=2e-6, atol=0)
    assert torch.allclose(mse[ok], ref_mse[ok], rtol=2e-6, atol=1e-9)


@pytest.mark.parametrize("precision", ["fp32", "bf16-mixed"])
def test_the_written_out_validation_equals_the_models(kernels, precision):
    """FusedDenseStep.errors: the same per-sample errors as evaluate.per_sample_errors of the model under
    the run's autocast, the batch split included (1000 samples in batches of 384)."""
    from aelab.evaluate.evaluate import per_sample_errors
    from aelab.train.precision import autocast_context

    cfg = _cfg(precision=precision)
    torch.manual_seed(0)
    model = build_model(cfg, (1, 28, 28))
    opt = make_optimizer(model.parameters(), cfg.train, CPU)
    step = FusedDenseStep(plan(model, "bce"), opt, "bce", "sigmoid", precision, kernels)
    assert step.validates()
    x = torch.rand(1000, 1, 28, 28)
    got = step.errors(x.numpy(), batch_size=384)
    with autocast_context(CPU, precision):
        ref = per_sample_errors(model, x, "bce", batch_size=384)
    for k in ("bce", "mse", "psnr", "loss"):
        assert torch.allclose(got[k], ref[k], rtol=1e-5, atol=0), k


@EACH_BUILD
@pytest.mark.parametrize("divisor", [255.0, 1.0, 3.0])
def test_gather_bytes_is_float32_division_of_the_rows(kernels, divisor):
    """Rows of bytes as numpy scales them (uint8 -> float32, one IEEE division), for every byte value;
    an index outside the rows is refused before anything is read."""
    src = torch.arange(256 * 6, dtype=torch.int64).remainder(256).to(torch.uint8).view(6, 16, 16)
    idx = torch.tensor([5, 0, 5, 3, 1, 2, 4])
    want = torch.from_numpy(src.numpy()[idx.numpy()].astype(np.float32) / np.float32(divisor))
    assert torch.equal(kernels.gather_bytes(src, divisor, idx), want)
    with pytest.raises(IndexError):
        kernels.gather_bytes(src, divisor, torch.tensor([0, 6]))


def test_the_loop_gathers_batches_from_the_bytes_and_gets_the_same_floats(kernels, idx_dir):
    """A byte dataset's batches come from its bytes when the step takes the C kernels, equal to x_train's
    rows; a Splits whose bytes do not hold x_train (made by hand) is gathered from x_train."""
    import dataclasses

    cfg = _cfg().replace([f"data.path={idx_dir}", "data.name=mnist", "data.limit=200"])
    data = load_data(cfg.data, True)
    loop = Loop(build_model(cfg, data.sample_shape), data, cfg, log=lambda s: None)
    assert loop.x_bytes is not None
    idx = torch.randperm(200)[:50]
    assert torch.equal(loop.rows(idx), loop.x_train.index_select(0, idx))
    raw, d = data.train_bytes
    wrong = dataclasses.replace(data, train_bytes=(raw[::-1].copy(), d))
    assert Loop(build_model(cfg, data.sample_shape), wrong, cfg, log=lambda s: None).x_bytes is None
    off = cfg.replace(["train.kernels=torch"])
    assert Loop(build_model(off, data.sample_shape), data, off, log=lambda s: None).x_bytes is None
    noisy = cfg.replace(["data.noise=[{kind: gaussian, amount: 0.1}]"])
    noisy_loop = Loop(build_model(noisy, data.sample_shape), data, noisy, log=lambda s: None)
    assert noisy_loop.x_bytes is not None and not noisy_loop.byte_batches  # noise needs the float batch


@pytest.mark.parametrize("precision", ["fp32", "bf16-mixed"])
def test_byte_batches_train_bit_for_bit_as_float_batches(kernels, idx_dir, precision):
    """The written-out dense step fed the bytes (input gathered into its dtype, targets as bytes) ends an
    epoch with the very weights the float32 batches give."""
    cfg = _cfg(precision=precision).replace([f"data.path={idx_dir}", "data.name=mnist", "data.limit=300"])
    data = load_data(cfg.data, True)
    loops = []
    for byte_batches in (True, False):
        torch.manual_seed(0)
        loop = Loop(build_model(cfg, data.sample_shape), data, cfg, log=lambda s: None)
        assert loop.byte_batches
        loop.byte_batches = byte_batches
        loop.train_epoch(0, CallbackList([]))
        loops.append(loop)
    for a, b in zip(loops[0].model.parameters(), loops[1].model.parameters()):
        assert torch.equal(a, b)


@EACH_BUILD
def test_a_nan_logit_makes_the_loss_nan(kernels):
    """The NaN guard reads the loss: a NaN anywhere in the logits must reach it, in every kind."""
    for kind in native.LOSS_KINDS:
        z = torch.zeros(4, 8)
        z[2, 3] = float("nan")
        g = torch.empty_like(z)
        assert kernels.loss_grad(z, torch.rand(4, 8), g, None, kind) != kernels.loss_grad(
            z, torch.rand(4, 8), g, None, kind
        )  # NaN is the one value unequal to itself


@EACH_BUILD
@pytest.mark.parametrize("dtype", [BF16, torch.float32])
@pytest.mark.parametrize("act", ["identity", "relu", "sigmoid", "tanh", "leaky_relu", "elu"])
def test_activation_backward_matches_autograds_kernels(kernels, act, dtype):
    torch.manual_seed(0)
    z = torch.randn(37, 129)
    h = {
        "identity": z,
        "relu": z.relu(),
        "sigmoid": z.sigmoid(),
        "tanh": z.tanh(),
        "leaky_relu": F.leaky_relu(z, 0.2),
        "elu": F.elu(z, 0.7),
    }[act].to(dtype)
    g = torch.randn(37, 129).to(dtype)
    a = {"leaky_relu": 0.2, "elu": 0.7}.get(act, 0.0)
    ops = torch.ops.aten
    ref = {
        "identity": g,
        "relu": ops.threshold_backward(g, h, 0.0),
        "sigmoid": ops.sigmoid_backward(g, h),
        "tanh": ops.tanh_backward(g, h),
        "leaky_relu": ops.leaky_relu_backward(g, h, 0.2, True),
        "elu": ops.elu_backward(g, 0.7, 1.0, 1.0, True, h),
    }[act]
    out = g.clone()
    bias = torch.empty(129)
    kernels.act_backward(out, h, act, a, bias)
    assert _close_in(dtype, out, ref)
    assert torch.allclose(bias, out.float().sum(0), rtol=1e-5, atol=1e-6)


def _adam(kernels, *update) -> None:
    """One tensor's update alone: AdamJobs.add's arguments."""
    jobs = native.AdamJobs()
    jobs.add(*update)
    kernels.adam_many(jobs)


@EACH_BUILD
@pytest.mark.parametrize("decoupled, weight_decay", [(False, 0.0), (False, 0.01), (True, 0.01)])
@pytest.mark.parametrize("grad_dtype", [torch.float32, BF16])
def test_adam_is_torchs_fused_adam_bit_for_bit(kernels, decoupled, weight_decay, grad_dtype):
    """Four steps of Adam / AdamW: the same parameters and moments as torch's fused kernel fed the same
    gradients (a bf16 gradient read as it is equals it cast to float32 first), and the bf16 copy is the
    parameters rounded. Sizes are whole 16-float blocks; see the next test for a ragged end."""
    n = 16 * 4099
    torch.manual_seed(0)
    p, m, v = torch.randn(n), torch.zeros(n), torch.zeros(n)
    ref = p.clone()
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    opt = cls([ref], lr=1e-3, eps=1e-7, weight_decay=weight_decay, fused=True)
    copy = torch.empty(n, dtype=BF16)
    count = torch.tensor(0.0)  # the state's step tensor: the kernel counts it up first
    for step in range(1, 5):
        g = (torch.randn(n) * 10.0**-step).to(grad_dtype)
        ref.grad = g.float()
        opt.step()
        _adam(kernels, p, g, m, v, copy, 1e-3, (0.9, 0.999), 1e-7, weight_decay, decoupled, count)
    st = opt.state[ref]
    assert float(count) == float(st["step"]) == 4.0
    assert torch.equal(p, ref) and torch.equal(m, st["exp_avg"]) and torch.equal(v, st["exp_avg_sq"])
    assert torch.equal(copy, ref.to(BF16))


@EACH_BUILD
def test_adam_on_a_ragged_end_agrees_to_one_rounding(kernels):
    """torch rounds the last n % 16 elements of a tensor in another order (its scalar tail); there the
    second moment may differ by one float32 rounding, and the parameters by no more than that carries."""
    n = 16 * 10 + 7
    torch.manual_seed(1)
    p, m, v = torch.randn(n), torch.zeros(n), torch.zeros(n)
    ref = p.clone()
    opt = torch.optim.Adam([ref], lr=1e-3, eps=1e-7, fused=True)
    count = torch.tensor(0.0)
    for _ in range(3):
        g = torch.randn(n)
        ref.grad = g.clone()
        opt.step()
        _adam(kernels, p, g, m, v, None, 1e-3, (0.9, 0.999), 1e-7, 0.0, False, count)
    assert torch.equal(p[:160], ref[:160])
    assert torch.allclose(v, opt.state[ref]["exp_avg_sq"], rtol=2e-7, atol=0)
    assert torch.allclose(p, ref, rtol=1e-6, atol=0)


@EACH_BUILD
def test_adam_many_is_each_tensor_alone(kernels):
    """One call for many tensors (a stack's members, ragged sizes, bf16 and float32 gradients, Adam and
    AdamW, each its own lr and step count) leaves every tensor as its own call would: the split of the
    work between threads crosses tensors, and must not change a bit."""
    sizes = [16 * 3000 + 5, 7, 16, 784 * 32, 1, 16 * 5000]
    torch.manual_seed(2)
    state = [(torch.randn(n), torch.randn(n).abs(), torch.rand(n)) for n in sizes]
    alone = [tuple(t.clone() for t in s) for s in state]
    counts = [torch.tensor(float(i)) for i in range(len(sizes))]
    counts_alone = [c.clone() for c in counts]
    copies = [torch.empty(n, dtype=BF16) for n in sizes]
    copies_alone = [c.clone() for c in copies]
    grads = [torch.randn(n).to(BF16 if i % 2 else torch.float32) for i, n in enumerate(sizes)]
    hyper = [(1e-3 * (i + 1), 0.01 * (i % 3), i % 2 == 0) for i in range(len(sizes))]  # lr, decay, AdamW
    jobs = native.AdamJobs()
    for (p, m, v), g, c, count, (lr, wd, dec) in zip(state, grads, copies, counts, hyper):
        jobs.add(p, g, m, v, c, lr, (0.9, 0.999), 1e-7, wd, dec, count)
    kernels.adam_many(jobs)
    for (p, m, v), g, c, count, (lr, wd, dec) in zip(alone, grads, copies_alone, counts_alone, hyper):
        _adam(kernels, p, g, m, v, c, lr, (0.9, 0.999), 1e-7, wd, dec, count)
    for a, b in zip(state + [tuple(copies)] + [tuple(counts)], alone + [tuple(copies_alone)] + [tuple(counts_alone)]):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert [float(c) for c in counts] == [i + 1.0 for i in range(len(sizes))]


def test_adam_jobs_refuse_a_short_tensor(kernels):
    p = torch.zeros(32)
    with pytest.raises(AssertionError):
        native.AdamJobs().add(
            p,
            torch.zeros(16),
            torch.zeros(32),
            torch.zeros(32),
            None,
            1e-3,
            (0.9, 0.999),
            1e-7,
            0.0,
            False,
            torch.tensor(0.0),
        )


def _cfg(**train) -> Config:
    return Config.from_dict(
        {"model": {"name": "dense", "hidden": [48], "code_dim": 8}, "train": {"batch_size": 32, **train}}
    )


@pytest.mark.parametrize("precision, tol", [("fp32", 1e-5), ("bf16-mixed", 2e-2)])
@pytest.mark.parametrize("loss, out", [("bce", "sigmoid"), ("mse", "sigmoid"), ("mse", "identity")])
def test_the_written_out_step_with_the_kernels_matches_torchs_kernels(kernels, precision, tol, loss, out):
    torch.manual_seed(0)
    x = torch.rand(32, 1, 28, 28)
    results = []
    for k in (None, kernels):
        cfg = _cfg(loss=loss)
        cfg.model.output_activation = out
        torch.manual_seed(1)
        model = build_model(cfg, (1, 28, 28))
        opt = make_optimizer(model.parameters(), cfg.train, CPU)
        step = FusedDenseStep(plan(model, loss), opt, loss, out, precision, k)
        with torch.no_grad():
            value = step.gradients(x, x)
        results.append((value, [p.grad.clone() for p in model.parameters()]))
    (lt, gt), (ln, gn) = results
    assert float(ln) == pytest.approx(float(lt), rel=tol)
    for a, b in zip(gt, gn):
        assert (a - b).abs().max() <= tol * a.abs().max() + 1e-8


def test_native_adam_takes_over_after_torchs_first_step_and_keeps_the_copies_fresh(kernels):
    """Step 1 goes through torch (it makes the state); from step 2 the kernel updates the parameters and
    writes the bf16 copies the forward uses; a change made behind its back (a resume's load_state_dict)
    is seen, and the next forward multiplies with the new weights."""
    cfg = _cfg()
    torch.manual_seed(0)
    model = build_model(cfg, (1, 28, 28))
    opt = make_optimizer(model.parameters(), cfg.train, CPU)
    step = FusedDenseStep(plan(model, "bce"), opt, "bce", "sigmoid", "bf16-mixed", kernels)
    assert isinstance(step.adam, NativeAdam) and not step.adam.ready()
    x = torch.rand(32, 1, 28, 28)
    step(x, x)
    assert step.adam.ready()
    before = [p.detach().clone() for p in step.params]
    step(x, x)
    assert all(not torch.equal(a, p) for a, p in zip(before, step.params))  # the kernel moved every one
    assert all(torch.equal(c, p.to(BF16)) for c, p in zip(step._copies, step.params))
    with torch.no_grad():
        model.load_state_dict({k: torch.zeros_like(v) for k, v in model.state_dict().items()})
    loss = step.gradients(x, x)  # all-zero weights: every logit is 0, BCE is log 2 whatever the input
    assert float(loss) == pytest.approx(0.6931472, abs=1e-6)


def test_a_hook_on_the_optimizer_sends_the_step_back_to_torch(kernels):
    cfg = _cfg()
    model = build_model(cfg, (1, 28, 28))
    opt = make_optimizer(model.parameters(), cfg.train, CPU)
    step = FusedDenseStep(plan(model, "bce"), opt, "bce", "sigmoid", "bf16-mixed", kernels)
    x = torch.rand(32, 1, 28, 28)
    step(x, x)
    assert step.adam.ready()
    calls = []
    opt.register_step_post_hook(lambda *a: calls.append(1))
    assert not step.adam.ready()
    step(x, x)
    assert calls == [1]


def test_other_optimizers_and_fp32_keep_torchs_step(kernels):
    model = build_model(_cfg(), (1, 28, 28))
    adadelta = make_optimizer(model.parameters(), _cfg(optimizer="adadelta").train, CPU)
    s = FusedDenseStep(plan(model, "bce"), adadelta, "bce", "sigmoid", "bf16-mixed", kernels)
    x = torch.rand(32, 1, 28, 28)
    s(x, x)
    s(x, x)
    assert not s.adam.ready()
    adam = make_optimizer(model.parameters(), _cfg().train, CPU)
    assert FusedDenseStep(plan(model, "bce"), adam, "bce", "sigmoid", "fp32", kernels).adam is None


def test_a_build_says_so_once_and_is_cached(kernels, tmp_path):
    said: list[str] = []
    first, why = native.build(native.compiler(), [tmp_path], said.append)
    again, _ = native.build(native.compiler(), [tmp_path], said.append)
    assert first is not None and why == "" and again is not None and again.path == first.path
    assert len(said) == 1 and "building aelab's C kernels" in said[0] and str(tmp_path) in said[0]


def test_a_compiler_that_fails_gives_a_reason_not_an_error(tmp_path):
    kernels, why = native.build("/bin/false", [tmp_path])
    assert kernels is None and "did not build" in why
    kernels, why = native.build(None, [tmp_path])
    assert kernels is None and "no C compiler" in why


def test_a_level_the_compiler_refuses_is_not_built_as_another(tmp_path):
    """Only -march=native falls back to the compiler's default; an explicit level is built as asked or not
    at all, so a test over EACH_BUILD never passes on a build of another level."""
    k, why = native.build(native.compiler(), [tmp_path], march="no-such-level")
    assert k is None and "did not build" in why
    assert not list(tmp_path.glob("*.so"))


def test_aelab_kernels_march_builds_another_level(kernels, monkeypatch):
    """$AELAB_KERNELS_MARCH: load() builds that level (another library than this CPU's); one the compiler
    refuses leaves the kernels off with the compiler's reason, as a failed build does."""
    if not X86:
        pytest.skip("x86 levels are built on x86 machines only")
    for name in ("_loaded", "_why_not"):  # put back as they were when the test ends
        monkeypatch.setattr(native, name, getattr(native, name))
    for march, built in (("x86-64-v3", True), ("no-such-level", False)):
        monkeypatch.setattr(native, "_tried", False)
        monkeypatch.setenv("AELAB_KERNELS_MARCH", march)
        other = native.load()
        if built:
            assert other is not None and other.path != kernels.path and native.why_not() == ""
        else:
            assert other is None and "did not build" in native.why_not()
    monkeypatch.delenv("AELAB_KERNELS_MARCH")
    monkeypatch.setattr(native, "_tried", False)
    assert native.load().path == kernels.path


def test_a_folder_that_cannot_be_written_falls_through_to_the_next(kernels, tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    k, why = native.build(native.compiler(), [blocked / "sub", tmp_path / "ok"])
    assert k is not None and why == "" and k.path.parent == tmp_path / "ok"


def test_kernels_native_without_a_build_is_refused_in_one_line(idx_dir, monkeypatch):
    monkeypatch.setattr(native, "load", lambda log=None: None)
    monkeypatch.setattr(native, "_why_not", "no C compiler on PATH (set CC)")
    cfg = Config.from_dict(
        {
            "data": {"name": "mnist", "path": str(idx_dir)},
            "model": {"name": "dense", "hidden": [16], "code_dim": 4},
            "train": {"epochs": 1, "kernels": "native"},
        }
    )
    data = load_data(cfg.data, cfg.model)
    with pytest.raises(TrainingError, match="train.kernels: native was asked for, but no C compiler"):
        Loop(build_model(cfg, data.sample_shape), data, cfg, log=lambda s: None)
    cfg.train.kernels = "auto"  # auto trains with torch's kernels instead
    loop = Loop(build_model(cfg, data.sample_shape), data, cfg, log=lambda s: None)
    assert loop.step_kind == "written-out dense step, torch kernels"


def test_the_config_key_is_validated():
    with pytest.raises(Exception, match="train.kernels"):
        Config.from_dict({"train": {"kernels": "fast"}})


@pytest.mark.precision
def test_whole_runs_with_either_kernels_agree(kernels, idx_dir, tmp_path: Path):
    """Two epochs with masking noise, in the precision auto picks here: the same metrics to rounding,
    and summary.json says which step trained."""
    runs = []
    for k in ("native", "torch"):
        cfg = Config.from_dict(
            {
                "data": {"name": "mnist", "path": str(idx_dir), "noise": [{"kind": "masking", "amount": 0.3}]},
                "model": {"name": "dense", "hidden": [32], "code_dim": 8},
                "train": {"epochs": 2, "batch_size": 64, "kernels": k},
            }
        )
        runs.append(train(cfg, tmp_path / k, log=lambda s: None).summary)
    a, b = runs
    assert a["train_step"] == "written-out dense step, aelab C kernels"
    assert b["train_step"] == "written-out dense step, torch kernels"
    tol = 2e-3 if a["precision"] == "bf16-mixed" else 1e-5
    assert a["test_bce"] == pytest.approx(b["test_bce"], rel=tol)
    assert a["final_train_loss"] == pytest.approx(b["final_train_loss"], rel=tol)


def _close_to(got: torch.Tensor, want: torch.Tensor, rel: float) -> bool:
    return bool((got.float() - want).abs().max() <= rel * want.abs().max())


@EACH_BUILD
@pytest.mark.parametrize("dtype", [torch.float32, BF16])
@pytest.mark.parametrize("h, w, c", [(28, 28, 16), (12, 10, 8), (9, 7, 16), (6, 6, 4)])
def test_first_layer_matches_torchs_conv_relu_pool_and_its_gradients(kernels, h, w, c, dtype):
    """conv1_relu_pool (one input channel, 3x3 'same', ReLU, 2x2 max-pool in ceil mode) and its backward
    against torch's ops: even sizes with 8 or 16 channels take the register-tiled loops, the rest the
    generic ones."""
    torch.manual_seed(h * 100 + w + c)
    x, wt, b = torch.rand(5, h, w), torch.randn(9, c) * 0.3, torch.randn(c) * 0.1
    xr, wr, br = x.clone(), wt.t().reshape(c, 1, 3, 3).clone().requires_grad_(), b.clone().requires_grad_()
    ref = F.max_pool2d(F.relu(F.conv2d(xr.unsqueeze(1), wr, br, padding=1)), 2, ceil_mode=True)
    out, arg = kernels.conv1_relu_pool(x, wt, b, dtype)
    assert out.dtype == dtype and out.shape == (5, (h + 1) // 2, (w + 1) // 2, c)
    assert _close_to(out, ref.detach().permute(0, 2, 3, 1), 8e-3 if dtype == BF16 else 1e-6)
    dout = torch.randn(out.shape).to(dtype)
    ref.backward(dout.float().permute(0, 3, 1, 2))
    dw, db = kernels.conv1_relu_pool_backward(x, wt, dout, out, arg)
    assert _close_to(dw, wr.grad.reshape(c, 9).t(), 1e-5) and _close_to(db, br.grad, 1e-5)


@EACH_BUILD
@pytest.mark.parametrize("dtype", [torch.float32, BF16])
@pytest.mark.parametrize(
    "hs, ws, c, h, w", [(14, 14, 16, 28, 28), (4, 5, 8, 8, 10), (7, 7, 8, 13, 13), (3, 3, 4, 6, 6)]
)
@pytest.mark.parametrize("relu_mask", [True, False])
def test_last_layer_matches_torchs_upsample_conv_and_its_gradients(kernels, hs, ws, c, h, w, dtype, relu_mask):
    """upconv1 (2x nearest upsampling cut to (h, w), then a 3x3 'same' convolution to one channel) and its
    backward against torch's ops: exact doubling with 8 or 16 channels takes the phase-weight loops, the rest
    the generic ones; relu_mask multiplies the input's gradient by (a > 0)."""
    torch.manual_seed(hs * 100 + ws + c + h)
    a = F.relu(torch.randn(5, hs, ws, c)).to(dtype)
    wt, b = torch.randn(9, c) * 0.3, 0.05
    ar, wr = a.float().permute(0, 3, 1, 2).clone().requires_grad_(), wt.t().reshape(1, c, 3, 3).clone().requires_grad_()
    br = torch.tensor([b], requires_grad=True)
    up = F.interpolate(ar, scale_factor=2, mode="nearest")[:, :, :h, :w]
    ref = F.conv2d(up, wr, br, padding=1).squeeze(1)
    z = kernels.upconv1(a, wt, b, h, w)
    assert z.shape == (5, h, w) and _close_to(z, ref.detach(), 1e-5)
    g = torch.randn(5, h, w)
    ref.backward(g)
    da, dw, db = kernels.upconv1_backward(a, wt, g, relu_mask)
    want = ar.grad.permute(0, 2, 3, 1) * ((a.float() > 0) if relu_mask else 1)
    assert da.dtype == dtype and _close_to(da, want, 8e-3 if dtype == BF16 else 1e-5)
    assert _close_to(dw, wr.grad.reshape(c, 9).t(), 1e-5)
    assert (db - br.grad).abs().item() <= 1e-6 * g.abs().sum().item()  # a float32 sum of h * w * 5 terms


@EACH_BUILD
@pytest.mark.parametrize("dtype", [torch.float32, BF16])
@pytest.mark.parametrize("hw, cin, cout", [(7, 16, 8), (4, 8, 8), (5, 8, 16), (6, 16, 16), (1, 8, 8)])
def test_conv3_matches_torchs_convolution_and_its_gradients(kernels, hw, cin, cout, dtype):
    """The 3x3 'same' convolution kernels against F.conv2d in float32 on the same (rounded) inputs: sizes
    that are and are not multiples of the four-pixel blocks, each channel pairing the kernels take."""
    assert kernels.conv3_takes(cin, cout) and not kernels.conv3_takes(cin, 4)
    torch.manual_seed(hw * 100 + cin + cout)
    x = torch.randn(6, cin, hw, hw).to(dtype).float()
    w, b = torch.randn(cout, cin, 3, 3) * 0.2, torch.randn(cout)
    g = torch.randn(6, cout, hw, hw).to(dtype).float()
    xr, wr, br = x.clone().requires_grad_(), w.clone().requires_grad_(), b.clone().requires_grad_()
    out_ref = F.conv2d(xr, wr, br, padding=1)
    out_ref.backward(g)
    xn = x.to(dtype).permute(0, 2, 3, 1).contiguous()
    out = kernels.conv3(xn, w.permute(2, 3, 1, 0).contiguous(), b)
    dx, dw, db = kernels.conv3_backward(
        xn, g.to(dtype).permute(0, 2, 3, 1).contiguous(), w.permute(2, 3, 1, 0).contiguous(), True
    )
    assert out.dtype == dtype and dx is not None and dx.dtype == dtype
    tol = 8e-3 if dtype == BF16 else 1e-5  # bf16: the outputs are rounded to bf16 once
    for got, ref in ((out, out_ref.detach().permute(0, 2, 3, 1)), (dx, xr.grad.permute(0, 2, 3, 1))):
        assert (got.float() - ref).abs().max() <= tol * ref.abs().max()
    assert torch.allclose(dw.permute(3, 2, 0, 1), wr.grad, rtol=1e-4, atol=1e-4 * wr.grad.abs().max().item())
    assert torch.allclose(db, br.grad, rtol=1e-5, atol=1e-5)


@EACH_BUILD
@pytest.mark.parametrize("hw, cin, cout", [(14, 16, 8), (14, 8, 16), (8, 8, 8), (6, 16, 16), (4, 8, 8)])
def test_conv3_in_bf16_dot_products_matches_torch(kernels, hw, cin, cout):
    """The AVX-512 BF16 convolutions (built only where the CPU has the instructions) against F.conv2d in
    float32 on bf16-rounded inputs and weights: outputs and input gradients to one bf16 rounding, the
    weight and bias gradients (float32 sums of exact products) to float32 rounding."""
    if not kernels.conv3_dot_takes(cin, cout, hw):
        pytest.skip("no AVX-512 BF16 in this build (not in this CPU, or built for a lower level): oneDNN's conv")
    assert not kernels.conv3_dot_takes(cin, cout, hw + 1)  # pixel pairs along x need an even width
    torch.manual_seed(hw + cin + cout)
    x = torch.randn(6, cin, hw, hw).to(BF16).float()
    w = (torch.randn(cout, cin, 3, 3) * 0.2).to(BF16).float()
    b, g = torch.randn(cout), torch.randn(6, cout, hw, hw).to(BF16).float()
    xr, wr, br = x.clone().requires_grad_(), w.clone().requires_grad_(), b.clone().requires_grad_()
    ref = F.conv2d(xr, wr, br, padding=1)
    ref.backward(g)
    xn, wk = x.to(BF16).permute(0, 2, 3, 1).contiguous(), w.permute(2, 3, 1, 0).contiguous()
    out = kernels.conv3(xn, wk, b, dot=True)
    dx, dw, db = kernels.conv3_backward(xn, g.to(BF16).permute(0, 2, 3, 1).contiguous(), wk, True, dot=True)
    for got, want in ((out, ref.detach().permute(0, 2, 3, 1)), (dx, xr.grad.permute(0, 2, 3, 1))):
        assert got.dtype == BF16 and (got.float() - want).abs().max() <= 8e-3 * want.abs().max()
    assert torch.allclose(dw.permute(3, 2, 0, 1), wr.grad, rtol=1e-5, atol=1e-5 * wr.grad.abs().max().item())
    assert torch.allclose(db, br.grad, rtol=1e-5, atol=1e-5)


def test_kernels_native_without_a_compiler_is_refused_before_anything_is_written(
    idx_dir, tmp_path, monkeypatch, capsys
):
    from aelab.cli import main

    monkeypatch.setattr(native, "load", lambda log=None: None)
    monkeypatch.setattr(native, "_why_not", "no C compiler on PATH (set CC)")
    out = tmp_path / "run"
    args = ["train", "seed004-dense32-adam", "--set", f"data.path={idx_dir}", "--set", "train.epochs=1"]
    assert main([*args, "--set", "train.kernels=native", "--out", str(out), "--no-report"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "train.kernels: native was asked for, but no C compiler" in err
    assert not out.exists()


def test_a_damaged_cached_build_is_built_again(kernels, tmp_path):
    """A build cut short on disk (a full disk, a killed copy) does not load; it is built again, once."""
    first, _ = native.build(native.compiler(), [tmp_path / "a"])
    assert first is not None
    damaged = tmp_path / "b" / first.path.name  # the name this machine's build has, in a folder not loaded yet
    damaged.parent.mkdir()
    damaged.write_bytes(b"not a shared library")
    said: list[str] = []
    again, why = native.build(native.compiler(), [damaged.parent], said.append)
    assert again is not None and why == "" and again.path == damaged and len(said) == 1
