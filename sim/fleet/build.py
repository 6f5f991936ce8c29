"""Builds and runs a fleet for each engine kind; returns the run's log (BatchLog or LlmLog)."""
from __future__ import annotations

from collections import deque
from typing import Optional

import numpy as np

from ..engine import BatchLog, simulate_shared
from ..replica import BatchReplica, ContinuousReplica, LlmRequests, LlmStaticReplica
from ..replica.priority import PriorityBatchReplica
from ..replica.waiting import ClassWaiting
from ..replica.llm_log import LlmLog, merge_steps
from ..replica.llm_static import StaticRun, simulate_static_shared
from ..rng import component_rng
from .counts import Counts
from .fleet import Fleet, ReplicaGroup, drain, run_least_loaded, run_shared_llm


# the routers the inlined join_shortest_queue loop (run_least_loaded) stands for; a router of another name, even
# a subclass of these, runs its own chooser
LEAST_LOADED_FAST = ("join_shortest_queue", "least_outstanding_tokens")
STEP_BLOCK = 4096  # arrivals between two hand-overs of LLM step rows in a streaming run


def _per_replica(groups: list[ReplicaGroup]) -> list[ReplicaGroup]:
    return [g for g in groups for _ in range(g.replicas)]


def _noise_rng(seed: int, replication: int, i: int):
    return component_rng(seed, replication, f"cost_model.noise.replica.{i}")


def _batch_replicas(specs: list, out, seed: int, replication: int, max_queue, timeout_s, level, levels: int,
                    delay: bool = False) -> list:
    """Returns one request-level replica per (rule, cost) spec; with several priority levels, each with a
    prioritised queue (sim.replica.priority)."""
    def jitter(i, cost):
        return cost.jitter(_noise_rng(seed, replication, i)) if cost.is_noisy() else None
    if levels > 1:
        return [PriorityBatchReplica(i, rule, cost, out, level, levels, jitter(i, cost), max_queue, timeout_s, delay)
                for i, (rule, cost) in enumerate(specs)]
    return [BatchReplica(i, rule, cost, out, jitter(i, cost), max_queue, timeout_s) for i, (rule, cost) in enumerate(specs)]


def run_batch_fleet(groups: list[ReplicaGroup], router, arrival_s: np.ndarray, seed: int, replication: int,
                    max_queue: Optional[int] = None, timeout_s: Optional[float] = None,
                    level: Optional[list] = None, levels: int = 1, instances: int = 1,
                    slowdown: Optional[list] = None, delay: bool = False, autoscaler=None,
                    server_replicas: int = 1, end_s: Optional[float] = None) -> BatchLog:
    """Runs request-level replicas behind `router`; returns the BatchLog (with `order` and `routed` when
    replicas have queues of their own). `level[sid]` is each request's priority level (0: highest) when the
    request classes have `levels` > 1 distinct priorities. With an `autoscaler` the replicas form a pool behind
    the router (sim.fleet.scaling.FleetScaler); the log's `scaling` holds the lives, billed until `end_s`."""
    per = _per_replica(groups)
    specs = [(g.batching.rule(g.cost_model.batch_limit()), g.cost_model) for g in per]
    if delay:  # timeout_action delay: each priority gets a queue for its delayed requests (sim.replica.priority)
        level = [2 * x for x in level] if level is not None else [0] * len(arrival_s)
        levels *= 2
    limited = max_queue is not None or timeout_s is not None or levels > 1
    if instances > 1 and router.policy == "shared_queue" and not limited and autoscaler is None:  # the fast path
        from ..instances import simulate_instances

        return simulate_instances(specs, instances, slowdown or [float(k) for k in range(1, instances + 1)], arrival_s,
                                  noise_rng=component_rng(seed, replication, "cost_model.noise"))
    if instances > 1:  # instance groups: every GPU's instances share its queue (sim.replica.instance_pool)
        pools = _instance_pools(specs, router, instances, slowdown, seed, replication, max_queue, timeout_s,
                                level if level is not None else [0] * len(arrival_s), levels, delay,
                                autoscaler is not None)
        return _run_pools(pools, router, np.ascontiguousarray(arrival_s, dtype=float), seed, replication, limited,
                          autoscaler=autoscaler, server_replicas=server_replicas, end_s=end_s)
    if router.policy == "shared_queue" and not limited and autoscaler is None:
        return simulate_shared(specs, arrival_s, noise_rng=component_rng(seed, replication, "cost_model.noise"))
    arrivals = np.ascontiguousarray(arrival_s, dtype=float)
    rng = component_rng(seed, replication, "server.router")
    if router.policy == "shared_queue" and (len(per) > 1 or autoscaler is not None):
        # limited (or autoscaled with stages): one prioritised queue for every replica
        pool = _shared_pool(specs, seed, replication, max_queue, timeout_s,
                            level if level is not None else [0] * arrivals.size, levels, delay)
        controller = None
        if autoscaler is not None:
            from .scaling import FleetScaler

            controller = FleetScaler(autoscaler, [pool], server_replicas, pool=pool)
        Fleet([pool], lambda sid, a: 0, controller).run(arrivals.tolist())
        log = _pool_log(pool, arrivals)
        if not limited:
            log.rejected = log.timed_out = None
        if controller is not None:
            log.scaling = controller.record(end_s if end_s is not None else
                                            (float(arrivals[-1]) if arrivals.size else 0.0))
        return log
    if autoscaler is not None:
        return _scaled_pool(router, specs, arrivals, rng, seed, replication, max_queue, timeout_s, level, levels,
                            delay, limited, autoscaler, server_replicas, end_s)
    if not router.reads_state and not limited:
        assign = router.split(arrivals.size, len(per), rng)
        logs, orders = [], []
        for i, (rule, cost) in enumerate(specs):
            idx = np.flatnonzero(assign == i)
            log = simulate_shared([(rule, cost)], arrivals[idx], noise_rng=_noise_rng(seed, replication, i))
            log.replica[:] = i
            logs.append(log)
            orders.append(idx[:log.served])
        return BatchLog(arrivals, *(np.concatenate([getattr(g, k) for g in logs]) for k in
                                    ("size", "dispatch_s", "completion_s", "replica", "step_s")),
                        order=np.concatenate(orders).astype(np.int64), routed=assign)
    out = router.counts(len(per))
    replicas = _batch_replicas(specs, out, seed, replication, max_queue, timeout_s, level, levels, delay)
    if router.policy in LEAST_LOADED_FAST and not limited:
        run_least_loaded(replicas, out, rng, arrivals.tolist())
    elif router.reads_state:
        Fleet(replicas, router.chooser(replicas, out, rng)).run(arrivals.tolist())
    else:  # one replica behind a limited shared queue, or a router that reads no state: split up front
        fixed = (router.split(arrivals.size, len(per), rng) if router.policy != "shared_queue"
                 else np.zeros(arrivals.size, np.int32)).tolist()
        Fleet(replicas, lambda sid, a: fixed[sid]).run(arrivals.tolist())
    return _replica_log(replicas, arrivals, limited)


def _instance_pools(specs, router, instances, slowdown, seed, replication, max_queue, timeout_s, level, levels,
                    delay, autoscaled: bool = False) -> list:
    """Instance groups: behind the shared queue one pool of every GPU's instances (one noise stream, in batch order,
    as the shared-queue engine); behind a router one pool per replica (its own noise stream)."""
    from ..replica.instance_pool import InstancePool

    slowdown = slowdown or [float(k) for k in range(1, instances + 1)]
    if router.policy == "shared_queue":
        return [InstancePool(specs, instances, slowdown, Counts(1), level, levels,
                             component_rng(seed, replication, "cost_model.noise"), max_queue, timeout_s, delay)]
    out = router.counts(len(specs), pool=autoscaled)
    return [InstancePool([spec], instances, slowdown, out, level, levels, _noise_rng(seed, replication, i), max_queue,
                         timeout_s, delay, index=i) for i, spec in enumerate(specs)]


def _run_pools(pools, router, arrivals, seed, replication, limited, source=None, autoscaler=None,
               server_replicas: int = 1, end_s: Optional[float] = None) -> BatchLog:
    """Runs instance pools (one behind the shared queue, or one per replica behind `router`), with an autoscaler
    starting and stopping GPUs if given; returns the log."""
    from .scaling import FleetScaler

    shared = len(pools) == 1 and router.policy == "shared_queue"
    ctl = None
    if autoscaler is not None:
        ctl = FleetScaler(autoscaler, pools, server_replicas, pool=pools[0] if shared else None,
                          out=None if shared else pools[0].out, source=source)
    if shared:
        fleet = Fleet(pools, lambda sid, a: 0, ctl)
    else:
        rng = component_rng(seed, replication, "server.router")
        choose = (router.pool_chooser(pools, pools[0].out, rng) if ctl is not None else
                  router.chooser(pools, pools[0].out, rng) if router.reads_state else
                  _Split(router, len(pools), rng).choose)
        fleet = Fleet(pools, choose, ctl)
    if source is not None:
        for p in pools:
            p.notify = source.done
        fleet.run_closed(source)
        arrivals = np.asarray(source.arrival, float)
    else:
        fleet.run(arrivals.tolist())
    if shared:
        log = _pool_log(pools[0], arrivals)
        if not limited:
            log.rejected = log.timed_out = None
    else:
        log = _replica_log(pools, arrivals, limited)
    if ctl is not None:
        last = float(arrivals[-1]) if len(arrivals) else 0.0
        log.scaling = ctl.record(end_s if end_s is not None else last)
    return log


def _shared_pool(specs, seed, replication, max_queue, timeout_s, level, levels, delay):
    from ..replica.shared_pool import SharedQueuePool

    return SharedQueuePool(specs, Counts(1), level, levels, component_rng(seed, replication, "cost_model.noise"),
                           max_queue, timeout_s, delay)


def _pool_log(pool, arrivals: np.ndarray) -> BatchLog:
    """Collects the BatchLog of a shared-queue pool (sim.replica.shared_pool): batches in the order they started."""
    n = arrivals.size
    rejected, timed_out, delayed = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool)
    rejected[pool.rejected] = True
    timed_out[pool.timed_out] = True
    delayed[pool.delayed] = True
    return BatchLog(arrivals, np.frombuffer(pool.sizes, np.int32).copy(), np.frombuffer(pool.dispatch, np.float64).copy(),
                    np.frombuffer(pool.completion, np.float64).copy(), np.frombuffer(pool.who, np.int32).copy(),
                    np.asarray(pool.steps, np.float64), order=np.asarray(pool.served, np.int64), routed=None,
                    rejected=rejected, timed_out=timed_out, delayed=delayed if delayed.any() else None)


def _scaled_pool(router, specs, arrivals, rng, seed, replication, max_queue, timeout_s, level, levels, delay,
                 limited, autoscaler, server_replicas, end_s) -> BatchLog:
    """Request-level replicas with queues of their own behind `router`, an autoscaler choosing which of them
    take new work (the router's members)."""
    from .scaling import FleetScaler

    out = router.counts(len(specs), pool=True)
    replicas = _batch_replicas(specs, out, seed, replication, max_queue, timeout_s, level, levels, delay)
    controller = FleetScaler(autoscaler, replicas, server_replicas, out=out)
    if router.policy in LEAST_LOADED_FAST and not limited:
        run_least_loaded(replicas, out, rng, arrivals.tolist(), controller=controller)
    else:
        Fleet(replicas, router.pool_chooser(replicas, out, rng), controller).run(arrivals.tolist())
    log = _replica_log(replicas, arrivals, limited)
    log.scaling = controller.record(end_s if end_s is not None else (float(arrivals[-1]) if arrivals.size else 0.0))
    return log


def run_batch_closed(groups: list[ReplicaGroup], router, source, seed: int, replication: int,
                     max_queue: Optional[int] = None, levels: int = 1, instances: int = 1,
                     slowdown: Optional[list] = None, autoscaler=None, server_replicas: int = 1,
                     end_s: Optional[float] = None) -> BatchLog:
    """Runs request-level replicas behind `router` for closed-loop clients (`source`: sim.clients.ClientLoop);
    returns the BatchLog over the requests the clients sent (replicas with queues of their own, or one queue
    shared by them). With an `autoscaler`, its record is the log's `scaling`, billed until `end_s` (default:
    the last arrival)."""
    per = _per_replica(groups)
    specs = [(g.batching.rule(g.cost_model.batch_limit()), g.cost_model) for g in per]
    rng = component_rng(seed, replication, "server.router")
    if instances > 1:
        pools = _instance_pools(specs, router, instances, slowdown, seed, replication, max_queue, None,
                                source.level if source.level is not None else _Zeros(), levels, False,
                                autoscaler is not None)
        return _run_pools(pools, router, None, seed, replication, max_queue is not None, source, autoscaler,
                          server_replicas, end_s)
    from .scaling import FleetScaler

    if router.policy == "shared_queue" and (len(per) > 1 or autoscaler is not None):
        pool = _shared_pool(specs, seed, replication, max_queue, None,
                            source.level if source.level is not None else _Zeros(), levels, False)
        pool.notify = source.done
        ctl = FleetScaler(autoscaler, [pool], server_replicas, pool=pool, source=source) if autoscaler else None
        Fleet([pool], lambda sid, a: 0, ctl).run_closed(source)
        log = _pool_log(pool, np.asarray(source.arrival, float))
        if max_queue is None:
            log.rejected = log.timed_out = None
        return _scaled(log, ctl, end_s, source)
    out = router.counts(len(per), pool=autoscaler is not None)
    replicas = _batch_replicas(specs, out, seed, replication, max_queue, None, source.level, levels)
    for r in replicas:
        r.notify = source.done
    ctl = FleetScaler(autoscaler, replicas, server_replicas, out=out, source=source) if autoscaler else None
    if ctl is not None:
        choose = router.pool_chooser(replicas, out, rng)
    elif router.reads_state:
        choose = router.chooser(replicas, out, rng)
    elif router.policy == "shared_queue":
        choose = lambda sid, a: 0  # noqa: E731 (one replica: sim.checks)
    else:
        split = _Split(router, len(per), rng)
        choose = split.choose
    Fleet(replicas, choose, ctl).run_closed(source)
    return _scaled(_replica_log(replicas, np.asarray(source.arrival, float), max_queue is not None), ctl, end_s, source)


def _scaled(log, controller, end_s, source):
    """Attaches the autoscaler's record (billed until end_s, default the last arrival) to a closed loop's log."""
    if controller is not None:
        last = source.arrival[-1] if source.arrival else 0.0
        log.scaling = controller.record(end_s if end_s is not None else float(last))
    return log


class _Zeros:
    """Level 0 for every request id (one FCFS level, ids not known ahead)."""

    def __getitem__(self, sid: int) -> int:
        return 0


class _Split:
    """A state-blind router's split, drawn in blocks as requests are sent (their number is not known ahead)."""

    def __init__(self, router, replicas: int, rng, block: int = 1 << 14):
        self.router, self.replicas, self.rng, self.block = router, replicas, rng, block
        self.fixed: list = []

    def choose(self, sid: int, a: float) -> int:
        while sid >= len(self.fixed):
            # round robin continues from its position: a block of a multiple of `replicas` keeps it aligned
            self.fixed += self.router.split(self.block * self.replicas, self.replicas, self.rng).tolist()
        return self.fixed[sid]


def _replica_log(replicas: list, arrivals: np.ndarray, limited: bool) -> BatchLog:
    """Collects the BatchLog of request-level replicas with queues of their own."""
    routed = np.empty(arrivals.size, np.int32)
    rejected = np.zeros(arrivals.size, bool)
    timed_out = np.zeros(arrivals.size, bool)
    delayed = np.zeros(arrivals.size, bool)
    for r in replicas:
        routed[r.accepted_ids()] = r.index
        routed[r.rejected] = r.index
        rejected[r.rejected] = True
        timed_out[r.timed_out] = True
        delayed[getattr(r, "delayed", [])] = True
    cols = {"size": [], "dispatch_s": [], "completion_s": [], "replica": [], "step_s": []}
    for r in replicas:
        cols["size"].append(np.frombuffer(r.sizes, np.int32))
        cols["dispatch_s"].append(np.frombuffer(r.dispatch, np.float64))
        cols["completion_s"].append(np.frombuffer(r.completion, np.float64))
        cols["replica"].append(np.full(len(r.sizes), r.index, np.int32))
        cols["step_s"].append(np.asarray(r.steps, np.float64))
    order = np.concatenate([np.asarray(r.served, np.int64) for r in replicas])
    return BatchLog(arrivals, *(np.concatenate(cols[k]).copy() for k in cols), order=order, routed=routed,
                    rejected=rejected if limited else None, timed_out=timed_out if limited else None,
                    delayed=delayed if delayed.any() else None)


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
        run = StaticRun(arr, prompt_tokens, output_tokens)
        if router.policy == "shared_queue":
            step_logs = simulate_static_shared([(g.batching, g.cost_model) for g in per], run)
        else:
            replicas = [LlmStaticReplica(i, g.batching, g.cost_model, run, out) for i, g in enumerate(per)]
            assign = _route(router, replicas, out, rng, arr)
            for r in replicas:
                r.fill_waiting()
            step_logs = [r.steps for r in replicas]
        log = _static_log(run, step_logs, per, assign)
        return log if steps is None else _streamed(log, steps)
    reqs = LlmRequests(arr, prompt_tokens, output_tokens)
    token_aware = router.policy == "least_outstanding_tokens"
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

        def hand_over():
            for r in replicas:
                rows, gaps, weights = r.take_steps()
                steps.add_rows(rows["start"], rows["dur"], rows["dec"], rows["slots"], rows["n"], rows["kv"],
                               rows["peak"], rows["rep"])
                steps.add_gaps(gaps, weights)
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
                   server_replicas: int = 1, end_s: Optional[float] = None) -> LlmLog:
    """Runs continuous-batching replicas behind `router` for closed-loop clients (`source`: sim.clients.ClientLoop);
    `tokens(n0, n1)` returns the (prompt, output) token counts of request ids n0..n1-1, drawn in blocks as the
    clients send. Returns the fleet's LlmLog over the requests sent (with an `autoscaler`, its `scaling`)."""
    per = _per_replica(groups)
    reqs = LlmRequests([], [], [])
    prompt, output = tokens(0, block)
    reqs.extend(prompt, output)
    rng = component_rng(seed, replication, "server.router")
    out = router.counts(len(per), pool=autoscaler is not None)
    classed = levels > 1

    def queue():
        return ClassWaiting(reqs, source.level, levels, None) if classed else deque()
    shared = queue() if router.policy == "shared_queue" else None
    replicas = [ContinuousReplica(i, g.batching, g.cost_model, reqs, out, waiting=shared if shared is not None else queue(),
                                  track_tokens=router.policy == "least_outstanding_tokens",
                                  mean_output=float(np.mean(output)), oracle=getattr(router, "oracle", False))
                for i, g in enumerate(per)]
    for r in replicas:
        r.max_waiting = max_waiting
        r.notify = source.done

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
    log = LlmLog(np.asarray(reqs.arrival, float), np.asarray(reqs.prompt, np.int64), np.asarray(reqs.out, np.int64),
                 np.asarray(reqs.first, float), np.asarray(reqs.finish, float), np.asarray(reqs.preempt, np.int32),
                 np.asarray(reqs.recomputed, np.int64), s["start"], s["dur"], s["prefill"], s["dec"], s["slots"],
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
    log.admitted_s = np.asarray(reqs.admitted_s, float)
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


__all__ = ["drain", "run_batch_fleet", "run_llm_fleet"]
