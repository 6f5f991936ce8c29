"""Per-request records, summary statistics and confidence intervals.

Confidence intervals use sectioning: the point estimate comes from all measured requests, and its
spread from independent sections, which are the replications when there are several, else
`BATCH_MEANS` contiguous batches of one run (in arrival order). A percentile q gets an interval only
when every section holds at least 100 / (1 - q) requests (10,000 for p99), so that each section's tail
estimate is itself meaningful; otherwise its interval is null rather than falsely tight.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pandas as pd

from .engine import BatchLog
from .errors import ScenarioError

LEVEL = 0.95
BATCH_MEANS = 10
MIN_FOR_MEAN = 30
PERCENTILES = (50, 90, 95, 99)
HIGH_UTILIZATION = 0.9

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


def request_frame(logs: list[BatchLog]) -> pd.DataFrame:
    """Returns one row per request of every replication (unserved requests have NaN dispatch/completion)."""
    frames = [pd.DataFrame(request_columns(log, rep)) for rep, log in enumerate(logs)]
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def request_columns(log: BatchLog, replication: int = 0) -> dict[str, np.ndarray]:
    """Returns per-request numpy columns: times in seconds, batch id and size, replica."""
    n = log.arrival_s.size
    served = log.served
    batch = np.full(n, -1, dtype=np.int64)
    batch[:served] = np.repeat(np.arange(log.size.size, dtype=np.int64), log.size)
    dispatch = np.full(n, np.nan)
    completion = np.full(n, np.nan)
    size = np.zeros(n, dtype=np.int32)
    replica = np.full(n, -1, dtype=np.int32)
    b = batch[:served]
    dispatch[:served] = log.dispatch_s[b]
    completion[:served] = log.completion_s[b]
    size[:served] = log.size[b]
    replica[:served] = log.replica[b]
    return {
        "replication": np.full(n, replication, dtype=np.int32),
        "request_id": np.arange(n, dtype=np.int64),
        "arrival_s": log.arrival_s,
        "dispatch_s": dispatch,
        "completion_s": completion,
        "queue_wait_s": dispatch - log.arrival_s,
        "latency_s": completion - log.arrival_s,
        "batch_id": batch,
        "batch_size": size,
        "replica": replica,
    }


class _Rep:
    """The measured slice of one replication: requests arriving at or after warmup_s."""

    def __init__(self, log: BatchLog, warmup_s: float, replicas: int):
        served = log.served
        self.log = log
        a = log.arrival_s[:served]
        first = int(np.searchsorted(a, warmup_s, side="left"))
        counts = np.cumsum(log.size, dtype=np.int64)
        b0 = int(np.searchsorted(counts, first, side="right"))  # first batch holding a measured request
        offset = first - (int(counts[b0 - 1]) if b0 else 0)
        idx = np.repeat(np.arange(b0, log.size.size), log.size[b0:])[offset:]
        self.arrival = a[first:]
        self.latency = log.completion_s[idx] - self.arrival
        self.wait = log.dispatch_s[idx] - self.arrival
        self.n = self.arrival.size
        # requests that arrived in the measured window but never formed a batch (static, no timeout)
        self.unserved = int(log.arrival_s.size - max(served, int(np.searchsorted(log.arrival_s, warmup_s))))
        self.start_s = warmup_s if warmup_s > 0 else (float(log.arrival_s[0]) if log.arrival_s.size else 0.0)
        self.end_s = float(log.completion_s[idx].max()) if self.n else self.start_s
        self.span_s = max(self.end_s - self.start_s, 1e-300)
        self.horizon_s = float(max(log.completion_s.max(initial=0.0), log.arrival_s.max(initial=0.0)))
        self.batch_sizes = log.size[log.dispatch_s >= warmup_s]
        d = np.clip(log.dispatch_s, self.start_s, self.end_s)
        c = np.clip(log.completion_s, self.start_s, self.end_s)
        self.busy_s = float((c - d).sum())
        self.utilization = self.busy_s / (replicas * self.span_s)
        done = (log.completion_s >= self.start_s) & (log.completion_s <= self.end_s)
        self.completed = int(log.size[done].sum(dtype=np.int64))  # any request finishing in the window
        self.throughput_rps = self.completed / self.span_s


def _stats(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {"mean": math.nan, **{f"p{q}": math.nan for q in PERCENTILES}, "max": math.nan}
    qs = np.percentile(values, PERCENTILES)
    out = {"mean": float(values.mean())}
    out.update({f"p{q}": float(v) for q, v in zip(PERCENTILES, qs)})
    out["max"] = float(values.max())
    return out


def _with_ci(reps: list[_Rep], attr: str) -> dict:
    pooled = np.concatenate([getattr(r, attr) for r in reps]) if len(reps) > 1 else getattr(reps[0], attr)
    out: dict = _stats(pooled)
    parts = [getattr(r, attr) for r in reps] if len(reps) > 1 else np.array_split(pooled, BATCH_MEANS)
    smallest = min(p.size for p in parts)
    per = [_stats(p) for p in parts] if smallest else []
    ci = {}
    for key in ("mean", *(f"p{q}" for q in PERCENTILES)):
        if smallest < min_section_size(key):
            ci[key] = None
            continue
        est = np.array([s[key] for s in per])
        half = t975(est.size - 1) * float(est.std(ddof=1)) / math.sqrt(est.size)
        ci[key] = [out[key] - half, out[key] + half]
    out["ci95"] = ci
    return out


def _scalar_ci(values: list[float], pooled: float) -> Optional[list[float]]:
    if len(values) < 2:
        return None
    est = np.asarray(values)
    half = t975(est.size - 1) * float(est.std(ddof=1)) / math.sqrt(est.size)
    return [pooled - half, pooled + half]


def littles_law(rep: _Rep) -> dict[str, float]:
    """Checks L = lambda W over [start, last arrival] of one replication.

    L is the time-average number in system from the counting processes alone (arrivals in, batch
    completions out, counted per batch), lambda the arrival rate in the window, and W the mean latency
    of the measured requests from the per-request records. The two sides are computed independently,
    so a wrong request-to-batch mapping or a wrong completion time shows up as a mismatch; edge effects
    make the relative error shrink like W / window.
    """
    log = rep.log
    a = log.arrival_s
    if rep.n < 2:
        return {"L": math.nan, "lambda_W": math.nan, "rel_error": math.nan}
    t0, t1 = rep.start_s, float(a[-1])
    if t1 <= t0:
        return {"L": math.nan, "lambda_W": math.nan, "rel_error": math.nan}
    # integral of N(t) over [t0, t1] = integral of A(t) - integral of D(t), each a sum over its jumps
    ta = np.clip(a, t0, t1)
    area_in = float((t1 - ta).sum())
    tc = np.clip(log.completion_s, t0, t1)
    area_out = float(((t1 - tc) * log.size).sum())
    # requests already in system at t0 contribute from t0 on: included by clipping both jump times at t0
    L = (area_in - area_out) / (t1 - t0)
    in_window = rep.arrival <= t1
    lam = float(np.count_nonzero((a >= t0) & (a <= t1))) / (t1 - t0)
    W = float(rep.latency[in_window].mean())
    lw = lam * W
    return {"L": L, "lambda_W": lw, "rel_error": abs(L - lw) / lw if lw > 0 else math.nan}


def summarize(scenario, logs: list[BatchLog], source: str = "<scenario>") -> dict:
    """Returns the summary.json dict (see DESIGN.md's contract) for the replications in `logs`.

    Raises ScenarioError when nothing could be measured (warm-up past the last arrival, static batches
    that never fill)."""
    replicas = scenario.server.replicas
    reps = [_Rep(log, scenario.warmup_s, replicas) for log in logs]
    n = sum(r.n for r in reps)
    if n == 0 and all(log.arrival_s.size == 0 for log in logs):
        raise ScenarioError(source, "duration_s", "no request arrives within the run: lengthen duration_s")
    if n == 0:
        last = max(float(log.arrival_s[-1]) if log.arrival_s.size else 0.0 for log in logs)
        if scenario.warmup_s > 0 and last < scenario.warmup_s:
            raise ScenarioError(source, "warmup_s", f"{scenario.warmup_s} s is after the last arrival ({last:.6g} s): "
                                "no request is left to measure; lower warmup_s or lengthen the run")
        raise ScenarioError(source, "server.batching.max_batch_size",
                            f"no request was ever dispatched: batches of {scenario.rule.max_batch_size} never filled; "
                            "lower max_batch_size or set max_queue_delay_ms")
    offered = float(np.mean([scenario.workload.arrival.offered_rps(log.arrival_s) for log in logs]))
    capacity = scenario.capacity_rps()
    load = offered / capacity
    stable = bool(load < 1.0)
    warnings: list[str] = []
    if not stable:
        warnings.append(
            f"UNSTABLE: offered load {offered:.6g} rps is {load:.0%} of capacity {capacity:.6g} rps "
            f"({replicas} replica(s) x full batches of {scenario.rule.max_batch_size}); the queue grows without "
            "bound, so latencies depend on the run length and mean nothing in steady state")
    unserved = sum(r.unserved for r in reps)
    if unserved:
        warnings.append(f"{unserved} measured request(s) were never dispatched (a static batch that never filled); "
                        "they count as SLO misses; set server.batching.max_queue_delay_ms to flush partial batches")

    span = sum(r.span_s for r in reps)
    throughput = sum(r.completed for r in reps) / span
    busy = sum(r.busy_s for r in reps)
    utilization = busy / (replicas * span)
    all_sizes = np.concatenate([r.batch_sizes for r in reps])
    mean_batch = float(all_sizes.mean()) if all_sizes.size else math.nan
    if stable and load >= HIGH_UTILIZATION:
        warnings.append(f"the offered load is {load:.0%} of capacity: queues and tail latency grow steeply with "
                        "any more traffic (or burstier traffic); leave headroom")
    elif stable and utilization >= HIGH_UTILIZATION:
        warnings.append(
            f"the replicas were busy {utilization:.0%} of the time although the offered load is {load:.0%} of "
            f"full-batch capacity: batches average {mean_batch:.3g} of {scenario.rule.max_batch_size}, so the real "
            "headroom is small; expect latency to climb steeply with more traffic")
    lat = _with_ci(reps, "latency")
    summary: dict = {
        "scenario": scenario.name,
        "seed": scenario.seed,
        "replications": len(reps),
        "requests": n,
        "requests_generated": int(sum(r.log.arrival_s.size for r in reps)),
        "unserved": unserved,
        "warmup_s": scenario.warmup_s,
        "duration_s": float(np.mean([r.horizon_s for r in reps])),
        "measured_window_s": span / len(reps),
        "offered_rps": offered,
        "capacity_rps": capacity,
        "offered_load": load,
        "stable": stable,
        "throughput_rps": throughput,
        "throughput_rps_ci95": _scalar_ci([r.throughput_rps for r in reps], throughput),
        "latency_s": lat,
        "queue_wait_s": _with_ci(reps, "wait"),
        "batch_size": {
            "mean": mean_batch,
            "p50": float(np.percentile(all_sizes, 50)) if all_sizes.size else math.nan,
            "max": int(all_sizes.max()) if all_sizes.size else 0,
            "batches": int(all_sizes.size),
        },
        "utilization": utilization,
        "utilization_ci95": _scalar_ci([r.utilization for r in reps], utilization),
        "littles_law": littles_law(reps[0]),
        "confidence": {
            "level": LEVEL,
            "method": "independent replications" if len(reps) > 1 else f"batch means ({BATCH_MEANS} batches)",
            "sections": len(reps) if len(reps) > 1 else BATCH_MEANS,
        },
        "warnings": warnings,
    }
    if scenario.slo is not None:
        summary.update(_slo(scenario.slo.targets_ms(), reps, lat))
    return summary


def _slo(targets_ms: dict[str, float], reps: list[_Rep], lat: dict) -> dict:
    if not targets_ms:
        return {}
    checks = {}
    for q, target in targets_ms.items():
        achieved_ms = lat[q] * 1000
        ci = lat["ci95"].get(q)
        if ci is not None and ci[0] * 1000 <= target <= ci[1] * 1000:
            verdict = "uncertain"  # the target lies inside the estimate's confidence interval
        else:
            verdict = "met" if achieved_ms <= target else "missed"
        checks[q] = {"target_ms": target, "achieved_ms": achieved_ms, "met": bool(achieved_ms <= target),
                     "verdict": verdict}
    # attainment: share of measured requests within the target of the highest percentile given;
    # requests never served count as misses
    q_top = max(targets_ms, key=lambda q: int(q[1:]))
    limit_s = targets_ms[q_top] / 1000
    within = [float((r.latency <= limit_s).sum()) / max(r.n + r.unserved, 1) for r in reps]
    pooled = float(sum((r.latency <= limit_s).sum() for r in reps) / sum(r.n + r.unserved for r in reps))
    return {
        "slo": {"targets": checks, "met": all(c["met"] for c in checks.values()), "attainment_target": q_top},
        "slo_attainment": pooled,
        "slo_attainment_ci95": _scalar_ci(within, pooled),
    }


def queue_length_series(log: BatchLog, points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Returns (times_s, waiting) sampled on a regular grid: requests arrived but not yet dispatched."""
    a = log.arrival_s
    if a.size == 0:
        return np.zeros(1), np.zeros(1)
    t_end = float(log.completion_s.max()) if log.size.size else float(a[-1])
    grid = np.linspace(0.0, t_end, points)
    arrived = np.searchsorted(a, grid, side="right")
    order = np.argsort(log.dispatch_s, kind="stable")
    cum = np.concatenate([[0], np.cumsum(log.size[order], dtype=np.int64)])
    dispatched = cum[np.searchsorted(log.dispatch_s[order], grid, side="right")]
    return grid, arrived - dispatched
