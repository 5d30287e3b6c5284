"""The classifier autoencoder of seed 002: a VGG-style classifier with a second,
reconstructing output taken from an intermediate pooling layer.

The seed's idea is that a classifier's early feature maps still hold the
image: one upsampling and one 3x3 convolution from the first pooling layer
give a sharp reconstruction, while the deep layers carry the accuracy. So the
"code" of this autoencoder is the feature map after pooling block
``model.tap``, and training minimises cross-entropy + ``model.recon_weight`` *
reconstruction loss.

Layer order follows the seed's table (Keras ``Conv2D(activation='relu')``
then ``BatchNormalization``): conv 3x3 -> ReLU -> batch norm -> dropout, with
no dropout after the last conv of a block, then a 2x2 max-pool. The head is
dropout -> [dense -> ReLU -> batch norm -> dropout]* -> dense to the classes.

``model.probe_taps`` adds reconstruction heads at other depths that read
*detached* feature maps: they learn to decode what the classifier already
holds there without changing it, so one run shows how much of the image
survives at two depths (the seed compared the first pooling layer with
conv2d_9).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig, TrainConfig, check_positive
from ..errors import ConfigError, DataError
from ._registry import Capabilities, register_model
from .base import Autoencoder, LossOutput, check_kernel, check_rates, glorot_init, reconstruction_loss
from .conv import conv_sizes


@dataclass
class ClassifierConfig(ModelConfig):
    """model: keys of the classifier autoencoder."""

    name: str = "classifier-ae"
    channels: list[int] = field(default_factory=lambda: [16, 8, 8])  # filters of each conv block (one pool each)
    convs_per_block: int | list[int] = 2  # 3x3 convs before each pool (one, or one per block)
    kernel_size: int = 3
    batch_norm: bool = False
    dropout: float | list[float] = 0.0  # between the convs of a block (one rate, or one per block)
    hidden: list[int] = field(default_factory=list)  # dense layers of the classifier head
    head_dropout: float = 0.5  # dropout in the dense classifier head
    num_classes: int = 10
    tap: int = 1  # reconstruct from the output of this pooling block
    recon_weight: float = 1.0  # weight of the reconstruction loss
    probe_taps: list[int] = field(
        default_factory=list
    )  # extra recon heads on detached features (a second tap depth for the report)

    def validate(self, train: TrainConfig) -> None:
        super().validate(train)
        for i, c in enumerate(self.channels):
            check_positive(f"model.channels[{i}]", c)
        for i, h in enumerate(self.hidden):
            check_positive(f"model.hidden[{i}]", h)
        check_kernel(self.kernel_size)
        check_rates("model.dropout", self.dropout)
        if self.num_classes < 2:
            raise ConfigError(f"model.num_classes: must be >= 2, got {self.num_classes}")
        check_positive("model.tap", self.tap)
        check_positive("model.recon_weight", self.recon_weight, allow_zero=True)
        for i, n in enumerate(
            self.convs_per_block if isinstance(self.convs_per_block, list) else [self.convs_per_block]
        ):
            check_positive(f"model.convs_per_block[{i}]", n)
        if not 0.0 <= self.head_dropout < 1.0:
            raise ConfigError(f"model.head_dropout: must be in [0, 1), got {self.head_dropout}")
        for i, k in enumerate(self.probe_taps):
            check_positive(f"model.probe_taps[{i}]", k)

    def facts(self) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = [("channels", self.channels), ("tap", self.tap), ("classes", self.num_classes)]
        if self.dropout not in (0, 0.0, []):
            out.append(("dropout", self.dropout))
        if self.batch_norm:
            out.append(("batch_norm", True))
        return out


def _per_block(value, n: int, key: str, kind: type) -> list:
    if isinstance(value, list):
        if len(value) != n:
            raise ConfigError(f"{key}: needs one entry per block of model.channels ({n}), got {len(value)}: {value}")
        return [kind(v) for v in value]
    return [kind(value)] * n


def _block(cin: int, cout: int, n_convs: int, k: int, dropout: float, bn: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n_convs):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, k, padding=k // 2), nn.ReLU()]
        if bn:
            layers.append(nn.BatchNorm2d(cout))
        if dropout > 0 and i < n_convs - 1:
            layers.append(nn.Dropout(dropout))
    layers.append(nn.MaxPool2d(2, ceil_mode=True))  # rounds up like Keras' padding='same' (7 -> 4)
    return nn.Sequential(*layers)


def _recon_head(cin: int, cout: int, size: tuple[int, int], k: int) -> nn.Sequential:
    """The seed's head: upsample back to the image size, one conv to the image channels (logits)."""
    return nn.Sequential(nn.Upsample(size=size, mode="nearest"), nn.Conv2d(cin, cout, k, padding=k // 2))


class ClassifierAutoencoder(Autoencoder):
    def __init__(self, cfg: ClassifierConfig, input_shape: tuple[int, ...]):
        super().__init__(cfg, input_shape)
        if len(input_shape) != 3:
            raise ConfigError(
                f"model.name: 'classifier-ae' needs image data shaped (C, H, W), got samples shaped {tuple(input_shape)}"
            )
        c, h, w = input_shape
        n = len(cfg.channels)
        if n < 1:
            raise ConfigError("model.channels: the classifier needs at least one conv block")
        sizes = conv_sizes((h, w), n)
        for i, s in enumerate(sizes[:-1]):
            if min(s) < 2:
                raise ConfigError(
                    f"model.channels: {n} pooling blocks do not fit a {h}x{w} image "
                    f"(it is {s[0]}x{s[1]} before block {i + 1}); use at most {i} blocks"
                )
        for key, k in [("model.tap", cfg.tap)] + [(f"model.probe_taps[{i}]", t) for i, t in enumerate(cfg.probe_taps)]:
            if not 1 <= k <= n:
                raise ConfigError(f"{key}: must name a pooling block between 1 and {n} (len(model.channels)), got {k}")
        if cfg.tap in cfg.probe_taps:
            raise ConfigError(f"model.probe_taps: {cfg.tap} is already model.tap; probe other depths")
        convs = _per_block(cfg.convs_per_block, n, "model.convs_per_block", int)
        drops = _per_block(cfg.dropout, n, "model.dropout", float)
        for i, (nc, dr) in enumerate(zip(convs, drops)):
            if nc == 1 and dr > 0:
                raise ConfigError(
                    f"model.dropout: block {i + 1} has one conv, and dropout goes between the convs of a "
                    f"block (none before a pool, as in cifar-vgg); set its rate to 0 or model.convs_per_block >= 2"
                )
        self.tap = cfg.tap
        self.probe_taps = list(dict.fromkeys(cfg.probe_taps))
        self.num_classes = cfg.num_classes

        blocks, prev = [], c
        for ch, nc, dr in zip(cfg.channels, convs, drops):
            blocks.append(_block(prev, ch, nc, cfg.kernel_size, dr, cfg.batch_norm))
            prev = ch
        self.blocks = nn.ModuleList(blocks)
        head: list[nn.Module] = [nn.Flatten()]
        if cfg.head_dropout > 0:
            head.append(nn.Dropout(cfg.head_dropout))
        feat = prev * sizes[-1][0] * sizes[-1][1]
        for width in cfg.hidden:
            head += [nn.Linear(feat, width), nn.ReLU()]
            if cfg.batch_norm:
                head.append(nn.BatchNorm1d(width))
            if cfg.head_dropout > 0:
                head.append(nn.Dropout(cfg.head_dropout))
            feat = width
        head.append(nn.Linear(feat, cfg.num_classes))
        self.head = nn.Sequential(*head)
        self.decoder = _recon_head(cfg.channels[cfg.tap - 1], c, (h, w), cfg.kernel_size)
        self.probes = nn.ModuleDict(
            {str(k): _recon_head(cfg.channels[k - 1], c, (h, w), cfg.kernel_size) for k in self.probe_taps}
        )
        if cfg.init == "glorot":
            glorot_init(self)

    # -- the autoencoder surface: the code is the feature map after block `tap`
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks[: self.tap]:
            x = block(x)
        return x

    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """One pass through every block: the last feature map and the tapped ones by depth."""
        taps = {}
        for depth, block in enumerate(self.blocks, start=1):
            x = block(x)
            taps[depth] = x
        return x, taps

    def outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[int, torch.Tensor]]:
        """Class logits, reconstruction logits and each probe's reconstruction logits, from one pass."""
        last, taps = self._features(x)
        class_logits, logits = self.head(last), self.decoder(taps[self.tap])
        return class_logits, logits, {k: self.probes[str(k)](taps[k].detach()) for k in self.probe_taps}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The whole network runs (so ``aelab summary`` lists every layer, as the seed's table does)."""
        _, logits, _ = self.outputs(x)
        return torch.sigmoid(logits) if self.output_activation == "sigmoid" else logits

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self._features(x)[0])

    # -- training -----------------------------------------------------------
    def check_data(self, splits) -> None:
        """Refuses data the classifier cannot learn from before anything is written."""
        super().check_data(splits)  # labels (capability needs_labels)
        top = int(np.max(splits.y_train)) if len(splits.y_train) else -1
        for y in (splits.y_test, splits.y_val):
            if y is not None and len(y):
                top = max(top, int(np.max(y)))
        if top >= self.num_classes:
            raise ConfigError(
                f"model.num_classes: labels go up to {top} but model.num_classes is {self.num_classes}; "
                f"set model.num_classes={top + 1}"
            )

    def compute_loss(
        self, x: torch.Tensor, target: torch.Tensor, y: torch.Tensor | None, loss: str, epoch: int = 0
    ) -> LossOutput:
        if y is None:
            raise DataError("data: the classifier autoencoder needs class labels, and this dataset has none")
        class_logits, logits, probes = self.outputs(x)
        ce = F.cross_entropy(class_logits.float(), y.long())
        recon = reconstruction_loss(logits, target, loss, self.output_activation)
        parts = {"ce": ce, "recon": recon}
        total = ce + self.cfg.recon_weight * recon
        for k, p in probes.items():  # detached inputs: these terms only train their own heads
            parts[f"recon_tap{k}"] = reconstruction_loss(p, target, loss, self.output_activation)
            total = total + parts[f"recon_tap{k}"]
        return LossOutput(total, parts)

    def tap_logits(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """Reconstruction logits from every tap depth, main tap included (evaluate/classifier_metrics.py batches it)."""
        _, logits, probes = self.outputs(x)
        return {self.tap: logits, **probes}

    def tap_shape(self, k: int) -> tuple[int, ...]:
        """(C, H, W) of the feature map after pooling block ``k``."""
        c, h, w = self.input_shape
        sizes = conv_sizes((h, w), k)
        return (self.cfg.channels[k - 1], *sizes[-1])


@register_model(
    "classifier-ae",
    "VGG-style classifier with a reconstruction head on a chosen pooling block (seed 002)",
    config=ClassifierConfig,
    capabilities=Capabilities(needs_labels=True, metrics=("classifier",), epoch_metrics=True, figures=("classifier",)),
)
def build_classifier(cfg: ClassifierConfig, input_shape: tuple[int, ...]) -> ClassifierAutoencoder:
    return ClassifierAutoencoder(cfg, input_shape)
