"""Builds and runs a fleet of LLM engines (continuous batching or llm_static) behind a router or a shared queue,
open or closed loop, fixed or autoscaled; returns the run's LlmLog (request-level fleets: sim.fleet.build)."""
from __future__ import annotations

from collections import deque
from typing import Optional

import numpy as np

from ..replica import ContinuousReplica, LlmRequests, LlmStaticReplica
from ..replica.llm_log import LlmLog, merge_steps
from ..replica.llm_static import StaticRun, simulate_static_shared
from ..replica.waiting import ClassWaiting
from ..rng import component_rng
from .build import _per_replica, _scaled, _Split
from .fleet import Fleet, ReplicaGroup, run_shared_llm

STEP_BLOCK = 4096  # arrivals between two hand-overs of LLM step rows in a streaming run


def run_llm_fleet(groups: list[ReplicaGroup], router, arrival_s, prompt_tokens, output_tokens, seed: int,
                  replication: int, coalesce: bool = True, max_waiting: Optional[int] = None,
                  level: Optional[list] = None, levels: int = 1, client_timeout_s: Optional[float] = None,
                  autoscaler=None, server_replicas: int = 1, end_s: Optional[float] = None,
                  steps=None) -> LlmLog:
    """Runs LLM replicas (continuous or llm_static) behind `router`; returns the fleet's LlmLog. Continuous
    replicas admit by priority level (`level[sid]`, 0 highest, `levels` distinct) and drop requests whose
    client gave up after `client_timeout_s` waiting for admission. With `steps` (a streaming run's
    sim.replica.step_stats.StepStats) the engines hand their step rows to it as the run goes and the log keeps
    none: its `step_stats` is `steps`."""
    per = _per_replica(groups)
    static = per[0].batching.policy == "llm_static"
    arr = np.asarray(arrival_s, float)
    rng = component_rng(seed, replication, "server.router")
    out = router.counts(len(per), pool=autoscaler is not None)
    assign = None
    if static:
        log = _run_static(per, router, out, rng, arr, prompt_tokens, output_tokens, autoscaler, server_replicas, end_s)
        return log if steps is None else _streamed(log, steps)
    reqs = LlmRequests(arr, prompt_tokens, output_tokens)
    token_aware = router.reads_tokens
    mean_out = float(np.mean(output_tokens)) if len(output_tokens) else 0.0
    classed = levels > 1 or client_timeout_s is not None

    def queue():
        return ClassWaiting(reqs, level, levels, client_timeout_s) if classed else deque()
    shared = queue() if router.policy == "shared_queue" else None
    replicas = [ContinuousReplica(i, g.batching, g.cost_model, reqs, out, waiting=shared if shared is not None else queue(),
                                  track_tokens=token_aware, mean_output=mean_out, oracle=getattr(router, "oracle", False))
                for i, g in enumerate(per)]
    if classed and shared is None:
        for r in replicas:
            r.waiting.on_expire = r.expired
    for r in replicas:
        r.coalesce = coalesce
        r.max_waiting = max_waiting
    controller = None
    if autoscaler is not None:  # sim.checks: continuous batching
        from .scaling import FleetScaler

        controller = FleetScaler(autoscaler, replicas, server_replicas, waiting=shared,
                                 out=out if shared is None else None)
    chunks, after = None, None
    if steps is not None:  # streaming: the engines hand over their step rows every block of arrivals
        steps.kv_tokens = np.maximum(np.array([r.kv.capacity_tokens for r in replicas], np.int64), 1)
        chunks = [arr[i:i + STEP_BLOCK] for i in range(0, arr.size, STEP_BLOCK)]

        reqs.keep_inputs(arr, prompt_tokens, output_tokens)
        seen = [0]  # arrivals routed so far

        def hand_over():
            for r in replicas:
                rows, gaps, weights = r.take_steps()
                steps.add_rows(rows["start"], rows["dur"], rows["dec"], rows["slots"], rows["n"], rows["kv"],
                               rows["peak"], rows["rep"])
                steps.add_gaps(gaps, weights)
            seen[0] = min(seen[0] + STEP_BLOCK, reqs.n)
            reqs.pack_done(seen[0])  # finished requests keep a few list slots, not their objects
        after = hand_over
    if shared is not None:
        run_shared_llm(replicas, shared, reqs, arr.tolist(), controller=controller, chunks=chunks, after_chunk=after)
    else:
        assign = _route(router, replicas, out, rng, arr, controller, chunks, after)
    if after is not None:
        after()  # the steps after the last arrival
    log = _continuous_log(reqs, replicas, per, assign)
    log.step_stats = steps
    if controller is not None:
        log.scaling = controller.record(end_s if end_s is not None else (float(arr[-1]) if arr.size else 0.0))
    return log


def run_llm_closed(groups: list[ReplicaGroup], router, source, tokens, seed: int, replication: int,
                   max_waiting: Optional[int] = None, levels: int = 1, block: int = 4096, autoscaler=None,
                   server_replicas: int = 1, end_s: Optional[float] = None,
                   client_timeout_s: Optional[float] = None) -> LlmLog:
    """Runs continuous-batching replicas behind `router` for closed-loop clients (`source`: sim.clients.ClientLoop);
    `tokens(n0, n1)` returns the (prompt, output) token counts of request ids n0..n1-1, drawn in blocks as the
    clients send. Returns the fleet's LlmLog over the requests sent (with an `autoscaler`, its `scaling`). With
    `client_timeout_s` a client not admitted within that long gives up at that instant, thinks and sends again."""
    per = _per_replica(groups)
    reqs = LlmRequests([], [], [])
    prompt, output = tokens(0, block)
    reqs.extend(prompt, output)
    rng = component_rng(seed, replication, "server.router")
    out = router.counts(len(per), pool=autoscaler is not None)
    classed = levels > 1 or client_timeout_s is not None

    def queue():
        w = ClassWaiting(reqs, source.level, levels, client_timeout_s) if classed else deque()
        if client_timeout_s is not None:
            w.notify, w.deadline_events = source.done, True
        return w
    shared = queue() if router.policy == "shared_queue" else None
    replicas = [ContinuousReplica(i, g.batching, g.cost_model, reqs, out, waiting=shared if shared is not None else queue(),
                                  track_tokens=router.reads_tokens,
                                  mean_output=float(np.mean(output)), oracle=getattr(router, "oracle", False))
                for i, g in enumerate(per)]
    for r in replicas:
        r.max_waiting = max_waiting
        r.notify = source.done
        if classed and shared is None:
            r.waiting.on_expire = r.expired

    class Growing:  # hands requests over, extending the per-request state a block at a time
        next_time = source.next_time

        @staticmethod
        def pop():
            got = source.pop()
            if got is not None:
                sid, b = got
                if sid >= reqs.n:
                    p, o = tokens(reqs.n, reqs.n + block)
                    reqs.extend(p, o)
                    for r, g in zip(replicas, per):
                        r.fits.extend(g.batching.fits(np.asarray(p), np.asarray(o)).tolist())
                reqs.arrival[sid] = b
            return got
    routed: list = []
    ctl = None
    if autoscaler is not None:
        from .scaling import FleetScaler

        ctl = FleetScaler(autoscaler, replicas, server_replicas, waiting=shared, out=out if shared is None else None,
                          source=source)
    if shared is not None:
        run_shared_llm(replicas, shared, reqs, None, source=Growing, controller=ctl)
    else:
        choose = (router.pool_chooser(replicas, out, rng) if ctl is not None else
                  router.chooser(replicas, out, rng) if router.reads_state else _Split(router, len(per), rng).choose)
        runs = [r for r in replicas if router.reads_kv]

        def record(sid, a):
            for r in runs:  # the router reads every replica as of the arrival instant
                if r.in_run:
                    r.sync(a)
            routed.append(choose(sid, a))
            return routed[-1]
        Fleet(replicas, record, ctl).run_closed(Growing)
    reqs.trim(len(source.arrival))
    return _scaled(_continuous_log(reqs, replicas, per, np.asarray(routed, np.int32) if shared is None else None), ctl,
                   end_s, source)


def _run_static(per, router, out, rng, arr, prompt_tokens, output_tokens, autoscaler, server_replicas,
                end_s) -> LlmLog:
    """llm_static replicas behind the shared queue (sim.replica.llm_static.StaticSharedQueue) or a router (each with
    its own queue), fixed or autoscaled; returns the LlmLog (with `scaling` when autoscaled)."""
    run = StaticRun(arr, prompt_tokens, output_tokens)
    ctl, assign = None, None
    if router.policy == "shared_queue":
        step_logs, ctl = simulate_static_shared([(g.batching, g.cost_model) for g in per], run, autoscaler,
                                                server_replicas)
    else:
        replicas = [LlmStaticReplica(i, g.batching, g.cost_model, run, out) for i, g in enumerate(per)]
        if autoscaler is not None:  # the replicas with queues of their own
            from .scaling import FleetScaler

            ctl = FleetScaler(autoscaler, replicas, server_replicas, out=out)
        assign = _route(router, replicas, out, rng, arr, ctl)
        for r in replicas:
            r.fill_waiting()
        step_logs = [r.steps for r in replicas]
    log = _static_log(run, step_logs, per, assign)
    if ctl is not None:
        log.scaling = ctl.record(end_s if end_s is not None else (float(arr[-1]) if arr.size else 0.0))
    return log


def _route(router, replicas, out, rng, arr: np.ndarray, controller=None, chunks=None, after_chunk=None) -> np.ndarray:
    """Runs the fleet with `router` (and an autoscaler `controller` choosing the router's members); returns the
    replica each request was routed to. `chunks` and `after_chunk`: as Fleet.run (the same arrivals in blocks)."""
    if router.reads_state or controller is not None:
        routed = np.empty(arr.size, np.int32)
        choose = (router.chooser if controller is None else router.pool_chooser)(replicas, out, rng)
        # counts and outstanding tokens are read without touching a run of decode steps; KV use needs its blocks
        runs = [r for r in replicas if hasattr(r, "sync")] if router.reads_kv else []

        expiring = [r for r in replicas if getattr(r, "expiring", False)]

        def record(sid, a):
            for r in runs:  # the router reads every replica as of the arrival instant
                if r.in_run:
                    r.sync(a)
            for r in expiring:  # ... after the clients who gave up by then have left its queue
                r.waiting.expire(a)
            routed[sid] = i = choose(sid, a)
            return i
        Fleet(replicas, record, controller).run(arr.tolist(), chunks, after_chunk)
        return routed
    assign = router.split(arr.size, len(replicas), rng)
    fixed = assign.tolist()
    Fleet(replicas, lambda sid, a: fixed[sid]).run(arr.tolist(), chunks, after_chunk)
    return assign


def _continuous_log(reqs: LlmRequests, replicas: list, per: list, assign) -> LlmLog:
    s = merge_steps([r.steps for r in replicas])
    kv = np.array([r.kv.capacity_tokens for r in replicas], np.int64)
    col = reqs.column
    log = LlmLog(col("arrival", float), col("prompt", np.int64), col("out", np.int64),
                 col("first", float), col("finish", float), np.asarray(reqs.preempt, np.int32),
                 col("recomputed", np.int64), s["start"], s["dur"], s["prefill"], s["dec"], s["slots"],
                 s["kv"], s["run"], s["wait"], int(kv.sum()), np.asarray(reqs.refused, bool))
    log.itl_s = np.concatenate([np.frombuffer(r.itl_gap, np.float64) for r in replicas]).copy()
    log.itl_weight = np.concatenate([np.frombuffer(r.itl_weight, np.int64) for r in replicas]).copy()
    log.replica = np.asarray(reqs.replica, np.int32)
    log.step_replica = s["rep"]
    log.replica_kv_tokens = kv
    log.routed = assign
    log.step_count = s["n"]
    log.step_kv_peak = s["peak"]
    log.rejected = np.asarray(reqs.rejected, bool)
    log.timed_out = np.asarray(reqs.timed_out, bool)
    log.admitted_s = col("admitted_s", float)
    return log


def _streamed(log: LlmLog, steps) -> LlmLog:
    """Hands a finished log's step rows to a streaming run's StepStats and drops them (static batching reads its
    own rows while it runs, so they go over at the end)."""
    steps.add_rows(log.step_start_s, log.step_s, log.step_decode_tokens, log.step_decode_slots, log.steps,
                   log.step_kv_used, log.step_kv_used, log.step_replica)
    steps.add_static_gaps(log.step_start_s, log.step_s, log.step_decode_tokens)
    for key in ("step_start_s", "step_s", "step_prefill_tokens", "step_decode_tokens", "step_decode_slots",
                "step_kv_used", "step_running", "step_waiting", "step_replica"):
        setattr(log, key, getattr(log, key)[:0])
    log.step_stats = steps
    return log


def _static_log(run: StaticRun, steps: list, per: list, assign) -> LlmLog:
    s = merge_steps(steps)
    kv = np.array([g.batching.kv_cache_tokens for g in per], np.int64)
    n = run.arrival.size
    zeros = np.zeros(n, np.int64)
    log = LlmLog(run.arrival, run.prompt, run.out, run.first, run.finish, zeros.astype(np.int32), zeros,
                 s["start"], s["dur"], s["prefill"], s["dec"], s["slots"], s["kv"], s["run"], s["wait"],
                 int(kv.sum()), run.refused)
    log.replica = run.replica
    log.step_replica = s["rep"]
    log.replica_kv_tokens = kv
    log.routed = assign
    return log
