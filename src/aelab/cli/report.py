"""`aelab report RUN [RUN ...] [-o compare.html]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ConfigError
from ..report.collect import LATENT_METHODS

NAME = "report"


def add_parser(sub) -> argparse.ArgumentParser:
    r = sub.add_parser(
        "report",
        help="write a run's report.html, or a comparison page of several runs",
        description=(
            "One run: writes RUN/figures/*.png and RUN/report.html (self-contained: open it from disk in any browser). "
            "Several runs, or -o: writes one comparison page (configs that differ, final metrics, learning curves "
            "overlaid, the same test images reconstructed by every run)."
        ),
    )
    r.add_argument("runs", nargs="+", metavar="RUN", help="run directories written by `aelab train`")
    r.add_argument(
        "-o",
        "--output",
        metavar="HTML",
        help="comparison page to write (default compare.html when several runs are given)",
    )
    r.add_argument("--title", help="title of the comparison page")
    r.add_argument(
        "--latent",
        choices=LATENT_METHODS,
        default="pca",
        help="2-D projection of the codes in a run report: pca (default), tsne (scikit-learn), umap (needs umap-learn)",
    )
    return r


def _log(msg: str) -> None:
    print(msg, file=sys.stderr)


def run(a: argparse.Namespace) -> int:
    from ..report import write_comparison, write_run_report
    from ..runlock import reading

    if len(a.runs) == 1 and not a.output:
        with reading(a.runs[0]):  # no `aelab train` may start, resume or overwrite it meanwhile
            out = write_run_report(a.runs[0], latent=a.latent, log=_log)
        print(f"report written to {out}")
        return 0
    out = Path(a.output or "compare.html")
    if out.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"--output: must end in .html, got '{out}'")
    if out.is_dir():
        raise ConfigError(f"--output: '{out}' is a folder; give a file name like {out / 'compare.html'}")
    with reading(*a.runs):
        out = write_comparison(a.runs, out, title=a.title, log=_log)
    print(f"comparison written to {out}")
    return 0
