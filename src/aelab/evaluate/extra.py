"""Model-specific test metrics: importing this module registers every family's metric sets.

The registry is evaluate/metric_sets.py; each family's sets live in its own module
(evaluate/<family>_metrics.py) and register themselves there. Add a family's module
with one import line below. Callers use ``extra_metrics(model, x, y)``.
"""

from __future__ import annotations

# importing the families' metric modules registers their sets (add a new family's module here)
from . import classifier_metrics as _classifier_metrics  # noqa: F401
from . import sae_metrics as _sae_metrics  # noqa: F401
from . import vae_metrics as _vae_metrics  # noqa: F401
from . import vqvae_metrics as _vqvae_metrics  # noqa: F401
from .metric_sets import MetricSet, extra_metrics, metric_sets, register_metrics

__all__ = ["MetricSet", "extra_metrics", "metric_sets", "register_metrics"]
