"""`aelab explore`: one self-contained HTML page where a run's encoder and decoder run in the browser.

The page holds the weights (float32, base64), some test images (uint8), the 2-D maps of their
codes (computed here: PCA, and t-SNE unless asked not to), which test images excite each
first-layer unit most, and the run's anomaly threshold when `aelab score RUN` has set one.
Everything else (encode, decode, sliders, paths, VAE grids) is computed by the page itself.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .._io import atomic_write_text
from ..errors import ConfigError, RunError
from ..evaluate.evaluate import encode_array
from ..report import i18n
from ..report.collect import project_2d, sample_indices
from .export import Exported, Unsupported, check_parity, export_model

MAPS = ("pca", "tsne")
DEFAULT_POINTS = 1000  # test images in the page: the map's points, the strip, the weights' top images
TOP_IMAGES = 8
PARITY_SAMPLES = 32  # the exporter's own check before writing (the browser test checks 100)


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def _load(run_or_path):
    from ..run import Run, load_run

    return run_or_path if isinstance(run_or_path, Run) else load_run(run_or_path)


def _threshold(run) -> dict | None:
    """The threshold `aelab score RUN` wrote to anomaly.json, if any."""
    f = run.path / "anomaly.json"
    if not f.is_file():
        return None
    try:
        d = json.loads(f.read_text())
        return {"metric": str(d["metric"]), "threshold": float(d["threshold"]), "quantile": float(d["quantile"])}
    except (ValueError, KeyError, TypeError):
        return None  # a damaged anomaly.json: the page shows the score without a threshold


def _score_metric(run, threshold: dict | None) -> str:
    """The threshold's metric, else what `aelab score` picks by default (the family's declared default
    anomaly score, else the run's training loss)."""
    from ..models import capabilities

    if threshold is not None:
        return threshold["metric"]
    return capabilities(run.model).default_anomaly_score or run.config.train.loss


def _code_ranges(z: np.ndarray, vae: bool) -> tuple[list[float], list[float]]:
    """Slider ranges per code value: the test codes' range plus a margin (a VAE: at least -3..3)."""
    zf = z.reshape(len(z), -1).astype(np.float64)
    lo, hi = zf.min(0), zf.max(0)
    pad = np.maximum(0.15 * (hi - lo), 1e-3)
    lo, hi = lo - pad, hi + pad
    if vae:
        lo, hi = np.minimum(lo, -3.0), np.maximum(hi, 3.0)
    return [round(float(v), 5) for v in lo], [round(float(v), 5) for v in hi]


def _linear_map(z: np.ndarray, pts: np.ndarray) -> list[list[float]] | None:
    """(D + 1, 2) matrix A with [z, 1] @ A = the PCA points, so the page can place any code on the map
    (the code being drawn or edited); None if no linear map reproduces the points."""
    za = np.column_stack([z.astype(np.float64), np.ones(len(z))])
    a = np.linalg.lstsq(za, pts.astype(np.float64), rcond=None)[0]
    err = np.abs(za @ a - pts).max()
    scale = max(float(np.abs(pts).max()), 1e-12)
    return np.round(a, 7).tolist() if err <= 1e-3 * scale else None


@torch.no_grad()
def _top_images(ex: Exported, x: np.ndarray, k: int = TOP_IMAGES) -> list[list[int]]:
    """For each first-layer unit, the test images with the highest pre-activation (conv: its peak)."""
    op = ex.first_layer
    if op is None:
        return []
    buf = torch.from_numpy(ex.buffer)
    xt = torch.from_numpy(x)
    if op["op"] == "linear":
        w = buf[op["w"] : op["w"] + op["in"] * op["out"]].view(op["out"], op["in"])
        act = xt.reshape(len(x), -1) @ w.T + buf[op["b"] : op["b"] + op["out"]]
    else:
        w = buf[op["wt"] : op["wt"] + op["cout"] * op["cin"] * op["k"] ** 2].view(
            op["cout"], op["cin"], op["k"], op["k"]
        )
        act = F.conv2d(xt, w, buf[op["b"] : op["b"] + op["cout"]], padding=op["pad"]).amax((2, 3))
    return torch.topk(act, min(k, len(x)), dim=0).indices.T.tolist()


def _run_entry(run, xq: np.ndarray, maps: Sequence[str], log: Callable[[str], None]) -> dict:
    cfg = run.config
    entry = {
        "name": cfg.name or run.path.name,
        "path": str(run.path),
        "model": cfg.model.name,
        "description": cfg.description,
        "metrics": {k[5:]: v for k, v in run.summary.items() if k.startswith("test_") and isinstance(v, (int, float))},
        "noise": [{"kind": n.kind, "amount": n.amount, "clip": n.clip} for n in cfg.data.noise],
        "unsupported": None,
    }
    try:
        if run.scaler is not None:
            raise Unsupported("the run standardises its inputs (data.scale=standard); the page draws images in [0, 1]")
        ex = export_model(run.model)
        entry["parity_python"] = check_parity(run.model, ex, xq[:PARITY_SAMPLES])
    except Unsupported as e:
        entry["unsupported"] = str(e)
        return entry
    vae = ex.logvar is not None  # a Gaussian code (mean and log-variance heads): the page's VAE views
    log(f"explore: {entry['name']}: codes of {len(xq)} test images")
    z = encode_array(run.model, xq).reshape(len(xq), -1)
    lo, hi = _code_ranges(z, vae)
    projections = {}
    for m in maps:
        log(f"explore: {entry['name']}: {m} map")
        pts, used, note = project_2d(z, m, max_points=len(z))
        projections[m] = {"points": np.round(pts, 4).tolist(), "note": note}
        if m == "pca":
            projections[m]["linear"] = _linear_map(z, pts)
    thr = _threshold(run)
    first = ex.first_layer
    entry.update(
        {
            "vae": vae,
            "likelihood": getattr(run.model, "likelihood", None),
            "log_sigma": float(run.model.log_sigma)
            if vae and getattr(run.model, "likelihood", "") == "gaussian"
            else None,
            "code_shape": list(ex.code_shape),
            "input_shape": list(ex.input_shape),
            "encoder": ex.encoder,
            "decoder": ex.decoder,
            "logvar": ex.logvar,
            "trunk_len": ex.trunk_len,
            "weights": _b64(ex.buffer),
            "code_lo": lo,
            "code_hi": hi,
            "maps": projections,
            "first_layer": first,
            "top_images": _top_images(ex, xq),
            "anomaly": thr,
            "score_metric": _score_metric(run, thr),
        }
    )
    return entry


def build_page_data(
    runs: Sequence, points: int = DEFAULT_POINTS, maps: Sequence[str] = MAPS, log: Callable[[str], None] | None = None
) -> dict:
    """Everything the page's script reads, as one JSON-able dict."""
    say = log or (lambda s: None)
    if not 1 <= len(runs) <= 2:
        raise ConfigError(f"explore: give one run, or two to compare side by side; got {len(runs)}")
    for m in maps:
        if m not in MAPS:
            raise ConfigError(f"--map: must be one of {', '.join(MAPS)}; got '{m}'")
    if points < 10:
        raise ConfigError(f"--points: must be at least 10, got {points}")
    loaded = [_load(r) for r in runs]
    shapes = [tuple(r.model.input_shape) for r in loaded]
    if len(set(shapes)) > 1:
        raise RunError(
            f"explore: the runs take different inputs ({' vs '.join('x'.join(map(str, s)) for s in shapes)}); "
            "side by side needs the same input shape"
        )
    say(f"explore: loading the test split of {loaded[0].path}")
    splits = loaded[0].load_data()
    n = min(points, len(splits.x_test))
    x = np.asarray(splits.x_test[:n], dtype=np.float32)
    if x.ndim != 4:
        raise Unsupported(
            f"explore: {loaded[0].path}: the page draws images, and this run's samples are vectors "
            f"shaped {tuple(x.shape[1:])}"
        )
    u8 = np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
    xq = u8.astype(np.float32) / 255.0  # exactly what the page decodes from its bytes
    y = None if splits.y_test is None else np.asarray(splits.y_test[:n]).astype(int)
    strip = sample_indices(y, 10).tolist()
    strip += [i for i in range(min(n, 40)) if i not in strip][: 20 - len(strip)]
    entries = [_run_entry(r, xq, maps, say) for r in loaded]
    if all(e["unsupported"] for e in entries):  # nothing would run: say why instead of writing an empty page
        raise Unsupported(
            "; ".join(f"{e['path']}: the page cannot run this model: {e['unsupported']}" for e in entries)
        )
    return {
        "strings": i18n.table(),
        "input_shape": list(x.shape[1:]),
        "images": _b64(u8),
        "count": n,
        "labels": None if y is None else y.tolist(),
        "classes": splits.classes,
        "strip": [i for i in strip if i < n],
        "runs": entries,
    }


def render_page(data: dict) -> str:
    import jinja2

    folder = resources.files("aelab.explore")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string((folder / "templates" / "explore.html.j2").read_text(encoding="utf-8"))
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False)
    payload = payload.replace("</", "<\\/")  # the JSON sits inside a <script> element
    return template.render(
        title=" | ".join(r["name"] for r in data["runs"]),
        css=(folder / "static" / "explore.css").read_text(encoding="utf-8"),
        engine=(folder / "static" / "engine.js").read_text(encoding="utf-8"),
        app=(folder / "static" / "app.js").read_text(encoding="utf-8"),
        payload=payload,
    )


def write_explorer(
    runs: Sequence,
    out: str | Path | None = None,
    points: int = DEFAULT_POINTS,
    maps: Sequence[str] = MAPS,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Writes the explorer page (default RUN/explore.html, or explore.html for two runs) and returns its path."""
    runs = list(runs)
    if out is None:
        out = (
            (Path(runs[0].path if hasattr(runs[0], "path") else runs[0]) / "explore.html")
            if len(runs) == 1
            else Path("explore.html")
        )
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"--output: must end in .html, got '{out}'")
    if out.is_dir():
        raise ConfigError(f"--output: '{out}' is a folder; give a file name like {out / 'explore.html'}")
    data = build_page_data(runs, points, maps, log)
    for r in data["runs"]:
        if r["unsupported"] and log:  # the page says it too, in the run's column
            log(f"explore: {r['path']}: the page cannot run this model: {r['unsupported']}")
    return atomic_write_text(out, render_page(data))
