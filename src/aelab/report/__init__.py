"""Pictures and HTML reports of runs.

    from aelab.report import write_run_report, write_comparison
    write_run_report("runs/a")                                  # runs/a/figures/*.png, runs/a/report.html
    write_comparison(["runs/a", "runs/b"], "compare.html")      # one page, configs that differ + metrics + pictures

A model family adds its own figures by declaring figure sets (``Capabilities.figures``)
registered by its own ``<family>_figures.py`` (registry: ``figure_sets.py``): each returns ``[(file_stem, matplotlib_figure, caption), ...]``,
and each figure is saved and shown. A run's ``probe.json`` (from `aelab probe`) is shown in its header
and as columns of the comparison table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .html import write_comparison, write_run_report

__all__ = ["write_run_report", "write_comparison"]


def __getattr__(name: str) -> Any:
    # html imports the figures and with them matplotlib (0.4 s): only a command that draws pays for it, not
    # `aelab train --no-report`, which imports the report's training hooks and collect
    if name in __all__:
        from . import html

        return getattr(html, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
