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

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from ..config import ModelConfig
from ..errors import ConfigError, DataError
from ._registry import register_model
from .base import Autoencoder, LossOutput, glorot_init, reconstruction_loss
from .conv import conv_sizes


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
    log_extra_metrics = True  # the training loop logs validation accuracy every epoch

    def __init__(self, cfg: ModelConfig, input_shape: tuple[int, ...]):
        super().__init__(cfg, input_shape)
        if len(input_shape) != 3:
            raise ConfigError(f"model.name: 'classifier-ae' needs image data shaped (C, H, W), got samples shaped {tuple(input_shape)}")
        c, h, w = input_shape
        n = len(cfg.channels)
        if n < 1:
            raise ConfigError("model.channels: the classifier needs at least one conv block")
        sizes = conv_sizes((h, w), n)
        for i, s in enumerate(sizes[:-1]):
            if min(s) < 2:
                raise ConfigError(f"model.channels: {n} pooling blocks do not fit a {h}x{w} image "
                                  f"(it is {s[0]}x{s[1]} before block {i + 1}); use at most {i} blocks")
        for key, k in [("model.tap", cfg.tap)] + [(f"model.probe_taps[{i}]", t) for i, t in enumerate(cfg.probe_taps)]:
            if not 1 <= k <= n:
                raise ConfigError(f"{key}: must name a pooling block between 1 and {n} (len(model.channels)), got {k}")
        if cfg.tap in cfg.probe_taps:
            raise ConfigError(f"model.probe_taps: {cfg.tap} is already model.tap; probe other depths")
        convs = _per_block(cfg.convs_per_block, n, "model.convs_per_block", int)
        drops = _per_block(cfg.dropout, n, "model.dropout", float)
        for i, (nc, dr) in enumerate(zip(convs, drops)):
            if nc == 1 and dr > 0:
                raise ConfigError(f"model.dropout: block {i + 1} has one conv, and dropout goes between the convs of a "
                                  f"block (none before a pool, as in cifar-vgg); set its rate to 0 or model.convs_per_block >= 2")
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
        self.probes = nn.ModuleDict({str(k): _recon_head(cfg.channels[k - 1], c, (h, w), cfg.kernel_size)
                                     for k in self.probe_taps})
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
        if splits.y_train is None:
            raise DataError(f"data.name: the classifier autoencoder needs class labels, and {splits.name} has none; "
                            "use a labelled dataset (mnist, fashion-mnist, cifar10, a folder of class sub-folders)")
        top = int(np.max(splits.y_train)) if len(splits.y_train) else -1
        for y in (splits.y_test, splits.y_val):
            if y is not None and len(y):
                top = max(top, int(np.max(y)))
        if top >= self.num_classes:
            raise ConfigError(f"model.num_classes: labels go up to {top} but model.num_classes is {self.num_classes}; "
                              f"set model.num_classes={top + 1}")

    def compute_loss(self, x: torch.Tensor, target: torch.Tensor, y: torch.Tensor | None, loss: str,
                     epoch: int = 0) -> LossOutput:
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

    # -- evaluation -------------------------------------------------------------
    @torch.no_grad()
    def predict(self, x, batch_size: int = 1024) -> np.ndarray:
        """Predicted class of every sample (eval mode, in batches)."""
        from ..evaluate.evaluate import batches

        was = self.training
        self.eval()
        try:
            return torch.cat([self.classify(b).argmax(1).cpu() for b in batches(x, batch_size, self.device)]).numpy()
        finally:
            self.train(was)

    @torch.no_grad()
    def probe_reconstructions(self, x, batch_size: int = 1024) -> dict[int, np.ndarray]:
        """Reconstructions (after the output activation) from every tap depth, main tap included."""
        from ..evaluate.evaluate import batches

        was = self.training
        self.eval()
        out: dict[int, list[torch.Tensor]] = {k: [] for k in [self.tap, *self.probe_taps]}
        act = torch.sigmoid if self.output_activation == "sigmoid" else (lambda t: t)
        try:
            for b in batches(x, batch_size, self.device):
                _, logits, probes = self.outputs(b)
                out[self.tap].append(act(logits.float()).cpu())
                for k, p in probes.items():
                    out[k].append(act(p.float()).cpu())
        finally:
            self.train(was)
        return {k: torch.cat(v).numpy() for k, v in out.items()}

    def extra_metrics(self, x, y) -> dict[str, float]:
        """Accuracy (when labels are given) and the MSE of each probe's reconstruction."""
        res: dict[str, float] = {}
        if y is not None and len(y):
            res["accuracy"] = float((self.predict(x) == np.asarray(y)).mean())
        if self.probe_taps:
            recs = self.probe_reconstructions(x)
            xs = np.asarray(x, dtype=np.float32)
            for k in self.probe_taps:
                res[f"mse_tap{k}"] = float(((recs[k] - xs) ** 2).mean())
        return res

    def report_figures(self, splits, n: int = 10) -> list:
        """Test images and their reconstructions from each tap depth, plus per-class accuracy."""
        from matplotlib.figure import Figure

        from ..report.images import grid

        x = splits.x_test[:n]
        recs = self.probe_reconstructions(x)
        depths = sorted(recs)
        rows = [("input", x)] + [(f"block {k}" + (" (tap)" if k == self.tap else " (probe)"), recs[k]) for k in depths]
        fig = Figure(figsize=(n * 0.9 + 1.2, 1.0 * len(rows) + 0.3))
        axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
        for ax, (label, imgs) in zip(axes, rows):
            img = grid(imgs, ncols=n)
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        fig.tight_layout()
        shapes = ", ".join(f"block {k}: {'x'.join(map(str, self._tap_shape(k)))}" for k in depths)
        figs = [("classifier_taps", fig,
                 f"Test images reconstructed from the feature maps after pooling blocks {', '.join(map(str, depths))} "
                 f"({shapes}); the tap head is trained with the classifier, probe heads on frozen features.")]
        if splits.y_test is not None:
            figs.append(self._class_accuracy_figure(splits))
        return figs

    def _tap_shape(self, k: int) -> tuple[int, ...]:
        c, h, w = self.input_shape
        sizes = conv_sizes((h, w), k)
        return (self.cfg.channels[k - 1], *sizes[-1])

    def _class_accuracy_figure(self, splits):
        from matplotlib.figure import Figure

        y = np.asarray(splits.y_test)
        pred = self.predict(splits.x_test)
        classes = splits.classes or [str(i) for i in range(self.num_classes)]
        acc = [float((pred[y == i] == i).mean()) if (y == i).any() else np.nan for i in range(self.num_classes)]
        fig = Figure(figsize=(6, 3))
        ax = fig.subplots()
        ax.bar(range(self.num_classes), acc, color="tab:blue")
        ax.set_xticks(range(self.num_classes))
        ax.set_xticklabels([str(c) for c in classes[: self.num_classes]], rotation=45, ha="right", fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_ylabel("test accuracy")
        ax.axhline(float((pred == y).mean()), color="k", lw=0.8, ls="--")
        fig.tight_layout()
        return ("classifier_accuracy", fig, f"Test accuracy per class (dashed: overall {float((pred == y).mean()):.4f}).")


@register_model("classifier-ae", "VGG-style classifier with a reconstruction head on a chosen pooling block (seed 002)")
def build_classifier(cfg: ModelConfig, input_shape: tuple[int, ...]) -> ClassifierAutoencoder:
    return ClassifierAutoencoder(cfg, input_shape)
