"""Report pages: the only place that writes report.html, compare.html and figures/.

Pages are one self-contained file each: images inlined as base64 PNG/GIF,
CSS inline, system fonts, no scripts, nothing fetched from the network.
"""
from __future__ import annotations

import base64
import html
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .._io import atomic_write_bytes, atomic_write_text, write_json
from ..errors import RunError
from ..evaluate.metrics import entropy_floor
from . import collect as C
from . import figures as F

esc = html.escape


@dataclass
class Picture:
    stem: str  # file name in figures/ without extension
    data: bytes
    caption: str
    section: str
    mime: str = "image/png"
    width: int = 0
    height: int = 0

    @property
    def filename(self) -> str:
        return self.stem + (".gif" if self.mime == "image/gif" else ".png")


def picture(stem: str, fig, caption: str, section: str) -> Picture:
    w, h = F.figure_pixels(fig)
    return Picture(stem, F.png_bytes(fig), caption, section, "image/png", w, h)


# -- page building blocks --------------------------------------------------

CSS = """
:root{--fg:#1d2430;--muted:#5b6573;--line:#d9dee5;--bg:#fff;--band:#f5f7fa;--accent:#2458a6}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",sans-serif}
main{max-width:1140px;margin:0 auto;padding:20px 24px 60px}
h1{font-size:1.6rem;margin:.2em 0 .1em}
h2{font-size:1.2rem;margin:1.8em 0 .5em;padding-bottom:.2em;border-bottom:1px solid var(--line)}
.sub{color:var(--muted);margin:0 0 1em}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0}
.card{background:var(--band);border:1px solid var(--line);border-radius:8px;padding:8px 14px;min-width:128px}
.card b{display:block;font-size:1.25rem;font-variant-numeric:tabular-nums}
.card span{color:var(--muted);font-size:.82rem}
.card small{color:var(--muted);display:block;font-size:.75rem}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;font-size:.9rem}
th,td{padding:4px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:var(--band);font-weight:600}
td.num,th.num{text-align:right}
tbody tr:nth-child(even){background:#fafbfc}
.wide{overflow-x:auto;max-width:100%}
figure{margin:18px 0 26px}
figure img{max-width:100%;height:auto;border:1px solid var(--line);border-radius:6px;background:#fff}
figcaption{color:var(--muted);font-size:.9rem;margin-top:4px}
pre{background:var(--band);border:1px solid var(--line);border-radius:6px;padding:10px 12px;overflow-x:auto;font-size:.82rem;
  font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace}
details{margin:10px 0}
summary{cursor:pointer;color:var(--accent)}
.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(210px,1fr));gap:2px 18px;margin:12px 0;font-size:.9rem}
.facts div{border-bottom:1px solid var(--line);padding:3px 0;overflow-wrap:anywhere}
.facts span{color:var(--muted);display:inline-block;min-width:92px}
.two{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:24px}
@media (max-width:900px){.two{grid-template-columns:1fr}}
.note{color:var(--muted);font-size:.85rem}
nav a{color:var(--accent);margin-right:12px;font-size:.9rem;text-decoration:none}
"""


def data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def img_tag(p: Picture) -> str:
    size = f' width="{p.width}" height="{p.height}"' if p.width else ""
    return f'<img src="{data_uri(p.mime, p.data)}" alt="{esc(p.caption)}"{size}>'


def figure_html(p: Picture) -> str:
    return f'<figure id="{esc(p.stem)}">{img_tag(p)}<figcaption>{esc(p.caption)}</figcaption></figure>'


def page(title: str, body: str) -> str:
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body><main>\n{body}\n</main></body></html>\n")


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[bool] | None = None) -> str:
    numeric = numeric or [False] * len(header)
    th = "".join(f'<th class="num">{esc(h)}</th>' if n else f"<th>{esc(h)}</th>" for h, n in zip(header, numeric))
    body = []
    for r in rows:
        tds = "".join(f'<td class="num">{esc(fmt(v))}</td>' if n else f"<td>{esc(fmt(v))}</td>" for v, n in zip(r, numeric))
        body.append(f"<tr>{tds}</tr>")
    return f'<div class="wide"><table><thead><tr>{th}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v != v:
            return "-"
        if v == 0:
            return "0"
        return f"{v:.4f}" if 1e-3 <= abs(v) < 1e4 else f"{v:.3g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(fmt(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {fmt(x)}" for k, x in v.items()) + "}"
    return str(v)


def facts_grid(items: Sequence[tuple[str, Any]]) -> str:
    cells = "".join(f"<div><span>{esc(k)}</span> {esc(fmt(v))}</div>" for k, v in items)
    return f'<div class="facts">{cells}</div>'


def card(label: str, value: Any, note: str = "") -> str:
    small = f"<small>{esc(note)}</small>" if note else ""
    return f'<div class="card"><span>{esc(label)}</span><b>{esc(fmt(value))}</b>{small}</div>'


# -- metrics shown in headers and tables -------------------------------------

# (summary key, label): BCE is always followed by its floor and the distance to it, then MSE and PSNR; a run
# shows only those its summary has (evaluate.data_metrics: no BCE/PSNR on standardised data, R^2 and RMSE there)
METRICS = [("test_loss", "test loss"), ("test_bce", "test BCE"), ("test_bce_floor", "BCE floor"),
           ("test_bce_above_floor", "BCE above floor"), ("test_mse", "test MSE"), ("test_rmse", "test RMSE"),
           ("test_r2", "test R²"), ("test_psnr", "test PSNR (dB)"), ("test_psnr_peak", "PSNR peak")]
PER_FEATURE = "test_rmse_per_feature"  # a list: shown as its own line, not a card or a table column


def read_probe(run_dir: Path) -> dict[str, Any]:
    """probe.json written by `aelab probe`, when present; a broken file is reported, not fatal."""
    f = run_dir / "probe.json"
    if not f.is_file():
        return {}
    try:
        d = json.loads(f.read_text())
    except (OSError, ValueError):
        return {"probe.json": "unreadable"}
    return d if isinstance(d, dict) else {}


PROBE_SUFFIXES = ("accuracy", "auc", "error")


def probe_values(probe: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of probe.json (accuracies, AUCs); the whole file is shown in the run report."""
    return {k: v for k, v in probe.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k.endswith(PROBE_SUFFIXES)}


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_facts(cfg, summary: dict[str, Any]) -> list[tuple[str, Any]]:
    m, t, d = cfg.model, cfg.train, cfg.data
    facts = [("model", m.name), ("data", summary.get("data", d.name))]
    if m.name.startswith(("dense", "vae-dense")) or not m.name.startswith(("conv", "vae-conv")):
        dec = list(reversed(m.hidden)) if m.decoder_hidden is None else m.decoder_hidden
        facts.append(("layers", "-".join(map(str, ["in", *m.hidden, m.code_dim, *dec, "out"]))))
    else:
        facts.append(("channels", m.channels))
    facts += [("code shape", summary.get("code_shape")), ("activation", m.activation),
              ("output", m.output_activation), ("loss", t.loss), ("optimizer", t.optimizer),
              ("lr", t.lr if t.lr is not None else "default"), ("batch size", t.batch_size),
              ("epochs", summary.get("epochs", t.epochs)), ("parameters", summary.get("parameters"))]
    if d.noise:
        facts.append(("noise", ", ".join(f"{n.kind} {n.amount:g}" for n in d.noise)))
    for k in ("dropout", "l1", "sparsity_target", "tied", "batch_norm"):
        v = getattr(m, k, None)
        if v not in (None, 0, 0.0, False, []):
            facts.append((k, v))
    if summary.get("seconds_per_epoch") is not None:
        facts.append(("s / epoch", f"{summary['seconds_per_epoch']:.2f} ({summary.get('device', '?')})"))
    return facts


def summary_rows(model) -> list[tuple[str, str, int]]:
    from ..models import summarize

    rows = [("input", str((None, *model.input_shape)), 0)]
    rows += [(f"{r.name} ({r.kind})", str((None, *r.output_shape)), r.params) for r in summarize(model)]
    return rows


# -- the run report -------------------------------------------------------------

def _load(run_or_path):
    from ..run import Run, load_run

    return run_or_path if isinstance(run_or_path, Run) else load_run(run_or_path)


def run_pictures(run, splits, latent: str = "pca", log: Callable[[str], None] | None = None) -> tuple[list[Picture], dict]:
    """Every figure of a run's report, plus the numbers the page prints beside them."""
    say = log or (lambda s: None)
    cfg, model = run.config, C.bare(run.model)
    model.eval()
    x_test, y_test = splits.x_test, splits.y_test
    images = F.is_image_shape(x_test.shape[1:])
    facts: dict[str, Any] = {}
    pics: list[Picture] = []
    idx = C.sample_indices(y_test, 10)
    xs = np.asarray(x_test[idx], dtype=np.float32)

    say("report: reconstructions")
    mse, recon_all = C.errors(model, x_test, cfg.train.loss)
    rec, noisy = C.reconstruct_samples(model, xs, cfg.data.noise)
    facts["mse"] = float(mse.mean())
    if images:
        cap = ("Clean test images, the noisy input the model was given (the training corruption), and its output."
               if noisy is not None else
               "Top: test images (the first of each class); below: what the model gives back. Look at what is lost: texture, prints, thin strokes.")
        pics.append(picture("reconstructions", F.reconstructions(xs, rec, noisy), cap, "Reconstructions"))
        prog = _progress(run.path)
        if prog is not None:
            ep = [int(e) for e in prog["epochs"]]
            gif = F.gif_bytes(prog["originals"], prog["frames"], ep, noisy=prog.get("noisy"))
            gw, gh = F.gif_size(gif)
            pics.append(Picture("progress", gif, f"The same images after each of {len(ep)} epochs (animated; the last frame stays longer).",
                                "Reconstructions", "image/gif", gw, gh))
            pics.append(picture("progress_strip", F.progress_strip(prog["originals"], prog["frames"], ep, noisy=prog.get("noisy")),
                                "The same images after selected epochs, top to bottom: how the reconstructions sharpen.",
                                "Reconstructions"))
        pics.append(picture("best_worst", F.best_worst(np.asarray(x_test), recon_all, mse),
                            f"The 8 test images reconstructed best and worst, with their per-pixel MSE (mean over the test set {mse.mean():.4f}).",
                            "Reconstructions"))

    say("report: learning curves")
    floor = None
    if cfg.train.loss == "bce" and run.scaler is None:
        floor = entropy_floor(splits.validation[0])
    if run.metrics:
        cap = "Left: mean train loss per epoch and validation loss after it. Right: every batch's loss, log scale."
        if floor is not None:
            cap += f" Dashed: the BCE floor {floor:.4f} of the validation images, which no model can go below."
        pics.append(picture("learning_curves", F.learning_curves(run.metrics, run.batches, cfg.train.loss, floor), cap, "Training"))

    say("report: weights")
    if images:
        if hasattr(model, "first_layer_weights"):
            w = model.first_layer_weights().float().cpu().numpy()
            if w.ndim == 4:
                conv = tuple(w.shape[1:]) != tuple(model.input_shape)
                cap = ("First conv layer's filters, one tile per filter, one shared colour scale (grey 0 = no effect)."
                       if conv else "First layer's weights, one tile per unit, reshaped to the image; one colour scale, grey = 0. "
                       "Stroke- and blob-like tiles are learned features, noise-like tiles are units that learned little.")
                pics.append(picture("weights_first", F.weight_tiles(w, "first layer weights"), cap, "Weights"))
        if hasattr(model, "last_layer_weights"):
            w = model.last_layer_weights().float().cpu().numpy()
            pics.append(picture("weights_last", F.weight_tiles(w, "last layer weights, transposed"),
                                "Output layer's weights, transposed: the image each unit before the output adds; same kind of scale.",
                                "Weights"))

    say("report: codes")
    z_all = C.codes(model, x_test)
    z0 = z_all[idx[0]]
    facts["code_example"] = z0
    facts["code_mean"] = float(z_all.mean())
    pics.append(picture("code", F.code_values(z0.ravel(), xs[0] if images else None, rec[0] if images else None),
                        f"The code of one test image: {z0.size} numbers, all the decoder gets (listed below the figure).",
                        "Codes"))
    if z_all.ndim == 4:
        pics.append(picture("code_maps", F.feature_maps(z0, xs[0] if images else None),
                            "That image's code as feature maps, one per channel, one shared colour scale.", "Codes"))
    pics.append(picture("code_mean", F.code_mean(z_all),
                        "Mean activation of each code unit over the test set, and overall; a sparsity penalty pushes it down.",
                        "Codes"))
    if len(z_all) >= 3:
        say(f"report: latent space ({latent})")
        pts, used, note = C.project_2d(z_all, latent)
        labels = None if y_test is None else np.asarray(y_test)[used]
        pics.append(picture("latent", F.latent_scatter(pts, labels, splits.classes, latent.upper() if latent != "tsne" else "t-SNE", note),
                            "Test codes in 2-D, coloured by label: classes the code tells apart form separate clusters.",
                            "Latent space"))

    if hasattr(model, "report_figures"):
        say("report: model figures")
        for stem, fig, caption in model.report_figures(splits):
            pics.append(picture(str(stem), fig, caption, "Model"))
    return pics, facts


def _progress(run_dir: Path):
    from .hooks import PROGRESS_FILE, load_progress

    f = run_dir / PROGRESS_FILE
    return load_progress(f) if f.is_file() else None


def run_metrics(run, facts: dict) -> dict[str, Any]:
    s = dict(run.summary)
    s.setdefault("test_mse", facts.get("mse"))
    return s


def render_run(run, pics: list[Picture], facts: dict) -> str:
    cfg, s = run.config, run_metrics(run, facts)
    title = cfg.name or run.path.name
    probe = read_probe(run.path)
    parts = [f"<h1>{esc(title)}</h1>"]
    if cfg.description:
        parts.append(f'<p class="sub">{esc(cfg.description)}</p>')
    parts.append(f'<p class="sub">run <code>{esc(str(run.path))}</code> &middot; report written {esc(time.strftime("%Y-%m-%d %H:%M"))}</p>')
    cards = [card(label, s.get(k)) for k, label in METRICS if s.get(k) is not None]
    cards.append(card("mean code activation", facts.get("code_mean")))
    for k, v in probe_values(probe).items():
        cards.append(card(k.replace("_", " "), v, "probe.json"))
    parts.append(f'<div class="cards">{"".join(cards)}</div>')
    if s.get("test_bce_floor") is not None:
        parts.append(f'<p class="note">BCE cannot reach 0 on grey pixels: its minimum on these test images is their mean '
                     f'entropy, {s["test_bce_floor"]:.4f} nats per pixel. This run is {s.get("test_bce_above_floor", 0):.4f} above it.</p>')
    pub = {k: v for k, v in (cfg.published or {}).items()}
    if pub:
        rows = [(k, v, s.get(k)) for k, v in pub.items() if k != "source"]
        src = f" ({pub['source']})" if "source" in pub else ""
        parts.append(f"<h2>Published{esc(src)}</h2>" + table(["metric", "published", "this run"], rows, [False, True, True]))
    sections = []
    for p in pics:
        if p.section not in sections:
            sections.append(p.section)
    parts.append("<nav>" + "".join(f'<a href="#s-{i}">{esc(sec)}</a>' for i, sec in enumerate(sections))
                 + '<a href="#s-model">Model</a><a href="#s-config">Config</a></nav>')
    parts.append(facts_grid(config_facts(cfg, s)))
    if s.get(PER_FEATURE):
        vals = s[PER_FEATURE]
        shown = ", ".join(f"{v:.4g}" for v in vals[:20]) + (f", ... ({len(vals)} features)" if len(vals) > 20 else "")
        parts.append(f'<p class="note">RMSE per feature, in the data\'s own units: {esc(shown)}</p>')
    other = [(k, v) for k, v in s.items()
             if k.startswith("test_") and k not in dict(METRICS) and k not in ("test_size", PER_FEATURE)]
    if other:
        parts.append(facts_grid(other))
    for i, sec in enumerate(sections):
        parts.append(f'<h2 id="s-{i}">{esc(sec)}</h2>')
        for p in pics:
            if p.section == sec:
                parts.append(figure_html(p))
                if p.stem == "code" and facts.get("code_example") is not None:
                    z = np.asarray(facts["code_example"]).ravel()
                    nums = " ".join(f"{v:.3f}" for v in z[:1024])
                    more = f" ... ({z.size} in all)" if z.size > 1024 else ""
                    parts.append(f"<details><summary>the {z.size} numbers</summary><pre>{esc(nums + more)}</pre></details>")
    parts.append('<h2 id="s-model">Model</h2>')
    rows = summary_rows(C.bare(run.model))
    total = sum(p.numel() for p in run.model.parameters())
    parts.append(table(["Layer (type)", "Output shape", "Param #"], rows, [False, False, True]))
    parts.append(f'<p class="note">Total params: {total:,}</p>')
    if probe:
        parts.append('<h2>Probe</h2><pre>' + esc(json.dumps(probe, indent=2)) + "</pre>")
    parts.append('<h2 id="s-config">Config</h2>')
    parts.append(f"<details><summary>config.yaml (rerun with <code>aelab train {esc(str(run.path / 'config.yaml'))}</code>)</summary>"
                 f"<pre>{esc(cfg.to_yaml())}</pre></details>")
    return page(f"{title}: aelab report", "\n".join(parts))


def save_pictures(folder: Path, pics: list[Picture]) -> None:
    """figures/*.png|gif plus index.json (file, caption, pixel size); stale pictures are removed."""
    folder.mkdir(parents=True, exist_ok=True)
    keep = {p.filename for p in pics}
    for p in pics:
        atomic_write_bytes(folder / p.filename, p.data)
    for old in list(folder.glob("*.png")) + list(folder.glob("*.gif")):
        if old.name not in keep:
            old.unlink(missing_ok=True)
    write_json(folder / "index.json", [{"file": p.filename, "caption": p.caption, "section": p.section,
                                        "width": p.width, "height": p.height} for p in pics])


def write_run_report(run_or_path, splits=None, latent: str = "pca", log: Callable[[str], None] | None = None) -> Path:
    """Writes RUN/figures/ and RUN/report.html; returns the report's path."""
    run = _load(run_or_path)
    if splits is None:
        splits = run.load_data()
    pics, facts = run_pictures(run, splits, latent, log)
    save_pictures(run.path / "figures", pics)
    out = run.path / "report.html"
    atomic_write_text(out, render_run(run, pics, facts))
    return out


# -- the comparison page -----------------------------------------------------------

SKIP_KEYS = ("description", "published")


def differing_keys(configs: Sequence[dict[str, Any]]) -> list[str]:
    flat = [flatten({k: v for k, v in c.items() if k not in SKIP_KEYS}) for c in configs]
    keys = sorted({k for f in flat for k in f}, key=lambda k: (k.split(".")[0] != "name", k))
    return [k for k in keys if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flat}) > 1]


def _data_key(cfg) -> str:
    d = cfg.data
    return json.dumps({k: v for k, v in flatten({"d": cfg.to_dict()["data"]}).items() if not k.startswith("d.noise")},
                      sort_keys=True, default=str) + f"|{cfg.model.output_activation == 'sigmoid'}|{d.name}"


def write_comparison(run_paths: Sequence[str | Path], out_html: str | Path, title: str | None = None,
                     log: Callable[[str], None] | None = None) -> Path:
    """One page comparing runs: configs that differ, final metrics, overlaid curves, the same images reconstructed."""
    say = log or (lambda s: None)
    if not run_paths:
        raise RunError("report: give at least one run directory")
    runs = [_load(p) for p in run_paths]
    names = _unique_names(runs)
    data_cache: dict[str, Any] = {}
    for r in runs:
        k = _data_key(r.config)
        if k not in data_cache:
            say(f"compare: loading {r.config.data.name}")
            data_cache[k] = r.load_data()

    keys = differing_keys([r.config.to_dict() for r in runs])
    cfg_rows = [[n] + [flatten(r.config.to_dict()).get(k) for k in keys] for n, r in zip(names, runs)]
    probes = [probe_values(read_probe(r.path)) for r in runs]
    probe_keys = sorted({k for p in probes for k in p})
    extra = sorted({k for r in runs for k in r.summary if k.startswith("test_")} - {k for k, _ in METRICS} - {"test_size", PER_FEATURE})
    metrics = [(k, lab) for k, lab in METRICS if any(r.summary.get(k) is not None for r in runs)]  # those any run has
    mhead = ["run"] + [lab for _, lab in metrics] + extra + ["parameters", "epochs", "s / epoch"] + probe_keys
    mrows = []
    for n, r, pr in zip(names, runs, probes):
        s = r.summary
        mrows.append([n] + [s.get(k) for k, _ in metrics] + [s.get(k) for k in extra]
                     + [s.get("parameters"), s.get("epochs"), s.get("seconds_per_epoch")] + [pr.get(k) for k in probe_keys])

    pics: list[Picture] = []
    losses = {r.config.train.loss for r in runs}
    same_data = len({_data_key(r.config) for r in runs}) == 1
    if all(r.metrics for r in runs):
        if len(losses) == 1:
            loss = losses.pop()
            series = [(n, r.metrics) for n, r in zip(names, runs)]
        else:  # different losses do not share an axis; MSE is computed for every run
            loss = "mse"
            series = [(n, [{**m, "val_loss": m.get("val_mse", np.nan), "train_loss": np.nan} for m in r.metrics])
                      for n, r in zip(names, runs)]
        floor = None
        if loss == "bce" and same_data and all(r.scaler is None for r in runs):
            floor = entropy_floor(next(iter(data_cache.values())).validation[0])
        cap = "Loss per epoch of every run on shared axes."
        if floor is not None:
            cap += f" Dashed: the BCE floor {floor:.4f} of the validation images."
        if loss == "mse" and len({r.config.train.loss for r in runs}) > 1:
            cap += " The runs use different losses, so validation MSE is shown."
        pics.append(picture("curves", F.compare_curves(series, loss, floor), cap, "Learning curves"))

    say("compare: reconstructions")
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(runs):
        groups.setdefault(_data_key(r.config), []).append(i)
    for gi, (k, members) in enumerate(groups.items()):
        splits = data_cache[k]
        if not F.is_image_shape(splits.x_test.shape[1:]):
            continue
        idx = C.sample_indices(splits.y_test, 10)
        xs = np.asarray(splits.x_test[idx], dtype=np.float32)
        rows, labels = [xs], ["original"]
        for i in members:
            rec, noisy = C.reconstruct_samples(runs[i].model, xs, runs[i].config.data.noise)
            if noisy is not None:
                rows.append(noisy)
                labels.append(f"{names[i]}: input")
            rows.append(rec)
            labels.append(_short(names[i]))
        fig = F.image_rows(rows, labels)
        where = f" ({splits.name})" if len(groups) > 1 else ""
        pics.append(picture(f"reconstructions_{gi}", fig,
                            f"The same {len(xs)} test images{where} reconstructed by every run, one row per run "
                            "(denoising runs also show the noisy input they were given).", "Reconstructions"))

    ttl = title or f"Comparison of {len(runs)} runs"
    parts = [f"<h1>{esc(ttl)}</h1>",
             f'<p class="sub">written {esc(time.strftime("%Y-%m-%d %H:%M"))} from: '
             + ", ".join(f"<code>{esc(str(r.path))}</code>" for r in runs) + "</p>"]
    parts.append("<h2>Final test metrics</h2>")
    numeric = [False] + [True] * (len(mhead) - 1)
    parts.append(table(mhead, mrows, numeric))
    if any(r.summary.get("test_bce_floor") is not None for r in runs):
        parts.append('<p class="note">BCE floor: the mean entropy of the test pixels, the lowest BCE any model can reach on them; '
                     '"BCE above floor" is what a better model could still gain.</p>')
    parts.append("<h2>Configs (keys that differ)</h2>")
    parts.append(table(["run"] + keys, cfg_rows) if keys else '<p class="note">All configs are the same.</p>')
    for sec in ("Learning curves", "Reconstructions"):
        sel = [p for p in pics if p.section == sec]
        if sel:
            parts.append(f"<h2>{esc(sec)}</h2>" + "".join(figure_html(p) for p in sel))
    out = Path(out_html)
    atomic_write_text(out, page(ttl, "\n".join(parts)))
    return out


def _short(name: str, n: int = 24) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"


def _unique_names(runs) -> list[str]:
    names, seen = [], {}
    for r in runs:
        n = r.path.name or str(r.path)
        seen[n] = seen.get(n, 0) + 1
        names.append(n if seen[n] == 1 else f"{n} ({seen[n]})")
    return names
