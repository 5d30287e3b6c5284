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
NOISE_KINDS = ("gaussian", "masking", "salt_pepper")
SCALES = ("auto", "none", "minmax", "standard")
INITS = ("glorot", "torch")


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
    mmap: bool = False  # memory-map .npy files and read batches from disk


@dataclass
class ModelConfig:
    name: str = "dense"  # see `aelab models`
    hidden: list[int] = field(default_factory=list)  # encoder layers before the code
    code_dim: int = 32
    decoder_hidden: list[int] | None = None  # None: the mirror of `hidden`
    activation: str | list[str] = "relu"  # one for every hidden layer, or one per hidden layer
    code_activation: str | None = None  # None: same as `activation`
    output_activation: str = "sigmoid"
    dropout: float | list[float] = 0.0  # one rate for every hidden layer, or one per hidden layer
    tied: bool = False  # decoder weights are the encoder's transposed (dense)
    init: str = "glorot"  # glorot: Keras' default (uniform weights, zero biases); torch
    channels: list[int] = field(default_factory=lambda: [16, 8, 8])  # conv encoder filters
    decoder_channels: list[int] | None = None  # None: the mirror of `channels`
    kernel_size: int = 3
    batch_norm: bool = False
    l1: float = 0.0  # L1 activity penalty on the code (seed 004's sparse autoencoder)
    sparsity_target: float | None = None  # KL sparsity: target mean activation of the code
    sparsity_weight: float = 0.0
    beta: float = 1.0  # VAE: weight of the KL term
    kl_warmup_epochs: int = 0  # VAE: ramp beta from 0 over this many epochs
    likelihood: str = "bernoulli"  # VAE decoder: bernoulli | gaussian
    binarize: bool = False  # VAE, bernoulli: redraw every training pixel as 0/1 ~ Bernoulli(intensity) each batch
    num_classes: int = 10  # classifier autoencoder
    tap: int = 1  # classifier autoencoder: reconstruct from the output of this pooling block
    recon_weight: float = 1.0  # classifier autoencoder: weight of the reconstruction loss
    convs_per_block: int | list[int] = 2  # classifier autoencoder: 3x3 convs before each pool (one, or one per block)
    head_dropout: float = 0.5  # classifier autoencoder: dropout in the dense classifier head
    probe_taps: list[int] = field(default_factory=list)  # classifier autoencoder: extra recon heads on detached features (a second tap depth for the report)


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


@dataclass
class Config:
    name: str | None = None
    description: str = ""
    published: dict = field(default_factory=dict)  # recipes: what the seed reported, e.g. {test_bce: 0.092, source: "seed 004"}
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    # -- construction -------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "Config":
        cfg = _build(cls, d or {}, "")
        validate(cfg)
        return cfg

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> "Config":
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

    def replace(self, overrides: list[str]) -> "Config":
        d = self.to_dict()
        apply_overrides(d, overrides)
        return Config.from_dict(d)


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
    names = [f.name for f in dataclasses.fields(cls)]
    for k in d:
        if k not in names:
            close = difflib.get_close_matches(str(k), names, n=1)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; valid keys: {', '.join(names)}"
            raise ConfigError(f"unknown config key '{prefix}{k}'{hint}")
    kwargs = {name: _coerce(hints[name], d[name], f"{prefix}{name}") for name in names if name in d}
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
    if dataclasses.is_dataclass(tp):
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
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, getattr(tp, "__name__", str(tp)))


# -- semantic validation ------------------------------------------------

def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        close = difflib.get_close_matches(value, allowed, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"{key}: must be one of {', '.join(allowed)}; got '{value}'{hint}")


def _positive(key: str, value: float | int | None, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{key}: must be {'>= 0' if allow_zero else '>= 1' if isinstance(value, int) else '> 0'}, got {value}")


def validate(cfg: Config) -> None:
    """Checks that need more than one key's type; model shapes are checked when the model is built."""
    from .data import dataset_names
    from .models import list_models

    d, m, t = cfg.data, cfg.model, cfg.train
    _choice("data.name", d.name, tuple(dataset_names()))
    _choice("data.scale", d.scale, SCALES)
    _positive("data.limit", d.limit)
    _positive("data.test_limit", d.test_limit)
    if not 0.0 <= d.val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction: must be in [0, 1), got {d.val_fraction}")
    if d.image_size is not None and (len(d.image_size) != 2 or min(d.image_size) < 1):
        raise ConfigError(f"data.image_size: must be [height, width] with both >= 1, got {d.image_size}")
    if d.channels is not None and d.channels not in (1, 3):
        raise ConfigError(f"data.channels: must be 1 (grey) or 3 (RGB), got {d.channels}")
    for i, n in enumerate(d.noise):
        _choice(f"data.noise[{i}].kind", n.kind, NOISE_KINDS)
        if n.amount < 0 or (n.kind != "gaussian" and n.amount > 1):
            raise ConfigError(f"data.noise[{i}].amount: must be in [0, 1] for {n.kind} (>= 0 for gaussian), got {n.amount}")
    if d.name in ("folder", "npy") and not d.path:
        raise ConfigError(f"data.path: required when data.name is '{d.name}'")

    _choice("model.name", m.name, tuple(list_models()))
    _positive("model.code_dim", m.code_dim)
    for i, h in enumerate(m.hidden):
        _positive(f"model.hidden[{i}]", h)
    for i, h in enumerate(m.decoder_hidden or []):
        _positive(f"model.decoder_hidden[{i}]", h)
    for i, c in enumerate(m.channels):
        _positive(f"model.channels[{i}]", c)
    for a in (m.activation if isinstance(m.activation, list) else [m.activation]):
        _choice("model.activation", a, ACTIVATIONS)
    if m.code_activation is not None:
        _choice("model.code_activation", m.code_activation, ACTIVATIONS)
    _choice("model.output_activation", m.output_activation, OUTPUT_ACTIVATIONS)
    _choice("model.init", m.init, INITS)
    _choice("model.likelihood", m.likelihood, ("bernoulli", "gaussian"))
    if m.name.startswith("vae-") and t.loss != {"bernoulli": "bce", "gaussian": "mse"}[m.likelihood]:
        raise ConfigError(f"train.loss: a VAE with model.likelihood={m.likelihood} trains with "
                          f"{'bce' if m.likelihood == 'bernoulli' else 'mse'}, got '{t.loss}'")
    _positive("model.kl_warmup_epochs", m.kl_warmup_epochs, allow_zero=True)
    rates = m.dropout if isinstance(m.dropout, list) else [m.dropout]
    for r in rates:
        if not 0.0 <= r < 1.0:
            raise ConfigError(f"model.dropout: rates must be in [0, 1), got {m.dropout}")
    if m.kernel_size < 1 or m.kernel_size % 2 == 0:
        raise ConfigError(f"model.kernel_size: must be an odd integer >= 1, got {m.kernel_size}")
    _positive("model.l1", m.l1, allow_zero=True)
    _positive("model.sparsity_weight", m.sparsity_weight, allow_zero=True)
    if m.sparsity_target is not None and not 0.0 < m.sparsity_target < 1.0:
        raise ConfigError(f"model.sparsity_target: must be in (0, 1), got {m.sparsity_target}")
    _positive("model.beta", m.beta, allow_zero=True)
    if m.num_classes < 2:
        raise ConfigError(f"model.num_classes: must be >= 2, got {m.num_classes}")
    _positive("model.tap", m.tap)
    _positive("model.recon_weight", m.recon_weight, allow_zero=True)
    for i, n in enumerate(m.convs_per_block if isinstance(m.convs_per_block, list) else [m.convs_per_block]):
        _positive(f"model.convs_per_block[{i}]", n)
    if not 0.0 <= m.head_dropout < 1.0:
        raise ConfigError(f"model.head_dropout: must be in [0, 1), got {m.head_dropout}")
    for i, k in enumerate(m.probe_taps):
        _positive(f"model.probe_taps[{i}]", k)

    _positive("train.epochs", t.epochs)
    _positive("train.batch_size", t.batch_size)
    _choice("train.optimizer", t.optimizer, OPTIMIZERS)
    _choice("train.loss", t.loss, LOSSES)
    _choice("train.schedule", t.schedule, SCHEDULES)
    _choice("train.precision", t.precision, PRECISIONS)
    _choice("train.device", t.device, DEVICES)
    if t.lr is not None and t.lr <= 0:
        raise ConfigError(f"train.lr: must be > 0, got {t.lr}")
    _positive("train.threads", t.threads)
    _positive("train.checkpoint_every", t.checkpoint_every)
    _positive("train.early_stopping", t.early_stopping)
    if t.loss == "bce" and m.output_activation != "sigmoid" and m.name not in ("vae-dense", "vae-conv"):
        raise ConfigError(
            "train.loss: bce needs model.output_activation=sigmoid (BCE compares probabilities); "
            "use train.loss=mse with an identity output"
        )
