"""Builds and runs a fleet of request-level replicas (behind a router or a shared queue, open or closed loop,
fixed or autoscaled, instance groups); returns the run's BatchLog. LLM fleets: sim.fleet.build_llm."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..engine import BatchLog, simulate_shared
from ..replica import BatchReplica
from ..replica.priority import PriorityBatchReplica
from ..rng import component_rng
from .counts import Counts
from .fleet import Fleet, ReplicaGroup, run_least_loaded


# the routers the inlined join_shortest_queue loop (run_least_loaded) stands for; a router of another name, even
# a subclass of these, runs its own chooser
LEAST_LOADED_FAST = ("join_shortest_queue", "least_outstanding_tokens")


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
                     end_s: Optional[float] = None, timeout_s: Optional[float] = None,
                     delay: bool = False) -> BatchLog:
    """Runs request-level replicas behind `router` for closed-loop clients (`source`: sim.clients.ClientLoop);
    returns the BatchLog over the requests the clients sent (replicas with queues of their own, or one queue
    shared by them). With an `autoscaler`, its record is the log's `scaling`, billed until `end_s` (default:
    the last arrival). With `timeout_s` a request waiting longer leaves, and its client hears of it at its
    deadline (thinks, sends again); with `delay` it waits behind the others instead (timeout_action delay)."""
    per = _per_replica(groups)
    specs = [(g.batching.rule(g.cost_model.batch_limit()), g.cost_model) for g in per]
    rng = component_rng(seed, replication, "server.router")
    level = source.level if source.level is not None else _Zeros()
    if delay:  # each priority gets a queue for its delayed requests, as run_batch_fleet's
        level, levels = _Doubled(level), 2 * levels
    limited = max_queue is not None or timeout_s is not None
    if instances > 1:
        pools = _instance_pools(specs, router, instances, slowdown, seed, replication, max_queue, timeout_s,
                                level, levels, delay, autoscaler is not None)
        return _run_pools(pools, router, None, seed, replication, limited, source, autoscaler,
                          server_replicas, end_s)
    from .scaling import FleetScaler

    if router.policy == "shared_queue" and (len(per) > 1 or autoscaler is not None):
        pool = _shared_pool(specs, seed, replication, max_queue, timeout_s, level, levels, delay)
        pool.notify = source.done
        ctl = FleetScaler(autoscaler, [pool], server_replicas, pool=pool, source=source) if autoscaler else None
        Fleet([pool], lambda sid, a: 0, ctl).run_closed(source)
        log = _pool_log(pool, np.asarray(source.arrival, float))
        if not limited:
            log.rejected = log.timed_out = None
        return _scaled(log, ctl, end_s, source)
    out = router.counts(len(per), pool=autoscaler is not None)
    replicas = _batch_replicas(specs, out, seed, replication, max_queue, timeout_s, level, levels, delay)
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
    return _scaled(_replica_log(replicas, np.asarray(source.arrival, float), limited), ctl, end_s, source)


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


class _Doubled:
    """Level 2p for a request of priority p (timeout_action delay: 2p + 1 holds p's delayed requests), read as
    the clients send."""

    def __init__(self, level):
        self.level = level

    def __getitem__(self, sid: int) -> int:
        return 2 * self.level[sid]


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


# the LLM fleets (sim.fleet.build_llm), importable from here as before
from .build_llm import run_llm_closed, run_llm_fleet  # noqa: E402,F401

__all__ = ["run_batch_fleet", "run_llm_fleet"]
