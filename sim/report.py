"""The short terminal table printed after a run (and by `servesim report DIR`).

Every formatter accepts a summary.json dict in which any value may be null (NaN is written as null) or missing:
missing numbers print as '-'.
"""
from __future__ import annotations

import math
import numbers

KEYS = ("mean", "p50", "p90", "p95", "p99")
SECONDS_FROM_MS = 10_000.0  # a table (or plot axis) whose largest value reaches this many ms is shown in seconds
GAP = "  "                  # between table columns, whatever their width


def _missing(v) -> bool:
    return v is None or isinstance(v, bool) or not isinstance(v, numbers.Real) or v != v


def fmt_sig(v, sig: int = 4) -> str:
    """Returns v rounded to `sig` significant digits in plain notation (no exponent, trailing zeros dropped), '-' if
    missing: 1981187 -> '1981000', 0.017388 -> '0.01739'. Magnitudes below 1e-8 keep exponent notation, where plain
    notation would be a row of zeros.
    """
    if _missing(v):
        return "-"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == 0:
        return "0"
    places = sig - 1 - math.floor(math.log10(abs(v)))  # negative: round to tens, hundreds, ...
    # rounding can carry into the next digit (9.9996 -> 10.00): count places again from the rounded value
    r = round(v, places)
    if r != 0:
        places = sig - 1 - math.floor(math.log10(abs(r)))
    if places > 8:
        return format(v, f".{sig - 1}e")
    text = format(round(v, places), f".{max(places, 0)}f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def time_unit(largest_ms) -> tuple[str, float]:
    """Returns (unit name, divisor from ms): ("s", 1000) when the largest value reaches SECONDS_FROM_MS ms, else ("ms", 1)."""
    if not _missing(largest_ms) and abs(largest_ms) >= SECONDS_FROM_MS:
        return "s", 1000.0
    return "ms", 1.0


def fmt_duration_ms(v_ms) -> str:
    """Returns a duration given in ms as text with its unit ('5.344 ms', '1981 s'), '-' if missing."""
    if _missing(v_ms):
        return "-"
    unit, div = time_unit(v_ms)
    return f"{fmt_sig(v_ms / div)} {unit}"


def _ms(v_s) -> str:
    """Returns a duration given in seconds as text with its unit, '-' if missing."""
    return "-" if _missing(v_s) else fmt_duration_ms(v_s * 1000)


def _num(v, fmt: str = ".5g") -> str:
    if _missing(v):
        return "-"
    if fmt.endswith("g"):  # plain notation for counts and rates too: 1.2e+05 rps reads badly
        return fmt_sig(v, int(fmt[1:-1] or 6))
    return format(v, fmt)


def _txt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and v != v) else str(v)


def _stats(s: dict, key: str) -> dict:
    v = s.get(key)
    return v if isinstance(v, dict) else {}


def _row_cells(stats: dict, div_ms: float) -> tuple[list[str], bool]:
    """Returns the cells (stats in s, shown in the unit whose size is div_ms ms) and whether any has a ± half-width."""
    ci = stats.get("ci95") or {}
    cells, any_ci = [], False
    for k in KEYS:
        v = stats.get(k)
        cell = "-" if _missing(v) else fmt_sig(v * 1000 / div_ms)
        bounds = ci.get(k) if isinstance(ci, dict) else None
        if cell != "-" and isinstance(bounds, (list, tuple)) and len(bounds) == 2 and not any(map(_missing, bounds)):
            any_ci = True
            half_ms = (bounds[1] - bounds[0]) / 2 * 1000
            cell += f" ±{fmt_sig(half_ms / div_ms, 2)}" if half_ms >= 5e-4 else " ±0"
        cells.append(cell)
    return cells, any_ci


def _row(label: str, stats: dict, div_ms: float = 1.0) -> tuple[list[str], bool]:
    """Returns a table row as cells (label first) and whether it shows a ± half-width."""
    cells, any_ci = _row_cells(stats or {}, div_ms)
    return [label] + cells, any_ci


def layout(rows: list[list[str]], indent: str = "  ") -> list[str]:
    """Returns the rows as lines: first column left-aligned, the others right-aligned, each column as wide as its
    widest cell and separated by at least two spaces."""
    ncol = max(len(r) for r in rows)
    widths = [max(len(r[c]) if c < len(r) else 0 for r in rows) for c in range(ncol)]
    lines = []
    for r in rows:
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]
        lines.append((indent + GAP.join(cells)).rstrip())
    return lines


def _table(s: dict, rows) -> list[str]:
    """Returns the percentile rows for the given (label, summary key) pairs, each in its own unit (ms, or s
    when the row's largest value reaches 10 s, so TPOT stays in ms beside a TTFT in seconds), and the
    interval footnote."""
    table = [["", *KEYS]]
    any_ci = False
    for label, key in rows:
        stats = _stats(s, key)
        largest_ms = max((abs(v) * 1000 for k in KEYS if not _missing(v := stats.get(k))), default=None)
        unit, div = time_unit(largest_ms)
        row, has = _row(f"{label} ({unit})", stats, div)
        table.append(row)
        any_ci |= has
    lines = layout(table)
    if any_ci:
        conf = s.get("confidence") if isinstance(s.get("confidence"), dict) else {}
        level = conf.get("level")
        level_txt = "95%" if _missing(level) else format(level, ".0%")
        lines.append(f"  ± is the {level_txt} confidence half-width ({conf.get('method') or '-'}); "
                     "none shown where too few requests for it")
    return lines


def _state(s: dict) -> str:
    return {True: "stable", False: "UNSTABLE"}.get(s.get("stable"), "stability unknown")


def _header(s: dict, batching: str) -> list[str]:
    lines = [f"servesim: {_txt(s.get('scenario'))}  (seed {_txt(s.get('seed'))}, {_txt(s.get('replications'))} "
             f"replication(s), {_txt(s.get('requests'))} requests measured, {_num(s.get('duration_s'), '.4g')} s simulated)"]
    batching = batching or s.get("batching") or ""
    if batching:
        lines.append(f"  batching     {batching}")
    return lines


def _slo_targets(s: dict) -> dict:
    slo = s.get("slo")
    targets = slo.get("targets") if isinstance(slo, dict) else None
    return {q: (c if isinstance(c, dict) else {}) for q, c in targets.items()} if isinstance(targets, dict) else {}


def _verdict(c: dict) -> str:
    v = c.get("verdict") or {True: "met", False: "missed"}.get(c.get("met"), "-")
    return str(v).upper()


def _fleet(s: dict) -> list[str]:
    """Returns the fleet's cost line and a per-group (or per-replica) table; nothing for an old summary."""
    reps = s.get("replicas") if isinstance(s.get("replicas"), list) else []
    groups = s.get("groups") if isinstance(s.get("groups"), dict) else {}
    lines = []
    if "fleet_cost_per_hour" in s:
        if _missing(s.get("fleet_cost_per_hour")):
            lines.append(f"  fleet        cost unknown ({_txt(s.get('cost_note'))})")
        else:
            lines.append(f"  fleet        ${_num(s.get('fleet_cost_per_hour'), ',.2f')}/hour, "
                         f"${_num(s.get('cost_per_million_requests'), '.4g')} per million requests")
    rows = []
    if len(groups) > 1:
        rows = [[name, _txt(g.get("replicas")), g] for name, g in groups.items() if isinstance(g, dict)]
        head = "group"
    elif 1 < len(reps) <= 8:
        rows = [[f"{r.get('group')} {r.get('index')}" if len(groups) > 1 else str(r.get("index")), "1", r]
                for r in reps if isinstance(r, dict)]
        head = "replica"
    if rows:
        lats = [g.get("latency_s") if isinstance(g.get("latency_s"), dict) else {} for _, _, g in rows]
        largest = max((abs(v) * 1000 for lat in lats for k in ("mean", "p99") if not _missing(v := lat.get(k))),
                      default=None)
        unit, div = time_unit(largest)  # one unit for the column, as in the percentile table
        table = [[head, "replicas", "requests", "rps", "busy", f"mean ({unit})", f"p99 ({unit})"]]
        for (name, n, g), lat in zip(rows, lats):
            table.append([name, n, _txt(g.get("requests")), _num(g.get("throughput_rps"), ".5g"),
                          _num(g.get("utilization"), ".3f"), _in(lat.get("mean"), div), _in(lat.get("p99"), div)])
        lines += layout(table)
    elif len(reps) > 8:
        util = [r.get("utilization") for r in reps if isinstance(r, dict) and not _missing(r.get("utilization"))]
        if util:
            lines.append(f"  replicas     {len(reps)}: busy min {min(util):.3f}, max {max(util):.3f}")
    return lines


def _in(v_s, div_ms: float) -> str:
    """Returns seconds `v_s` in the unit whose divisor from ms is div_ms, 4 significant digits."""
    return "-" if _missing(v_s) else fmt_sig(v_s * 1000 / div_ms, 4)


def _classes(s: dict) -> list[str]:
    """Returns one line per request class: priority, share, the class's headline latency, throughput, turned away
    and SLO attainment."""
    classes = s.get("classes") if isinstance(s.get("classes"), dict) else {}
    lines = []
    for name, c in classes.items():
        if not isinstance(c, dict):
            continue
        key, label = ("ttft_s", "TTFT") if "ttft_s" in c else ("latency_s", "latency")
        st = c.get(key) if isinstance(c.get(key), dict) else {}
        lost = sum((c.get(k) or {}).get("count", 0) for k in ("rejected", "timed_out") if isinstance(c.get(k), dict))
        line = (f"  class {name}: priority {_txt(c.get('priority'))}, share {_num(c.get('share'), '.0%')}; {label} p50 "
                f"{_ms(st.get('p50'))}, p99 {_ms(st.get('p99'))}; {_num(c.get('throughput_rps'))} rps")
        if lost:
            line += f"; {lost} rejected or timed out"
        if "slo_attainment" in c:
            line += f"; SLO {'met' if (c.get('slo') or {}).get('met') else 'MISSED'}, attainment {_num(c['slo_attainment'], '.2%')}"
        lines.append(line)
    return lines


def _warnings(s: dict) -> list[str]:
    return [f"  WARNING: {w}" for w in (s.get("warnings") or [])]


def format_summary(summary: dict, batching: str = "") -> str:
    """Returns the human-readable table for a summary.json dict (null values print as '-'); `batching` defaults to
    the summary's own "batching" text."""
    if "ttft_s" in summary:
        return format_llm_summary(summary, batching)
    s = summary
    lines = _header(s, batching)
    lines += _load_lines(s, "capacity")
    lines.append(f"  throughput   {_num(s.get('throughput_rps'))} rps    utilization {_num(s.get('utilization'), '.3f')}")
    rej = s.get("rejected") if isinstance(s.get("rejected"), dict) else {}
    if rej.get("count"):
        lines.append(f"  rejected     {_txt(rej.get('count'))} ({_num(rej.get('fraction'), '.2%')}) by the queue limit")
    tmo = s.get("timed_out") if isinstance(s.get("timed_out"), dict) else {}
    if tmo.get("count"):
        lines.append(f"  timed out    {_txt(tmo.get('count'))} ({_num(tmo.get('fraction'), '.2%')}) in the queue")
    dly = s.get("delayed") if isinstance(s.get("delayed"), dict) else {}
    if dly.get("count"):
        lines.append(f"  delayed      {_txt(dly.get('count'))} ({_num(dly.get('fraction'), '.2%')}) timed out and waited "
                     "behind the others")
    b = _stats(s, "batch_size")
    lines.append(f"  batch size   mean {_num(b.get('mean'), '.3g')}   p50 {_num(b.get('p50'), '.3g')}   "
                 f"max {_txt(b.get('max'))}   ({_txt(b.get('batches'))} batches)")
    lines += _table(s, (("latency", "latency_s"), ("queue wait", "queue_wait_s")))
    if isinstance(s.get("slo"), dict):
        for q, c in _slo_targets(s).items():
            verdict = _verdict(c)
            lines.append(f"  SLO {q} <= {_num(c.get('target_ms'))} ms: {verdict} ({q} {fmt_duration_ms(c.get('achieved_ms'))}"
                         + (", within the confidence interval: run longer or add replications)" if verdict == "UNCERTAIN" else ")"))
        lines.append(f"  SLO attainment {_num(s.get('slo_attainment'), '.3%')} of requests within the "
                     f"{_txt(s['slo'].get('attainment_target'))} target")
    lines += _stages(s)
    lines += _autoscaler(s)
    lines += _classes(s)
    lines += _fleet(s)
    lines += _warnings(s)
    return "\n".join(lines)


def _load_lines(s: dict, capacity: str) -> list[str]:
    """Returns the offered-load line, or for closed-loop clients their line and the response-time law's."""
    cl = s.get("closed_loop") if isinstance(s.get("closed_loop"), dict) else None
    if not cl:
        return [f"  offered      {_num(s.get('offered_rps'))} rps = {_num(s.get('offered_load'), '.1%')} "
                f"of {capacity} {_num(s.get('capacity_rps'))} rps  [{_state(s)}]"]
    return [f"  clients      {_txt(cl.get('clients'))} closed-loop, think {_ms(cl.get('think_time_s'))}: "
            f"load {_num(s.get('offered_load'), '.1%')} of {capacity} {_num(s.get('capacity_rps'))} rps  [{_state(s)}]",
            f"  law          R = N/X - Z = {_ms(cl.get('law_response_time_s'))} vs measured "
            f"{_ms(cl.get('response_time_s'))} ({_num(cl.get('law_rel_error'), '.2%')} apart)"]


def _autoscaler(s: dict) -> list[str]:
    """Returns a line for an autoscaled fleet: replicas used, replica-hours and the day's cost."""
    a = s.get("autoscaler") if isinstance(s.get("autoscaler"), dict) else None
    if not a:
        return []
    line = (f"  autoscaler   mean {_num(a.get('mean_replicas'), '.3g')} replicas (peak {_txt(a.get('peak_replicas'))}), "
            f"{_num(a.get('replica_hours'), '.4g')} replica-hours, {_num(a.get('scale_ups'), '.3g')} up / "
            f"{_num(a.get('scale_downs'), '.3g')} down")
    if a.get("cost_per_day") is not None:
        line += (f"; ${_num(a.get('cost_per_day'), ',.2f')} a day against ${_num(a.get('fixed_peak_cost_per_day'), ',.2f')} "
                 "for a fixed fleet of the peak")
    return [line]


def _stages(s: dict) -> list[str]:
    """Returns a line for the time spent outside the GPU (sim.stages)."""
    st = s.get("stages") if isinstance(s.get("stages"), dict) else None
    if not st:
        return []
    parts = []
    pre = st.get("preprocess") if isinstance(st.get("preprocess"), dict) else None
    if pre:
        parts.append(f"preprocess {_txt(pre.get('workers'))} worker(s): mean {_ms(_stats(pre, 'time_s').get('mean'))} "
                     f"(waiting {_ms(_stats(pre, 'wait_s').get('mean'))})")
    post = st.get("postprocess") if isinstance(st.get("postprocess"), dict) else None
    if post:
        parts.append(f"postprocess {_txt(post.get('workers'))} worker(s): waiting {_ms(_stats(post, 'wait_s').get('mean'))}")
    if isinstance(st.get("after_gpu_s"), dict):
        parts.append(f"after the GPU mean {_ms(_stats(st, 'after_gpu_s').get('mean'))}"
                     + (f" (pipeline {fmt_duration_ms(st.get('pipeline_latency_ms'))})" if st.get("pipeline_latency_ms") else ""))
    return ["  stages       " + "; ".join(parts)]


def format_llm_summary(s: dict, batching: str = "") -> str:
    """Returns the table for an LLM summary: TTFT, TPOT, ITL, E2EL, tokens/s, KV cache, preemptions (null values
    print as '-'; `batching` defaults to the summary's own "batching" text)."""
    lines = _header(s, batching)
    lines += _load_lines(s, "estimated capacity")
    lines.append(f"  throughput   {_num(s.get('throughput_rps'))} rps, {_num(s.get('output_tokens_per_s'))} output tokens/s"
                 + (f", goodput {_num(s.get('goodput_rps'))} rps" if "goodput_rps" in s else ""))
    b = _stats(s, "batch_size")
    lines.append(f"  engine       busy {_num(s.get('utilization'), '.3f')}, mean {_num(b.get('mean'), '.3g')} decoding "
                 f"sequences per step (max {_txt(b.get('max'))}), padding {_num(s.get('decode_padding_fraction', 0), '.1%')} "
                 "of decode slots")
    kv = _stats(s, "kv_cache")
    lines.append(f"  KV cache     mean {_num(kv.get('mean_utilization'), '.1%')}, max {_num(kv.get('max_utilization'), '.1%')} of "
                 f"{_txt(kv.get('capacity_tokens'))} tokens; {_txt(s.get('preemptions'))} preemptions "
                 f"({_txt(s.get('recomputed_prefill_tokens'))} tokens recomputed)")
    lines += _table(s, (("TTFT", "ttft_s"), ("TPOT", "tpot_s"), ("ITL", "itl_s"), ("E2E latency", "e2e_s")))
    if isinstance(s.get("slo"), dict):
        for q, c in _slo_targets(s).items():
            lines.append(f"  SLO {q} <= {_num(c.get('target_ms'))} ms: {_verdict(c)} ({fmt_duration_ms(c.get('achieved_ms'))})")
        lines.append(f"  SLO attainment {_num(s.get('slo_attainment'), '.3%')} of requests met both TTFT and TPOT targets")
    for key, what in (("rejected", "by the waiting-queue limit"), ("timed_out", "(clients gave up waiting)")):
        c = s.get(key) if isinstance(s.get(key), dict) else {}
        if c.get("count"):
            lines.append(f"  {key.replace('_', ' '):<12} {_txt(c.get('count'))} ({_num(c.get('fraction'), '.2%')}) {what}")
    lines += _autoscaler(s)
    lines += _classes(s)
    lines += _fleet(s)
    lines += _warnings(s)
    return "\n".join(lines)
