"""Every picture of a report, as pure functions: arrays in, a matplotlib Figure out, no I/O.

Figures are built with ``matplotlib.figure.Figure`` on an Agg canvas, never
through pyplot, so no global state, no GUI backend and no figure leaks. Their
pixel size is their ``figsize`` times ``DPI`` (no tight bounding box), which
lets tests check it. ``png_bytes``/``gif_bytes`` turn results into bytes; the
caller decides where they go.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .images import grid, to_uint8_images

DPI = 100
LABEL_W = 1.7  # inches kept left of image rows for their labels
CELL = 0.8  # inches per image in image rows


def _snap(inches: float) -> float:
    """A size that is a whole number of pixels, safe from float truncation in Agg."""
    return (round(inches * DPI) + 0.01) / DPI


def new_figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    fig = Figure(figsize=(_snap(width), _snap(height)), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def figure_pixels(fig: Figure) -> tuple[int, int]:
    """(width, height) in pixels the PNG of ``fig`` will have."""
    w, h = fig.get_size_inches()
    return int(w * DPI), int(h * DPI)  # what Agg's canvas does


def is_image_shape(shape: Sequence[int]) -> bool:
    return len(shape) == 3 and shape[0] in (1, 3) and min(shape[1:]) >= 2


def image_rows(
    rows: Sequence[np.ndarray],
    labels: Sequence[str],
    captions: Sequence[Sequence[str] | None] | None = None,
    title: str | None = None,
) -> Figure:
    """Rows of images (each (n, C, H, W) in [0, 1]) with a label left of every row.

    Laid out by hand in inches (one imshow per row, exact pixel aspect), so labels
    never clip and large comparison grids stay fast.
    """
    pad = 2
    w_px = rows[0].shape[-1] + pad
    inch_per_px = CELL / w_px
    strips = [grid(r, ncols=len(r), pad=pad) for r in rows]
    cap_h, gap, top = 0.2, 0.1, (0.4 if title else 0.1)
    heights = [st.shape[0] * inch_per_px + (cap_h if captions and captions[i] else 0) for i, st in enumerate(strips)]
    width = LABEL_W + max(st.shape[1] for st in strips) * inch_per_px + 0.1
    height = top + sum(heights) + gap * len(rows)
    fig = new_figure(width, height, layout=None)
    width, height = fig.get_size_inches()
    y = height - top
    for i, (st, lab) in enumerate(zip(strips, labels)):
        sh, sw = st.shape[0] * inch_per_px, st.shape[1] * inch_per_px
        y -= sh
        ax = fig.add_axes((LABEL_W / width, y / height, sw / width, sh / height))
        ax.imshow(
            st[..., 0] if st.shape[-1] == 1 else st,
            cmap="gray",
            vmin=0,
            vmax=255,
            interpolation="nearest",
            aspect="auto",
        )
        ax.set_axis_off()
        fig.text((LABEL_W - 0.08) / width, (y + sh / 2) / height, lab, ha="right", va="center", fontsize=9)
        if captions and captions[i]:
            for k, c in enumerate(captions[i]):
                cx = LABEL_W + (pad + k * w_px + (w_px - pad) / 2) * inch_per_px
                fig.text(cx / width, (y - 0.03) / height, c, ha="center", va="top", fontsize=7)
            y -= cap_h
        y -= gap
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.05 / height, va="top")
    return fig


def reconstructions(x: np.ndarray, recon: np.ndarray, noisy: np.ndarray | None = None) -> Figure:
    """Originals on top, reconstructions below; a denoising run gets the noisy input in between."""
    if noisy is None:
        return image_rows([x, recon], ["original", "reconstruction"])
    return image_rows([x, noisy, recon], ["clean", "noisy input", "output"])


def best_worst(x: np.ndarray, recon: np.ndarray, mse: np.ndarray, k: int = 8) -> Figure:
    """The k test images the model reconstructs best and worst, with their per-pixel MSE."""
    order = np.argsort(mse, kind="stable")
    best, worst = order[:k], order[::-1][:k]
    fmt = lambda idx: [f"{mse[i]:.4f}" for i in idx]  # noqa: E731
    return image_rows(
        [x[best], recon[best], x[worst], recon[worst]],
        ["best: original", "reconstruction", "worst: original", "reconstruction"],
        [None, fmt(best), None, fmt(worst)],
    )


def progress_strip(
    originals: np.ndarray, frames: np.ndarray, epochs: Sequence[int], max_rows: int = 8, noisy: np.ndarray | None = None
) -> Figure:
    """Reconstructions of the same images after selected epochs (always the first and last)."""
    pick = np.unique(np.linspace(0, len(frames) - 1, min(max_rows, len(frames))).round().astype(int))
    top, labels = ([originals], ["original"]) if noisy is None else ([originals, noisy], ["clean", "noisy input"])
    return image_rows([*top, *frames[pick]], [*labels, *[f"epoch {epochs[i]}" for i in pick]])


def learning_curves(metrics: Sequence[dict], batches: Sequence[dict], loss: str, floor: float | None = None) -> Figure:
    """Per-epoch train/validation loss, and per-batch loss on a log scale, with the BCE floor as a line."""
    fig = new_figure(11, 3.8)
    a1, a2 = fig.subplots(1, 2)
    ep = [r["epoch"] for r in metrics]
    a1.plot(ep, [r["train_loss"] for r in metrics], "o-", label="train (mean over the epoch's batches)")
    val = [r.get("val_loss") for r in metrics]
    if any(v is not None for v in val):
        a1.plot(ep, val, "s-", label="validation (after the epoch)")
    a1.set_xlabel("epoch")
    a1.set_ylabel(f"{loss} per value")
    a1.set_title("loss per epoch", fontsize=10)
    a1.xaxis.set_major_locator(MaxNLocator(integer=True))
    if batches:
        step = np.array([b["step"] for b in batches])
        bl = np.array([b["loss"] for b in batches])
        a2.plot(step, bl, lw=0.6, alpha=0.45, color="C0", label="batch")
        win = max(1, len(bl) // 50)
        if win > 1:
            smooth = np.convolve(bl, np.ones(win) / win, mode="valid")
            a2.plot(step[win - 1 :], smooth, lw=1.5, color="C0", label=f"mean of {win} batches")
        a2.set_yscale("log")
        lo, hi = float(bl[np.isfinite(bl)].min()), float(bl[np.isfinite(bl)].max())
        a2.set_ylim(lo / 1.15, hi * 1.15)
        a2.set_xlabel("batch")
        a2.set_ylabel(f"{loss} (log scale)")
        a2.set_title("loss per batch", fontsize=10)
    else:
        a2.set_axis_off()
    if floor is not None:
        a1.axhline(floor, color="k", ls="--", lw=1, label=f"BCE floor {floor:.4f}")
        if a2.axison:
            below = floor < a2.get_ylim()[0]
            a2.axhline(
                max(floor, a2.get_ylim()[0]),
                color="k",
                ls="--",
                lw=1,
                label=f"BCE floor {floor:.4f}" + (" (below this axis)" if below else ""),
            )
    for ax in (a1, a2):
        if ax.axison:
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    return fig


def _mosaic(w: np.ndarray, ncols: int) -> np.ndarray:
    """(n, C, H, W) -> one (rows*(H+1), cols*(W+1), C) float array, NaN between tiles."""
    n, c, h, wd = w.shape
    rows = -(-n // ncols)
    out = np.full((rows * (h + 1) - 1, ncols * (wd + 1) - 1, c), np.nan, dtype=np.float32)
    for i in range(n):
        r, k = divmod(i, ncols)
        out[r * (h + 1) : r * (h + 1) + h, k * (wd + 1) : k * (wd + 1) + wd] = w[i].transpose(1, 2, 0)
    return out


def weight_tiles(w: np.ndarray, title: str, max_tiles: int = 100) -> Figure:
    """Weights (units, C, H, W) as tiles sharing one colour scale, symmetric around zero."""
    w = np.asarray(w, dtype=np.float32)
    shown = w[:max_tiles]
    ncols = int(np.ceil(np.sqrt(len(shown))))
    m = float(np.abs(shown).max()) or 1.0
    mos = _mosaic(shown, ncols)
    side = float(np.clip(0.025 * max(mos.shape[:2]), 2.5, 6.4))
    fig = new_figure(side * mos.shape[1] / max(mos.shape[:2]) + 1.4, side + 0.4)
    ax = fig.subplots()
    if mos.shape[-1] == 3:  # colour filters: map [-m, m] to [0, 1] in every channel
        ax.imshow(np.nan_to_num((mos + m) / (2 * m), nan=1.0), interpolation="nearest")
    else:
        cmap = __import__("matplotlib").colormaps["gray"].with_extremes(bad="#f4f4f4")
        im = ax.imshow(mos[..., 0], cmap=cmap, vmin=-m, vmax=m, interpolation="nearest")
        fig.colorbar(im, ax=ax, shrink=0.8, label="weight")
    ax.set_axis_off()
    more = f" (first {len(shown)} of {len(w)})" if len(w) > len(shown) else f" ({len(w)})"
    ax.set_title(title + more, fontsize=10)
    return fig


def _bars(ax, values: np.ndarray, color: str) -> None:
    """Bars for a few values; one filled step outline for many (hundreds of bar patches draw slowly)."""
    if len(values) <= 100:
        ax.bar(np.arange(len(values)), values, width=0.8, color=color)
    else:
        ax.stairs(values, np.arange(len(values) + 1) - 0.5, fill=True, color=color, baseline=0)


def code_values(code: np.ndarray, image: np.ndarray | None = None, recon: np.ndarray | None = None) -> Figure:
    """One image's code: its values as bars (and as numbers when they fit), next to the image."""
    code = np.asarray(code, dtype=np.float32).ravel()
    fig = new_figure(11, 3.6)
    if image is not None:
        sub = fig.subfigures(1, 2, width_ratios=[1, 4.2])
        left, right = sub
        ax_img = left.subplots(2, 1) if recon is not None else [left.subplots()]
        for ax, im, lab in zip(ax_img, [image, recon], ["input", "decoded"]):
            g = to_uint8_images(im[None])[0]
            ax.imshow(g[..., 0] if g.shape[-1] == 1 else g, cmap="gray", vmin=0, vmax=255)
            ax.set_title(lab, fontsize=8)
            ax.set_axis_off()
        ax = right.subplots()
    else:
        ax = fig.subplots()
    idx = np.arange(len(code))
    _bars(ax, code, "C0")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("code unit")
    ax.set_ylabel("value")
    ax.set_title(f"code of one test image ({len(code)} values, mean {code.mean():.3f})", fontsize=10)
    if len(code) <= 48:
        ax.set_xticks(idx)
        ax.tick_params(axis="x", labelsize=7)
        top = float(max(code.max(), 0))
        for i, v in enumerate(code):
            ax.text(i, max(v, 0) + 0.02 * (top or 1), f"{v:.2f}", rotation=90, ha="center", va="bottom", fontsize=6)
        ax.set_ylim(top=(top or 1) * 1.35 if top > 0 else None)
    ax.grid(axis="y", alpha=0.3)
    return fig


def feature_maps(maps: np.ndarray, image: np.ndarray | None = None) -> Figure:
    """A conv code (C, h, w): one small image per channel, one shared colour scale."""
    maps = np.asarray(maps, dtype=np.float32)
    c, h, w = maps.shape
    ncols = min(c, 8)
    mos = _mosaic(maps[:, None], ncols)
    tile = 1.0  # inches per map
    nrows = -(-c // ncols)
    left = 1.5 if image is not None else 0.0
    fig = new_figure(left + ncols * tile + 1.0, nrows * tile + 0.7, layout=None)
    W, H = fig.get_size_inches()
    ax = fig.add_axes((left / W, 0.15 / H, ncols * tile / W, nrows * tile / H))
    cmap = __import__("matplotlib").colormaps["viridis"].with_extremes(bad="white")
    im = ax.imshow(mos[..., 0], cmap=cmap, interpolation="nearest", aspect="auto")
    for i in range(c):
        r, k = divmod(i, ncols)
        ax.text(k * (w + 1) + w / 2 - 0.5, r * (h + 1) - 0.6, f"ch {i}", ha="center", va="bottom", fontsize=7)
    ax.set_axis_off()
    cax = fig.add_axes(((left + ncols * tile + 0.2) / W, 0.15 / H, 0.15 / W, nrows * tile / H))
    fig.colorbar(im, cax=cax)
    if image is not None:
        ia = fig.add_axes((0.15 / W, 0.15 / H, min(1.1, nrows * tile) / W, min(1.1, nrows * tile) / H))
        g = to_uint8_images(image[None])[0]
        ia.imshow(g[..., 0] if g.shape[-1] == 1 else g, cmap="gray", vmin=0, vmax=255)
        ia.set_title("input", fontsize=8)
        ia.set_axis_off()
    fig.suptitle(f"code feature maps: {c} channels of {h}x{w}", fontsize=10, y=1 - 0.05 / H, va="top")
    return fig


def code_mean(codes: np.ndarray) -> Figure:
    """Mean activation of every code unit over the test set, and the overall mean (seed 004's number)."""
    codes = np.asarray(codes, dtype=np.float32).reshape(len(codes), -1)
    per_unit = codes.mean(0)
    overall = float(codes.mean())
    dead = float((np.abs(codes).max(0) < 1e-6).mean())
    fig = new_figure(11, 3.2)
    ax = fig.subplots()
    _bars(ax, per_unit, "C2")
    ax.axhline(overall, color="k", ls="--", lw=1, label=f"mean over units and images {overall:.3f}")
    ax.set_xlabel("code unit")
    ax.set_ylabel("mean activation")
    ax.set_title(f"mean code activation over {len(codes)} test images; {dead:.0%} of units never active", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


def latent_scatter(
    points: np.ndarray, labels: np.ndarray | None, classes: Sequence[str] | None, method: str, note: str = ""
) -> Figure:
    """Test codes projected to 2-D, one colour per label."""
    fig = new_figure(7.5, 6)
    ax = fig.subplots()
    size = 14 if len(points) < 1000 else 4 if len(points) < 5000 else 2
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=size, alpha=0.6)
    else:
        cmap = __import__("matplotlib").colormaps["tab10" if labels.max() < 10 else "tab20"]
        for k in np.unique(labels):
            sel = labels == k
            name = classes[k] if classes is not None and k < len(classes) else str(k)
            ax.scatter(points[sel, 0], points[sel, 1], s=size, alpha=0.6, color=cmap(int(k) % cmap.N), label=name)
        ax.legend(fontsize=8, markerscale=8 / size**0.5, loc="best", framealpha=0.8)
    ax.set_xlabel(f"{method} 1")
    ax.set_ylabel(f"{method} 2")
    ax.set_title(f"test codes in 2-D ({method}{', ' + note if note else ''})", fontsize=10)
    ax.grid(alpha=0.3)
    return fig


def compare_curves(runs: Sequence[tuple[str, Sequence[dict]]], loss: str, floor: float | None = None) -> Figure:
    """Validation and train loss per epoch of several runs on shared axes."""
    fig = new_figure(11, 4)
    a1, a2 = fig.subplots(1, 2, sharey=True)
    for i, (name, rows) in enumerate(runs):
        ep = [r["epoch"] for r in rows]
        a1.plot(ep, [r.get("val_loss", np.nan) for r in rows], "o-", ms=3, color=f"C{i % 10}", label=name)
        a2.plot(ep, [r["train_loss"] for r in rows], "o-", ms=3, color=f"C{i % 10}", label=name)
    for ax, t in ((a1, "validation loss"), (a2, "train loss")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if floor is not None:
            ax.axhline(floor, color="k", ls="--", lw=1, label=f"BCE floor {floor:.4f}")
        ax.set_title(t, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    a1.set_ylabel(f"{loss} per value")
    a1.legend(fontsize=8)
    return fig


def gif_bytes(
    originals: np.ndarray,
    frames: np.ndarray,
    epochs: Sequence[int],
    scale: int = 3,
    ms_per_frame: int = 600,
    noisy: np.ndarray | None = None,
) -> bytes:
    """An animated GIF: originals (and noisy inputs) on top, the reconstruction after each epoch below (PIL only)."""
    from PIL import Image, ImageDraw

    band = 14
    pics = []
    top = [originals] if noisy is None else [originals, noisy]
    what = "top: original" if noisy is None else "top: clean, noisy input"
    for f, e in zip(frames, epochs):
        g = grid(np.concatenate([*top, f]), ncols=len(originals))
        g = g[..., 0] if g.shape[-1] == 1 else g
        im = Image.fromarray(g).convert("RGB")
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
        canvas = Image.new("RGB", (im.width, im.height + band), "white")
        canvas.paste(im, (0, band))
        ImageDraw.Draw(canvas).text((4, 1), f"epoch {e} ({what}; bottom: reconstruction)", fill=(0, 0, 0))
        pics.append(canvas.convert("P", palette=Image.ADAPTIVE))
    buf = io.BytesIO()
    durations = [ms_per_frame] * (len(pics) - 1) + [ms_per_frame * 3]  # linger on the last epoch
    pics[0].save(buf, format="GIF", save_all=True, append_images=pics[1:], duration=durations, loop=0)
    return buf.getvalue()


def gif_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a GIF header."""
    return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
