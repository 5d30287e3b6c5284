"""The metric-set registry: named test metrics a family declares in ``Capabilities.metrics``.

A set is ``fn(model, x, y) -> dict[str, float]`` (``x`` a float array of samples, ``y``
their labels or None), registered with ``@register_metrics(name)`` in the family's own
module (evaluate/<family>_metrics.py), which evaluate/extra.py imports. Keys get a
``test_`` prefix in summary.json (``val_`` when ``Capabilities.epoch_metrics`` logs them
every epoch). This module imports no family, so every family module can import it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..models import capabilities

MetricSet = Callable[[Any, Any, Any], dict[str, float]]
_SETS: dict[str, MetricSet] = {}


def register_metrics(name: str) -> Callable[[MetricSet], MetricSet]:
    def deco(fn: MetricSet) -> MetricSet:
        if name in _SETS:
            raise ValueError(f"metric set '{name}' is already registered")
        _SETS[name] = fn
        return fn

    return deco


def metric_sets() -> list[str]:
    return sorted(_SETS)


def extra_metrics(model, x, y) -> dict[str, float]:
    """Every metric set the model's family declares, merged in the declared order."""
    out: dict[str, float] = {}
    for name in capabilities(model).metrics:
        if name not in _SETS:
            raise KeyError(
                f"model '{model.cfg.name}' declares metric set '{name}', which no module imported by "
                "evaluate/extra.py registers"
            )
        out.update(_SETS[name](model, x, y))
    return out
