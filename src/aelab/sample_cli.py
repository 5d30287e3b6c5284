"""`aelab sample RUN -n 64 -o samples.png`, and the `--nll K` option of `aelab eval`.

Self-contained wiring (the library is sample.py, evaluate/likelihood.py and evaluate/health.py).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .cli import command, write_output_array


def add_commands(sub) -> None:
    s = sub.add_parser("sample", help="generate samples: decode codes drawn from a VAE's prior or a mixture fitted on training codes",
                       description=("Draws N codes and decodes them. VAEs draw from their prior N(0, I); other models from "
                                    "a Gaussian mixture fitted on the codes of (up to 20,000) training samples. "
                                    "Output: a .png grid of images or a .npy array."))
    s.add_argument("run")
    s.add_argument("-n", type=int, default=64, help="how many samples (default 64)")
    s.add_argument("-o", "--output", required=True, help="samples.png (a grid) or samples.npy")
    s.add_argument("--from", dest="source", choices=["auto", "prior", "gmm"], default="auto",
                   help="auto: prior for VAEs, else gmm")
    s.add_argument("--components", type=int, default=10, help="mixture components (default 10)")
    s.add_argument("--seed", type=int, default=0)


@command("sample")
def cmd_sample(a: argparse.Namespace) -> int:
    from .run import load_run
    from .sample import sample

    run = load_run(a.run)
    out = Path(a.output)
    if out.suffix.lower() not in (".png", ".npy"):
        from .errors import DataError

        raise DataError(f"{out}: output must end in .png (a grid) or .npy")
    x_train = None
    from .models import capabilities

    if a.source == "gmm" or (a.source == "auto" and not capabilities(run.model).generative):
        x_train = run.load_data().x_train
    x = sample(run.model, a.n, x_train, a.source, a.components, a.seed)
    write_output_array(out, x, run.model.input_shape)
    print(f"{len(x)} samples -> {out}")
    return 0


def add_eval_arguments(e: argparse.ArgumentParser) -> None:
    e.add_argument("--nll", type=int, metavar="K", help="also estimate the test NLL with K importance samples "
                   "(VAE families; 5000 is the literature's K) and record it in RUN/summary.json")
    e.add_argument("--nll-limit", type=int, metavar="N", help="estimate the NLL on the first N test samples only")
    e.add_argument("--nll-seed", type=int, default=0, help="seed of the test binarisation and the importance draws")


def eval_nll(run, x, a: argparse.Namespace) -> dict:
    """The NLL keys for `aelab eval --nll K`, written into summary.json too (test split only)."""
    from .errors import ConfigError
    from .evaluate.likelihood import importance_weighted_nll
    from .run import write_summary

    if a.split != "test":
        raise ConfigError("--nll: estimated on the test split only")
    if a.nll_limit is not None and a.nll_limit < 1:
        raise ConfigError(f"--nll-limit: must be >= 1, got {a.nll_limit}")
    res = {f"test_{k}": v for k, v in importance_weighted_nll(run.model, x, a.nll, a.nll_seed, limit=a.nll_limit).items()}
    if (run.path / "summary.json").is_file():
        summary = json.loads((run.path / "summary.json").read_text())
        summary.update(res)
        write_summary(run.path, summary)
    return res
