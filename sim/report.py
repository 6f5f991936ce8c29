"""The short terminal table printed after a run (and by `servesim report DIR`)."""
from __future__ import annotations

KEYS = ("mean", "p50", "p90", "p95", "p99")


def _num(v, fmt: str = ".5g") -> str:
    return "-" if v is None or v != v else format(v, fmt)


def _ms(v) -> str:
    return "-" if v is None or v != v else f"{v * 1000:.4g}"


def _row(label: str, stats: dict) -> tuple[str, bool]:
    ci = stats.get("ci95") or {}
    cells, any_ci = [], False
    for k in KEYS:
        cell = _ms(stats.get(k))
        bounds = ci.get(k)
        if bounds is not None and None not in bounds:
            any_ci = True
            half_ms = (bounds[1] - bounds[0]) / 2 * 1000
            cell += f" ±{half_ms:.2g}" if half_ms >= 5e-4 else " ±0"
        cells.append(cell)
    return f"  {label:<12}" + "".join(f"{c:>16}" for c in cells), any_ci


def _table(s: dict, rows) -> list[str]:
    """Returns the percentile rows (ms) for the given (label, summary key) pairs, and the interval footnote."""
    lines = ["  (ms)        " + "".join(f"{k:>16}" for k in KEYS)]
    any_ci = False
    for label, key in rows:
        row, has = _row(label, s[key])
        lines.append(row)
        any_ci |= has
    if any_ci:
        conf = s.get("confidence") or {}
        lines.append(f"  ± is the {conf.get('level', 0.95):.0%} confidence half-width ({conf.get('method', '')}); "
                     "none shown where too few requests for it")
    return lines


def format_summary(summary: dict, batching: str = "") -> str:
    """Returns the human-readable table for a summary.json dict (null values print as '-')."""
    if "ttft_s" in summary:
        return format_llm_summary(summary, batching)
    s = summary
    lines = [f"servesim: {s['scenario']}  (seed {s['seed']}, {s['replications']} replication(s), "
             f"{s['requests']} requests measured, {_num(s.get('duration_s'), '.4g')} s simulated)"]
    if batching:
        lines.append(f"  batching     {batching}")
    state = "stable" if s["stable"] else "UNSTABLE"
    load = s.get("offered_load")
    lines.append(f"  offered      {_num(s.get('offered_rps'))} rps = {'-' if load is None else format(load, '.1%')} "
                 f"of capacity {_num(s.get('capacity_rps'))} rps  [{state}]")
    lines.append(f"  throughput   {_num(s.get('throughput_rps'))} rps    utilization {_num(s.get('utilization'), '.3f')}")
    b = s["batch_size"]
    lines.append(f"  batch size   mean {_num(b.get('mean'), '.3g')}   p50 {_num(b.get('p50'), '.3g')}   max {b['max']}"
                 f"   ({b['batches']} batches)")
    lines += _table(s, (("latency", "latency_s"), ("queue wait", "queue_wait_s")))
    if "slo" in s:
        for q, c in s["slo"]["targets"].items():
            verdict = c.get("verdict", "met" if c["met"] else "missed").upper()
            lines.append(f"  SLO {q} <= {c['target_ms']:g} ms: {verdict} ({q} {_num(c.get('achieved_ms'), '.4g')} ms"
                         + (", within the confidence interval: run longer or add replications)" if verdict == "UNCERTAIN" else ")"))
        lines.append(f"  SLO attainment {_num(s.get('slo_attainment'), '.3%')} of requests within the "
                     f"{s['slo']['attainment_target']} target")
    for w in s.get("warnings", []):
        lines.append(f"  WARNING: {w}")
    return "\n".join(lines)


def format_llm_summary(s: dict, batching: str = "") -> str:
    """Returns the table for an LLM summary: TTFT, TPOT, ITL, E2EL, tokens/s, KV cache, preemptions."""
    lines = [f"servesim: {s['scenario']}  (seed {s['seed']}, {s['replications']} replication(s), {s['requests']} requests "
             f"measured, {_num(s.get('duration_s'), '.4g')} s simulated)"]
    if batching:
        lines.append(f"  batching     {batching}")
    state = "stable" if s["stable"] else "UNSTABLE"
    lines.append(f"  offered      {_num(s.get('offered_rps'))} rps = {_num(s.get('offered_load'), '.1%')} of estimated "
                 f"capacity {_num(s.get('capacity_rps'))} rps  [{state}]")
    lines.append(f"  throughput   {_num(s.get('throughput_rps'))} rps, {_num(s.get('output_tokens_per_s'))} output tokens/s"
                 + (f", goodput {_num(s.get('goodput_rps'))} rps" if "goodput_rps" in s else ""))
    b = s["batch_size"]
    lines.append(f"  engine       busy {_num(s.get('utilization'), '.3f')}, mean {_num(b.get('mean'), '.3g')} decoding "
                 f"sequences per step (max {b['max']}), padding {s.get('decode_padding_fraction', 0):.1%} of decode slots")
    kv = s["kv_cache"]
    lines.append(f"  KV cache     mean {_num(kv.get('mean_utilization'), '.1%')}, max {_num(kv.get('max_utilization'), '.1%')} of "
                 f"{kv['capacity_tokens']} tokens; {s['preemptions']} preemptions ({s['recomputed_prefill_tokens']} tokens recomputed)")
    lines += _table(s, (("TTFT", "ttft_s"), ("TPOT", "tpot_s"), ("ITL", "itl_s"), ("E2E latency", "e2e_s")))
    if "slo" in s:
        for q, c in s["slo"]["targets"].items():
            lines.append(f"  SLO {q} <= {c['target_ms']:g} ms: {c['verdict'].upper()} ({_num(c.get('achieved_ms'), '.4g')} ms)")
        lines.append(f"  SLO attainment {_num(s.get('slo_attainment'), '.3%')} of requests met both TTFT and TPOT targets")
    for w in s.get("warnings", []):
        lines.append(f"  WARNING: {w}")
    return "\n".join(lines)
