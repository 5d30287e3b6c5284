"""The model zoo: ``build_model(cfg)`` makes any registered model from its config.

Each family is one module here that registers its builder, its config dataclass
and its capabilities (_registry.py; docs/ARCHITECTURE.md, "Add a model family").
"""

from __future__ import annotations

from ..config import Config, ModelConfig
from ..errors import ConfigError

# importing the families registers them (add a new family's module here)
from . import classifier as _classifier  # noqa: F401
from . import conv as _conv  # noqa: F401
from . import dense as _dense  # noqa: F401
from . import sae as _sae  # noqa: F401
from . import vae as _vae  # noqa: F401
from . import vqvae as _vqvae  # noqa: F401
from ._registry import (
    Capabilities,
    Family,
    capabilities,
    family,
    get_builder,
    list_models,
    model_description,
    needs_unit_range,
    register_model,
)
from .base import Autoencoder, CodePenaltyKeys, LossOutput, reconstruction_loss
from .summary import summarize, summary_table

KNOWN_SHAPES = {"mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


def build_model(cfg: Config | ModelConfig, input_shape: tuple[int, ...] | None = None) -> Autoencoder:
    """Builds the model a config names; ``input_shape`` (C, H, W) or (D,) defaults from the dataset."""
    if isinstance(cfg, Config):
        model_cfg = cfg.model
        if input_shape is None:
            input_shape = KNOWN_SHAPES.get(cfg.data.name)
    else:
        model_cfg = cfg
    if input_shape is None:
        raise ConfigError("input_shape: unknown for this dataset; pass input_shape=(C, H, W) or (D,)")
    return get_builder(model_cfg.name)(model_cfg, tuple(int(s) for s in input_shape))


__all__ = [
    "Autoencoder",
    "Capabilities",
    "CodePenaltyKeys",
    "Family",
    "LossOutput",
    "build_model",
    "capabilities",
    "family",
    "list_models",
    "model_description",
    "needs_unit_range",
    "register_model",
    "reconstruction_loss",
    "summarize",
    "summary_table",
]
