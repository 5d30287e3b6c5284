"""The written-out dense step (train/fused_dense.py): which models take it, and that it matches autograd."""

import pytest
import torch

from aelab import Config, load_data, train
from aelab.models import build_model, capabilities, list_models
from aelab.train.fused_dense import FusedDenseStep, plan
from aelab.train.loop import Loop
from aelab.train.optim import make_optimizer
from aelab.train.precision import autocast_context

CPU = torch.device("cpu")
SHAPE = (1, 28, 28)


def _cfg(model: dict, loss: str = "bce", **train) -> Config:
    return Config.from_dict(
        {"model": {"name": "dense", **model}, "train": {"loss": loss, "batch_size": 32, "epochs": 2, **train}}
    )


# (model keys, loss): every activation, both losses and both output activations, shallow and deep
FUSABLE = [
    ({"hidden": [], "code_dim": 16}, "bce"),
    ({"hidden": [64], "code_dim": 8, "activation": "sigmoid"}, "bce"),
    ({"hidden": [48, 24], "code_dim": 8, "activation": ["tanh", "elu", "relu", "elu", "tanh"]}, "mse"),
    ({"hidden": [32], "code_dim": 8, "activation": "leaky_relu", "output_activation": "identity"}, "mse"),
    ({"hidden": [32], "code_dim": 8, "activation": "identity"}, "mse"),
]
NOT_FUSABLE = [
    {"hidden": [32], "code_dim": 8, "dropout": 0.1},
    {"hidden": [32], "code_dim": 8, "batch_norm": True},
    {"hidden": [32], "code_dim": 8, "tied": True},
    {"hidden": [32], "code_dim": 8, "l1": 1e-4},
    {"hidden": [32], "code_dim": 8, "sparsity_target": 0.05, "sparsity_weight": 0.1, "code_activation": "sigmoid"},
]


@pytest.mark.parametrize("model, loss", FUSABLE)
def test_plain_dense_models_take_the_written_out_step(model, loss):
    cfg = _cfg(model, loss)
    assert plan(build_model(cfg, SHAPE), loss) is not None


@pytest.mark.parametrize("model", NOT_FUSABLE)
def test_dense_models_with_more_than_linear_layers_keep_autograd(model):
    cfg = _cfg(model)
    assert plan(build_model(cfg, SHAPE), "bce") is None


@pytest.mark.parametrize("name", [n for n in list_models() if n != "dense"])
def test_no_other_family_takes_it(name):
    """Over the registry: a family whose loss is not encoder -> decoder -> reconstruction never qualifies,
    even where its layers look dense (a VAE's encoder and decoder are Sequentials of Linear layers)."""
    cfg = Config.from_dict({"model": {"name": name}, "train": dict(capabilities(name).train_settings)})
    model = build_model(cfg, (1, 16, 16))
    assert plan(model, cfg.train.loss) is None


def _grads(model, loss, x, precision, fused: bool):
    opt = make_optimizer(model.parameters(), _cfg({}).train, CPU)
    if fused:
        with torch.no_grad():
            value = FusedDenseStep(plan(model, loss), opt, loss, model.output_activation, precision).gradients(x, x)
    else:
        with autocast_context(CPU, precision):
            value = model.compute_loss(x, x, None, loss).total
        value.backward()
    return value.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("model, loss", FUSABLE)
@pytest.mark.parametrize("precision, tol", [("fp32", 1e-6), ("bf16-mixed", 3e-2)])
def test_gradients_match_autograd(model, loss, precision, tol):
    """Same loss and gradients as autograd under autocast; fp32 to rounding, bf16 within bf16's 3 digits
    (the two paths round the bias gradients at different points)."""
    cfg = _cfg(model, loss)
    torch.manual_seed(0)
    x = torch.rand(32, *SHAPE)
    results = []
    for fused in (False, True):
        torch.manual_seed(1)
        results.append(_grads(build_model(cfg, SHAPE), loss, x, precision, fused))
    (la, ga), (lf, gf) = results
    assert torch.allclose(la.float(), lf.float(), rtol=tol, atol=1e-7)
    for a, f in zip(ga, gf):
        assert f.dtype == torch.float32 and f.shape == a.shape
        assert (a - f).abs().max() <= tol * a.abs().max() + 1e-7


@pytest.mark.parametrize("precision", ["fp32", "bf16-mixed"])
def test_weight_gradients_reuse_the_steps_buffers(precision):
    """Each weight gradient is written into a buffer the step keeps, not a fresh tensor per step (fresh ones
    grew glibc's heap by hundreds of MB in fp32), and still holds this batch's gradient."""
    cfg = _cfg({"hidden": [64], "code_dim": 8})
    torch.manual_seed(0)
    model = build_model(cfg, SHAPE)
    step = FusedDenseStep(
        plan(model, "bce"), make_optimizer(model.parameters(), cfg.train, CPU), "bce", "sigmoid", precision
    )
    with torch.no_grad():
        a, b = torch.rand(16, *SHAPE), torch.rand(16, *SHAPE)
        first = [g.clone() for g in step.backward(a.to(step.dtype), a)[1]]
        second = step.backward(b.to(step.dtype), b)[1]
        of_b = [g.clone() for g in second]
        again = step.backward(a.to(step.dtype), a)[1]
    for i in (0, 2, 4):  # the weights'
        assert second[i].data_ptr() == again[i].data_ptr()  # valid until the step's next call, as documented
        assert torch.equal(again[i], first[i]) and not torch.equal(of_b[i], first[i])


def test_training_through_it_equals_autograd_training(idx_dir, tmp_path):
    """Whole runs in fp32 with masking noise (the input differs from the target): same metrics either way,
    and the loop took the path the config asked for."""
    runs = []
    for fused in (True, False):
        cfg = Config.from_dict(
            {
                "data": {"name": "mnist", "path": str(idx_dir), "noise": [{"kind": "masking", "amount": 0.3}]},
                "model": {"name": "dense", "hidden": [32], "code_dim": 8},
                "train": {"epochs": 2, "batch_size": 64, "precision": "fp32", "fused_dense": fused},
            }
        )
        data = load_data(cfg.data, cfg.model)
        loop = Loop(build_model(cfg, data.sample_shape), data, cfg, log=lambda s: None)
        assert (loop.fused is not None) is fused
        runs.append(train(cfg, tmp_path / f"fused-{fused}", log=lambda s: None).summary)
    a, b = runs
    assert a["test_bce"] == pytest.approx(b["test_bce"], abs=1e-5)
    assert a["final_train_loss"] == pytest.approx(b["final_train_loss"], abs=1e-5)


def test_the_config_key_is_validated():
    with pytest.raises(Exception, match="train.fused_dense: must be true or false"):
        Config.from_dict({"train": {"fused_dense": "yes"}})
