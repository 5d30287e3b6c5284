"""The benchmark cases: the seeds' models on their data, as aelab configs and as Keras specs.

The cases are written out here (not read from recipes) so a benchmark number
keeps meaning the same model when a recipe is edited.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError


@dataclass(frozen=True)
class BenchCase:
    name: str
    description: str
    config: dict  # an aelab config (Config.from_dict), without train.epochs
    keras: dict | None = None  # keras_runner spec without data paths and epochs; None: no Keras twin
    tags: tuple[str, ...] = field(default_factory=tuple)


def _dense(data: str, code: int, batch: int, loss: str = "bce", out: str = "sigmoid") -> dict:
    return {
        "data": {"name": data},
        "model": {"name": "dense", "hidden": [], "code_dim": code, "activation": "relu", "output_activation": out},
        "train": {"batch_size": batch, "optimizer": "adam", "loss": loss, "seed": 0},
    }


CASES: dict[str, BenchCase] = {
    c.name: c
    for c in [
        BenchCase(
            "seed000-dense784",
            "seed 000: dense 784-784-784, relu/sigmoid, BCE, Adam, batch 128, Fashion-MNIST",
            _dense("fashion-mnist", 784, 128),
            {
                "model": "dense",
                "units": [784],
                "activation": "relu",
                "output_activation": "sigmoid",
                "loss": "bce",
                "batch_size": 128,
            },
            ("default",),
        ),
        BenchCase(
            "seed004-dense32",
            "seeds 001/004: dense 784-32-784, relu/sigmoid, BCE, Adam, batch 256, MNIST",
            _dense("mnist", 32, 256),
            {
                "model": "dense",
                "units": [32],
                "activation": "relu",
                "output_activation": "sigmoid",
                "loss": "bce",
                "batch_size": 256,
            },
            ("default",),
        ),
        BenchCase(
            "seed004-conv",
            "seed 004: conv 16-8-8 pooled to a 4x4x8 code, BCE, Adam, batch 128, MNIST",
            {
                "data": {"name": "mnist"},
                "model": {
                    "name": "conv",
                    "channels": [16, 8, 8],
                    "kernel_size": 3,
                    "activation": "relu",
                    "output_activation": "sigmoid",
                },
                "train": {"batch_size": 128, "optimizer": "adam", "loss": "bce", "seed": 0},
            },
            {"model": "conv", "image_shape": [28, 28, 1], "loss": "bce", "batch_size": 128},
            ("default",),
        ),
        BenchCase(
            "seed003-relu1000",
            "seed 003 case 2: dense 784-1000-784, relu, linear output, MSE, Adam, batch 100, MNIST",
            _dense("mnist", 1000, 100, loss="mse", out="identity"),
            {
                "model": "dense",
                "units": [1000],
                "activation": "relu",
                "output_activation": "linear",
                "loss": "mse",
                "batch_size": 100,
            },
            ("default",),
        ),
        BenchCase(
            "tiny",
            "smoke test: dense 784-16-784, batch 64 (use with --set data.path=... and --limit)",
            _dense("mnist", 16, 64),
            {
                "model": "dense",
                "units": [16],
                "activation": "relu",
                "output_activation": "sigmoid",
                "loss": "bce",
                "batch_size": 64,
            },
        ),
    ]
}


def default_cases() -> list[str]:
    return [n for n, c in CASES.items() if "default" in c.tags]


def select_cases(spec: str | None) -> list[BenchCase]:
    """``a,b`` -> those cases in that order; None -> the default set."""
    names = default_cases() if not spec else [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in CASES]
    if unknown or not names:
        raise ConfigError(
            f"--cases: unknown case {', '.join(repr(u) for u in unknown) or '(empty)'}; choose from {', '.join(CASES)}"
        )
    return [CASES[n] for n in names]
