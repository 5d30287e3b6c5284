"""A small strict registry: models are built by name from a ModelConfig.

Builders register with ``@register_model("name", "one line")``; a duplicate
name is an error, an unknown one lists the valid names and the closest match.
"""
from __future__ import annotations

import difflib
import fnmatch
from typing import TYPE_CHECKING, Callable

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..config import ModelConfig
    from .base import Autoencoder

Builder = Callable[["ModelConfig", tuple[int, ...]], "Autoencoder"]
_MODELS: dict[str, tuple[Builder, str]] = {}


def register_model(name: str, description: str) -> Callable[[Builder], Builder]:
    def deco(fn: Builder) -> Builder:
        if name in _MODELS:
            raise ValueError(f"model '{name}' is already registered")
        _MODELS[name] = (fn, description)
        return fn

    return deco


def list_models(pattern: str = "*") -> list[str]:
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def model_description(name: str) -> str:
    return _MODELS[name][1]


def get_builder(name: str) -> Builder:
    if name not in _MODELS:
        close = difflib.get_close_matches(name, list(_MODELS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"model.name: unknown model '{name}'; valid: {', '.join(list_models())}{hint}")
    return _MODELS[name][0]
