import pytest
import torch

from aelab import Config, ConfigError, build_model, list_models
from aelab.models import capabilities, summarize, summary_table

SHAPES = {"dense": (1, 28, 28), "conv": (1, 28, 28)}


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_round_trips(name):
    cfg = Config.from_dict({"model": {"name": name}, "train": dict(capabilities(name).train_settings)})
    model = build_model(cfg, (1, 28, 28))
    x = torch.rand(3, 1, 28, 28)
    z = model.encode(x)
    assert z.shape[0] == 3
    out = model.decode(z)
    assert out.shape == x.shape
    assert torch.allclose(model(x), out) or model.training
    loss = model.compute_loss(x, x, torch.zeros(3, dtype=torch.long), cfg.train.loss)
    loss.total.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert "Total params" in summary_table(model)


def test_seed_shapes_and_parameter_counts():
    # Keras' own counts: 784-784-784 has 1,230,880; 784-32-784 has 50,992; conv 16-8-8 has 4,385
    dense = build_model(Config.from_dict({"model": {"code_dim": 784}}), (1, 28, 28))
    assert sum(p.numel() for p in dense.parameters()) == 1_230_880
    small = build_model(Config.from_dict({"model": {"code_dim": 32}}), (1, 28, 28))
    assert sum(p.numel() for p in small.parameters()) == 50_992
    conv = build_model(Config.from_dict({"model": {"name": "conv"}}), (1, 28, 28))
    assert sum(p.numel() for p in conv.parameters()) == 4_385
    assert conv.code_shape == (8, 4, 4)
    deep = build_model(Config.from_dict({"model": {"hidden": [128, 64], "code_dim": 32}}), (1, 28, 28))
    assert [r.output_shape for r in summarize(deep) if r.kind == "Linear"] == [
        (128,),
        (64,),
        (32,),
        (64,),
        (128,),
        (784,),
    ]


def test_glorot_init_zero_bias():
    m = build_model(Config.from_dict({"model": {"code_dim": 784}}), (1, 28, 28))
    lin = m.encoder[1]
    bound = (6 / (784 + 784)) ** 0.5
    assert lin.weight.abs().max() <= bound and torch.all(lin.bias == 0)


def test_tied_weights_share_the_encoder_matrix():
    m = build_model(Config.from_dict({"model": {"hidden": [64], "code_dim": 16, "tied": True}}), (1, 28, 28))
    n_tied = sum(p.numel() for p in m.parameters())
    untied = build_model(Config.from_dict({"model": {"hidden": [64], "code_dim": 16}}), (1, 28, 28))
    assert n_tied == sum(p.numel() for p in untied.parameters()) - 784 * 64 - 64 * 16
    assert m.last_layer_weights().shape == (64, 1, 28, 28)


def test_per_layer_activation_and_dropout_lengths():
    cfg = Config.from_dict(
        {"model": {"hidden": [64], "code_dim": 16, "activation": ["tanh", "sigmoid", "relu"], "dropout": [0.1, 0, 0.2]}}
    )
    m = build_model(cfg, (1, 28, 28))
    kinds = [type(x).__name__ for x in m.encoder]
    assert kinds == ["Flatten", "Linear", "Tanh", "Dropout", "Linear", "Sigmoid"]
    with pytest.raises(ConfigError, match="model.dropout: has 2 entries"):
        build_model(Config.from_dict({"model": {"hidden": [64], "dropout": [0.1, 0.1]}}), (1, 28, 28))


def test_conv_that_does_not_fit():
    with pytest.raises(ConfigError, match="model.channels: 6 pooling steps"):
        build_model(Config.from_dict({"model": {"name": "conv", "channels": [4] * 6}}), (1, 28, 28))
    with pytest.raises(ConfigError, match="needs image data"):
        build_model(Config.from_dict({"model": {"name": "conv"}}), (10,))


def test_conv_on_rgb_odd_size():
    m = build_model(Config.from_dict({"model": {"name": "conv", "channels": [8, 8]}}), (3, 30, 22))
    x = torch.rand(2, 3, 30, 22)
    assert m(x).shape == x.shape


def test_code_penalties():
    cfg = Config.from_dict({"model": {"code_dim": 8, "l1": 1e-3}})
    m = build_model(cfg, (4,))
    x = torch.rand(5, 4)
    out = m.compute_loss(x, x, None, "bce")
    assert "penalty" in out.parts and out.parts["penalty"] >= 0
    with pytest.raises(ConfigError, match="code_activation=sigmoid"):
        build_model(Config.from_dict({"model": {"sparsity_target": 0.05, "sparsity_weight": 1.0}}), (4,))
    m = build_model(
        Config.from_dict({"model": {"code_activation": "sigmoid", "sparsity_target": 0.05, "sparsity_weight": 1.0}}),
        (4,),
    )
    assert m.compute_loss(x, x, None, "bce").parts["penalty"] > 0
