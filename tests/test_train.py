import json

import numpy as np
import pytest
import torch

from aelab import RunError, load_run, train
from aelab.evaluate.metrics import entropy_floor, grey_share


def test_train_writes_a_complete_run(tiny_cfg, tmp_path):
    run = train(tiny_cfg, tmp_path / "r", log=lambda s: None)
    files = {p.name for p in (tmp_path / "r").iterdir()}
    assert {"config.yaml", "metrics.csv", "batches.csv", "model.safetensors", "summary.json", "checkpoint"} <= files
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    for k in (
        "test_loss",
        "test_bce",
        "test_mse",
        "test_psnr",
        "epochs",
        "seconds_per_epoch",
        "parameters",
        "data",
        "train_size",
    ):
        assert k in s
    assert s["epochs"] == 2 and len(run.metrics) == 2
    assert len(run.batches) == 2 * 10  # 600 samples / 64 per batch, rounded up
    assert s["test_bce"] >= s["test_bce_floor"]


def test_training_reduces_loss(tiny_cfg, tmp_path):
    cfg = tiny_cfg.replace(["train.epochs=4"])
    run = train(cfg, tmp_path / "r", log=lambda s: None)
    m = run.metrics
    assert m[-1]["val_loss"] < m[0]["val_loss"]


def test_same_seed_same_metrics(tiny_cfg, tmp_path):
    a = train(tiny_cfg, tmp_path / "a", log=lambda s: None).summary
    b = train(tiny_cfg, tmp_path / "b", log=lambda s: None).summary
    assert a["test_loss"] == b["test_loss"]
    c = train(tiny_cfg.replace(["train.seed=1"]), tmp_path / "c", log=lambda s: None).summary
    assert c["test_loss"] != a["test_loss"]


def test_save_load_identical_outputs(tiny_cfg, tmp_path):
    run = train(tiny_cfg, tmp_path / "r", log=lambda s: None)
    loaded = load_run(tmp_path / "r")
    x = torch.rand(5, 1, 28, 28)
    run.model.eval()
    assert torch.equal(run.model(x), loaded.model(x))
    assert torch.equal(run.model.encode(x), loaded.model.encode(x))


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.name=conv", "model.channels=[4, 4]"],
        ["data.noise=[{kind: gaussian, amount: 0.5}]", "model.name=conv", "model.channels=[4]"],
        ["train.loss=mse", "model.output_activation=identity", "model.dropout=0.2"],
        ["train.optimizer=adadelta"],
        ["train.optimizer=sgd", "train.schedule=cosine"],
        ["train.optimizer=rmsprop"],
        ["train.precision=bf16-mixed"],
        ["model.l1=0.0001"],
        ["train.early_stopping=1", "train.epochs=3"],
    ],
)
def test_variants_train(tiny_cfg, tmp_path, overrides):
    run = train(tiny_cfg.replace(overrides), tmp_path / "r", log=lambda s: None)
    assert np.isfinite(run.summary["test_loss"])


def test_refuses_to_overwrite(tiny_cfg, tmp_path):
    train(tiny_cfg, tmp_path / "r", log=lambda s: None)
    with pytest.raises(RunError, match="already holds a run"):
        train(tiny_cfg, tmp_path / "r", log=lambda s: None)


def test_load_run_checks_weights_against_config(tiny_cfg, tmp_path):
    train(tiny_cfg, tmp_path / "r", log=lambda s: None)
    cfg_file = tmp_path / "r" / "config.yaml"
    cfg_file.write_text(cfg_file.read_text().replace("code_dim: 16", "code_dim: 17"))
    with pytest.raises(RunError, match=r"tensor 'encoder.3.weight' has shape \(16, 64\)"):
        load_run(tmp_path / "r")
    with pytest.raises(RunError, match="not an aelab run"):
        load_run(tmp_path)


def test_entropy_floor_and_grey_share():
    t = np.array([0.0, 1.0, 0.5, 0.5])
    assert entropy_floor(t) == pytest.approx(np.log(2) / 2)
    assert grey_share(t) == 0.5


def test_entropy_floor_of_bytes_and_of_floats_agree_with_float64():
    """uint8 targets (a memory-mapped split) are counted per byte value; floats are summed in float32 terms:
    both within 1e-7 of the mean binary entropy taken in float64."""
    b = np.random.default_rng(0).integers(0, 256, (3000, 7, 9), dtype=np.uint8)
    b[:1000] = 0  # MNIST-like: mostly black
    f = b.astype(np.float32) / np.float32(255)
    t = f.astype(np.float64).ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        ref = float(np.mean(-np.nan_to_num(t * np.log(t)) - np.nan_to_num((1 - t) * np.log(1 - t))))
    assert entropy_floor(b) == pytest.approx(ref, rel=1e-9)
    assert entropy_floor(f) == pytest.approx(ref, rel=1e-7)
    assert entropy_floor(torch.from_numpy(f)) == entropy_floor(f)


def test_labels_reach_the_loop_only_for_families_trained_on_them(tiny_cfg):
    """A label gather per batch costs a kernel; a family without ``needs_labels`` never pays it."""
    from aelab import Config, load_data
    from aelab.models import build_model
    from aelab.train.loop import Loop, _rows

    data = load_data(tiny_cfg.data, tiny_cfg.model)
    assert data.y_train is not None  # MNIST has labels, the dense autoencoder does not read them
    loop = Loop(build_model(tiny_cfg, data.sample_shape), data, tiny_cfg, log=lambda s: None)
    assert loop.y_train is None
    labelled = Config.from_dict(
        {
            "data": tiny_cfg.data.__dict__,
            "model": {"name": "classifier-ae", "channels": [4], "convs_per_block": [1], "hidden": [8]},
            "train": {"epochs": 1, "batch_size": 32},
        }
    )
    loop = Loop(build_model(labelled, data.sample_shape), data, labelled, log=lambda s: None)
    idx = torch.tensor([3, 0, 3])
    assert torch.equal(_rows(loop.y_train, idx), torch.as_tensor(data.y_train)[idx])
    assert torch.equal(_rows(loop.x_train, idx), torch.as_tensor(data.x_train)[idx])


@pytest.mark.parametrize("precision", ["fp32", "bf16-mixed"])
@pytest.mark.parametrize("kernels", ["torch", "auto"])
def test_validation_runs_in_the_training_precision_and_scores_in_fp32(tiny_cfg, precision, kernels):
    """The per-epoch validation forward takes the run's precision (bf16: 4x faster for 784-784-784): the
    model under autocast, or the written-out dense step's own GEMMs with the C kernel scoring its logits;
    the BCE it reports is computed in fp32, so it stays within bf16 rounding of the fp32 value."""
    from aelab import load_data
    from aelab.evaluate.evaluate import evaluate
    from aelab.models import build_model
    from aelab.train.fused_dense import FusedDenseStep
    from aelab.train.loop import Loop

    cfg = tiny_cfg.replace([f"train.precision={precision}", f"train.kernels={kernels}"])
    data = load_data(cfg.data, cfg.model)
    torch.manual_seed(0)
    loop = Loop(build_model(cfg, data.sample_shape), data, cfg, log=lambda s: None)
    written_out = isinstance(loop.fused, FusedDenseStep) and loop.fused.validates()
    assert written_out == (kernels == "auto" and loop.fused.kernels is not None)
    seen: list[bool] = []
    loop.model.encoder.register_forward_hook(lambda m, i, o: seen.append(torch.is_autocast_enabled("cpu")))
    loop.batch_losses = torch.tensor([0.5])
    row = loop.validate(0, {}, 1.0)
    assert (seen == []) if written_out else (seen and set(seen) == {precision == "bf16-mixed"})
    exact = evaluate(loop.model, loop.x_val, cfg.train.loss)["bce"]
    assert row["val_bce"] == pytest.approx(exact, rel=1e-6 if precision == "fp32" else 1e-2)


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: torch.optim.Adam(ps, lr=1e-2, eps=1e-7, fused=True),
        lambda ps: torch.optim.AdamW(ps, lr=1e-2, eps=1e-7, weight_decay=0.1, fused=True),
        lambda ps: torch.optim.Adam(ps, lr=1e-2, amsgrad=True, fused=True),  # takes opt.step()
        lambda ps: torch.optim.Adam(ps, lr=1e-2),  # not fused: opt.step()
        lambda ps: torch.optim.SGD(ps, lr=1e-2, momentum=0.9),
    ],
)
def test_step_optimizer_is_opt_step_bit_for_bit(make):
    """The direct kernel call updates weights and state exactly as ``opt.step()``, through an lr schedule,
    a parameter that gets no gradient, and a state_dict round trip."""
    import warnings

    from aelab.train.optim import step_optimizer

    torch.manual_seed(0)
    init = [torch.randn(5, 3), torch.randn(3), torch.randn(2)]
    sides = []
    for direct in (False, True):
        ps = [torch.nn.Parameter(t.clone()) for t in init]
        opt = make(ps)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
        for i in range(6):
            for p in ps[:2]:
                p.grad = torch.full_like(p, 0.1 * (i + 1)) + p.detach()
            ps[2].grad = None  # never trained: neither side may touch it
            step_optimizer(opt) if direct else opt.step()
            with warnings.catch_warnings():  # e.g. "lr_scheduler.step() before optimizer.step()"
                warnings.simplefilter("error")
                sched.step()
        sides.append((ps, opt.state_dict()))
    (pa, sa), (pb, sb) = sides
    for a, b in zip(pa, pb):
        assert torch.equal(a, b)
    assert torch.equal(pb[2], init[2])
    for k, st in sa["state"].items():
        for name, v in st.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(sb["state"][k][name])), (k, name)


def test_training_and_resuming_leave_torch_dynamo_unloaded(idx_dir, tmp_path):
    """torch.optim's first step and its state_dict, load_state_dict, add_param_group and zero_grad import
    torch._dynamo (1.2-1.5 s of every `aelab train`) only to mark themselves untraceable; aelab compiles
    nothing, so a training run, its checkpoints and a resume (written-out and autograd steps) leave it alone."""
    import subprocess
    import sys

    code = f"""
import sys
from aelab import Config, train
base = {{"data": {{"name": "mnist", "path": {str(idx_dir)!r}}}, "model": {{"name": "dense", "hidden": [32], "code_dim": 8}}}}
for i, model in enumerate([{{}}, {{"dropout": 0.1}}]):
    cfg = Config.from_dict({{**base, "model": {{**base["model"], **model}}, "train": {{"epochs": 1, "batch_size": 128}}}})
    out = {str(tmp_path)!r} + f"/r{{i}}"
    train(cfg, out, log=lambda s: None)
    train(resume=out, overrides=["train.epochs=2"], log=lambda s: None)
print("torch._dynamo" in sys.modules)
import torch, torch._dynamo  # once something loads it, torch's own wrapper is back in charge
torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))]).zero_grad()
print(getattr(torch.optim.Optimizer.zero_grad.__wrapped__, "__dynamo_disable").__qualname__)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    loaded, wrapper = res.stdout.strip().splitlines()[-2:]
    assert loaded == "False"
    assert wrapper.startswith("DisableContext"), wrapper
