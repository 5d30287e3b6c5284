"""Typed experiment configuration: dataclasses loaded from YAML and validated.

Validation happens before any data is read or any weight is made, and every
message names the dotted key at fault (``model.code_dim: must be >= 1, got 0``).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from .errors import ConfigError

ACTIVATIONS = ("relu", "sigmoid", "tanh", "identity", "leaky_relu", "elu")
OUTPUT_ACTIVATIONS = ("sigmoid", "identity")
LOSSES = ("bce", "mse")
OPTIMIZERS = ("adam", "adamw", "adadelta", "sgd", "rmsprop")
SCHEDULES = ("none", "cosine", "step")
PRECISIONS = ("auto", "fp32", "bf16-mixed", "fp16-mixed")
DEVICES = ("cpu", "cuda", "auto")
KERNELS = ("auto", "native", "torch")
NOISE_KINDS = ("gaussian", "masking", "salt_pepper")
SCALES = ("auto", "none", "minmax", "standard")
INITS = ("glorot", "torch")
DATASETS = ("mnist", "fashion-mnist", "cifar10", "folder", "npy")  # the loaders in data/__init__.py


@dataclass
class NoiseConfig:
    kind: str = "gaussian"  # gaussian (seed 004), masking (seed 003), salt_pepper
    amount: float = 0.5  # gaussian: std factor; masking / salt_pepper: fraction of pixels
    clip: bool = True  # clip the noisy input back to [0, 1] (seed 004 does)


@dataclass
class DataConfig:
    name: str = "fashion-mnist"  # mnist | fashion-mnist | cifar10 | folder | npy
    path: str | None = None  # folder / .npy / .npz, or a root holding the IDX or CIFAR files
    test_path: str | None = None  # a separate test array or folder (else a split of `path`)
    limit: int | None = None  # use the first N training samples
    test_limit: int | None = None  # use the first N test samples
    val_fraction: float = 0.0  # 0: validate on the test split, as the seeds do
    image_size: list[int] | None = None  # [H, W] for image folders
    channels: int | None = None  # 1 (grey) or 3 (RGB) for image folders
    scale: str = "auto"  # auto: uint8 / 255, floats must lie in [0, 1]; minmax; standard (tabular)
    noise: list[NoiseConfig] = field(default_factory=list)  # corrupt the input, keep the clean target
    exclude_classes: list[int] = field(default_factory=list)  # drop these labels from the training split
    mmap: bool = False  # memory-map uint8 .npy files and read batches from disk (divided by 255: not with scale none)


@dataclass
class ModelConfig:
    """The keys every model family takes; each family subclasses it with its own keys.

    A family (models/<family>.py) registers its subclass with the model registry, and
    ``model:`` in YAML is parsed into the class that ``model.name`` registered, so a key
    another family takes is refused naming it. ``ModelConfig(name=..., **keys)`` builds
    the config of that family (``ModelConfig()`` is the default dense one).
    """

    name: str = "dense"  # see `aelab models`
    output_activation: str = "sigmoid"  # sigmoid (data in [0, 1]) | identity
    init: str = "glorot"  # glorot: Keras' default (uniform weights, zero biases); torch

    def __new__(cls, *args: Any, **kwargs: Any) -> ModelConfig:
        if cls is ModelConfig:  # the public name builds the config class the family registered
            cls = model_config_class(kwargs.get("name", args[0] if args else "dense"))
        return object.__new__(cls)

    def validate(self, train: TrainConfig) -> None:
        """Checks that need more than one key; a family extends it (calling super) for its own keys.

        Shape checks that need the input shape belong in the family's constructor."""
        check_choice("model.output_activation", self.output_activation, OUTPUT_ACTIVATIONS)
        check_choice("model.init", self.init, INITS)
        self.check_loss(train)

    def stack_refusal(self) -> str | None:
        """Why runs of this config cannot train as one stack (train/stacked.py), in a few words; None: they can.

        Asked only of families whose capabilities say ``stackable``; a family overrides it for keys
        (dropout, batch norm, tied weights) that break a member's independence from the others."""
        return None

    def check_loss(self, train: TrainConfig) -> None:
        """Which train.loss fits this output; a family with its own rule (a VAE's likelihood) overrides it."""
        if train.loss == "bce" and self.output_activation != "sigmoid":
            raise ConfigError(
                "train.loss: bce needs model.output_activation=sigmoid (BCE compares probabilities); "
                "use train.loss=mse with an identity output"
            )

    def facts(self) -> list[tuple[str, Any]]:
        """(label, value) pairs that describe this model on its report page (layers, activation, ...)."""
        return []


# model.name -> the config class of its family; filled by models/_registry.register_model
_MODEL_CONFIGS: dict[str, type[ModelConfig]] = {}


def register_model_config(name: str, cls: type[ModelConfig]) -> None:
    if not (isinstance(cls, type) and issubclass(cls, ModelConfig) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"model '{name}': config must be a @dataclass subclass of aelab.config.ModelConfig")
    _MODEL_CONFIGS[name] = cls


def model_config_class(name: Any) -> type[ModelConfig]:
    """The config class ``model.name`` registered; a ConfigError naming the valid names if none did."""
    if not isinstance(name, str):
        raise ConfigError(f"model.name: must be a string, got {name!r}")
    if name not in _MODEL_CONFIGS:
        valid = sorted(_MODEL_CONFIGS)
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"model.name: unknown model '{name}'; valid: {', '.join(valid)}{hint}")
    return _MODEL_CONFIGS[name]


def model_keys() -> set[str]:
    """Every key some registered family takes (what a saved run written by an older aelab may carry)."""
    return {f.name for c in _MODEL_CONFIGS.values() for f in dataclasses.fields(c)}


@dataclass
class TrainConfig:
    epochs: int = 5
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float | None = None  # None: the optimizer's Keras default (adam 1e-3, adadelta 1.0, ...)
    momentum: float = 0.9  # sgd
    weight_decay: float = 0.0
    loss: str = "bce"  # bce (on logits, needs a sigmoid output) | mse
    schedule: str = "none"  # none | cosine | step
    step_size: int = 10  # step schedule: epochs between decays
    gamma: float = 0.1  # step schedule: decay factor
    early_stopping: int | None = None  # patience in epochs on the validation loss
    seed: int = 0
    precision: str = "auto"  # auto (bf16-mixed on CPUs with AMX/AVX-512 BF16, else fp32; env AELAB_PRECISION overrides) | fp32 | bf16-mixed | fp16-mixed (cuda)
    device: str = "auto"  # auto (cuda when available, else cpu; printed at the start of a run) | cpu | cuda
    threads: int | None = None  # torch intra-op threads; None: torch's choice
    checkpoint_every: int = 1  # epochs between checkpoints
    fused_dense: bool = True  # plain dense models on a CPU: backward written out, no autograd (train/fused_dense.py)
    kernels: str = "auto"  # auto (aelab's C kernels where they build, else torch's) | native | torch (train/native.py)


@dataclass
class Config:
    name: str | None = None
    description: str = ""
    published: dict = field(
        default_factory=dict
    )  # recipes: what the seed reported, e.g. {test_bce: 0.092, source: "seed 004"}
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"family": True})
    train: TrainConfig = field(default_factory=TrainConfig)
    # `aelab train --resume RUN --set ...`: what changed, and from which epoch on: [{epoch: 5, set: {train.epochs: 8}}]
    resumed: list[dict] = field(default_factory=list)

    # -- construction -------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Config:
        cfg = _build(cls, d or {}, "")
        validate(cfg)
        return cfg

    @classmethod
    def from_saved(cls, d: dict[str, Any] | None) -> Config:
        """A run directory's config.yaml. Runs written before each family had its own keys carry
        every family's keys; those this run's family does not take are dropped (they were unused)."""
        d = dict(d or {})
        m = d.get("model")
        if isinstance(m, dict) and isinstance(m.get("name", "dense"), str) and m.get("name", "dense") in _MODEL_CONFIGS:
            own = {f.name for f in dataclasses.fields(model_config_class(m.get("name", "dense")))}
            foreign = model_keys() - own
            d["model"] = {k: v for k, v in m.items() if k in own or k not in foreign}
        return cls.from_dict(d)

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> Config:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            d = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            line = getattr(getattr(e, "problem_mark", None), "line", None)
            where = f" (line {line + 1})" if line is not None else ""
            raise ConfigError(f"{path}: not valid YAML{where}") from None
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(d).__name__}")
        apply_overrides(d, overrides or [])
        return cls.from_dict(d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, overrides: list[str]) -> Config:
        d = self.to_dict()
        apply_overrides(d, overrides)
        name = d.get("model", {}).get("name")
        if name != self.model.name and name in _MODEL_CONFIGS:
            # another family: keep only the keys it takes, unless an override names one
            own = {f.name for f in dataclasses.fields(_MODEL_CONFIGS[name])}
            named = {o.split("=", 1)[0].strip()[len("model.") :] for o in overrides if o.strip().startswith("model.")}
            d["model"] = {k: v for k, v in d["model"].items() if k in own or k in named}
        return Config.from_dict(d)


# What `--resume RUN --set KEY=VALUE` may change: they do not touch the model's shape or the data.
RESUMABLE = ("train.epochs", "train.lr", "train.early_stopping", "train.checkpoint_every")


def resume_overrides(cfg: Config, overrides: list[str], epoch: int) -> Config:
    """``cfg`` with ``overrides`` applied for a resumed run, recorded in ``cfg.resumed`` with the epoch
    they take effect after; a key outside RESUMABLE is refused, naming it."""
    for ov in overrides:
        key = ov.split("=", 1)[0].strip()
        if "=" not in ov:
            raise ConfigError(f"--set expects KEY=VALUE (like train.epochs=20), got '{ov}'")
        if key not in RESUMABLE:
            raise ConfigError(
                f"--set {key}: cannot change on a resumed run (the checkpoint fixes the model, data and "
                f"the rest of training); keys a resume may change: {', '.join(RESUMABLE)}"
            )
    new = cfg.replace(list(overrides))
    old_flat, new_flat = cfg.to_dict()["train"], new.to_dict()["train"]
    changed = {f"train.{k}": v for k, v in new_flat.items() if old_flat.get(k) != v}
    if changed:
        new.resumed = [*cfg.resumed, {"epoch": epoch, "set": changed}]
    return new


def apply_overrides(d: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=c`` strings; the value is parsed as YAML (``64``, ``[1, 2]``, ``null``)."""
    for ov in overrides:
        if "=" not in ov:
            raise ConfigError(f"--set expects KEY=VALUE (like model.code_dim=64), got '{ov}'")
        key, raw = ov.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        parts = key.split(".")
        node = d
        for p in parts[:-1]:
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {key}: '{p}' is not a section")
            node = nxt
        node[parts[-1]] = value
    return d


# -- generic typed construction ---------------------------------------


def _build(cls: type, d: Any, prefix: str) -> Any:
    if not isinstance(d, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: must be a mapping, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    names = [f.name for f in fields]
    for k in d:
        if k not in names:
            close = difflib.get_close_matches(str(k), names, n=1)
            if close:
                hint = f"; did you mean '{prefix}{close[0]}'?"
            elif issubclass(cls, ModelConfig):  # each family takes its own keys
                hint = f"; model.name '{d.get('name', 'dense')}' takes: {', '.join(names)}"
            else:
                hint = f"; valid keys: {', '.join(names)}"
            raise ConfigError(f"unknown config key '{prefix}{k}'{hint}")
    kwargs = {}
    for f in fields:
        if f.name not in d:
            continue
        if f.metadata.get("family"):  # model: the dataclass of the family model.name names
            sub = d[f.name]
            if not isinstance(sub, dict):
                raise ConfigError(f"{prefix}{f.name}: must be a mapping, got {type(sub).__name__}")
            kwargs[f.name] = _build(model_config_class(sub.get("name", "dense")), sub, f"{prefix}{f.name}.")
        else:
            kwargs[f.name] = _coerce(hints[f.name], d[f.name], f"{prefix}{f.name}")
    return cls(**kwargs)


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _coerce(tp: Any, v: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if v is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{key}: must not be empty")
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, v, key)
            except ConfigError as e:
                errors.append(str(e))
        want = " or ".join(_type_name(a) for a in args if a is not type(None))
        raise ConfigError(f"{key}: must be {want}, got {v!r}")
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(v, (list, tuple)):
            raise ConfigError(f"{key}: must be a list of {_type_name(inner)}, got {v!r}")
        return [_coerce(inner, x, f"{key}[{i}]") for i, x in enumerate(v)]
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build(tp, v, key + ".")
    if v is None:
        raise ConfigError(f"{key}: must be {_type_name(tp)}, got null")
    if tp is bool:
        if isinstance(v, bool):
            return v
        raise ConfigError(f"{key}: must be true or false, got {v!r}")
    if tp is int:
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        if isinstance(v, float) and v.is_integer():
            return int(v)
        raise ConfigError(f"{key}: must be an integer, got {v!r}")
    if tp is float:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
        if isinstance(v, str) and _FLOAT.fullmatch(v.strip()):
            return float(v)  # YAML 1.1 reads 1e6 and 1e-3 (no dot, no sign) as strings
        raise ConfigError(f"{key}: must be a number, got {v!r}")
    if tp is str:
        if isinstance(v, str):
            return v
        raise ConfigError(f"{key}: must be a string, got {v!r}")
    return v


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


# -- semantic validation ------------------------------------------------


def check_choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    """Refuses a value outside ``allowed``, naming the key and the closest valid value."""
    if value not in allowed:
        close = difflib.get_close_matches(value, allowed, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"{key}: must be one of {', '.join(allowed)}; got '{value}'{hint}")


def check_positive(key: str, value: float | int | None, allow_zero: bool = False) -> None:
    """Refuses a negative (or, unless ``allow_zero``, zero) number; None passes."""
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(
            f"{key}: must be {'>= 0' if allow_zero else '>= 1' if isinstance(value, int) else '> 0'}, got {value}"
        )


def validate(cfg: Config) -> None:
    """Checks that need more than one key's type; the family validates its own keys
    (``ModelConfig.validate``) and model shapes are checked when the model is built."""
    d, t = cfg.data, cfg.train
    check_choice("data.name", d.name, DATASETS)
    check_choice("data.scale", d.scale, SCALES)
    check_positive("data.limit", d.limit)
    check_positive("data.test_limit", d.test_limit)
    if not 0.0 <= d.val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction: must be in [0, 1), got {d.val_fraction}")
    if d.image_size is not None and (len(d.image_size) != 2 or min(d.image_size) < 1):
        raise ConfigError(f"data.image_size: must be [height, width] with both >= 1, got {d.image_size}")
    if d.channels is not None and d.channels not in (1, 3):
        raise ConfigError(f"data.channels: must be 1 (grey) or 3 (RGB), got {d.channels}")
    for i, n in enumerate(d.noise):
        check_choice(f"data.noise[{i}].kind", n.kind, NOISE_KINDS)
        if n.amount < 0 or (n.kind != "gaussian" and n.amount > 1):
            raise ConfigError(
                f"data.noise[{i}].amount: must be in [0, 1] for {n.kind} (>= 0 for gaussian), got {n.amount}"
            )
    if d.name in ("folder", "npy") and not d.path:
        raise ConfigError(f"data.path: required when data.name is '{d.name}'")

    check_positive("train.epochs", t.epochs)
    check_positive("train.batch_size", t.batch_size)
    check_choice("train.optimizer", t.optimizer, OPTIMIZERS)
    check_choice("train.loss", t.loss, LOSSES)
    check_choice("train.schedule", t.schedule, SCHEDULES)
    check_choice("train.precision", t.precision, PRECISIONS)
    check_choice("train.device", t.device, DEVICES)
    check_choice("train.kernels", t.kernels, KERNELS)
    if t.lr is not None and t.lr <= 0:
        raise ConfigError(f"train.lr: must be > 0, got {t.lr}")
    check_positive("train.threads", t.threads)
    check_positive("train.checkpoint_every", t.checkpoint_every)
    check_positive("train.early_stopping", t.early_stopping)

    model_config_class(cfg.model.name)
    cfg.model.validate(t)
