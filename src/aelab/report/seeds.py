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


def t_quantile(df: int, level: float = 0.95) -> float:
    """The two-sided Student-t quantile: P(|T| <= t) = ``level`` for T with ``df`` (integer) degrees of freedom.

    Exact for integer df (the closed forms of Abramowitz & Stegun 26.7.3-4, solved by bisection in the angle
    theta = atan(t / sqrt(df))), so a sweep's page does not import scipy.special for it (0.2-0.45 s, 2.5 s cold).
    """
    if df < 1 or not 0.0 < level < 1.0:
        raise ValueError(f"t_quantile needs df >= 1 and 0 < level < 1, got df={df}, level={level}")

    def two_sided(theta: float) -> float:  # P(|T| <= sqrt(df) tan(theta)), increasing in theta
        s, c2 = math.sin(theta), math.cos(theta) ** 2
        term, total = 1.0, 1.0
        if df % 2 == 0:  # sin(theta) (1 + 1/2 c^2 + 1.3/(2.4) c^4 + ... up to c^(df-2))
            for k in range(2, df, 2):
                term *= (k - 1) / k * c2
                total += term
            return s * total
        for k in range(3, df, 2):  # odd: 2/pi (theta + sin cos (1 + 2/3 c^2 + 2.4/(3.5) c^4 + ... up to c^(df-3)))
            term *= (k - 1) / k * c2
            total += term
        return 2 / math.pi * (theta + (s * math.sqrt(c2) * total if df > 1 else 0.0))

    lo, hi = 0.0, math.pi / 2
    for _ in range(100):  # bisection to the last bit of a double
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if two_sided(mid) < level else (lo, mid)
    return math.sqrt(df) * math.tan((lo + hi) / 2)


def mean_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its Student-t interval (n >= 2)."""
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, t_quantile(n - 1, level) * sd / math.sqrt(n)


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
