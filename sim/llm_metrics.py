"""LLM metrics with the names LLM benchmarking tools use: TTFT, TPOT, ITL, E2EL, output tokens/s, goodput.

TTFT: arrival to first output token. TPOT: (E2EL - TTFT) / (output tokens - 1), for requests with more
than one output token. ITL: the gap between consecutive output tokens of a request, i.e. the duration of
each decode step, counted once per token it delivered. E2EL: arrival to last token. Goodput: requests per
second that met both the TTFT and the TPOT target (DistServe's definition).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .errors import ScenarioError
from .replica.llm_log import LlmLog
from .replica.step_stats import StepStats
from .metrics import offered_load, stability
from .stats import confidence, scalar_ci, slo_verdict, with_ci


class _LlmRep:
    """The measured slice of one replication; rates are taken from the start of measurement to the last
    arrival (see sim.metrics._Rep)."""

    def __init__(self, log: LlmLog, warmup_s: float):
        self.log = log
        keep = (log.arrival_s >= warmup_s) & log.finished
        self.keep = keep
        a = log.arrival_s[keep]
        self.n = int(keep.sum())
        self.ttft = log.first_token_s[keep] - a
        self.e2e = log.finish_s[keep] - a
        out = log.output_tokens[keep]
        multi = out > 1
        self.tpot = (self.e2e[multi] - self.ttft[multi]) / (out[multi] - 1)
        self.start_s = warmup_s if warmup_s > 0 else float(log.arrival_s[0]) if log.arrival_s.size else 0.0
        last_arrival = float(log.arrival_s[-1]) if log.arrival_s.size else self.start_s
        last_done = float(log.finish_s[keep].max()) if self.n else self.start_s
        self.end_s = last_arrival if last_arrival > self.start_s else last_done
        self.span_s = max(self.end_s - self.start_s, 1e-300)
        done = log.finished & (log.finish_s >= self.start_s) & (log.finish_s <= self.end_s)
        self.completed = int(done.sum())
        self.out_tokens = int(log.output_tokens[done].sum())
        none = np.zeros(log.arrival_s.size, bool)
        turned = log.rejected if log.rejected is not None else none
        gave_up = log.timed_out if log.timed_out is not None else none
        self.unfinished = int(((log.arrival_s >= warmup_s) & ~log.finished & ~log.refused & ~turned & ~gave_up).sum())
        self.refused = int(((log.arrival_s >= warmup_s) & log.refused).sum())
        self.rejected = int(((log.arrival_s >= warmup_s) & turned).sum())
        self.timed_out = int(((log.arrival_s >= warmup_s) & gave_up).sum())
        self.turned, self.gave_up = turned, gave_up
        # refused requests never enter the system: the growth test sees only admitted ones
        admitted = ~log.refused & ~turned & ~gave_up
        self.arrival_admitted = log.arrival_s[admitted]
        self.departure = log.finish_s[admitted]
        # the engine steps: accumulated while a streaming run went on, or from the step rows of a records run
        self.steps = log.step_stats if log.step_stats is not None else StepStats.of_log(log, self.start_s, self.end_s)
        self.busy_s = self.steps.busy_s
        self.measured = log.arrival_s >= warmup_s
        self.done_in_window = done

    def view(self, replicas: int):
        from .fleet.summary import ReplicaView

        log = self.log
        where = log.routed if log.routed is not None else log.replica
        # `requests`: routed there; behind a shared queue, served there (a refused request belongs to none)
        n = int(self.measured.sum()) if log.routed is not None or where is None else int((where[self.measured] >= 0).sum())

        def rep():
            return where[self.measured] if where is not None else np.zeros(n, np.int32)

        def lat():
            return np.where(log.finished, log.finish_s - log.arrival_s, np.nan)[self.measured]
        served_by = log.replica if log.replica is not None else np.zeros(log.arrival_s.size, np.int32)
        done = self.done_in_window & (served_by >= 0)
        return ReplicaView(rep, lat, n, np.bincount(served_by[done], minlength=replicas),
                           self.steps.busy_per_replica, self.span_s)


def capacity_rps(scenario, logs: list[LlmLog]) -> float:
    """Returns an estimate of the fleet's saturated request rate for the sampled request sizes: the sum
    over replicas of one engine's estimate (engine_capacity_rps)."""
    total = 0.0
    for g in scenario.fleet_groups:
        total += g.replicas * engine_capacity_rps(g.batching, g.cost_model, logs)
    return total


def engine_capacity_rps(pol, cost, logs: list[LlmLog]) -> float:
    """Returns an estimate of one engine's saturated request rate for the sampled request sizes."""
    ok = [~log.refused for log in logs]  # refused requests take no engine time
    if not any(k.any() for k in ok):
        return math.nan
    p = float(np.mean([log.prompt_tokens[k].mean() for log, k in zip(logs, ok) if k.any()]))
    o = float(np.mean([log.output_tokens[k].mean() for log, k in zip(logs, ok) if k.any()]))
    if pol.policy == "continuous":
        n = max(1.0, min(pol.max_num_seqs, pol.kv_cache_tokens / (p + o)))
        decode_step_s = cost.iteration_s(0, 0, n, n * (p + o / 2))
        chunks = max(1.0, math.ceil(p / pol.chunk))  # prefill forwards per request
        # a prefill rides in decode steps: it adds its own work, not another step's fixed cost
        prefill_s = cost.iteration_s(p, p * (p + 1) / 2, 0, 0, chunks) - cost.iteration_s(0, 0, 0, 0, 0)
        return 1.0 / (prefill_s + max(o - 1, 0) * decode_step_s / n + decode_step_s / n)
    # static: full batches, padded to the batch's longest prompt and output (estimated from the samples)
    b = pol.max_batch_size
    pm = float(np.mean([np.percentile(log.prompt_tokens, 100 * (1 - 1 / (b + 1))) for log in logs]))
    om = float(np.mean([np.percentile(log.output_tokens, 100 * (1 - 1 / (b + 1))) for log in logs]))
    b = max(1.0, min(b, pol.kv_cache_tokens / (pm + om)))
    prefill = cost.iteration_s(b * pm, b * pm * (pm + 1) / 2, 0, 0, 1)
    decode = (om - 1) * cost.iteration_s(0, 0, b, b * (pm + om / 2))
    return b / (prefill + decode)


def littles_law(rep: _LlmRep) -> dict:
    log = rep.log
    a = log.arrival_s
    t0, t1 = rep.start_s, float(a[-1]) if a.size else 0.0
    if rep.n < 2 or t1 <= t0:
        return {"L": math.nan, "lambda_W": math.nan, "rel_error": math.nan}
    fin = np.where(log.finished, log.finish_s, t1)
    area = float((np.clip(fin, t0, t1) - np.clip(a, t0, t1)).sum())
    L = area / (t1 - t0)
    inwin = (a >= t0) & (a <= t1) & log.finished
    lam = float(((a >= t0) & (a <= t1)).sum()) / (t1 - t0)
    W = float((log.finish_s[inwin] - a[inwin]).mean())
    return {"L": L, "lambda_W": lam * W, "rel_error": abs(L - lam * W) / (lam * W) if lam * W > 0 else math.nan}


def summarize_llm(scenario, logs: list[LlmLog], source: str = "<scenario>") -> dict:
    """Returns summary.json for an LLM scenario: TTFT, TPOT, ITL, E2EL, tokens/s, goodput, KV cache, preemptions."""
    reps = [_LlmRep(log, scenario.warmup_s) for log in logs]
    n = sum(r.n for r in reps)
    if n == 0:
        raise ScenarioError(source, "warmup_s", "no measured request finished: every request after the warm-up was "
                            "refused or never completed")
    warnings: list[str] = []
    capacity = capacity_rps(scenario, logs)
    closed = scenario.workload.clients is not None
    head = _llm_load(scenario, logs, reps, capacity, closed, warnings)
    offered, load, stable, growth, limited = (head[k] for k in ("offered", "load", "stable", "growth", "limited"))
    rejected, queue_full, timed_out, unfinished = (head[k] for k in ("refused", "rejected", "timed_out", "unfinished"))
    span = sum(r.span_s for r in reps)
    e2e = with_ci([r.e2e for r in reps])
    throughput = sum(r.completed for r in reps) / span
    # continuous batching records each distinct inter-token gap with the number of tokens that waited it;
    # static batching delivers one token per live slot per decode step, so a step's duration is the gap
    itl = reps[0].steps.itl() if len(reps) == 1 else _pooled_itl(reps)
    kv_util = [r.steps.kv_utilization() for r in reps]  # each replica's cache over its busy time (idle holds no KV)
    replicas = scenario.total_replicas
    decode_slots = sum(r.steps.decode_slots for r in reps)
    decode_tokens = sum(r.steps.decode_tokens for r in reps)
    summary = {
        "scenario": scenario.name, "seed": scenario.seed, "replications": len(reps), "requests": n,
        "requests_generated": int(sum(r.log.arrival_s.size for r in reps)), "unfinished": unfinished,
        "refused": rejected, "warmup_s": scenario.warmup_s,
        "rejected": {"count": queue_full, "fraction": queue_full / max(1, n + unfinished + rejected + queue_full + timed_out)},
        "timed_out": {"count": timed_out, "fraction": timed_out / max(1, n + unfinished + rejected + queue_full + timed_out)},
        "duration_s": float(np.mean([max(r.log.finish_s[r.log.finished].max(initial=0), r.log.arrival_s.max(initial=0))
                                     for r in reps])),
        "measured_window_s": span / len(reps),
        "offered_rps": offered, "capacity_rps": capacity, "offered_load": load, "stable": stable,
        "stability": growth,
        "throughput_rps": throughput,
        "throughput_rps_ci95": scalar_ci([r.completed / r.span_s for r in reps], throughput),
        "output_tokens_per_s": sum(r.out_tokens for r in reps) / span,
        "ttft_s": with_ci([r.ttft for r in reps]),
        "tpot_s": with_ci([r.tpot for r in reps]),
        "itl_s": itl,
        "e2e_s": e2e,
        "latency_s": e2e,
        # a step row may stand for a run of identical decode steps: slots are its total, `steps` its count
        "batch_size": {"mean": decode_slots / max(1, sum(r.steps.decode_steps for r in reps)),
                       "max": max(r.steps.max_slots for r in reps),
                       "steps": sum(r.steps.steps for r in reps)},
        "decode_padding_fraction": 1 - decode_tokens / decode_slots if decode_slots else 0.0,
        "utilization": sum(r.busy_s for r in reps) / (replicas * span),
        "kv_cache": {"capacity_tokens": logs[0].kv_capacity_tokens,
                     "mean_utilization": float(np.nanmean([u for u, _ in kv_util])),
                     "max_utilization": float(max(m for _, m in kv_util))},
        "preemptions": int(sum(r.log.preemptions[r.keep].sum() for r in reps)),
        "recomputed_prefill_tokens": int(sum(r.log.recomputed_tokens[r.keep].sum() for r in reps)),
        "littles_law": littles_law(reps[0]),
        "confidence": confidence(len(reps)),
        "warnings": warnings,
    }
    slo = scenario.slo
    if slo is not None and (slo.ttft_p99_ms or slo.tpot_p99_ms):
        summary.update(_llm_slo(slo, reps, summary, n + unfinished + rejected + queue_full + timed_out))
    _llm_sections(summary, scenario, reps, capacity, closed, limited)
    return summary


def _llm_load(scenario, logs, reps: list, capacity: float, closed: bool, warnings: list[str]) -> dict:
    """Returns the offered rate and load, whether the waiting queue is bounded, the stability verdict and test, and
    the measured requests refused, rejected, timed out or never finished; adds their warnings."""
    offered, load = (None, None) if closed else offered_load(scenario, logs, capacity, warnings)
    a_priori = load is None or load < 1.0
    if not a_priori:
        warnings.append(f"UNSTABLE: offered {offered:.6g} rps is {load:.0%} of the engine's estimated capacity "
                        f"{capacity:.6g} rps for these request sizes; the queue grows without bound")
    limited = scenario.server.queue.max_waiting is not None or scenario.workload.client_timeout_ms is not None
    if limited and not a_priori:  # a bounded queue, or clients who give up, turn the excess away
        warnings[-1] = (f"offered {offered:.6g} rps is {load:.0%} of the estimated capacity {capacity:.6g} rps: the "
                        "waiting-queue limit (server.queue.max_waiting) or the clients' timeout "
                        "(workload.client_timeout_ms) turns the excess away")
        a_priori = True
    stable, growth = stability(a_priori, [(r.arrival_admitted, r.departure, r.start_s) for r in reps], warnings)
    refused = sum(r.refused for r in reps)
    queue_full = sum(r.rejected for r in reps)
    if queue_full:
        warnings.append(f"{queue_full} measured request(s) found the waiting queue full (server.queue.max_waiting) "
                        "and were rejected; they count as SLO misses")
    if refused:
        warnings.append(f"{refused} measured request(s) could never run and were refused: prompt + output beyond "
                        "the whole KV cache, or (without chunked prefill) beyond max_num_batched_tokens")
    timed_out = sum(r.timed_out for r in reps)
    if timed_out:
        warnings.append(f"{timed_out} measured request(s) waited past workload.client_timeout_ms for admission and "
                        "their clients gave up; they count as SLO misses")
    unfinished = sum(r.unfinished for r in reps)
    if unfinished:
        warnings.append(f"{unfinished} measured request(s) never finished (a static batch that never filled: "
                        "set max_queue_delay_ms)")
    return {"offered": offered, "load": load, "limited": limited, "stable": stable, "growth": growth,
            "refused": refused, "rejected": queue_full, "timed_out": timed_out, "unfinished": unfinished}


def _llm_slo(slo, reps: list, summary: dict, measured: int) -> dict:
    """Returns the SLO keys: each p99 target's verdict, the attainment over `measured` requests (unserved ones
    miss) and the goodput (finished requests meeting both TTFT and TPOT targets, per second)."""
    ok_n, targets = 0, {}
    for r in reps:
        ok = np.ones(r.n, bool)
        if slo.ttft_p99_ms:
            ok &= r.ttft <= slo.ttft_p99_ms / 1000
        if slo.tpot_p99_ms:
            multi = r.log.output_tokens[r.keep] > 1
            tp = np.zeros(r.n)
            tp[multi] = r.tpot
            ok &= tp <= slo.tpot_p99_ms / 1000
        ok_n += int(ok.sum())
    for name, target, stats in (("ttft_p99", slo.ttft_p99_ms, summary["ttft_s"]),
                                ("tpot_p99", slo.tpot_p99_ms, summary["tpot_s"])):
        if target:
            if stats["p99"] != stats["p99"]:  # no request had a second token: nothing to miss
                targets[name] = {"target_ms": target, "achieved_ms": None, "met": True, "verdict": "n/a"}
                continue
            targets[name] = slo_verdict(target, stats["p99"], stats["ci95"].get("p99"))
    return {"slo": {"targets": targets, "met": all(t["met"] for t in targets.values()), "attainment_target": "ttft+tpot"},
            "slo_attainment": ok_n / measured,
            "goodput_rps": summary["throughput_rps"] * ok_n / summary["requests"]}


def _llm_sections(summary: dict, scenario, reps: list, capacity: float, closed: bool, limited: bool) -> None:
    """Adds the shared sections (sim.summary_sections: closed loop, classes, load definition, fleet, autoscaler);
    a closed loop's offered load is the throughput its clients achieved."""
    from .summary_sections import RunView, add_sections

    throughput = summary["throughput_rps"]
    view = RunView(scenario, throughput, summary["e2e_s"], [r.view(scenario.total_replicas) for r in reps],
                   [(r.start_s, r.end_s) for r in reps], sum(r.busy_s for r in reps), limited,
                   scalings=[r.log.scaling for r in reps] if reps[0].log.scaling is not None else None)
    if closed:  # no offered rate: the load is what the clients' answers let them send
        summary["offered_load"] = throughput / capacity if capacity and math.isfinite(capacity) else None
        view.clients = [(r.log.clients["sent_s"], r.log.clients["cycle_end_s"], r.log.clients["think_s"]) for r in reps]
    if scenario.workload.classes:
        from .classes import llm_targets, pick_slo

        view.class_reps = [_class_rep(r, len(scenario.workload.classes)) for r in reps]
        view.class_targets = lambda c: pick_slo(c, scenario.slo, llm_targets)
    add_sections(summary, view)


def _pooled_itl(reps: list) -> dict:
    """Returns the inter-token latency over several replications' gaps (sketches when streamed)."""
    if reps[0].steps.exact:
        from .replica.step_stats import weighted_stats

        parts = [p for r in reps for p in r.steps.itl_parts]
        return weighted_stats(np.concatenate([v for v, _ in parts]), np.concatenate([w for _, w in parts]))
    pooled = StepStats(0.0, 0.0, np.ones(1), exact=False)
    for r in reps:
        pooled.itl_sketch.merge(r.steps.itl_sketch)
    return pooled.itl()


def _class_rep(r: _LlmRep, n_classes: int) -> dict:
    """Returns the per-request arrays of one replication that sim.classes.class_sections reads: TTFT, TPOT and
    E2EL per measured request (NaN where it did not finish; TPOT also for one-token outputs)."""
    log = r.log
    m = r.measured
    a = log.arrival_s[m]
    ok = log.finished[m]
    ttft = np.where(ok, log.first_token_s[m] - a, np.nan)
    e2e = np.where(ok, log.finish_s[m] - a, np.nan)
    out = log.output_tokens[m]
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(ok & (out > 1), (e2e - ttft) / (out - 1), np.nan)
    return {"cls": log.classes[m], "values": {"e2e_s": e2e, "ttft_s": ttft, "tpot_s": tpot},
            "rejected": r.turned[m], "timed_out": r.gave_up[m],
            "completed": np.bincount(log.classes[r.done_in_window], minlength=n_classes), "span_s": r.span_s}


def request_frame(logs: list[LlmLog], groups=None, class_names=None) -> pd.DataFrame:
    """Returns one row per request: arrival, first token, finish (seconds), TTFT, E2EL, TPOT, sizes, preemptions
    (and with closed-loop clients the client and its think time after the cycle, s, as request-level tables)."""
    frames = []
    for rep, log in enumerate(logs):
        ttft = log.first_token_s - log.arrival_s
        e2e = log.finish_s - log.arrival_s
        with np.errstate(invalid="ignore", divide="ignore"):
            tpot = np.where(log.output_tokens > 1, (e2e - ttft) / (log.output_tokens - 1), np.nan)
        frames.append(pd.DataFrame({
            "replication": np.full(log.arrival_s.size, rep, np.int32), "request_id": np.arange(log.arrival_s.size),
            "arrival_s": log.arrival_s, "first_token_s": log.first_token_s, "finish_s": log.finish_s,
            "ttft_s": ttft, "e2e_s": e2e, "tpot_s": tpot, "latency_s": e2e,
            "prompt_tokens": log.prompt_tokens, "output_tokens": log.output_tokens,
            "preemptions": log.preemptions, "recomputed_tokens": log.recomputed_tokens}))
        if class_names is not None and log.classes is not None:
            frames[-1]["class"] = pd.Categorical.from_codes(log.classes.astype(np.int64), categories=class_names)
        if log.admitted_s is not None:
            frames[-1]["admitted_s"] = log.admitted_s
        for key in ("rejected", "timed_out"):
            if getattr(log, key) is not None:
                frames[-1][key] = getattr(log, key)
        if getattr(log, "clients", None) is not None:  # closed loop: who sent it, and the think time after its cycle
            frames[-1]["client"] = log.clients["client"]
            frames[-1]["think_s"] = log.clients["think_s"]
        replica = log.routed if log.routed is not None else log.replica
        if replica is not None:
            frames[-1]["replica"] = replica.astype(np.int32)
            if groups is not None:
                from .metrics import group_column
                frames[-1]["group"] = group_column(groups, replica)
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def window_rows(scenario, logs: list[LlmLog]) -> list[dict]:
    """Returns windows.parquet's rows for LLM replications: latency is the end-to-end latency, `queue_mean` the
    requests waiting for admission, `utilization` the engines' busy time; TTFT p99 per window besides."""
    from .windows import WindowStats

    rows = []
    slo = scenario.slo
    for rep, log in enumerate(logs):
        a = log.arrival_s
        horizon = scenario.duration_s or (float(a[-1]) if a.size else 0.0)
        ws = WindowStats(scenario.outputs.window_s, max(horizon, 1e-9), scenario.total_replicas,
                         slo.ttft_p99_ms / 1000 if slo is not None and slo.ttft_p99_ms else None, sketches=False)
        e2e = log.finish_s - a
        ttft = log.first_token_s - a
        admitted = log.admitted_s if log.admitted_s is not None else log.first_token_s
        turned = log.refused.copy()
        for flags in (log.rejected, log.timed_out):
            if flags is not None:
                turned |= flags
        # the SLO per window counts TTFT (the LLM summary's attainment also needs TPOT: see summary.json)
        ws.add_requests(a, e2e, admitted, turned)
        if ws.slo is not None:
            ws.hits[:] = 0
            hit = np.isfinite(ttft) & (ttft <= ws.slo)
            ws.hits += np.bincount(ws._w(a[hit]), minlength=ws.n)
        if log.step_stats is not None and log.step_stats.windows is not None:  # streamed: added as it ran
            ws.busy += log.step_stats.windows.busy
        else:
            ws.add_busy(log.step_start_s, log.step_start_s + log.step_s)
        if log.scaling is not None:
            ws.add_active(log.scaling["lives"])
        ws.add_completions(log.finish_s[np.isfinite(log.finish_s)])
        w = ws._w(a)
        for r in ws.rows():
            mine = (w == r["window"]) & np.isfinite(ttft)
            r["ttft_p99_s"] = float(np.percentile(ttft[mine], 99)) if mine.any() else float("nan")
            rows.append({"replication": rep, **r})
    return rows
