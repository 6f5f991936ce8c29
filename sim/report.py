"""The short terminal table printed after a run (and by `servesim report DIR`)."""
from __future__ import annotations


def _ms(v) -> str:
    return "-" if v is None or v != v else f"{v * 1000:.4g}"


def _row(label: str, stats: dict) -> list[str]:
    keys = ("mean", "p50", "p90", "p95", "p99")
    ci = stats.get("ci95") or {}
    cells = []
    for k in keys:
        cell = _ms(stats.get(k))
        if k in ci and ci[k] is not None and None not in ci[k]:
            half_ms = (ci[k][1] - ci[k][0]) / 2 * 1000
            cell += f" ±{half_ms:.2g}" if half_ms >= 5e-4 else " ±0"
        cells.append(cell)
    return [f"  {label:<12}" + "".join(f"{c:>16}" for c in cells)]


def format_summary(summary: dict, batching: str = "") -> str:
    """Returns the human-readable table for a summary.json dict."""
    s = summary
    lines = [f"servesim: {s['scenario']}  (seed {s['seed']}, {s['replications']} replication(s), "
             f"{s['requests']} requests measured, {s['duration_s']:.4g} s simulated)"]
    if batching:
        lines.append(f"  batching     {batching}")
    state = "stable" if s["stable"] else "UNSTABLE"
    lines.append(f"  offered      {s['offered_rps']:.5g} rps = {s['offered_load']:.1%} of capacity "
                 f"{s['capacity_rps']:.5g} rps  [{state}]")
    lines.append(f"  throughput   {s['throughput_rps']:.5g} rps    utilization {s['utilization']:.3f}")
    b = s["batch_size"]
    lines.append(f"  batch size   mean {b['mean']:.3g}   p50 {b['p50']:.3g}   max {b['max']}   ({b['batches']} batches)")
    lines.append("  (ms)        " + "".join(f"{k:>16}" for k in ("mean", "p50", "p90", "p95", "p99")))
    lines += _row("latency", s["latency_s"])
    lines += _row("queue wait", s["queue_wait_s"])
    conf = s.get("confidence") or {}
    lines.append(f"  ± is the {conf.get('level', 0.95):.0%} confidence half-width ({conf.get('method', '')})")
    if "slo" in s:
        for q, c in s["slo"]["targets"].items():
            verdict = "MET" if c["met"] else "MISSED"
            lines.append(f"  SLO {q} <= {c['target_ms']:g} ms: {verdict} ({q} {c['achieved_ms']:.4g} ms)")
        lines.append(f"  SLO attainment {s['slo_attainment']:.3%} of requests within the {s['slo']['attainment_target']} target")
    for w in s.get("warnings", []):
        lines.append(f"  WARNING: {w}")
    return "\n".join(lines)
