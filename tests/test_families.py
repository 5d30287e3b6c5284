"""The family contract, run over the registry: every registered model name gets these checks,
so a new family module is tested the moment it registers (docs/ARCHITECTURE.md)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import yaml

from aelab import Config, ConfigError, ModelConfig, build_model
from aelab.data import Splits
from aelab.evaluate.extra import extra_metrics, metric_sets
from aelab.evaluate.likelihood import supports_nll
from aelab.models import capabilities, family, list_models, needs_unit_range
from aelab.report.model_figures import figure_sets, model_figures

SHAPE = (1, 16, 16)


def tiny(name: str) -> Config:
    """The family's defaults, with the train settings it declares it needs (Capabilities.train_settings)."""
    return Config.from_dict({"model": {"name": name}, "train": {"epochs": 1, **capabilities(name).train_settings}})


@pytest.mark.parametrize("name", list_models())
def test_config_is_the_family_dataclass(name):
    fam = family(name)
    assert dataclasses.is_dataclass(fam.config) and issubclass(fam.config, ModelConfig)
    cfg = tiny(name)
    assert type(cfg.model) is fam.config and cfg.model.name == name
    assert type(ModelConfig(name=name)) is fam.config
    again = Config.from_dict(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg


@pytest.mark.parametrize("name", list_models())
def test_unknown_key_is_refused_naming_it(name):
    with pytest.raises(
        ConfigError, match=rf"unknown config key 'model.no_such_key'; model.name '{name}' takes: name, "
    ):
        Config.from_dict({"model": {"name": name, "no_such_key": 1}})


@pytest.mark.parametrize("name", list_models())
def test_builds_and_trains_one_step(name):
    torch.manual_seed(0)
    cfg = tiny(name)
    model = build_model(cfg, SHAPE)
    x = torch.rand(6, *SHAPE)
    y = torch.arange(6) % 2
    out = model.compute_loss(x, x, y, cfg.train.loss)
    assert out.total.ndim == 0 and math.isfinite(float(out.total.detach()))
    assert all(torch.is_tensor(v) for v in out.parts.values())
    out.total.backward()
    assert any(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        assert model.reconstruct(x).shape == x.shape
        assert model.decode(model.encode(x)).shape == x.shape


@pytest.mark.parametrize("name", list_models())
def test_declared_sets_exist_and_deliver(name):
    caps = capabilities(name)
    assert set(caps.metrics) <= set(metric_sets()) and set(caps.figures) <= set(figure_sets())
    assert caps.default_anomaly_score in (None, *caps.anomaly_scores)
    cfg = tiny(name)
    assert isinstance(needs_unit_range(cfg.model, cfg.train), bool)
    torch.manual_seed(0)
    model = build_model(cfg, SHAPE).eval()
    rng = np.random.default_rng(0)
    x = rng.random((12, *SHAPE), dtype=np.float32)
    y = np.arange(12) % 2
    res = extra_metrics(model, x, y)
    assert all(isinstance(v, float) and math.isfinite(v) for v in res.values())
    if caps.metrics:
        assert res
    figs = model_figures(model, Splits("synthetic", x, y, x, y))
    assert all(isinstance(s, str) and s and c for s, _, c in figs)
    if caps.generative:
        s = model.sample(3, torch.Generator().manual_seed(0))
        assert s.shape == (3, *SHAPE)


@pytest.mark.parametrize("name", list_models())
def test_likelihood_is_declared_exactly_where_it_is_implemented(name):
    """Capabilities.likelihood promises log_importance_weights (what `aelab eval --nll` calls), and vice versa."""
    torch.manual_seed(0)
    cfg = tiny(name)
    model = build_model(cfg, SHAPE).eval()
    has = callable(getattr(model, "log_importance_weights", None))
    assert capabilities(name).likelihood == has == supports_nll(model)
    if has:
        x = torch.rand(4, *SHAPE).round()
        with torch.no_grad():
            lw = model.log_importance_weights(x, 3, torch.Generator().manual_seed(0))
        assert lw.shape == (3, 4) and torch.isfinite(lw).all()


@pytest.mark.parametrize("name", list_models())
def test_declared_train_settings_are_enough_and_needed(name):
    """A family's model defaults validate with the train settings it declares, and need every one of them."""
    settings = dict(capabilities(name).train_settings)
    cfg = tiny(name)  # enough: validates
    assert all(getattr(cfg.train, k) == v for k, v in settings.items())
    for key in settings:  # needed: the train default in its place is refused, naming a key
        with pytest.raises(ConfigError, match=r"^(model|train)\."):
            Config.from_dict(
                {"model": {"name": name}, "train": {"epochs": 1, **{k: v for k, v in settings.items() if k != key}}}
            )


@pytest.mark.parametrize("name", [n for n in list_models() if capabilities(n).real_valued_keys])
def test_real_valued_keys_make_a_valid_identity_model(name):
    keys = dict(capabilities(name).real_valued_keys)
    cfg = Config.from_dict({"model": {"name": name, "output_activation": "identity", **keys}, "train": {"loss": "mse"}})
    assert not needs_unit_range(cfg.model, cfg.train)
    build_model(cfg, (10,) if name.endswith("dense") else SHAPE)


def test_saved_configs_of_older_runs_still_load():
    """Runs written when every family shared one flat model section carry the other families' keys."""
    old = {
        "name": "conv",
        "hidden": [],
        "code_dim": 32,
        "channels": [4, 4],
        "beta": 1.0,
        "likelihood": "bernoulli",
        "num_classes": 10,
        "tied": False,
    }
    cfg = Config.from_saved({"model": old})
    assert cfg.model.name == "conv" and cfg.model.channels == [4, 4]
    with pytest.raises(ConfigError, match="unknown config key 'model.hidden'; model.name 'conv' takes"):
        Config.from_dict({"model": old})


@pytest.mark.parametrize(
    "package, registry, importer", [("report", "figure_sets", "model_figures"), ("evaluate", "metric_sets", "extra")]
)
def test_every_module_that_registers_sets_is_imported_by_the_one_place(package, registry, importer):
    """A family's <family>_figures.py / <family>_metrics.py counts only once its line is in model_figures.py / extra.py."""
    import importlib
    import pathlib
    import subprocess
    import sys

    folder = pathlib.Path(importlib.import_module(f"aelab.{package}").__file__).parent
    deco = "@register_figures(" if package == "report" else "@register_metrics("
    registering = [f.stem for f in folder.glob("*.py") if f.stem not in (registry, importer) and deco in f.read_text()]
    assert registering  # the families' own modules exist and register themselves
    code = (
        f"import sys, aelab.{package}.{importer}; print(' '.join(sys.modules))"  # a fresh process: only what it imports
    )
    loaded = set(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    )
    missing = [m for m in registering if f"aelab.{package}.{m}" not in loaded]
    assert not missing, f"add `from . import {missing[0]} as _{missing[0]}  # noqa: F401` to {package}/{importer}.py"
