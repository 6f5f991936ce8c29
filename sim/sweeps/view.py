"""Terminal tables of sweep and plan results."""
from __future__ import annotations

import math

import pandas as pd

from ..report import fmt_sig, layout

LATENCY = (("latency_s.p50", "p50"), ("latency_s.p99", "p99"), ("ttft_s.p99", "TTFT p99"), ("tpot_s.p99", "TPOT p99"),
           ("e2e_s.p99", "E2E p99"))


def _ms(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt_sig(v * 1000, 4)


def format_points(table: pd.DataFrame, keys: list[str]) -> str:
    """Returns one line per point: its grid values, latency percentiles (ms), throughput, stability, SLO."""
    cols = [(c, label) for c, label in LATENCY if c in table.columns]
    head = [k.split(".")[-1] for k in keys] + [f"{label} (ms)" for _, label in cols] + ["rps", "busy", "stable"]
    has_slo = "slo_met" in table.columns
    rows = [head + (["SLO"] if has_slo else [])]
    for _, r in table.iterrows():
        cells = [str(r[k]) for k in keys] + [_ms(r[c]) for c, _ in cols]
        cells += [fmt_sig(r.get("throughput_rps"), 5), fmt_sig(r.get("utilization"), 3), "yes" if r["stable"] else "NO"]
        if has_slo:
            cells.append("met" if r["slo_met"] else "missed")
        rows.append(cells)
    return "\n".join(layout(rows))


def format_plan(result: dict, keys: list[str]) -> str:
    """Returns the ranked configurations: largest rate meeting the SLO (and the lowest, when low rates fail),
    cost per hour and per million requests, and the choice at the target rate when one was given."""
    slo = ", ".join(f"{k} {v:g}" for k, v in result["slo"].items())
    lines = [f"servesim plan: {result['scenario']}  (SLO {slo}, met with 95% confidence)"]
    rows = [[k.split(".")[-1] for k in keys] + ["max rps", "min rps", "$/hour", "$/M requests", "note"]]
    for c in result["configs"]:
        rows.append([str(c["values"].get(k)) for k in keys] + [
            "-" if c["max_rate_rps"] is None else fmt_sig(c["max_rate_rps"], 4),
            "-" if c["min_rate_rps"] is None else fmt_sig(c["min_rate_rps"], 4),
            "-" if c["cost_per_hour"] is None else f"{c['cost_per_hour']:,.2f}",
            "-" if c["cost_per_million_requests"] is None else fmt_sig(c["cost_per_million_requests"], 4),
            c["note"]])
    lines += layout(rows)
    if "target_rate_rps" in result:
        best = result.get("best")
        who = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in (best or {}).get("values", {}).items()) or "the scenario"
        lines.append(f"  at {result['target_rate_rps']:g} rps: " + (f"best {who}" if best else "nothing meets the SLO")
                     + f"; {result['why']}")
    return "\n".join(lines)
