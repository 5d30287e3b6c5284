"""`aelab probe`: logistic regression on a run's codes against raw pixels and PCA of the same size."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Fit a logistic regression on the run's training-set codes and report its test
accuracy, next to the same classifier on raw pixels and on PCA with as many
components as the code has values. Low reconstruction error does not make
codes useful features; this shows how much label information a code keeps.
Writes probe.json into the run directory (the run report shows it).

  aelab probe runs/demo --limit 10000
"""


NAME = "probe"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "probe",
        help="linear-probe accuracy of a run's codes vs pixels and PCA",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", help="a finished run directory whose data has labels")
    p.add_argument("--limit", type=int, metavar="N", help="fit on the first N training samples (default: all)")
    p.add_argument("--test-limit", type=int, metavar="N", help="score on the first N test samples (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed for the classifier and PCA (default 0)")
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="BLAS/OpenMP threads for scikit-learn (default: its own choice; 1 is faster on a busy machine)",
    )
    return p


def run(a: argparse.Namespace) -> int:
    from .._io import write_json
    from ..evaluate.probe import linear_probe, probe_table
    from ..run import load_run

    run = load_run(a.run)
    assert run.path is not None  # a loaded run has its folder
    res = linear_probe(run, a.limit, a.test_limit, a.seed, a.threads)
    write_json(run.path / "probe.json", res)
    print(probe_table(res))
    print(f"wrote {run.path / 'probe.json'}")
    return 0
