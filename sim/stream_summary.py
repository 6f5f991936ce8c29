"""summary.json for streaming runs (sim.sinks.StreamingSink): the same keys as sim.metrics.summarize, from
sketches and running sums instead of per-request records.

Counts, means, throughput, utilisation, batch sizes, SLO attainment and Little's law are exact; percentiles
are within the sketch's relative accuracy (sim.sketch.ACCURACY, 0.25%) of the records' values; confidence
intervals come from the same kind of sections (replications, or 5 to 10 contiguous groups of measured requests
in arrival order, whose boundaries fall on the sink's fine sections); the growth test reads the number in
system at its 21 edges from time histograms (linear within a bin of at most 1/2048 of the run).
"""
from __future__ import annotations

import math

import numpy as np

from .sketch import ACCURACY, merged
from .stability import SECTIONS, growth_verdict
from .stats import BATCH_MEANS, KEYS, MIN_SECTIONS, _half_width, confidence, min_section_size, scalar_ci, slo_verdict


def sketch_with_ci(sinks: list, attr: str) -> dict:
    """Returns sim.stats.with_ci's dict for the latency or wait sketches (`attr`) of the sinks' sections."""
    out = merged(getattr(s.overall(), attr) for s in sinks).stats()
    ci, used, missing = {}, {}, {}
    for key in KEYS:
        need = min_section_size(key)
        if len(sinks) > 1:
            smallest = min(s.measured for s in sinks)
            if smallest < need:
                ci[key] = used[key] = None
                missing[key] = (f"needs {need:,} measured requests in each of the {len(sinks)} replications; "
                                f"the smallest has {smallest:,}: lengthen the run")
                continue
            estimates = [getattr(s.overall(), attr).stats()[key] for s in sinks]
            k = len(sinks)
        else:
            groups = sinks[0].sections_for(need, BATCH_MEANS, MIN_SECTIONS)
            if groups is None:
                ci[key] = used[key] = None
                missing[key] = (f"needs {MIN_SECTIONS * need:,} measured requests ({MIN_SECTIONS} sections of "
                                f"{need:,}); {sinks[0].measured:,} were measured: lengthen the run or add replications")
                continue
            estimates = [getattr(g, attr).stats()[key] for g in groups]
            k = len(groups)
        # sections whose percentiles fall in one bucket agree exactly: no interval is narrower than a bucket
        half = max(_half_width(estimates), ACCURACY * abs(out[key]) if key != "mean" else 0.0)
        ci[key], used[key] = [out[key] - half, out[key] + half], k
    out["ci95"], out["ci95_sections"] = ci, used
    if missing:
        out["ci95_missing"] = missing
    return out


def _count_percentile(counts: np.ndarray, q: float) -> float:
    """Returns numpy's default percentile of the values 0, 1, 2, ... held `counts` times each."""
    cum = np.cumsum(counts)
    rank = q / 100 * (cum[-1] - 1)
    lo = int(np.searchsorted(cum, math.floor(rank), side="right"))
    hi = int(np.searchsorted(cum, math.ceil(rank), side="right"))
    return float(lo + (rank - math.floor(rank)) * (hi - lo))


def _growth(sinks: list) -> dict:
    incs, spans, measured = [], [], 0
    for s in sinks:
        w = s.window()
        measured += s.measured + s.unserved_measured
        if s.last_arrival <= w["start_s"]:
            continue
        edges = np.linspace(w["start_s"], s.last_arrival, SECTIONS + 1)
        in_system = s.arrivals.cumulative(edges) - s.departures.cumulative(edges)
        incs.append(np.diff(in_system))
        spans.append(s.last_arrival - w["start_s"])
    test = growth_verdict(incs, spans, measured)
    test["method"] += " (streaming: counts at the section edges from time histograms)"
    return test


def _littles_law(s) -> dict:
    """L from the counting processes' areas (exact sums), lambda W from the measured requests."""
    w = s.window()
    t0, t1 = w["start_s"], s.last_arrival
    if s.measured < 2 or t1 <= t0:
        return {"L": math.nan, "lambda_W": math.nan, "rel_error": math.nan}
    area_in = s.admitted * t1 - s.sum_arrival_after
    L = (area_in - w["out_area"]) / (t1 - t0)
    lam = s.after_warmup / (t1 - t0)
    lw = lam * s.overall().latency.mean
    return {"L": L, "lambda_W": lw, "rel_error": abs(L - lw) / lw if lw > 0 else math.nan}


def _stream_load(scenario, sinks: list, capacity: float, warnings: list[str]) -> tuple:
    """Returns (offered rps, load, queue limited, stable, growth test) of a streaming run; adds their warnings."""
    from .metrics import NO_SPAN, UNBOUNDED

    n = sum(s.measured for s in sinks)
    arr = scenario.workload.arrival
    if hasattr(arr, "tokens_for"):  # a trace: the replayed times' own rate, as records measure it
        spans = [(s.generated - 1, s.last_arrival - s.first_arrival) for s in sinks]
        rates = [k / span if span > 0 else None for k, span in spans]
        offered = float(np.mean(rates)) if None not in rates else None
        if offered is None:
            warnings.append(NO_SPAN)
    else:
        offered = float(arr.rate_rps) if getattr(arr, "rate_rps", None) else None
    load = offered / capacity if offered is not None and capacity else None
    a_priori = load is None or load < 1.0
    if not a_priori:
        warnings.append(f"UNSTABLE: offered load {offered:.6g} rps is {load:.0%} of capacity {capacity:.6g} rps "
                        f"({scenario.total_replicas} replica(s) x full batches); {UNBOUNDED}")
    q = scenario.server.queue
    limited = q.max_queue_size is not None or q.timeout_ms is not None
    if limited:  # a finite queue, or one that times requests out, cannot grow without bound
        if not a_priori:
            rejected, timed_out = sum(s.rejected for s in sinks), sum(s.timed_out for s in sinks)
            measured = max(n + sum(s.unserved_measured for s in sinks) + rejected + timed_out, 1)
            warnings[-1] = (f"offered load {offered:.6g} rps is {load:.0%} of capacity {capacity:.6g} rps: the queue "
                            f"limit turns the excess away ({rejected / measured:.1%} of requests rejected, "
                            f"{timed_out / measured:.1%} timed out)")
        a_priori = True
    growth = _growth(sinks)
    growth["a_priori_stable"] = a_priori
    stable = a_priori and growth["verdict"] != "growing"
    if growth["verdict"] == "growing":
        from .stability import describe_growth

        warnings.insert(0, describe_growth(growth))
    return offered, load, limited, stable, growth


def _stream_slo(targets: dict, sinks: list, lat: dict, measured: int) -> dict:
    """Returns the SLO keys of a streaming run: each target's verdict and the attainment (never served or turned
    away: misses) pooled and per replication."""
    checks = {q: slo_verdict(t, lat[q], lat["ci95"].get(q)) for q, t in targets.items()}
    top = max(targets, key=lambda q: -1 if q == "mean" else int(q[1:]))
    hits = [sum(sec.hits for sec in s.sections) for s in sinks]
    within = [h / max(s.measured + s.unserved_measured + s.rejected + s.timed_out, 1) for h, s in zip(hits, sinks)]
    pooled = sum(hits) / max(measured, 1)
    return {"slo": {"targets": checks, "met": all(c["met"] for c in checks.values()), "attainment_target": top},
            "slo_attainment": pooled, "slo_attainment_ci95": scalar_ci(within, pooled)}


def _stream_sections(summary: dict, scenario, sinks: list, windows: list, lat: dict, limited: bool,
                     busy: float) -> None:
    """Adds the shared sections (sim.summary_sections): the fleet from each replica's sketch, the load definition,
    the autoscaler."""
    from .fleet.summary import ReplicaView
    from .summary_sections import RunView, add_sections

    replicas = scenario.total_replicas
    views = [ReplicaView(None, None, s.measured, w["completed"], w["busy_s"], w["span_s"]) for s, w in zip(sinks, windows)]
    view = RunView(scenario, summary["throughput_rps"], lat, views, [(w["start_s"], w["end_s"]) for w in windows],
                   busy, limited, scalings=[s.scaling for s in sinks] if sinks[0].scaling is not None else None,
                   sketches=[merged(s.per_replica[i] for s in sinks) for i in range(replicas)],
                   requests=[int(sum(s.served_per_replica[i] + s.turned_per_replica[i] for s in sinks))
                             for i in range(replicas)])
    add_sections(summary, view)
    if sinks[0].classes is not None:
        summary["classes"] = stream_class_sections(scenario, sinks, windows)


def stream_class_sections(scenario, sinks: list, windows: list) -> dict:
    """Returns {class name: section} of a streaming run, the keys sim.classes.class_sections gives records, from
    each class's own sink (sinks[r].classes[c]: its requests only, in arrival order)."""
    from .classes import class_checks, pick_slo, top_targets

    span = sum(w["span_s"] for w in windows)
    out = {}
    for ci, klass in enumerate(scenario.workload.classes):
        subs = [s.classes[ci] for s in sinks]
        n = sum(x.measured for x in subs)
        rejected, timed_out = sum(x.rejected for x in subs), sum(x.timed_out for x in subs)
        unserved = sum(x.unserved_measured for x in subs)
        measured = [x.measured + x.rejected + x.timed_out + x.unserved_measured for x in subs]
        total = sum(measured)
        sec = {"share": klass.share, "priority": klass.priority, "requests": n,
               "rejected": {"count": rejected, "fraction": rejected / total if total else 0.0},
               "timed_out": {"count": timed_out, "fraction": timed_out / total if total else 0.0},
               "unserved": unserved, "offered_rps": total / span if span > 0 else math.nan}
        completed = [x.completed_requests for x in subs]
        sec["throughput_rps"] = sum(completed) / span if span > 0 else math.nan
        sec["throughput_rps_ci95"] = scalar_ci([c / w["span_s"] for c, w in zip(completed, windows)],
                                               sec["throughput_rps"])
        sec["latency_s"] = sketch_with_ci(subs, "latency") if n else None
        sec["queue_wait_s"] = sketch_with_ci(subs, "wait") if n else None
        targets = pick_slo(klass, scenario.slo, top_targets)
        if targets:
            checks, _ = class_checks(targets, sec, "latency_s")
            hits = [sum(sec_.hits for sec_ in x.sections) for x in subs]
            within = [h / m if m else math.nan for h, m in zip(hits, measured)]
            pooled = sum(hits) / max(total, 1)
            sec.update({"slo": {"targets": checks, "met": all(c["met"] for c in checks.values())},
                        "slo_attainment": pooled,
                        "slo_attainment_ci95": scalar_ci([w for w in within if not math.isnan(w)], pooled)})
        out[klass.name] = sec
    return out


def summarize_stream(scenario, sinks: list, source: str = "<scenario>") -> dict:
    """Returns summary.json's dict for a streaming run of `scenario` (one sink per replication)."""
    from .errors import ScenarioError
    from .metrics import HIGH_UTILIZATION

    replicas = scenario.total_replicas
    n = sum(s.measured for s in sinks)
    if n == 0:
        raise ScenarioError(source, "server.batching.max_batch_size", "no measured request was ever dispatched")
    warnings: list[str] = []
    capacity = scenario.capacity_rps()
    offered, load, limited, stable, growth = _stream_load(scenario, sinks, capacity, warnings)
    rejected, timed_out = sum(s.rejected for s in sinks), sum(s.timed_out for s in sinks)
    unserved = sum(s.unserved_measured for s in sinks)
    measured = n + unserved + rejected + timed_out
    windows = [s.window() for s in sinks]
    span = sum(w["span_s"] for w in windows)
    completed = sum(int(w["completed"].sum()) for w in windows)
    throughput = completed / span
    busy = sum(float(w["busy_s"].sum()) for w in windows)
    utilization = busy / (replicas * span)
    sizes = sum(s.batch_sizes for s in sinks)
    batches = int(sizes.sum())
    values = np.arange(sizes.size)
    if unserved:
        warnings.append(f"{unserved} measured request(s) were never dispatched (a static batch that never filled); "
                        "they count as SLO misses; set server.batching.max_queue_delay_ms to flush partial batches")
    mean_batch = float((np.arange(sizes.size) * sizes).sum() / max(int(sizes.sum()), 1))
    if stable and load is not None and load >= HIGH_UTILIZATION and not (limited and load >= 1):
        warnings.append(f"the offered load is {load:.0%} of capacity: queues and tail latency grow steeply with "
                        "any more traffic (or burstier traffic); leave headroom")
    elif stable and load is not None and utilization >= HIGH_UTILIZATION:
        warnings.append(f"the replicas were busy {utilization:.0%} of the time although the offered load is {load:.0%} "
                        f"of full-batch capacity: batches average {mean_batch:.3g} of up to {sizes.size - 1}, so the "
                        "real headroom is small; expect latency to climb steeply with more traffic")
    lat = sketch_with_ci(sinks, "latency")
    summary = {
        "scenario": scenario.name, "seed": scenario.seed, "replications": len(sinks), "requests": n,
        "requests_generated": int(sum(s.generated for s in sinks)), "unserved": unserved,
        "rejected": {"count": rejected, "fraction": rejected / measured if measured else 0.0},
        "timed_out": {"count": timed_out, "fraction": timed_out / measured if measured else 0.0},
        "delayed": {"count": sum(s.delayed for s in sinks),
                    "fraction": sum(s.delayed for s in sinks) / measured if measured else 0.0},
        "warmup_s": scenario.warmup_s, "duration_s": float(np.mean([s.horizon_s for s in sinks])),
        "measured_window_s": span / len(sinks), "offered_rps": offered, "capacity_rps": capacity,
        "offered_load": load, "stable": stable, "stability": growth,
        "throughput_rps": throughput,
        "throughput_rps_ci95": scalar_ci([int(w["completed"].sum()) / w["span_s"] for w in windows], throughput),
        "latency_s": lat, "queue_wait_s": sketch_with_ci(sinks, "wait"),
        "batch_size": {"mean": float((values * sizes).sum() / batches) if batches else math.nan,
                       "p50": _count_percentile(sizes, 50) if batches else math.nan,
                       "max": int(values[sizes > 0].max()) if batches else 0, "batches": batches},
        "utilization": utilization,
        "utilization_ci95": scalar_ci([float(w["busy_s"].sum()) / (replicas * w["span_s"]) for w in windows], utilization),
        "littles_law": _littles_law(sinks[0]),
        "confidence": confidence(len(sinks)),
        "streaming": {"relative_accuracy": ACCURACY, "percentiles": "from log-bucket sketches (sim.sketch)"},
        "warnings": warnings,
    }
    if scenario.slo is not None and scenario.slo.targets_ms():
        summary.update(_stream_slo(scenario.slo.targets_ms(), sinks, lat, measured))
    _stream_sections(summary, scenario, sinks, windows, lat, limited, busy)
    return summary
