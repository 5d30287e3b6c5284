"""The model-family registry: what a family is, in one place.

A family module (models/<family>.py) registers each model name it builds with
``@register_model(name, description, config=TheConfig, capabilities=Capabilities(...))``
on its builder. ``config`` is the family's ``ModelConfig`` subclass (the YAML keys
``model:`` takes for that name); ``capabilities`` declares what the rest of aelab
may do with the model, so no code outside models/ asks for a family by name.
A duplicate name is an error, an unknown one lists the valid names and the closest.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ..config import ModelConfig, TrainConfig, model_config_class, register_model_config

if TYPE_CHECKING:
    from .base import Autoencoder

Builder = Callable[[Any, tuple[int, ...]], "Autoencoder"]

UNIT_RANGE_RULES = ("bce", "always", "never")


@dataclass(frozen=True)
class Capabilities:
    """What a family declares about itself; read by train, evaluate, report, anomaly and the CLI."""

    # Inputs must lie in [0, 1]: "bce" when trained with BCE on a sigmoid output (the default),
    # "always" or "never". One rule for every caller: ``needs_unit_range(cfg)``.
    unit_range: str = "bce"
    needs_labels: bool = False  # training refuses unlabelled data before anything is written
    # Named metric sets (evaluate/<family>_metrics.py, registered in evaluate/metric_sets.py) added to
    # summary.json as test_<key>.
    metrics: tuple[str, ...] = ()
    epoch_metrics: bool = False  # also log those metric sets on the validation split every epoch (val_<key>)
    # Named figure sets (report/<family>_figures.py, registered in report/figure_sets.py) drawn in the run report.
    figures: tuple[str, ...] = ()
    # Per-sample anomaly scores AnomalyDetector / `aelab score` may use with this model.
    anomaly_scores: tuple[str, ...] = ("mse", "bce")
    # What metric='auto' scores with (None: the run's training loss). MSE by default, chosen by
    # measurement over the ten Fashion-MNIST held-out-class tasks (benchmarks/anomaly-scores.json,
    # docs/ANOMALY.md): BCE ranks grey images by how grey they are (its floor is the pixels' entropy),
    # MSE by how badly they are drawn, and a Bernoulli VAE's negative ELBO inherits BCE's bias.
    default_anomaly_score: str | None = "mse"
    # model keys that make this family decode real values when it trains with mse, e.g. a VAE's likelihood
    real_valued_keys: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    generative: bool = False  # ``model.sample(n, generator)`` decodes draws from a prior
    # The model defines ``log_importance_weights(x, n, generator) -> (n, N)`` (log p(x, z) - log q(z|x)), so
    # `aelab eval --nll K` can estimate its test NLL (evaluate/likelihood.py) and the report asks for one.
    likelihood: bool = False
    # train: keys a config of this family needs beside the defaults to be valid with its model defaults (e.g.
    # {"loss": "mse"} for an identity output); the registry tests (tests/test_families.py) build every family so.
    train_settings: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    # The loss is reconstruction (plus the code penalty) of ``encode`` / ``decode_logits``, a pure function of
    # parameters and input (no sampling, no labels): train/stacked.py may train several such runs as one stacked
    # model. The config may still refuse (``ModelConfig.stack_refusal``: dropout, batch norm, tied weights...).
    stackable: bool = False

    def __post_init__(self) -> None:
        if self.unit_range not in UNIT_RANGE_RULES:
            raise ValueError(f"Capabilities.unit_range: one of {', '.join(UNIT_RANGE_RULES)}, got '{self.unit_range}'")
        if self.default_anomaly_score is not None and self.default_anomaly_score not in self.anomaly_scores:
            raise ValueError("Capabilities.default_anomaly_score: must be one of anomaly_scores")


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    builder: Builder
    config: type[ModelConfig]
    capabilities: Capabilities


_MODELS: dict[str, Family] = {}


def register_model(
    name: str, description: str, *, config: type[ModelConfig], capabilities: Capabilities = Capabilities()
) -> Callable[[Builder], Builder]:
    """Registers ``builder(cfg, input_shape) -> Autoencoder`` under ``name``, with its config class
    (a ``@dataclass`` subclass of ``aelab.config.ModelConfig`` whose ``name`` default is one of the
    family's names) and its declared capabilities."""

    def deco(fn: Builder) -> Builder:
        if name in _MODELS:
            raise ValueError(f"model '{name}' is already registered")
        register_model_config(name, config)
        _MODELS[name] = Family(name, description, fn, config, capabilities)
        return fn

    return deco


def list_models(pattern: str = "*") -> list[str]:
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def family(name: str) -> Family:
    """The registered family of ``model.name``; a ConfigError naming the valid names if unknown."""
    if name not in _MODELS:
        model_config_class(name)  # raises the one message for an unknown name
    return _MODELS[name]


def capabilities(model_or_name: Any) -> Capabilities:
    """Capabilities of a model name, a model config, or a built model (its ``cfg.name``)."""
    if isinstance(model_or_name, str):
        return family(model_or_name).capabilities
    if isinstance(model_or_name, ModelConfig):
        return family(model_or_name.name).capabilities
    return family(model_or_name.cfg.name).capabilities


def model_description(name: str) -> str:
    return family(name).description


def get_builder(name: str) -> Builder:
    return family(name).builder


def needs_unit_range(model: ModelConfig, train: TrainConfig) -> bool:
    """The one rule for "must the data lie in [0, 1]?", owned by the family's declared capability."""
    rule = family(model.name).capabilities.unit_range
    if rule == "bce":
        return model.output_activation == "sigmoid" and train.loss == "bce"
    return rule == "always"
