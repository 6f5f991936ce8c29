"""Statistics shared by every engine's summary: percentiles with confidence intervals, SLO verdicts.

Confidence intervals use sectioning: the point estimate comes from all measured requests, and its
spread from independent sections, which are the replications when there are several, else up to
`BATCH_MEANS` contiguous batches of one run (in arrival order). A percentile q is estimated per section
only when each section holds at least 100 / (1 - q) requests (10,000 for p99), so that each section's
tail estimate is itself meaningful; a single run therefore uses as many sections as it can fill, between
`MIN_SECTIONS` and `BATCH_MEANS` (a p99 interval from 50,000 measured requests up, with 5 sections and
Student's t on 4 degrees of freedom). Where no interval can be given, `ci95_missing` says why.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

LEVEL = 0.95
BATCH_MEANS = 10
MIN_SECTIONS = 5
MIN_FOR_MEAN = 30
PERCENTILES = (50, 90, 95, 99)
KEYS = ("mean", *(f"p{q}" for q in PERCENTILES))

# Student t quantiles for a two-sided 95% interval, df = 1..30.
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042]


def t975(df: int) -> float:
    """Returns the 97.5% quantile of Student's t with `df` degrees of freedom."""
    if df <= 30:
        return _T975[df - 1]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df * df)


def min_section_size(key: str) -> int:
    """Returns how many requests a section needs before its estimate of `key` ('mean', 'p99') is used."""
    if key == "mean":
        return MIN_FOR_MEAN
    q = int(key[1:]) / 100
    return int(math.ceil(100 / (1 - q)))


def point_stats(values: np.ndarray) -> dict[str, float]:
    """Returns mean, p50, p90, p95, p99 and max of `values` (NaN for an empty array)."""
    if values.size == 0:
        return {"mean": math.nan, **{f"p{q}": math.nan for q in PERCENTILES}, "max": math.nan}
    qs = np.percentile(values, PERCENTILES)
    out = {"mean": float(values.mean())}
    out.update({f"p{q}": float(v) for q, v in zip(PERCENTILES, qs)})
    out["max"] = float(values.max())
    return out


def _half_width(estimates: list[float]) -> float:
    est = np.asarray(estimates, dtype=float)
    return t975(est.size - 1) * float(est.std(ddof=1)) / math.sqrt(est.size)


def with_ci(parts: list[np.ndarray]) -> dict:
    """Returns point_stats of the pooled values plus `ci95` (per key [lo, hi] or None), `ci95_sections`
    (sections used per key) and, for keys without an interval, `ci95_missing` (why, in words).

    `parts` holds one array per replication; a single array is cut into batch means in its own order."""
    pooled = np.concatenate(parts) if len(parts) > 1 else parts[0]
    out: dict = point_stats(pooled)
    ci, used, missing = {}, {}, {}
    split_cache: dict[int, list[dict]] = {}
    for key in KEYS:
        need = min_section_size(key)
        if len(parts) > 1:
            smallest = min(p.size for p in parts)
            if smallest < need:
                ci[key], used[key] = None, None
                missing[key] = (f"needs {need:,} measured requests in each of the {len(parts)} replications; "
                                f"the smallest has {smallest:,}: lengthen the run")
                continue
            k = len(parts)
            if k not in split_cache:
                split_cache[k] = [point_stats(p) for p in parts]
        else:
            k = min(BATCH_MEANS, pooled.size // need)
            if k < MIN_SECTIONS:
                ci[key], used[key] = None, None
                missing[key] = (f"needs {MIN_SECTIONS * need:,} measured requests ({MIN_SECTIONS} sections of "
                                f"{need:,}); {pooled.size:,} were measured: lengthen the run or add replications")
                continue
            if k not in split_cache:
                split_cache[k] = [point_stats(p) for p in np.array_split(pooled, k)]
        half = _half_width([s[key] for s in split_cache[k]])
        ci[key], used[key] = [out[key] - half, out[key] + half], k
    out["ci95"] = ci
    out["ci95_sections"] = used
    if missing:
        out["ci95_missing"] = missing
    return out


def scalar_ci(values: list[float], pooled: float) -> Optional[list[float]]:
    """Returns the 95% interval around `pooled` from per-replication values (None with fewer than 2)."""
    if len(values) < 2:
        return None
    half = _half_width(values)
    return [pooled - half, pooled + half]


def confidence(replications: int) -> dict:
    """Returns the summary's `confidence` block: level and sectioning method."""
    if replications > 1:
        return {"level": LEVEL, "method": "independent replications", "sections": replications}
    return {"level": LEVEL, "method": "batch means", "sections": BATCH_MEANS, "min_sections": MIN_SECTIONS,
            "rule": f"{MIN_SECTIONS} to {BATCH_MEANS} contiguous sections in arrival order, each holding at least "
                    "100 / (1 - q) requests for percentile q (ci95_sections gives the number used)"}


def slo_verdict(target_ms: float, achieved_s: float, ci_s: Optional[list]) -> dict:
    """Returns {target_ms, achieved_ms, met, verdict} for one percentile target: verdict 'uncertain' when
    the target lies inside the estimate's confidence interval, else 'met' or 'missed'."""
    achieved_ms = achieved_s * 1000
    if ci_s is not None and None not in ci_s and ci_s[0] * 1000 <= target_ms <= ci_s[1] * 1000:
        verdict = "uncertain"
    else:
        verdict = "met" if achieved_ms <= target_ms else "missed"
    return {"target_ms": target_ms, "achieved_ms": achieved_ms, "met": bool(achieved_ms <= target_ms),
            "verdict": verdict}
