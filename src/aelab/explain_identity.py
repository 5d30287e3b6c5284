"""Seed 000's question, answered by measurement: why does a 784-784-784 autoencoder copy MNIST
sharply but Fashion-MNIST only blurrily?

Three measured parts: (1) the BCE floor, the loss a *perfect* copy still pays on grey
pixels; (2) test MSE against code size for PCA (the best linear autoencoder) and for
trained autoencoders, both datasets on one plot; (3) what changes the 784-784-784
result: more epochs, MSE with a linear output, the learning rate.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ._io import atomic_write_bytes, atomic_write_text, write_json
from .config import Config
from .errors import ConfigError

DATASETS = ("mnist", "fashion-mnist")


@dataclass
class IdentityOptions:
    limit: int | None = None  # training images per dataset (None: all 60000)
    test_limit: int | None = None
    epochs: int = 5  # the seed's
    long_epochs: int = 30  # the 'more epochs' row
    code_dims: list[int] = field(default_factory=lambda: [2, 8, 32, 128, 784])
    pca_dims: list[int] = field(default_factory=lambda: [2, 8, 10, 30, 32, 64, 128, 256, 784])
    lrs: list[float] = field(default_factory=lambda: [1e-4, 3e-3])  # the seed's Adam uses 1e-3
    batch_size: int = 128
    device: str = "cpu"
    seed: int = 0
    paths: dict[str, str] | None = None  # dataset -> IDX folder, instead of the installed copies
    runs: str | None = None  # where the autoencoder runs go (default OUT/runs)

    @classmethod
    def quick(cls) -> IdentityOptions:
        """Seconds, not hours: the test and a first look."""
        return cls(
            limit=2000,
            test_limit=500,
            epochs=1,
            long_epochs=2,
            code_dims=[8, 784],
            pca_dims=[2, 8, 32, 784],
            lrs=[3e-3],
        )


# -- pure measurements -------------------------------------------------------------


def pca_mse_curve(x_train: np.ndarray, x_test: np.ndarray, dims: list[int]) -> dict[int, float]:
    """Test MSE per pixel of PCA with k components fitted on x_train: the optimal linear k-code autoencoder."""
    a = torch.as_tensor(x_train.reshape(len(x_train), -1), dtype=torch.float64)
    b = torch.as_tensor(x_test.reshape(len(x_test), -1), dtype=torch.float64)
    mean = a.mean(0)
    a = a - mean
    cov = a.T @ a / len(a)
    _, vecs = torch.linalg.eigh(cov)  # ascending eigenvalues
    vecs = vecs.flip(1)
    bc = b - mean
    total = bc.pow(2).sum(1).mean()
    explained = (bc @ vecs).pow(2).mean(0).cumsum(0)  # kept energy for k = 1..D
    d = b.shape[1]
    out = {}
    for k in dims:
        k = min(k, d)
        out[k] = float((total - explained[k - 1]).clamp_min(0) / d)
    return out


def grey_mse_split(x: np.ndarray, recon: np.ndarray, lo: float = 0.1, hi: float = 0.9) -> dict[str, float]:
    """Where the error sits: MSE on grey target pixels vs on near-black/near-white ones."""
    t, r = x.reshape(-1), recon.reshape(-1)
    grey = (t > lo) & (t < hi)
    err = (t - r) ** 2
    return {
        "mse_grey": float(err[grey].mean()) if grey.any() else 0.0,
        "mse_binary": float(err[~grey].mean()) if (~grey).any() else 0.0,
        "error_share_on_grey": float(err[grey].sum() / max(err.sum(), 1e-12)),
    }


# -- the experiment -------------------------------------------------------------------


def _config(dataset: str, opts: IdentityOptions, code: int, **train) -> Config:
    d = {
        "name": f"identity-{dataset}-{code}",
        "data": {"name": dataset, "limit": opts.limit, "test_limit": opts.test_limit},
        "model": {
            "name": "dense",
            "hidden": [],
            "code_dim": code,
            "activation": "relu",
            "output_activation": "sigmoid",
        },
        "train": {
            "epochs": opts.epochs,
            "batch_size": opts.batch_size,
            "optimizer": "adam",
            "loss": "bce",
            "seed": opts.seed,
            "device": opts.device,
            "checkpoint_every": 10**6,
        },
    }
    if opts.paths and dataset in opts.paths:
        d["data"]["path"] = opts.paths[dataset]
    for k, v in train.items():
        section, key = k.split("__")
        d[section][key] = v
    return Config.from_dict(d)


def _train(cfg: Config, run_dir: Path, splits, log) -> dict:
    from .runner import train

    done = run_dir / "summary.json"
    if done.is_file():  # re-running the page reuses finished runs
        try:
            old = Config.from_yaml(run_dir / "config.yaml")
            if old.to_dict() == cfg.to_dict():
                return json.loads(done.read_text())
        except (ConfigError, ValueError):
            pass
    run = train(cfg, run_dir, overwrite=True, data=splits, log=lambda s: None)
    log(
        f"  {run_dir.name}: test bce {run.summary['test_bce']:.4f}  mse {run.summary['test_mse']:.4f}  "
        f"{run.summary['seconds_per_epoch']:.1f} s/epoch"
    )
    return run.summary


def _row(label: str, s: dict) -> dict:
    keep = ("test_bce", "test_mse", "test_psnr", "test_bce_floor", "epochs", "seconds_per_epoch")
    return {"setting": label, **{k: s.get(k) for k in keep}}


def measure(opts: IdentityOptions, runs: Path, log: Callable[[str], None] = print) -> dict:
    from .data import load_data
    from .evaluate.evaluate import reconstruct
    from .evaluate.metrics import entropy_floor, grey_share
    from .run import load_run

    results: dict = {"options": asdict(opts), "device": opts.device, "torch": torch.__version__, "datasets": {}}
    for ds in DATASETS:
        cfg = _config(ds, opts, 784)
        splits = load_data(cfg.data)
        log(f"{ds}: {len(splits.x_train)} train / {len(splits.x_test)} test images")
        r: dict = {
            "train_size": int(len(splits.x_train)),
            "test_size": int(len(splits.x_test)),
            "bce_floor_test": entropy_floor(splits.x_test),
            "bce_floor_train": entropy_floor(splits.x_train),
            "grey_share_test": grey_share(splits.x_test),
        }
        t0 = time.perf_counter()
        r["pca_mse"] = {str(k): v for k, v in pca_mse_curve(splits.x_train, splits.x_test, opts.pca_dims).items()}
        r["pca_seconds"] = time.perf_counter() - t0
        ae = {}
        for k in opts.code_dims:
            s = _train(_config(ds, opts, k), runs / ds / f"code{k}", splits, log)
            ae[str(k)] = _row(f"784-{k}-784", s)
        r["ae"] = ae
        base = ae.get("784") or _row("784-784-784", _train(cfg, runs / ds / "code784", splits, log))
        variants = [
            _row(
                f"the seed's: BCE + sigmoid, Adam lr 1e-3, {opts.epochs} epochs",
                {**base, "test_bce_floor": r["bce_floor_test"]},
            )
        ]
        s = _train(
            _config(ds, opts, 784, train__epochs=opts.long_epochs),
            runs / ds / f"code784-epochs{opts.long_epochs}",
            splits,
            log,
        )
        variants.append(_row(f"{opts.long_epochs} epochs instead of {opts.epochs}", s))
        s = _train(
            _config(ds, opts, 784, model__output_activation="identity", train__loss="mse"),
            runs / ds / "code784-mse-linear",
            splits,
            log,
        )
        variants.append(_row("MSE loss + linear output", s))
        for lr in opts.lrs:
            s = _train(_config(ds, opts, 784, train__lr=lr), runs / ds / f"code784-lr{lr:g}", splits, log)
            variants.append(_row(f"Adam lr {lr:g}", s))
        r["variants"] = variants
        run = load_run(runs / ds / "code784")
        n = min(len(splits.x_test), 2000)
        rec = reconstruct(run.model, splits.x_test[:n])
        r["where_the_error_is"] = grey_mse_split(splits.x_test[:n], rec)
        r["_pictures"] = (splits.x_test[:10], rec[:10])
        results["datasets"][ds] = r
    return results


# -- figures and the page ------------------------------------------------------------


def curve_figure(results: dict) -> bytes:
    from .report.figures import new_figure, png_bytes

    fig = new_figure(7.0, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    colors = {"mnist": "tab:blue", "fashion-mnist": "tab:orange"}
    for ds, r in results["datasets"].items():
        pk = sorted(int(k) for k in r["pca_mse"])
        ax.plot(pk, [r["pca_mse"][str(k)] for k in pk], "--", color=colors[ds], label=f"{ds}: PCA (best linear)")
        ak = sorted(int(k) for k in r["ae"])
        ax.plot(
            ak,
            [r["ae"][str(k)]["test_mse"] for k in ak],
            "o-",
            color=colors[ds],
            label=f"{ds}: autoencoder 784-k-784, {results['options']['epochs']} epochs",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("code size k")
    ax.set_ylabel("test MSE per pixel")
    ax.set_title("Reconstruction error against code size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return png_bytes(fig)


def pictures_figure(results: dict) -> bytes:
    from .report.figures import image_rows, png_bytes

    rows, labels = [], []
    for ds, r in results["datasets"].items():
        x, rec = r["_pictures"]
        rows += [x, rec.reshape(x.shape)]
        labels += [f"{ds} test", "784-784-784"]
    return png_bytes(image_rows(rows, labels))


def _f(v, nd=4) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def render_page(results: dict, command: str) -> str:
    R = results["datasets"]
    m, f = R["mnist"], R["fashion-mnist"]
    o = results["options"]
    mb, fb = m["ae"].get("784", m["variants"][0]), f["ae"].get("784", f["variants"][0])
    L = [
        "# Why doesn't a 784-784-784 autoencoder copy Fashion-MNIST sharply? (seed 000)",
        "",
        f"Generated by `{command}` (torch {results['torch']}, device {results['device']}); every number below is measured "
        f"by that command, on {m['train_size']} training / {m['test_size']} test images per dataset. Raw numbers: `identity.json`.",
        "",
        "## The short answer",
        "",
        f"1. **The loss cannot reach zero, and the floor differs by dataset.** BCE against a grey target is positive even for a "
        f"perfect copy: BCE(t, p) = H(t) + KL(t‖p) ≥ H(t). The mean pixel entropy of the test set is "
        f"**{m['bce_floor_test']:.4f}** for MNIST and **{f['bce_floor_test']:.4f}** for Fashion-MNIST, because "
        f"{100 * f['grey_share_test']:.1f}% of Fashion-MNIST's pixels are grey (strictly between 0.1 and 0.9) against "
        f"{100 * m['grey_share_test']:.1f}% of MNIST's. The 784-784-784 model here ends at Fashion-MNIST BCE {_f(fb['test_bce'])}, "
        f"of which {100 * f['bce_floor_test'] / fb['test_bce']:.0f}% is floor ({_f(fb['test_bce'] - f['bce_floor_test'])} above it); "
        f"on MNIST {_f(mb['test_bce'])}, {100 * m['bce_floor_test'] / mb['test_bce']:.0f}% floor "
        f"({_f(mb['test_bce'] - m['bce_floor_test'])} above). The seed compared raw BCE across datasets, and most of the gap it saw is floor.",
        f"2. **In MSE terms both copies are close.** After {o['epochs']} epoch(s) the 784-784-784 model reaches test MSE "
        f"{_f(mb['test_mse'])} ({_f(mb['test_psnr'], 1)} dB PSNR) on MNIST and {_f(fb['test_mse'])} "
        f"({_f(fb['test_psnr'], 1)} dB) on Fashion-MNIST. What looks blurry is the grey texture: on Fashion-MNIST "
        f"{100 * f['where_the_error_is']['error_share_on_grey']:.0f}% of the squared error sits on grey pixels "
        f"(MSE {_f(f['where_the_error_is']['mse_grey'])} there vs {_f(f['where_the_error_is']['mse_binary'])} on near-black/near-white ones). "
        "MNIST is almost black-and-white, so the same small errors are invisible there.",
        f"3. **A wide code is not the problem; training time is.** The curve below puts the trained autoencoders next to PCA, "
        f"the best any *linear* k-code autoencoder can do. A 784-unit code could copy exactly, but {o['epochs']} epoch(s) of Adam "
        f"do not get there; the rows under it show what does move the result.",
        "",
        "## BCE floor and grey pixels (test split)",
        "",
        "| dataset | BCE floor (nats/pixel) | grey pixels (0.1 < t < 0.9) | 784-784-784 BCE | BCE above floor | MSE | PSNR (dB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for ds, r in R.items():
        b = r["ae"].get("784", r["variants"][0])
        L.append(
            f"| {ds} | {r['bce_floor_test']:.4f} | {100 * r['grey_share_test']:.1f}% | {_f(b['test_bce'])} | "
            f"{_f(b['test_bce'] - r['bce_floor_test'])} | {_f(b['test_mse'])} | {_f(b['test_psnr'], 2)} |"
        )
    L += [
        "",
        "![reconstructions](reconstructions.png)",
        "",
        "## Reconstruction error against code size",
        "",
        "![MSE against code size](mse_vs_code.png)",
        "",
        "| k | " + " | ".join(f"{ds} PCA | {ds} AE" for ds in R) + " |",
        "|---|" + "---|---|" * len(R),
    ]
    ks = sorted({int(k) for r in R.values() for k in [*r["pca_mse"], *r["ae"]]})
    for k in ks:
        cells = []
        for r in R.values():
            cells.append(_f(r["pca_mse"].get(str(k))))
            cells.append(_f(r["ae"].get(str(k), {}).get("test_mse")))
        L.append(f"| {k} | " + " | ".join(cells) + " |")
    L += [
        "",
        f"PCA is fitted on the {m['train_size']} training images (closed form, {m['pca_seconds']:.1f} s); the autoencoders "
        f"are 784-k-784 with relu code, sigmoid output, BCE, Adam, batch {o['batch_size']}, {o['epochs']} epochs. Values are test MSE per pixel.",
        "",
        "## What changes the 784-784-784 result",
        "",
    ]
    for ds, r in R.items():
        L += [
            f"### {ds} (BCE floor {r['bce_floor_test']:.4f})",
            "",
            "| setting | epochs | test BCE | BCE above floor | test MSE | PSNR (dB) | s/epoch |",
            "|---|---|---|---|---|---|---|",
        ]
        for v in r["variants"]:
            L.append(
                f"| {v['setting']} | {v['epochs']} | {_f(v['test_bce'])} | {_f(None if v['test_bce'] is None else v['test_bce'] - r['bce_floor_test'])} | "
                f"{_f(v['test_mse'])} | {_f(v['test_psnr'], 2)} | {_f(v['seconds_per_epoch'], 2)} |"
            )
        L.append("")
    L += [
        "## What this means for the seed's worry",
        "",
        "The question feared that if an autoencoder cannot even learn the identity, its codes must lose information. The "
        "measurements say otherwise: the loss it watched has a floor set by the data, the wide model's pixel error is small "
        "and shrinks with training, and at every code size the autoencoder is compared with PCA on the same test images. "
        "Judge reconstructions by MSE/PSNR or by BCE *minus the floor*, not by raw BCE across datasets.",
        "",
    ]
    return "\n".join(L)


def explain_identity(
    out: Path, opts: IdentityOptions, log: Callable[[str], None] = print, command: str | None = None
) -> Path:
    """Measures everything, writes OUT/identity.md, OUT/identity.json, OUT/mse_vs_code.png, OUT/reconstructions.png."""
    if not opts.code_dims or min(opts.code_dims) < 1:
        raise ConfigError(f"code_dims: needs integers >= 1, got {opts.code_dims}")
    if opts.epochs < 1 or opts.long_epochs < 1:
        raise ConfigError(f"epochs and long_epochs: must be >= 1, got {opts.epochs} and {opts.long_epochs}")
    out = Path(out)
    runs = Path(opts.runs) if opts.runs else out / "runs"
    results = measure(opts, runs, log)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "mse_vs_code.png", curve_figure(results))
    atomic_write_bytes(out / "reconstructions.png", pictures_figure(results))
    for r in results["datasets"].values():
        r.pop("_pictures", None)
    write_json(out / "identity.json", results)
    cmd = command or "aelab explain-identity"
    page = out / "identity.md"
    atomic_write_text(page, render_page(results, cmd))
    return page
