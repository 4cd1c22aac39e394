"""95% bootstrap intervals over queries, for a metric and for a paired difference between encoders.

Every encoder of one report is scored on the same queries, so a comparison resamples queries once
and takes both encoders' means on the same resample (a paired bootstrap). A difference is called a
*result* only when its interval excludes zero, a *hint* otherwise. Seeded: the same inputs give the
same interval.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

N_BOOT = 2000
LEVEL = 0.95
SEED = 0


def _indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _bounds(samples: np.ndarray, level: float) -> list[float]:
    tail = (1 - level) / 2 * 100
    finite = samples[np.isfinite(samples)]
    if finite.size < samples.size * 0.99:  # e.g. a ratio whose denominator resampled to 0
        return [float("nan"), float("nan")]
    lo, hi = np.percentile(finite, [tail, 100 - tail])
    return [float(lo), float(hi)]


def bootstrap_ci(
    values: Sequence[float], *, n_boot: int = N_BOOT, level: float = LEVEL, seed: int = SEED
) -> list[float]:
    """Percentile interval of the mean of ``values`` (one value per query)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return [float("nan"), float("nan")]
    return _bounds(v[_indices(v.size, n_boot, seed)].mean(axis=1), level)


def paired_difference(
    a: Sequence[float],
    b: Sequence[float],
    *,
    lower_is_better: bool = False,
    n_boot: int = N_BOOT,
    level: float = LEVEL,
    seed: int = SEED,
) -> dict[str, Any]:
    """``a`` against ``b`` on the same queries: mean difference, relative change, their intervals.

    ``relative`` is ``mean(a) / mean(b) - 1``; ``improvement`` is the relative change signed so
    that positive means ``a`` is better (``1 - a/b`` when lower is better, as harm is).
    ``verdict`` is ``result`` when the difference's interval excludes zero, else ``hint``.
    """
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.size == 0:
        raise ValueError("paired values must be non-empty and of equal length")
    idx = _indices(x.size, n_boot, seed)
    ma, mb = x[idx].mean(axis=1), y[idx].mean(axis=1)
    diff_ci = _bounds(ma - mb, level)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_samples = ma / mb - 1
    mean_a, mean_b = float(x.mean()), float(y.mean())
    relative = mean_a / mean_b - 1 if mean_b else float("nan")
    rel_ci = _bounds(rel_samples, level)
    sign = -1.0 if lower_is_better else 1.0
    improvement_ci = sorted(sign * r for r in rel_ci) if np.all(np.isfinite(rel_ci)) else rel_ci
    excludes = bool(np.all(np.isfinite(diff_ci)) and (diff_ci[0] > 0 or diff_ci[1] < 0))
    return {
        "n": int(x.size),
        "a": mean_a,
        "b": mean_b,
        "diff": mean_a - mean_b,
        "diff_ci": diff_ci,
        "relative": relative,
        "relative_ci": rel_ci,
        "improvement": sign * relative,
        "improvement_ci": improvement_ci,
        "verdict": "result" if excludes else "hint",
    }


def intervals(per_query: Mapping[str, Sequence[float]], metrics: Sequence[str]) -> dict[str, list[float]]:
    """``{metric: [lo, hi]}`` for each of ``metrics`` found in ``per_query``."""
    return {m: bootstrap_ci(per_query[m]) for m in metrics if m in per_query}


def comparisons(
    per_query: Mapping[str, Mapping[str, Sequence[float]]],
    metrics: Sequence[str],
    *,
    subject: str = "gen",
    lower_is_better: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
    """``{baseline: {metric: paired_difference(subject, baseline)}}`` for every other encoder."""
    if subject not in per_query:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for base, values in per_query.items():
        if base == subject:
            continue
        out[base] = {
            m: paired_difference(per_query[subject][m], values[m], lower_is_better=m in lower_is_better)
            for m in metrics
            if m in values and m in per_query[subject]
        }
    return out


def comparison_rows(
    comps: Mapping[str, Mapping[str, Mapping[str, Any]]], metrics: Sequence[str], **extra: Any
) -> list[dict[str, Any]]:
    """Table rows: one per baseline and metric, the difference with its interval and the verdict."""
    rows = []
    for base, by_metric in comps.items():
        for m in metrics:
            c = by_metric.get(m)
            if c is None:
                continue
            lo, hi = c["diff_ci"]
            rows.append(
                {
                    **extra,
                    "baseline": base,
                    "metric": m,
                    "gen": c["a"],
                    "baseline value": c["b"],
                    "gen - baseline": c["diff"],
                    "95% interval": f"[{lo:+.3f}, {hi:+.3f}]",
                    "verdict": c["verdict"],
                }
            )
    return rows


COMPARISON_COLUMNS = [
    "baseline",
    "metric",
    "gen",
    "baseline value",
    "gen - baseline",
    "95% interval",
    "verdict",
]
