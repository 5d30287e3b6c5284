"""The `aelab` command line. Every user error ends as one line on stderr and exit code 2."""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import AelabError, ConfigError, DataError

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    def deco(fn):
        COMMANDS[name] = fn
        return fn

    return deco


# -- config resolution ---------------------------------------------------

def resolve_config(spec: str, overrides: list[str]):
    """A YAML path, or the name of a built-in recipe."""
    from .config import Config
    from .recipes import recipe_path

    p = Path(spec)
    if p.is_file():
        return Config.from_yaml(p, overrides)
    rp = recipe_path(spec)
    if rp is not None:
        return Config.from_yaml(rp, overrides)
    raise ConfigError(f"'{spec}' is neither a config file nor a recipe name (see `aelab recipes`)")


# -- commands --------------------------------------------------------------

@command("train")
def cmd_train(a: argparse.Namespace) -> int:
    from .train import train
    from .report.hooks import prepare_cli_training
    from .run import default_run_dir, load_config
    from .train.distributed import writes_run_dir

    report, tb = not getattr(a, "no_report", False), getattr(a, "tensorboard", False)
    rank0 = writes_run_dir()
    report, tb = report and rank0, tb and rank0
    if a.resume:
        data, hooks = prepare_cli_training(load_config(Path(a.resume)), a.resume, report=report, tensorboard=tb, resume=True)
    else:
        if not a.config:
            raise ConfigError("train: give a config file or recipe name, or --resume RUN")
        from .recipes import is_suite

        if is_suite(a.config):  # a recipe listing recipes (seed003): run them all, then compare
            from .recipes_cli import train_suite

            return train_suite(a)
        cfg = resolve_config(a.config, a.set)
        out = a.out or default_run_dir(cfg)
        data, hooks = prepare_cli_training(cfg, out, report=report, tensorboard=tb, resume=False)
    try:
        run = train(resume=a.resume, data=data, hooks=hooks) if a.resume else train(cfg, out, overwrite=a.overwrite, data=data, hooks=hooks)
    finally:
        for h in hooks:
            h.close()
    if rank0:
        print(f"run written to {run.path}")
    if report:
        from .report import write_run_report

        print(f"report written to {write_run_report(run, data)}")
    return 0


@command("eval")
def cmd_eval(a: argparse.Namespace) -> int:
    from .evaluate.evaluate import evaluate
    from .evaluate.metrics import entropy_floor
    from .run import load_run

    run = load_run(a.run)
    data = run.load_data()
    x = data.x_test if a.split == "test" else data.x_train
    res = evaluate(run.model, x, run.config.train.loss)
    out = {"run": str(run.path), "split": a.split, "samples": int(len(x)), **{f"{a.split}_{k}": v for k, v in res.items()}}
    if run.model.output_activation == "sigmoid" and run.scaler is None:
        out[f"{a.split}_bce_floor"] = entropy_floor(x)
    y = data.y_test if a.split == "test" else data.y_train
    out.update({f"{a.split}_{k}": v for k, v in run.model.extra_metrics(x, y).items()})  # accuracy, ELBO, ...
    print(json.dumps(out, indent=2))
    return 0


def read_input_array(path: Path) -> np.ndarray:
    """An .npy/.npz array, a PNG/JPEG file, or a folder of images."""
    from .data.arrays import read_array
    from .data.folder import EXTENSIONS, load_folder

    if path.is_dir():
        x, _, _ = load_folder(path)
        return x
    if path.suffix.lower() in EXTENSIONS:
        from PIL import Image

        if not path.is_file():
            raise DataError(f"{path}: file not found")
        with Image.open(path) as im:
            a = np.asarray(im.convert("L") if im.mode in ("L", "1", "I") else im.convert("RGB"))
        return a[None, None] if a.ndim == 2 else a.transpose(2, 0, 1)[None]
    x, _, _, _ = read_array(path)
    return x


def write_output_array(path: Path, x: np.ndarray, image_shape: tuple[int, ...] | None = None) -> None:
    from ._io import atomic_write_bytes
    import io

    if path.suffix.lower() == ".png":
        from .report.images import grid_png_bytes

        if image_shape is None or len(image_shape) != 3:
            raise DataError(f"{path}: a PNG grid needs image outputs, these are shaped {x.shape[1:]}; use .npy")
        atomic_write_bytes(path, grid_png_bytes(x.reshape(len(x), *image_shape)))
        return
    if path.suffix.lower() != ".npy":
        raise DataError(f"{path}: output must end in .npy (or .png for a grid of images)")
    buf = io.BytesIO()
    np.save(buf, x)
    atomic_write_bytes(path, buf.getvalue())


@command("encode")
def cmd_encode(a: argparse.Namespace) -> int:
    from .evaluate.evaluate import encode_array
    from .run import load_run

    run = load_run(a.run)
    x = run.prepare_input(read_input_array(Path(a.input)))
    z = encode_array(run.model, x)
    if z.ndim == 2 or a.keep_shape:
        out = z
    else:
        out = z.reshape(len(z), -1)
    write_output_array(Path(a.output), out.astype(np.float32))
    print(f"encoded {len(x)} samples to codes shaped {tuple(out.shape[1:])} -> {a.output}")
    return 0


@command("decode")
def cmd_decode(a: argparse.Namespace) -> int:
    from .evaluate.evaluate import decode_array
    from .run import load_run

    run = load_run(a.run)
    z = read_input_array(Path(a.codes)).astype(np.float32)
    code_shape = run.model.code_shape
    n_code = int(np.prod(code_shape))
    if z.ndim == 1 and z.size == n_code:
        z = z[None]
    if int(np.prod(z.shape[1:])) != n_code:
        raise DataError(f"{a.codes}: codes shaped {tuple(z.shape[1:])} but this run's code is {code_shape} ({n_code} values)")
    if not np.isfinite(z).all():
        raise DataError(f"{a.codes}: holds NaN or inf")
    x = decode_array(run.model, z.reshape(len(z), *code_shape))
    write_output_array(Path(a.output), x, run.model.input_shape)
    print(f"decoded {len(z)} codes to samples shaped {tuple(x.shape[1:])} -> {a.output}")
    return 0


@command("data")
def cmd_data(a: argparse.Namespace) -> int:
    from . import data as D
    from .data import fetch as F

    if a.data_cmd == "list":
        for name in D.dataset_names():
            src = F.SOURCES.get(name)
            where = F.locate(name) if src else None
            desc = src.description if src else "your own data: set data.path"
            state = f"[{where}]" if where else ("[not fetched]" if src else "")
            print(f"{name:<15}{desc} {state}")
        return 0
    if a.data_cmd == "fetch":
        F.fetch(a.name, download=not a.no_download)
        return 0
    if a.data_cmd == "info":
        print(json.dumps(D.info(a.name), indent=2))
        return 0
    raise ConfigError("data: use one of list, fetch NAME, info NAME")


@command("models")
def cmd_models(a: argparse.Namespace) -> int:
    from .models import list_models, model_description

    for n in list_models():
        print(f"{n:<16}{model_description(n)}")
    return 0


@command("summary")
def cmd_summary(a: argparse.Namespace) -> int:
    from .models import build_model, summary_table
    from .run import load_run

    p = Path(a.target)
    if p.is_dir():
        model = load_run(p).model
    else:
        cfg = resolve_config(a.target, a.set)
        from .models import KNOWN_SHAPES

        shape = KNOWN_SHAPES.get(cfg.data.name)
        if shape is None:
            from .data import load_data

            shape = load_data(cfg.data).sample_shape
        model = build_model(cfg, shape)
    print(summary_table(model))
    return 0


# -- parser ------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aelab", description="Build, train, inspect, compare and ship autoencoders.")
    p.add_argument("--version", action="version", version=f"aelab {__import__('aelab').__version__}")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    t = sub.add_parser("train", help="train a model from a config file or recipe", description=(
        "Train from a YAML config or a recipe name. Writes a run directory with config.yaml, metrics.csv, "
        "batches.csv, model.safetensors, summary.json, checkpoint/."))
    t.add_argument("config", nargs="?", help="YAML config file or recipe name")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key, e.g. model.code_dim=64 (repeatable)")
    t.add_argument("--out", help="run directory (default runs/NAME-TIMESTAMP)")
    t.add_argument("--resume", metavar="RUN", help="continue the run in RUN from its last checkpoint")
    t.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    t.add_argument("--no-report", action="store_true", help="skip RUN/report.html and the reconstructions-per-epoch animation")
    t.add_argument("--tensorboard", action="store_true", help="also log per-epoch scalars and reconstructions to RUN/tensorboard")

    e = sub.add_parser("eval", help="metrics of a run on its test split, as JSON")
    e.add_argument("run")
    e.add_argument("--split", choices=["test", "train"], default="test")

    en = sub.add_parser("encode", help="encode images or arrays to codes (.npy)", description=(
        "Input: .npy/.npz shaped (N,H,W), (N,C,H,W) or (N,D), uint8 (scaled by 1/255) or float in [0,1]; "
        "a PNG/JPEG file; or a folder of images. Output: (N, code size) float32 .npy."))
    en.add_argument("run")
    en.add_argument("input")
    en.add_argument("-o", "--output", required=True)
    en.add_argument("--keep-shape", action="store_true", help="keep conv feature-map codes as (N, C, H, W)")

    d = sub.add_parser("decode", help="decode codes (.npy) to arrays (.npy) or an image grid (.png)")
    d.add_argument("run")
    d.add_argument("codes")
    d.add_argument("-o", "--output", required=True)

    da = sub.add_parser("data", help="list, fetch and describe datasets")
    dsub = da.add_subparsers(dest="data_cmd", metavar="ACTION")
    dsub.add_parser("list", help="datasets aelab knows and where they are")
    f = dsub.add_parser("fetch", help="find or download a dataset and verify its checksums")
    f.add_argument("name")
    f.add_argument("--no-download", action="store_true", help="only look for local copies")
    i = dsub.add_parser("info", help="shapes, classes and location of a dataset")
    i.add_argument("name")

    sub.add_parser("models", help="list the registered models")
    s = sub.add_parser("summary", help="Keras-style table of a model (config, recipe or run)")
    s.add_argument("target")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")

    for modname in COMMAND_MODULES:
        importlib.import_module(modname).add_commands(sub)
    return p


# Feature modules that add sub-commands. Each defines add_commands(subparsers)
# and registers its handlers with @aelab.cli.command("name").
COMMAND_MODULES: list[str] = [
    "aelab.report.cli",
    "aelab.anomaly_cli",
    "aelab.export_cli",
    "aelab.probe_cli",
    "aelab.bench.cli",
    "aelab.recipes_cli",
    "aelab.explore.cli",
]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if not a.cmd:
        parser.print_help()
        return 2
    try:
        return COMMANDS[a.cmd](a) or 0
    except AelabError as e:
        print(f"aelab {a.cmd}: error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 2)
    except KeyboardInterrupt:
        print(f"aelab {a.cmd}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:
        # a full disk or a read-only folder: say which file, keep the traceback out
        print(f"aelab {a.cmd}: error: {e.strerror or e} ({e.filename or ''})".rstrip(" ()"), file=sys.stderr)
        return 2
