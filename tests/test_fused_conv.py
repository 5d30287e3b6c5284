"""The written-out conv step (train/fused_conv.py): which models take it, and that it computes autograd's
loss and gradients (fp32 to rounding; bf16 as close to a float64 reference as autograd's bf16 is)."""

import pytest
import torch

from aelab import Config, load_data, train
from aelab.models import build_model, capabilities, list_models
from aelab.train import native
from aelab.train.fused_conv import ConvStep, plan
from aelab.train.loop import Loop
from aelab.train.optim import make_optimizer
from aelab.train.precision import autocast_context

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def kernels() -> native.Kernels:
    k = native.load()
    if k is None:
        pytest.skip(f"aelab's C kernels are not available here: {native.why_not()}")
    return k


def _cfg(loss: str = "bce", **model) -> Config:
    return Config.from_dict({"model": {"name": "conv", **model}, "train": {"loss": loss, "batch_size": 16}})


# (model keys, input shape, the fused ends): the seed's model, crops on the way up, other kernels and
# activations, a first layer the C kernels do not take (3 channels)
TAKEN = [
    ({"channels": [16, 8, 8]}, (1, 28, 28), ("head", "tail")),
    ({"channels": [8, 4]}, (1, 14, 14), ("head", "tail")),
    ({"channels": [8, 8, 8], "activation": "tanh"}, (1, 28, 28), ("tail",)),
    ({"channels": [16, 8, 8], "kernel_size": 5}, (1, 28, 28), ("head", "tail")),
    ({"channels": [12], "decoder_channels": [12]}, (1, 9, 9), ("head", "tail")),
]
NOT_TAKEN = [
    ({"channels": [16, 8], "batch_norm": True}, (1, 28, 28)),
    ({"channels": [16, 8], "dropout": 0.1}, (1, 28, 28)),
    ({"channels": [16, 8], "l1": 1e-4}, (1, 28, 28)),
    ({"channels": [16, 8]}, (3, 16, 16)),  # neither end has one channel: nothing for the C kernels
]


@pytest.mark.parametrize("model, shape, ends", TAKEN)
def test_plain_conv_models_take_it_with_their_thin_ends_fused(model, shape, ends):
    ops = plan(build_model(_cfg(**model), shape), "bce")
    assert ops is not None and tuple(op.kind for op in ops if op.kind in ("head", "tail")) == ends


@pytest.mark.parametrize("model, shape", NOT_TAKEN)
def test_other_conv_models_keep_autograd(model, shape):
    assert plan(build_model(_cfg(**model), shape), "bce") is None


@pytest.mark.parametrize("name", [n for n in list_models() if n != "conv"])
def test_no_other_family_takes_it(name):
    cfg = Config.from_dict({"model": {"name": name}, "train": dict(capabilities(name).train_settings)})
    assert plan(build_model(cfg, (1, 16, 16)), cfg.train.loss) is None


def _grads(cfg, shape, x, mode, kernels):
    torch.manual_seed(1)
    model = build_model(cfg, shape)
    if mode == "fp64":
        model, x = model.double(), x.double()
    else:
        model = model.to(memory_format=torch.channels_last)
    if mode.startswith("step"):
        opt = make_optimizer(model.parameters(), cfg.train, CPU)
        step = ConvStep(
            plan(model, cfg.train.loss), opt, cfg.train.loss, cfg.model.output_activation, mode[5:], kernels
        )
        with torch.no_grad():
            value = step.gradients(x, x)
    else:
        with autocast_context(CPU, "fp32" if mode == "fp64" else mode):
            value = model.compute_loss(x, x, None, cfg.train.loss).total
        value.backward()
    return float(value.detach()), [p.grad.double() for p in model.parameters()]


@pytest.mark.parametrize("model, shape, ends", TAKEN)
@pytest.mark.parametrize("loss", ["bce", "mse"])
def test_loss_and_gradients_match_autograd(kernels, model, shape, ends, loss):
    cfg = _cfg(loss, **model)
    torch.manual_seed(0)
    x = torch.rand(16, *shape)
    ref_loss, ref = _grads(cfg, shape, x, "fp64", kernels)
    l32, g32 = _grads(cfg, shape, x, "step-fp32", kernels)
    assert l32 == pytest.approx(ref_loss, rel=1e-6)
    for r, g in zip(ref, g32):
        assert (g - r).abs().max() <= 1e-4 * r.abs().max() + 1e-10
    # bf16: the step's error against float64 is of the size autograd's own bf16 error is
    _, gab = _grads(cfg, shape, x, "bf16-mixed", kernels)
    lb, gb = _grads(cfg, shape, x, "step-bf16-mixed", kernels)
    assert lb == pytest.approx(ref_loss, rel=1e-3)
    for r, a, g in zip(ref, gab, gb):
        scale = r.abs().max()
        assert (g - r).abs().max() <= 2 * (a - r).abs().max() + 0.02 * scale


@pytest.mark.precision
def test_a_run_through_it_matches_autograd(kernels, idx_dir, tmp_path):
    """Whole runs in the precision auto picks here: the same metrics to rounding, and the loop and
    summary.json name the step that trained."""
    runs = []
    for k in ("auto", "torch"):
        cfg = Config.from_dict(
            {
                "data": {"name": "mnist", "path": str(idx_dir)},
                "model": {"name": "conv", "channels": [8, 4]},
                "train": {"epochs": 2, "batch_size": 32, "kernels": k},
            }
        )
        data = load_data(cfg.data, cfg.model)
        loop = Loop(build_model(cfg, data.sample_shape), data, cfg, log=lambda s: None)
        assert (loop.fused is not None) is (k == "auto")
        runs.append(train(cfg, tmp_path / k, log=lambda s: None).summary)
    a, b = runs
    assert a["train_step"] == "written-out conv step, aelab C kernels" and b["train_step"] == "autograd"
    tol = 1e-2 if a["precision"] == "bf16-mixed" else 1e-4
    assert a["test_bce"] == pytest.approx(b["test_bce"], rel=tol)
    assert a["final_train_loss"] == pytest.approx(b["final_train_loss"], rel=tol)
