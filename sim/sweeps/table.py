"""One flat row per point: the grid values, then the summary's headline metrics with their interval bounds.
No wall-clock, host or timing columns (those go to timings.parquet), so the same sweep gives the same table."""
from __future__ import annotations

import math

STATS = ("latency_s", "queue_wait_s", "ttft_s", "tpot_s", "itl_s", "e2e_s")
KEYS = ("mean", "p50", "p90", "p95", "p99")
SCALARS = ("requests", "offered_rps", "offered_load", "capacity_rps", "throughput_rps", "utilization",
           "output_tokens_per_s", "goodput_rps", "slo_attainment", "fleet_cost_per_hour", "cost_per_million_requests")


def _num(v):
    return math.nan if v is None else v


class _Row(dict):
    """A row whose grid keys are never overwritten: a metric named like one (`requests`) gets ` (measured)`."""

    def __init__(self, values: dict):
        super().__init__(values)
        self.grid = set(values)

    def __setitem__(self, key, value):
        super().__setitem__(f"{key} (measured)" if key in self.grid else key, value)


def row(values: dict, summary: dict, digest: str) -> dict:
    """Returns the point's row: grid keys as given, then `point`, headline metrics, `stable` and SLO verdicts."""
    out = _Row(values)
    out["point"] = digest
    for key in SCALARS:
        if key in summary:
            out[key] = _num(summary.get(key))
    for key in ("throughput_rps", "utilization", "slo_attainment"):
        ci = summary.get(f"{key}_ci95")
        if key in summary:
            out[f"{key}.ci_lo"], out[f"{key}.ci_hi"] = (_num(ci[0]), _num(ci[1])) if ci else (math.nan, math.nan)
    batch = summary.get("batch_size") or {}
    out["batch_size.mean"] = _num(batch.get("mean"))
    for stat in STATS:
        d = summary.get(stat)
        if not isinstance(d, dict):
            continue
        cis = d.get("ci95") or {}
        for k in KEYS:
            if k in d:
                out[f"{stat}.{k}"] = _num(d.get(k))
                lo, hi = cis.get(k) or (None, None)
                out[f"{stat}.{k}.ci_lo"], out[f"{stat}.{k}.ci_hi"] = _num(lo), _num(hi)
    out["stable"] = bool(summary.get("stable"))
    slo = summary.get("slo")
    if isinstance(slo, dict):
        out["slo_met"] = bool(slo.get("met"))
        for name, t in (slo.get("targets") or {}).items():
            out[f"slo.{name}"] = t.get("verdict")
    return dict(out)
