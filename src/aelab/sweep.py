"""Many runs from one recipe: grid sweeps and suites, one run directory each, then one comparison page.

Re-running the same command is cheap: a run whose folder already holds
summary.json (with the same config) is skipped, one that stopped half-way is
resumed from its checkpoint, so an interrupted sweep picks up where it was.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Config
from .errors import ConfigError, RunError


@dataclass
class PlannedRun:
    name: str  # folder name inside the sweep's directory
    config: Config
    path: Path


# -- the grid ---------------------------------------------------------------


def _split_values(raw: str) -> list[str]:
    """Comma-separated values; commas inside [...] or {...} belong to the value (``model.hidden=[128,64],[256]``)."""
    out, depth, cur = [], 0, ""
    for ch in raw:
        depth += ch in "[{"
        depth -= ch in "]}"
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    out.append(cur.strip())
    return out


def parse_grid(specs: Sequence[str], allow_empty: bool = False) -> dict[str, list[str]]:
    """``["model.code_dim=2,8", "data.name=mnist"]`` -> ``{"model.code_dim": ["2", "8"], "data.name": ["mnist"]}``."""
    grid: dict[str, list[str]] = {}
    for s in specs:
        if "=" not in s:
            raise ConfigError(f"--grid expects KEY=V1,V2,... (like model.code_dim=2,8,32), got '{s}'")
        key, raw = s.split("=", 1)
        key = key.strip()
        values = _split_values(raw)
        if not key or any(v == "" for v in values):
            raise ConfigError(f"--grid {s}: needs a key and non-empty values, like model.code_dim=2,8,32")
        if key in grid:
            raise ConfigError(f"--grid {key}: given twice; put all its values in one --grid")
        if len(set(values)) != len(values):
            raise ConfigError(f"--grid {key}: repeats a value ({raw})")
        grid[key] = values
    if not grid and not allow_empty:
        raise ConfigError("sweep: give --seeds N or at least one --grid KEY=V1,V2,...")
    return grid


def _slug(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", value).strip("_") or "_"


def grid_runs(grid: dict[str, list[str]]) -> list[tuple[str, list[str]]]:
    """The product of the grid as (folder name, overrides), in the order given.

    Folder names use the last part of each key (``code_dim-32_name-mnist``), or
    the whole key where two keys end alike (``data.name`` and ``model.name``).
    """
    keys = list(grid)
    tails = [k.rsplit(".", 1)[-1] for k in keys]
    labels = [k if tails.count(t) > 1 else t for k, t in zip(keys, tails)]
    out = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        name = "_".join(f"{_slug(lab)}-{_slug(v)}" for lab, v in zip(labels, combo))
        out.append((name, [f"{k}={v}" for k, v in zip(keys, combo)]))
    return out


def plan_sweep(recipe: str, grid: dict[str, list[str]], out: Path, overrides: Sequence[str] = ()) -> list[PlannedRun]:
    """Every config of the sweep, validated before anything trains (a bad value fails the whole sweep at once)."""
    from .recipes import resolve_config

    base = resolve_config(recipe, list(overrides))
    plans = []
    for name, ov in grid_runs(grid):
        try:
            cfg = base.replace(ov)
        except ConfigError as e:
            raise ConfigError(f"sweep run {name}: {e}") from None
        plans.append(PlannedRun(name, cfg, out / name))
    return plans


def plan_suite(spec: str, out: Path, overrides: Sequence[str] = ()) -> tuple[str, list[PlannedRun]]:
    """A suite's members as planned runs; the user's overrides come after each member's own."""
    from .recipes import resolve_config, suite_members

    name, _, members = suite_members(spec)
    plans = []
    for m in members:
        try:
            cfg = resolve_config(m.recipe, [*m.overrides, *overrides])
        except ConfigError as e:
            raise ConfigError(f"suite {name}, member {m.name}: {e}") from None
        plans.append(PlannedRun(m.name, cfg, out / m.name))
    return name, plans


# -- running -------------------------------------------------------------------


def run_state(plan: PlannedRun) -> str:
    """'done', 'partial' (a checkpoint to resume), or 'new'; raises when the folder holds another run."""
    from .run import load_config

    p = plan.path
    if not (p / "config.yaml").is_file():
        return "new"
    try:
        old = load_config(p)
    except ConfigError:
        raise RunError(
            f"{p}: holds a run whose config.yaml cannot be read; move it away or choose another --out"
        ) from None
    if old.to_dict() != plan.config.to_dict():
        raise RunError(
            f"{p}: holds a run with a different config; choose another --out, or delete that folder to redo it"
        )
    if (p / "summary.json").is_file():
        return "done"
    return "partial" if (p / "checkpoint" / "latest.json").is_file() else "new"


def stack_groups(plans: Sequence[PlannedRun]) -> list[list[PlannedRun]]:
    """New runs that can train as one stacked model (train/stacked.py), two or more per group."""
    from .train.stacked import shape_key, why_not_stackable

    groups: dict[tuple, list[PlannedRun]] = {}
    for p in plans:
        groups.setdefault(shape_key(p.config), []).append(p)
    return [g for g in groups.values() if why_not_stackable([p.config for p in g]) is None]


def run_all(
    plans: Sequence[PlannedRun],
    *,
    reports: bool = False,
    stack: bool = True,
    log: Callable[[str], None] = print,
    datasets: dict[str, Any] | None = None,
) -> list[Path]:
    """Trains what is not finished yet; returns every run's folder.

    With ``stack``, new runs that share an architecture (seeds, learning rates, noise levels...) train
    together as one stacked model first; the rest, and runs to resume, train one after another. Runs on
    the same data (``run.data_key``) load it once: ``datasets`` collects it by key, for the comparison
    page to reuse.
    """
    from .run import data_key
    from .runner import train

    datasets = {} if datasets is None else datasets

    def keep(runs) -> None:
        for run in runs:
            if run.splits is not None:
                datasets.setdefault(data_key(run.config), run.splits)

    states = [run_state(p) for p in plans]  # all folders checked before the first run starts
    todo = sum(s != "done" for s in states)
    log(f"{len(plans)} runs: {len(plans) - todo} finished already, {todo} to train")
    stacked: set[str] = set()
    if stack:
        from .runner import train_stacked

        for group in stack_groups([p for p, s in zip(plans, states) if s == "new"]):
            log(f"stacking {len(group)} runs: {', '.join(p.name for p in group)}")
            data = datasets.get(data_key(group[0].config))
            runs = train_stacked([p.config for p in group], [p.path for p in group], overwrite=True, log=log, data=data)
            keep(runs)
            stacked.update(p.name for p in group)
            if reports:
                from .report import write_run_report

                for run in runs:
                    write_run_report(run)
    for i, (plan, state) in enumerate(zip(plans, states), 1):
        if state == "done":
            log(f"[{i}/{len(plans)}] {plan.name}: finished, skipped")
            continue
        if plan.name in stacked:
            continue
        log(f"[{i}/{len(plans)}] {plan.name}: {'resuming' if state == 'partial' else 'training'}")
        data = datasets.get(data_key(plan.config))  # a resumed run's folder holds plan.config (run_state)
        if state == "partial":
            run = train(resume=plan.path, log=log, data=data)
        else:
            run = train(plan.config, plan.path, overwrite=True, log=log, data=data)
        keep([run])
        if reports:
            from .report import write_run_report

            write_run_report(run)
    return [p.path for p in plans]


def compare(
    paths: Sequence[Path],
    out_html: Path,
    title: str,
    log: Callable[[str], None] = print,
    datasets: dict[str, Any] | None = None,
) -> Path:
    from .report import write_comparison

    return write_comparison(list(paths), out_html, title=title, log=log, datasets=datasets)


def sweep(
    recipe: str,
    grid_specs: Sequence[str],
    out: str | Path | None = None,
    overrides: Sequence[str] = (),
    *,
    seeds: int | None = None,
    stack: bool = True,
    reports: bool = False,
    log: Callable[[str], None] = print,
) -> Path:
    """Runs the grid's product over ``recipe`` (times ``seeds`` seeds from the recipe's own); returns OUT/compare.html."""
    grid = parse_grid(grid_specs, allow_empty=seeds is not None)
    if seeds is not None:
        from .recipes import resolve_config

        if seeds < 1:
            raise ConfigError(f"--seeds: must be >= 1, got {seeds}")
        if "train.seed" in grid:
            raise ConfigError("--seeds: the grid sets train.seed already; give one or the other")
        first = resolve_config(recipe, list(overrides)).train.seed
        grid["train.seed"] = [str(first + i) for i in range(seeds)]
    out = Path(out) if out else Path("runs") / f"sweep-{_slug(Path(recipe).stem)}"
    plans = plan_sweep(recipe, grid, out, overrides)
    datasets: dict[str, Any] = {}
    paths = run_all(plans, reports=reports, stack=stack, log=log, datasets=datasets)
    title = f"sweep of {Path(recipe).stem} over " + ", ".join(f"{k} in {{{', '.join(v)}}}" for k, v in grid.items())
    return compare(paths, out / "compare.html", title, log, datasets)


def run_suite(
    spec: str,
    out: str | Path | None = None,
    overrides: Sequence[str] = (),
    *,
    reports: bool = False,
    log: Callable[[str], None] = print,
) -> Path:
    """Runs every member of a suite into OUT/MEMBER; returns OUT/compare.html."""
    from .recipes import suite_members

    name, desc, _ = suite_members(spec)
    out = Path(out) if out else Path("runs") / _slug(name)
    _, plans = plan_suite(spec, out, overrides)
    datasets: dict[str, Any] = {}
    paths = run_all(plans, reports=reports, log=log, datasets=datasets)
    return compare(paths, out / "compare.html", desc or name, log, datasets)
