"""Runs that differ only in their seed, summarised: mean and 95% interval per metric (for sweeps with --seeds)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

# keys that do not make two runs different settings
_IGNORED = ("name", "description", "published", "train.seed")


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and f"{prefix}{k}" != "published":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def mean_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its Student-t interval (n >= 2)."""
    from scipy.special import stdtrit  # the t quantile; scipy.stats would take 0.5 s more to import

    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, float(stdtrit(n - 1, 0.5 + level / 2)) * sd / math.sqrt(n)


def seed_groups(configs: Sequence[dict]) -> list[list[int]]:
    """Indices of runs whose configs are equal but for the seed, groups of two or more, in first-seen order."""
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(configs):
        key = repr(sorted((k, repr(v)) for k, v in _flat(c).items() if k not in _IGNORED))
        groups.setdefault(key, []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def seed_table(
    names: Sequence[str], configs: Sequence[dict], summaries: Sequence[dict], metrics: Sequence[tuple[str, str]]
) -> tuple[list[str], list[list[str]]] | None:
    """Header and rows ("mean ± half-width" per metric) for every group of seeds; None when there is none."""
    groups = seed_groups(configs)
    if not groups:
        return None
    keys = [(k, lab) for k, lab in metrics if any(summaries[i].get(k) is not None for g in groups for i in g)]
    rows = []
    for g in groups:
        row = [f"{names[g[0]]} … ({len(g)} seeds)"]
        for k, _ in keys:
            vals = [summaries[i][k] for i in g if isinstance(summaries[i].get(k), (int, float))]
            if len(vals) < 2:
                row.append("")
                continue
            m, h = mean_interval(vals)
            row.append(f"{m:.4g} ± {h:.2g}")
        rows.append(row)
    return ["settings"] + [lab for _, lab in keys], rows
