"""The figure-set registry: named report figures a family declares in ``Capabilities.figures``.

A set is ``fn(model, splits) -> [(file_stem, matplotlib_figure, caption), ...]``
registered with ``@register_figures(name, section)`` in the family's own module
(report/<family>_figures.py), which report/model_figures.py imports; the run report
draws the sets of the "Weights" section beside the weights and the others under
"Model". This module imports no family, so every family module can import it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..models import capabilities

FigureSet = Callable[[Any, Any], list[tuple[str, Any, str]]]
_SETS: dict[str, tuple[FigureSet, str]] = {}


def register_figures(name: str, section: str = "Model") -> Callable[[FigureSet], FigureSet]:
    def deco(fn: FigureSet) -> FigureSet:
        if name in _SETS:
            raise ValueError(f"figure set '{name}' is already registered")
        _SETS[name] = (fn, section)
        return fn

    return deco


def figure_sets() -> list[str]:
    return sorted(_SETS)


def model_figures(model, splits, section: str | None = None) -> list[tuple[str, Any, str]]:
    """The figures of every set the model's family declares (of one ``section`` if given), in declared order."""
    out: list[tuple[str, Any, str]] = []
    for name in capabilities(model).figures:
        if name not in _SETS:
            raise KeyError(
                f"model '{model.cfg.name}' declares figure set '{name}', which no module imported by "
                "report/model_figures.py registers"
            )
        fn, sec = _SETS[name]
        if section is None or sec == section:
            out += fn(model, splits)
    return out
