"""Report pages: the only place that writes report.html, compare.html and figures/.

Pages are one self-contained file each, rendered from the Jinja2 templates in
report/templates/ (autoescaped): images inlined as base64 PNG/GIF, CSS inline
(style.css), system fonts, nothing fetched from the network; the run report's one script
switches its language (templates/i18n.js, strings from i18n.py), and without it the page reads in English.
"""

from __future__ import annotations

import base64
import functools
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from .._io import atomic_write_bytes, atomic_write_text, write_json
from ..errors import RunError
from ..evaluate.metrics import entropy_floor
from ..models import capabilities
from ..run import data_key
from . import collect as C
from . import figures as F
from . import i18n
from .health_figures import latent_health_figure
from .model_figures import model_figures
from .seeds import seed_table


@dataclass
class Picture:
    stem: str  # file name in figures/ without extension
    data: bytes
    caption: str
    section: str
    mime: str = "image/png"
    width: int = 0
    height: int = 0
    key: str = ""  # i18n.REPORT key of the caption (the page's language switch); "" keeps it English
    args: dict[str, Any] = field(default_factory=dict)  # the caption's placeholders, already formatted

    @property
    def filename(self) -> str:
        return self.stem + (".gif" if self.mime == "image/gif" else ".png")


def picture(stem: str, fig, caption: str, section: str, key: str = "", **args: Any) -> Picture:
    w, h = F.figure_pixels(fig)
    return Picture(stem, F.png_bytes(fig), caption, section, "image/png", w, h, key, args)


def translated(stem: str, fig, section: str, key: str, **args: Any) -> Picture:
    """A picture whose caption is i18n.REPORT[key] (English on the page until the reader switches)."""
    return picture(stem, fig, i18n.text(key, **args), section, key, **args)


# -- page building blocks: Jinja2 templates in report/templates/ --------------


def data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _picture_uri(p: Picture) -> str:
    return data_uri(p.mime, p.data)


@functools.lru_cache(maxsize=1)
def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("aelab.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["fmt"] = fmt
    env.filters["data_uri"] = _picture_uri
    env.globals["en"] = lambda key, args: i18n.text(key, **args)
    return env


def render(template: str, **context: Any) -> str:
    """One page from its template (run.html.j2, compare.html.j2): every value is escaped by autoescaping."""
    return _templates().get_template(template).render(**context)


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


# -- metrics shown in headers and tables -------------------------------------

# (summary key, label): BCE is always followed by its floor and the distance to it, then MSE and PSNR; a run
# shows only those its summary has (evaluate.data_metrics: no BCE/PSNR on standardised data, R^2 and RMSE there)
METRICS = [
    ("test_loss", "test loss"),
    ("test_bce", "test BCE"),
    ("test_bce_floor", "BCE floor"),
    ("test_bce_above_floor", "BCE above floor"),
    ("test_mse", "test MSE"),
    ("test_rmse", "test RMSE"),
    ("test_r2", "test R²"),
    ("test_psnr", "test PSNR (dB)"),
    ("test_psnr_peak", "PSNR peak"),
    ("test_nelbo", "test -ELBO (nats)"),
    ("test_nll", "test NLL (nats)"),
    ("test_dead_units", "dead code units"),
    ("test_active_units", "VAE active units"),
]
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
    return {
        k: v
        for k, v in probe.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k.endswith(PROBE_SUFFIXES)
    }


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
    facts += m.facts()  # the family's own description: layers or channels, activation, ...
    facts += [
        ("code shape", summary.get("code_shape")),
        ("output", m.output_activation),
        ("loss", t.loss),
        ("optimizer", t.optimizer),
        ("lr", t.lr if t.lr is not None else "default"),
        ("batch size", t.batch_size),
        ("epochs", summary.get("epochs", t.epochs)),
        ("parameters", summary.get("parameters")),
    ]
    if d.noise:
        facts.append(("noise", ", ".join(f"{n.kind} {n.amount:g}" for n in d.noise)))
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


def run_pictures(
    run, splits, latent: str = "pca", log: Callable[[str], None] | None = None
) -> tuple[list[Picture], dict]:
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
        key = "cap_reconstructions_noisy" if noisy is not None else "cap_reconstructions"
        pics.append(translated("reconstructions", F.reconstructions(xs, rec, noisy), "Reconstructions", key))
        prog = _progress(run.path)
        if prog is not None:
            ep = [int(e) for e in prog["epochs"]]
            gif = F.gif_bytes(prog["originals"], prog["frames"], ep, noisy=prog.get("noisy"))
            gw, gh = F.gif_size(gif)
            pics.append(
                Picture(
                    "progress",
                    gif,
                    i18n.text("cap_progress", epochs=len(ep)),
                    "Reconstructions",
                    "image/gif",
                    gw,
                    gh,
                    "cap_progress",
                    {"epochs": len(ep)},
                )
            )
            pics.append(
                translated(
                    "progress_strip",
                    F.progress_strip(prog["originals"], prog["frames"], ep, noisy=prog.get("noisy")),
                    "Reconstructions",
                    "cap_progress_strip",
                )
            )
        pics.append(
            translated(
                "best_worst",
                F.best_worst(np.asarray(x_test), recon_all, mse),
                "Reconstructions",
                "cap_best_worst",
                mse=f"{mse.mean():.4f}",
            )
        )

    say("report: learning curves")
    floor = None
    if cfg.train.loss == "bce" and run.scaler is None:
        floor = entropy_floor(splits.validation[0])
    if run.metrics:
        fig = F.learning_curves(run.metrics, run.batches, cfg.train.loss, floor)
        if floor is None:
            pics.append(translated("learning_curves", fig, "Training", "cap_learning_curves"))
        else:
            pics.append(
                translated("learning_curves", fig, "Training", "cap_learning_curves_floor", floor=f"{floor:.4f}")
            )

    say("report: weights")
    for stem, fig, caption in model_figures(model, splits, section="Weights"):
        pics.append(picture(str(stem), fig, caption, "Weights"))

    say("report: codes")
    z_all = C.codes(model, x_test)
    z0 = z_all[idx[0]]
    facts["code_example"] = z0
    facts["code_mean"] = float(z_all.mean())
    pics.append(
        translated(
            "code",
            F.code_values(z0.ravel(), xs[0] if images else None, rec[0] if images else None),
            "Codes",
            "cap_code",
            n=z0.size,
        )
    )
    if z_all.ndim == 4:
        pics.append(translated("code_maps", F.feature_maps(z0, xs[0] if images else None), "Codes", "cap_code_maps"))
    pics.append(translated("code_mean", F.code_mean(z_all), "Codes", "cap_code_mean"))
    fig, cap = latent_health_figure(z_all, capabilities(model).generative)
    pics.append(picture("latent_health", fig, cap, "Codes"))
    if len(z_all) >= 3:
        say(f"report: latent space ({latent})")
        pts, used, note = C.project_2d(z_all, latent)
        labels = None if y_test is None else np.asarray(y_test)[used]
        pics.append(
            translated(
                "latent",
                F.latent_scatter(pts, labels, splits.classes, latent.upper() if latent != "tsne" else "t-SNE", note),
                "Latent space",
                "cap_latent",
            )
        )

    extra = model_figures(model, splits, section="Model")
    if extra:
        say("report: model figures")
    for stem, fig, caption in extra:
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
    # (label, value, note, i18n key of the label)
    cards = [(label, s.get(k), "", "m_" + k) for k, label in METRICS if s.get(k) is not None]
    cards.append(("mean code activation", facts.get("code_mean"), "", "m_code_mean"))
    if capabilities(run.model).likelihood and s.get("test_nll") is None:  # the family has one; say how to get it
        cards.append(("test NLL (nats)", "not estimated", f"aelab eval {run.path} --nll 5000", "m_test_nll"))
    cards += [(k.replace("_", " "), v, "probe.json", "") for k, v in probe_values(probe).items()]
    pub = dict(cfg.published or {})
    sections: list[str] = []
    for p in pics:
        if p.section not in sections:
            sections.append(p.section)
    per_feature = ""
    if s.get(PER_FEATURE):  # standardised data: the RMSE of each feature in the data's own units
        vals = s[PER_FEATURE]
        per_feature = ", ".join(f"{v:.4g}" for v in vals[:20]) + (
            f", ... ({len(vals)} features)" if len(vals) > 20 else ""
        )
    code_numbers, code_size = "", 0
    if facts.get("code_example") is not None:
        z = np.asarray(facts["code_example"]).ravel()
        code_size = z.size
        code_numbers = " ".join(f"{v:.3f}" for v in z[:1024]) + (f" ... ({z.size} in all)" if z.size > 1024 else "")
    return render(
        "run.html.j2",
        page_title=f"{title}: aelab report",
        title=title,
        description=cfg.description,
        run_path=str(run.path),
        written=time.strftime("%Y-%m-%d %H:%M"),
        cards=cards,
        bce_floor=s.get("test_bce_floor"),
        bce_above=s.get("test_bce_above_floor", 0),
        published_rows=[(k, v, s.get(k)) for k, v in pub.items() if k != "source"],
        published_source=f" ({pub['source']})" if "source" in pub else "",
        sections=sections,
        pictures=pics,
        facts=config_facts(cfg, s),
        per_feature=per_feature,
        other_metrics=[
            (k, v)
            for k, v in s.items()
            if k.startswith("test_") and k not in dict(METRICS) and k not in ("test_size", PER_FEATURE)
        ],
        code_numbers=code_numbers,
        code_size=code_size,
        layer_rows=summary_rows(C.bare(run.model)),
        total_params=sum(p.numel() for p in run.model.parameters()),
        probe_json=json.dumps(probe, indent=2) if probe else "",
        config_path=str(run.path / "config.yaml"),
        config_yaml=cfg.to_yaml(),
        strings=i18n.report_table(),
        report_keys=set(i18n.REPORT),
    )


def save_pictures(folder: Path, pics: list[Picture]) -> None:
    """figures/*.png|gif plus index.json (file, caption, pixel size); stale pictures are removed."""
    folder.mkdir(parents=True, exist_ok=True)
    keep = {p.filename for p in pics}
    for p in pics:
        atomic_write_bytes(folder / p.filename, p.data)
    for old in list(folder.glob("*.png")) + list(folder.glob("*.gif")):
        if old.name not in keep:
            old.unlink(missing_ok=True)
    write_json(
        folder / "index.json",
        [
            {"file": p.filename, "caption": p.caption, "section": p.section, "width": p.width, "height": p.height}
            for p in pics
        ],
    )


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
    # a key only some runs have (another family's) differs when those that have it disagree
    return [k for k in keys if len({json.dumps(f[k], sort_keys=True, default=str) for f in flat if k in f}) > 1]


def write_comparison(
    run_paths: Sequence[str | Path],
    out_html: str | Path,
    title: str | None = None,
    log: Callable[[str], None] | None = None,
    datasets: Mapping[str, Any] | None = None,
) -> Path:
    """One page comparing runs: configs that differ, final metrics, overlaid curves, the same images reconstructed.

    ``datasets``: data already in memory, by ``run.data_key`` (a sweep's training loaded it), used instead of
    loading it again."""
    say = log or (lambda s: None)
    if not run_paths:
        raise RunError("report: give at least one run directory")
    runs = [_load(p) for p in run_paths]
    names = _unique_names(runs)
    data_cache: dict[str, Any] = dict(datasets or {})
    for r in runs:
        k = data_key(r.config)
        if k not in data_cache:
            say(f"compare: loading {r.config.data.name}")
            data_cache[k] = r.load_data()

    keys = differing_keys([r.config.to_dict() for r in runs])
    cfg_rows = [[n] + [flatten(r.config.to_dict()).get(k) for k in keys] for n, r in zip(names, runs)]
    probes = [probe_values(read_probe(r.path)) for r in runs]
    probe_keys = sorted({k for p in probes for k in p})
    extra = sorted(
        {k for r in runs for k in r.summary if k.startswith("test_")}
        - {k for k, _ in METRICS}
        - {"test_size", PER_FEATURE}
    )
    metrics = [(k, lab) for k, lab in METRICS if any(r.summary.get(k) is not None for r in runs)]  # those any run has
    mhead = ["run"] + [lab for _, lab in metrics] + extra + ["parameters", "epochs", "s / epoch"] + probe_keys
    mrows = []
    for n, r, pr in zip(names, runs, probes):
        s = r.summary
        mrows.append(
            [n]
            + [s.get(k) for k, _ in metrics]
            + [s.get(k) for k in extra]
            + [s.get("parameters"), s.get("epochs"), s.get("seconds_per_epoch")]
            + [pr.get(k) for k in probe_keys]
        )

    pics: list[Picture] = []
    losses = {r.config.train.loss for r in runs}
    same_data = len({data_key(r.config) for r in runs}) == 1
    if all(r.metrics for r in runs):
        if len(losses) == 1:
            loss = losses.pop()
            series = [(n, r.metrics) for n, r in zip(names, runs)]
        else:  # different losses do not share an axis; MSE is computed for every run
            loss = "mse"
            series = [
                (n, [{**m, "val_loss": m.get("val_mse", np.nan), "train_loss": np.nan} for m in r.metrics])
                for n, r in zip(names, runs)
            ]
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
        groups.setdefault(data_key(r.config), []).append(i)
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
        pics.append(
            picture(
                f"reconstructions_{gi}",
                fig,
                f"The same {len(xs)} test images{where} reconstructed by every run, one row per run "
                "(denoising runs also show the noisy input they were given).",
                "Reconstructions",
            )
        )

    ttl = title or f"Comparison of {len(runs)} runs"
    # runs that differ only in train.seed: mean and Student-t 95% interval per metric (sweep --seeds)
    seeds = seed_table(
        names,
        [r.config.to_dict() for r in runs],
        [r.summary for r in runs],
        [*metrics, *((k, k) for k in extra), ("seconds_per_epoch", "s / epoch")],
    )
    out = Path(out_html)
    atomic_write_text(
        out,
        render(
            "compare.html.j2",
            page_title=ttl,
            title=ttl,
            written=time.strftime("%Y-%m-%d %H:%M"),
            run_paths=[str(r.path) for r in runs],
            metric_header=mhead,
            metric_rows=mrows,
            numeric=[False] + [True] * (len(mhead) - 1),
            any_floor=any(r.summary.get("test_bce_floor") is not None for r in runs),
            seed_header=seeds[0] if seeds else None,
            seed_rows=seeds[1] if seeds else None,
            keys=keys,
            config_rows=cfg_rows,
            pictures=pics,
        ),
    )
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
