import pytest

from aelab import Config, ConfigError


def test_defaults_validate():
    cfg = Config.from_dict({})
    assert cfg.model.name == "dense" and cfg.train.loss == "bce"


@pytest.mark.parametrize(
    "d, match",
    [
        ({"model": {"code_dimm": 3}}, r"unknown config key 'model.code_dimm'; did you mean 'model.code_dim'"),
        ({"modle": {}}, r"unknown config key 'modle'"),
        ({"model": {"code_dim": 0}}, r"model.code_dim: must be >= 1, got 0"),
        ({"model": {"code_dim": "x"}}, r"model.code_dim: must be an integer"),
        ({"model": {"hidden": [10, -1]}}, r"model.hidden\[1\]"),
        ({"train": {"optimizer": "adamm"}}, r"train.optimizer: .*did you mean 'adam'"),
        ({"train": {"epochs": 1.5}}, r"train.epochs: must be an integer"),
        ({"model": {"output_activation": "identity"}}, r"train.loss: bce needs model.output_activation=sigmoid"),
        ({"model": {"dropout": 1.0}}, r"model.dropout"),
        ({"data": {"name": "npy"}}, r"data.path: required"),
        ({"data": {"noise": [{"kind": "blur"}]}}, r"data.noise\[0\].kind"),
        ({"model": {"name": "transformer"}}, r"model.name"),
        ({"train": {"shuffle": "yes"}}, r"unknown config key 'train.shuffle'"),
    ],
)
def test_bad_configs_name_the_key(d, match):
    with pytest.raises(ConfigError, match=match):
        Config.from_dict(d)


def test_overrides_parse_yaml_values(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model:\n  code_dim: 8\n")
    cfg = Config.from_yaml(f, ["model.code_dim=64", "model.hidden=[128, 64]", "train.lr=0.01", "data.limit=null"])
    assert (
        cfg.model.code_dim == 64 and cfg.model.hidden == [128, 64] and cfg.train.lr == 0.01 and cfg.data.limit is None
    )


def test_override_without_equals():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        Config().replace(["model.code_dim"])


def test_yaml_round_trip(tmp_path):
    cfg = Config.from_dict({"data": {"noise": [{"kind": "masking", "amount": 0.2}]}, "model": {"dropout": [0.1]}})
    f = tmp_path / "c.yaml"
    f.write_text(cfg.to_yaml())
    assert Config.from_yaml(f) == cfg


def test_bad_yaml_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        Config.from_yaml(f)
    f.write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        Config.from_yaml(f)
