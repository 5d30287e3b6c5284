"""aelab: build, train, inspect, compare and ship autoencoders.

import aelab
cfg = aelab.Config.from_yaml("configs/demo.yaml")
run = aelab.train(cfg, out="runs/demo")
z = run.model.encode(x)          # (N, code) for dense models
x_hat = run.model.decode(z)
run = aelab.load_run("runs/demo")
"""

from . import _threads

# Before torch loads libgomp: OpenMP threads spin briefly on an idle machine and sleep
# at once on a busy one (either wrong choice costs 2x or more; docs/PERFORMANCE.md).
_threads.choose_wait_policy()

from .config import Config, DataConfig, ModelConfig, NoiseConfig, TrainConfig
from .data import Splits, load_data
from .errors import AelabError, ConfigError, DataError, RunError, TrainingError
from .models import build_model, list_models
from .run import Run, load_run
from .runner import train

__version__ = "0.1.0"

__all__ = [
    "AnomalyDetector",
    "Config",
    "DataConfig",
    "ModelConfig",
    "NoiseConfig",
    "TrainConfig",
    "Splits",
    "load_data",
    "AelabError",
    "ConfigError",
    "DataError",
    "RunError",
    "TrainingError",
    "build_model",
    "list_models",
    "Run",
    "load_run",
    "train",
    "__version__",
    "AutoencoderTransformer",
]


# Names imported on first use (scikit-learn takes a second to import): name -> module holding it.
_LAZY = {"AutoencoderTransformer": ".sklearn", "AnomalyDetector": ".anomaly"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'aelab' has no attribute '{name}'")
