"""The summary of request-level runs (statistics shared with other engines: sim.stats; the per-request table:
sim.request_table)."""
from __future__ import annotations

import math

import numpy as np

from .engine import BatchLog
from .errors import ScenarioError
from .stability import describe_growth, growth_test
from .stats import confidence, scalar_ci, slo_verdict, with_ci

HIGH_UTILIZATION = 0.9
NO_SPAN = ("the arrivals span no time (a single request, or all at one instant): they have no offered rate, so load "
           "and a-priori stability are undefined; the run is one burst")
UNBOUNDED = "the queue grows without bound, so latencies depend on the run length and mean nothing in steady state"
from .summary_sections import LOAD_CLOSED, LOAD_FINITE  # noqa: E402,F401  (importable from here as before)


# the per-request table and time series (sim.request_table), importable from here as before
from .request_table import group_column, queue_length_series, request_columns, request_frame  # noqa: E402,F401


class _Rep:
    """The measured slice of one replication: requests arriving at or after warmup_s.

    Rates (throughput, utilisation) are taken over the window from the start of measurement to the last
    arrival, while traffic flows: the drain after the last arrival (a final partial batch waiting out a
    long queue delay, say) would otherwise dilute them."""

    def __init__(self, log: BatchLog, warmup_s: float, replicas: int, instances: int = 1):
        self.log = log
        a_all = log.arrival_s
        first = self._first = int(np.searchsorted(a_all, warmup_s, side="left"))
        self.departure = np.full(a_all.size, np.nan)  # per request, NaN when never served
        if log.order is None:
            # shared queue: batches took requests in arrival order, so the served ones are a prefix
            n_served = log.served
            of = np.repeat(np.arange(log.size.size, dtype=np.int64), log.size)
            idx = of[first:]
            self.arrival = a_all[first:n_served]
            self.departure[:n_served] = log.completion_s[of]
            self._mb, self._served = None, None
        else:
            batch = log.request_batch()
            mb = batch[first:]
            served = mb >= 0
            idx = mb[served]
            self.arrival = a_all[first:][served]
            ok = batch >= 0
            self.departure[ok] = log.completion_s[batch[ok]]
            self._mb, self._served = mb, served
        self.latency = log.completion_s[idx] - self.arrival
        self.wait = log.dispatch_s[idx] - self.arrival
        st = log.stages
        if st is not None:  # latency runs from the client's send to its answer (sim.stages); wait is the batcher's
            ids = (np.arange(first, log.served) if log.order is None else first + np.flatnonzero(self._served))
            self.latency = st["answered_s"][ids] - st["sent_s"][ids]
            self.departure = st["answered_s"].copy()
            self.stage_ids = ids
        self.n = self.arrival.size
        # measured requests turned away by a full queue, and those that never formed a batch (static, no timeout)
        self.rejected = int(log.rejected[first:].sum()) if log.rejected is not None else 0
        self.timed_out = int(log.timed_out[first:].sum()) if log.timed_out is not None else 0
        self.unserved = int(a_all.size - first - self.n) - self.rejected - self.timed_out
        # rejected and timed-out requests got no service: the growth test sees the served ones
        self.admitted = (~(log.rejected | log.timed_out) if log.rejected is not None and log.timed_out is not None
                         else slice(None))
        self.start_s = warmup_s if warmup_s > 0 else (float(a_all[0]) if a_all.size else 0.0)
        last_arrival = float(a_all[-1]) if a_all.size else self.start_s
        last_done = float(np.nanmax(self.departure)) if self.n else self.start_s
        # one request, or all at one instant: no window of flowing traffic, so rates run to the last completion
        self.end_s = last_arrival if last_arrival > self.start_s else last_done
        self.span_s = max(self.end_s - self.start_s, 1e-300)
        self.horizon_s = float(max(log.completion_s.max(initial=0.0), a_all.max(initial=0.0)))
        self.batch_sizes = log.size[log.dispatch_s >= warmup_s]
        d = np.clip(log.dispatch_s, self.start_s, self.end_s)
        c = np.clip(log.completion_s, self.start_s, self.end_s)
        if instances == 1:
            self.busy_per_replica = np.bincount(log.replica, weights=c - d, minlength=replicas)
        else:  # instance groups: a GPU is busy while any of its instances' steps runs (steps overlap)
            self.busy_per_replica = np.array([_gpu_busy(d[log.replica == g], c[log.replica == g])
                                              for g in range(replicas)])
        self.busy_s = float(self.busy_per_replica.sum())
        self.utilization = self.busy_s / (replicas * self.span_s)
        done = (log.completion_s >= self.start_s) & (log.completion_s <= self.end_s)
        self.completed_per_replica = np.bincount(log.replica[done], weights=log.size[done], minlength=replicas).astype(np.int64)
        self.completed = int(self.completed_per_replica.sum())  # any request finishing in the window
        self.throughput_rps = self.completed / self.span_s

    def view(self):
        from .fleet.summary import ReplicaView

        log = self.log

        def measured():  # built only when the fleet has several replicas
            if self._mb is None:  # shared queue: the served requests are a prefix in arrival order
                self._mb = log.request_batch()[self._first:]
                self._served = self._mb >= 0
            return self._mb, self._served

        def replica():
            if log.routed is not None:
                return log.routed[self._first:]
            mb, served = measured()
            return np.where(served, log.replica[np.clip(mb, 0, None)], -1)

        def latency():
            mb, served = measured()
            out = np.full(mb.size, np.nan)
            out[served] = self.latency
            return out
        # `requests`: routed there; behind a shared queue, served there (an unserved request belongs to none)
        requests = int(log.arrival_s.size - self._first) if log.routed is not None else self.n
        return ReplicaView(replica, latency, requests, self.completed_per_replica, self.busy_per_replica, self.span_s)


def littles_law(rep: _Rep) -> dict[str, float]:
    """Checks L = lambda W over [start, last arrival] of one replication.

    L is the time-average number in system from the counting processes alone (admitted arrivals in, batch
    completions out, counted per batch; with server stages, each request's answer out), lambda the arrival
    rate in the window, and W the mean latency of the measured requests from the per-request records. The
    two sides are computed independently, so a wrong request-to-batch mapping or a wrong completion time
    shows up as a mismatch; edge effects make the relative error shrink like W / window. Requests turned away
    or timed out never count as in the system.
    """
    log = rep.log
    a = log.arrival_s
    if rep.n < 2:
        return {"L": math.nan, "lambda_W": math.nan, "rel_error": math.nan}
    t0, t1 = rep.start_s, float(a[-1])
    if t1 <= t0:
        return {"L": math.nan, "lambda_W": math.nan, "rel_error": math.nan}
    st = log.stages
    came = (st["sent_s"] if st is not None else a)[rep.admitted]
    # integral of N(t) over [t0, t1] = integral of A(t) - integral of D(t), each a sum over its jumps
    area_in = float((t1 - np.clip(came, t0, t1)).sum())
    if st is None:
        area_out = float(((t1 - np.clip(log.completion_s, t0, t1)) * log.size).sum())
    else:
        left = st["answered_s"][np.isfinite(st["answered_s"])]
        area_out = float((t1 - np.clip(left, t0, t1)).sum())
    # requests already in system at t0 contribute from t0 on: included by clipping both jump times at t0
    L = (area_in - area_out) / (t1 - t0)
    measured_came = st["sent_s"][rep.stage_ids] if st is not None else rep.arrival
    in_window = measured_came <= t1
    lam = float(np.count_nonzero((came >= t0) & (came <= t1))) / (t1 - t0)
    W = float(rep.latency[in_window].mean())
    lw = lam * W
    return {"L": L, "lambda_W": lw, "rel_error": abs(L - lw) / lw if lw > 0 else math.nan}


def stability(a_priori: bool, runs, warnings: list[str]) -> tuple[bool, dict]:
    """Folds the run's own growth test (sim.stability) into the a-priori verdict; returns (stable, test).

    `runs` holds (arrival_s of every admitted request, sorted; departure_s, NaN when it never left;
    start of measurement) per replication. A loud warning leads the list when the backlog grew."""
    test = growth_test(runs)
    test["a_priori_stable"] = a_priori
    growing = test["verdict"] == "growing"
    if growing:
        warnings.insert(0, describe_growth(test) + ("" if not a_priori else
                        " (the a-priori capacity estimate had called this load stable)"))
    return a_priori and not growing, test


def offered_load(scenario, logs, capacity_rps: float, warnings: list[str]) -> tuple:
    """Returns (offered_rps, load) averaged over replications; None for both when the arrivals span no
    time (one request, or all at one instant), with a warning saying so."""
    rates = [scenario.workload.arrival.offered_rps(log.arrival_s) for log in logs]
    if any(r is None or not math.isfinite(r) for r in rates):
        warnings.append(NO_SPAN)
        return None, None
    offered = float(np.mean(rates))
    return offered, (offered / capacity_rps if capacity_rps and math.isfinite(capacity_rps) else None)


def summarize(scenario, logs: list[BatchLog], source: str = "<scenario>") -> dict:
    """Returns the summary.json dict (see docs/design.md's contract) for the replications in `logs`.

    Raises ScenarioError when nothing could be measured (warm-up past the last arrival, static batches
    that never fill); sim.runner.preflight catches those before simulating."""
    replicas = scenario.total_replicas
    reps = [_Rep(log, scenario.warmup_s, replicas, scenario.server.instances_per_gpu) for log in logs]
    n = sum(r.n for r in reps)
    if n == 0:
        raise ScenarioError(source, "server.batching.max_batch_size",
                            f"no measured request was ever dispatched: batches of {scenario.rule.max_batch_size} never "
                            "filled; lower max_batch_size or set max_queue_delay_ms")
    warnings: list[str] = []
    capacity = scenario.capacity_rps()
    closed = scenario.workload.clients is not None
    load = _load_section(scenario, logs, reps, capacity, closed, warnings)
    span = sum(r.span_s for r in reps)
    throughput = sum(r.completed for r in reps) / span
    busy = sum(r.busy_s for r in reps)
    utilization = busy / (replicas * span)
    all_sizes = np.concatenate([r.batch_sizes for r in reps])
    mean_batch = float(all_sizes.mean()) if all_sizes.size else math.nan
    _headroom_warnings(scenario, load, utilization, mean_batch, warnings)
    lat = with_ci([r.latency for r in reps])
    offered_load_value = load["load"]
    if closed:
        offered_load_value = throughput / capacity if capacity and math.isfinite(capacity) else None
    turned = {k: {"count": load[k], "fraction": load[k] / load["measured"] if load["measured"] else 0.0}
              for k in ("rejected", "timed_out", "delayed")}
    summary: dict = {
        "scenario": scenario.name,
        "seed": scenario.seed,
        "replications": len(reps),
        "requests": n,
        "requests_generated": int(sum(r.log.arrival_s.size for r in reps)),
        "unserved": load["unserved"],
        **turned,
        "warmup_s": scenario.warmup_s,
        "duration_s": float(np.mean([r.horizon_s for r in reps])),
        "measured_window_s": span / len(reps),
        "offered_rps": load["offered"],
        "capacity_rps": capacity,
        "offered_load": offered_load_value,
        "stable": load["stable"],
        "stability": load["growth"],
        "throughput_rps": throughput,
        "throughput_rps_ci95": scalar_ci([r.throughput_rps for r in reps], throughput),
        "latency_s": lat,
        "queue_wait_s": with_ci([r.wait for r in reps]),
        "batch_size": {
            "mean": mean_batch,
            "p50": float(np.percentile(all_sizes, 50)) if all_sizes.size else math.nan,
            "max": int(all_sizes.max()) if all_sizes.size else 0,
            "batches": int(all_sizes.size),
        },
        "utilization": utilization,
        "utilization_ci95": scalar_ci([r.utilization for r in reps], utilization),
        "littles_law": littles_law(reps[0]),
        "confidence": confidence(len(reps)),
        "warnings": warnings,
    }
    _add_sections(summary, scenario, reps, lat, closed, load["limited"])
    return summary


def _load_section(scenario, logs, reps: list, capacity: float, closed: bool, warnings: list[str]) -> dict:
    """Returns the offered rate and load, whether the queue is limited, the stability verdict and test, and the
    measured requests turned away (rejected, timed out, delayed) or never dispatched; adds their warnings."""
    replicas = scenario.total_replicas
    if closed:  # no offered rate: the load is what the clients' answers let them send (set by the caller)
        offered, load = None, None
    else:
        offered, load = offered_load(scenario, logs, capacity, warnings)
    a_priori = load is None or load < 1.0
    if not a_priori:
        warnings.append(
            f"UNSTABLE: offered load {offered:.6g} rps is {load:.0%} of capacity {capacity:.6g} rps "
            f"({replicas} replica(s) x full batches); {UNBOUNDED}")
    q = scenario.server.queue
    limited = q.max_queue_size is not None or q.timeout_ms is not None
    measured = sum(r.n + r.unserved + r.rejected + r.timed_out for r in reps)
    rejected = sum(r.rejected for r in reps)
    timed_out = sum(r.timed_out for r in reps)
    delayed = sum(int(r.log.delayed[r._first:].sum()) if r.log.delayed is not None else 0 for r in reps)
    if limited:  # a finite queue, or one that times requests out, cannot grow without bound
        if not a_priori:
            warnings[-1] = (f"offered load {offered:.6g} rps is {load:.0%} of capacity {capacity:.6g} rps: the queue "
                            f"limit turns the excess away ({rejected / max(measured, 1):.1%} of requests rejected, "
                            f"{timed_out / max(measured, 1):.1%} timed out)")
        a_priori = True
    # rejected requests never entered the system: the growth test sees the admitted ones
    pools_ok = _pools_keep_up(scenario.server, offered, warnings)  # CPU pools have no queue limit
    # with stages the system runs from the client's send to its answer
    stable, growth = stability(a_priori and pools_ok, [
        (r.log.arrival_s[r.admitted] if r.log.stages is None else np.sort(r.log.stages["sent_s"][r.admitted]),
         r.departure[r.admitted], r.start_s) for r in reps], warnings)
    unserved = sum(r.unserved for r in reps)
    if unserved:
        warnings.append(f"{unserved} measured request(s) were never dispatched (a static batch that never filled); "
                        "they count as SLO misses; set server.batching.max_queue_delay_ms to flush partial batches")
    return {"offered": offered, "load": load, "limited": limited, "stable": stable, "growth": growth,
            "measured": measured, "rejected": rejected, "timed_out": timed_out, "delayed": delayed,
            "unserved": unserved}


def _headroom_warnings(scenario, load: dict, utilization: float, mean_batch: float, warnings: list[str]) -> None:
    """Warns when a stable run has little headroom: a load near capacity, or replicas nearly always busy."""
    stable, limited, value = load["stable"], load["limited"], load["load"]
    if stable and value is not None and value >= HIGH_UTILIZATION and not (limited and value >= 1):
        warnings.append(f"the offered load is {value:.0%} of capacity: queues and tail latency grow steeply with "
                        "any more traffic (or burstier traffic); leave headroom")
    elif stable and value is not None and utilization >= HIGH_UTILIZATION:
        largest = max(g.batching.rule(g.cost_model.batch_limit()).max_batch_size for g in scenario.fleet_groups)
        warnings.append(
            f"the replicas were busy {utilization:.0%} of the time although the offered load is {value:.0%} of "
            f"full-batch capacity: batches average "
            f"{mean_batch:.3g} of up to {largest}, so the real headroom is small; expect latency to "
            "climb steeply with more traffic")


def _add_sections(summary: dict, scenario, reps: list, lat: dict, closed: bool, limited: bool) -> None:
    """Adds server stages and the SLO, then the shared sections (sim.summary_sections: closed loop, classes, load
    definition, fleet, autoscaler)."""
    from .summary_sections import RunView, add_sections

    if any(r.log.stages is not None for r in reps):
        summary["stages"] = _stage_sections(scenario.server, reps)
    if scenario.slo is not None:
        summary.update(_slo(scenario.slo.targets_ms(), reps, lat))
    view = RunView(scenario, summary["throughput_rps"], lat, [r.view() for r in reps],
                   [(r.start_s, r.end_s) for r in reps], sum(r.busy_s for r in reps), limited,
                   scalings=[r.log.scaling for r in reps] if reps[0].log.scaling is not None else None)
    if closed:
        view.clients = [(r.log.clients["sent_s"], r.log.clients["cycle_end_s"], r.log.clients["think_s"]) for r in reps]
    if scenario.workload.classes:
        from .classes import pick_slo, top_targets

        view.class_reps = [_class_rep(r, len(scenario.workload.classes)) for r in reps]
        view.class_targets = lambda c: pick_slo(c, scenario.slo, top_targets)
    add_sections(summary, view)


def _pools_keep_up(server, offered_rps, warnings: list[str]) -> bool:
    """Returns False (with a loud warning) when the offered rate is at or beyond a CPU pool's capacity
    (workers / mean time): every request passes preprocess, every answer postprocess."""
    ok = True
    for key in ("preprocess", "postprocess"):
        stage = getattr(server, key)
        if stage is None or offered_rps is None or stage.time_ms.mean_s <= 0:
            continue
        cap = stage.workers / stage.time_ms.mean_s
        if offered_rps >= cap:
            ok = False
            warnings.insert(0, f"UNSTABLE: server.{key} has {stage.workers} worker(s) of {stage.time_ms.mean_s * 1000:.4g} "
                               f"ms on average: {cap:.6g} rps at most, below the offered {offered_rps:.6g} rps; its queue "
                               "grows without bound (add workers)")
    return ok


def _gpu_busy(dispatch: np.ndarray, completion: np.ndarray) -> float:
    """Returns the time (s) at least one of the given (possibly overlapping) steps runs: their union's length."""
    if dispatch.size == 0:
        return 0.0
    order = np.argsort(dispatch, kind="stable")
    d, c = dispatch[order], np.maximum.accumulate(completion[order])
    # a new busy period starts where a step begins after every earlier one ended
    starts = np.concatenate([[True], d[1:] > c[:-1]])
    first = np.flatnonzero(starts)
    ends = np.concatenate([c[first[1:] - 1], [c[-1]]])
    return float((ends - d[first]).sum())


def _stage_sections(server, reps: list[_Rep]) -> dict:
    """Returns the summary's `stages`: per pool its workers, time in the stage (wait + work) and wait, over the
    measured served requests; the pipeline latency's realised mean."""
    out = {}
    pre = [r.log.arrival_s[r.stage_ids] - r.log.stages["sent_s"][r.stage_ids] for r in reps]
    pre_wait = [r.log.stages["pre_wait_s"][r.stage_ids] for r in reps]
    done = [r.log.request_times("completion_s")[r.stage_ids] for r in reps]
    post = [r.log.stages["answered_s"][r.stage_ids] - d for r, d in zip(reps, done)]
    post_wait = [r.log.stages["post_wait_s"][r.stage_ids] for r in reps]
    if server.preprocess is not None:
        out["preprocess"] = {"workers": server.preprocess.workers, "time_s": with_ci(pre), "wait_s": with_ci(pre_wait)}
    if server.postprocess is not None:
        out["postprocess"] = {"workers": server.postprocess.workers, "wait_s": with_ci(post_wait)}
    if server.postprocess is not None or server.pipeline_latency_ms is not None:
        out["after_gpu_s"] = with_ci(post)  # postprocess wait and work, then the pipeline latency
    out["pipeline_latency_ms"] = (server.pipeline_latency_ms.mean_s * 1000 if server.pipeline_latency_ms is not None
                                  else 0.0)
    return out


def _class_rep(r: _Rep, n_classes: int) -> dict:
    """Returns the per-request arrays of one replication that sim.classes.class_sections reads."""
    log, first = r.log, r._first
    batch = log.request_batch()
    ok = batch >= 0
    completion = np.full(batch.size, np.nan)
    completion[ok] = log.completion_s[batch[ok]]
    dispatch = np.full(batch.size, np.nan)
    dispatch[ok] = log.dispatch_s[batch[ok]]
    a = log.arrival_s
    done = (completion >= r.start_s) & (completion <= r.end_s)
    none = np.zeros(a.size - first, bool)
    latency = (completion - a) if log.stages is None else log.stages["answered_s"] - log.stages["sent_s"]
    return {"cls": log.classes[first:], "values": {"latency_s": latency[first:], "queue_wait_s": (dispatch - a)[first:]},
            "rejected": log.rejected[first:] if log.rejected is not None else none,
            "timed_out": log.timed_out[first:] if log.timed_out is not None else none,
            "completed": np.bincount(log.classes[done], minlength=n_classes), "span_s": r.span_s}


def _slo(targets_ms: dict[str, float], reps: list[_Rep], lat: dict) -> dict:
    if not targets_ms:
        return {}
    checks = {q: slo_verdict(target, lat[q], lat["ci95"].get(q)) for q, target in targets_ms.items()}
    # attainment: share of measured requests within the target of the highest percentile given (the mean's
    # target when only that is given); requests never served count as misses
    q_top = max(targets_ms, key=lambda q: -1 if q == "mean" else int(q[1:]))
    limit_s = targets_ms[q_top] / 1000
    # requests never served or rejected count as misses
    within = [float((r.latency <= limit_s).sum()) / max(r.n + r.unserved + r.rejected + r.timed_out, 1) for r in reps]
    pooled = float(sum((r.latency <= limit_s).sum() for r in reps)
                   / sum(r.n + r.unserved + r.rejected + r.timed_out for r in reps))
    return {
        "slo": {"targets": checks, "met": all(c["met"] for c in checks.values()), "attainment_target": q_top},
        "slo_attainment": pooled,
        "slo_attainment_ci95": scalar_ci(within, pooled),
    }


def window_rows(scenario, logs: list[BatchLog]) -> list[dict]:
    """Returns windows.parquet's rows (sim.windows) for request-level replications, one set per replication."""
    from .windows import WindowStats

    rows = []
    targets = scenario.slo.targets_ms() if scenario.slo is not None else {}
    top = max(targets, key=lambda q: -1 if q == "mean" else int(q[1:])) if targets else None
    for rep, log in enumerate(logs):
        horizon = scenario.duration_s or float(log.arrival_s[-1]) if log.arrival_s.size else 0.0
        ws = WindowStats(scenario.outputs.window_s, max(horizon, 1e-9), scenario.total_replicas,
                         targets[top] / 1000 if top else None, sketches=False)
        completion, dispatch = log.request_times("completion_s"), log.request_times("dispatch_s")
        st = log.stages
        sent = st["sent_s"] if st is not None else log.arrival_s
        latency = (st["answered_s"] if st is not None else completion) - sent
        turned = np.zeros(sent.size, bool)
        for flags in (log.rejected, log.timed_out):
            if flags is not None:
                turned |= flags
        ws.add_requests(sent, latency, dispatch, turned)
        ws.add_batches(log.size.astype(float), log.dispatch_s, log.completion_s)
        if log.scaling is not None:
            ws.add_active(log.scaling["lives"])
        rows += [{"replication": rep, **r} for r in ws.rows()]
    return rows
