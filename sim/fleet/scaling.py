"""The shared-queue engine with an autoscaler (sim.fleet.autoscaler): a pool of identical replicas, of which a
changing number serve, one SimPy process each, plus a controller process.

The queue rule is the shared queue's (sim.engine.simulate_shared, whose hot loop inlines the same rule): a
serving replica that is free takes the next requests under its DispatchRule. One difference: a free replica
with no request waiting sleeps until the next arrival instead of claiming it ahead, so a replica released
while idle is idle (released at once) rather than committed to a batch in the future. Lives are recorded as
[replica, requested_s, serving_s, released_s] and billed from request to release.
"""
from __future__ import annotations

import math
from array import array
from bisect import bisect_right
from typing import Optional

import numpy as np
import simpy

from ..engine import BatchLog
from ..kernel import Kernel
from .controller import DRAINING, ON, PoolHooks, ScalingController


class _SharedQueueHooks(PoolHooks):
    """The autoscaler's view of request-level replicas behind the shared queue (one SimPy process each)."""

    def __init__(self, env: simpy.Environment, size: int, state: dict, arr: list):
        self.env, self.state, self.arr = env, state, arr
        self.wake = [env.event() for _ in range(size)]
        self.busy_until = [0.0] * size

    def busy(self, rid, t):
        return self.busy_until[rid] > t

    def serve(self, rid, t):
        if not self.wake[rid].triggered:
            self.wake[rid].succeed()

    def observe(self, t, serving):
        st, arr = self.state, self.arr
        # over once nothing more arrives and no replica runs a batch: requests still waiting then are a partial
        # static batch that never fills (a free replica claims every batch it can as soon as it is free)
        if not st["more"] and (not arr or arr[-1] <= t) and not any(self.busy_until[i] > t for i in serving):
            return None
        util = self.interval_utilization(st["busy"], t, serving)
        while st["more"] and (not arr or arr[-1] <= t):  # streaming: see every arrival by now
            st["load"](len(arr))
        waiting = bisect_right(arr, t, st["head"]) - st["head"] if arr else 0
        return util, waiting


def simulate_autoscaled(rule, cost, scaler, replicas: int, arrival_s: Optional[np.ndarray], *,
                        end_s: Optional[float] = None,
                        noise_rng: Optional[np.random.Generator] = None, chunks=None, sink=None,
                        flush_requests: int = 1 << 20):
    """Runs the autoscaled shared queue over sorted arrival times (or `chunks` into `sink`, as
    sim.engine.simulate_shared does); returns (BatchLog or None, scaling), where scaling holds `lives`
    ([replica, requested_s, serving_s, released_s], released_s clipped to `end_s`, the run's billing end:
    default the last arrival), the billing end, the decision count and the ups and downs.

    Long on purpose: simulate_shared's hot path with the controller's hooks, closures over local state as there
    (sim.engine); the golden outputs pin it."""
    pool_size = scaler.pool(replicas)
    env = Kernel([])  # no handlers: the replicas are SimPy processes over the known arrivals
    arr: list = [] if chunks is not None else np.asarray(arrival_s, float).tolist()
    state = {"head": 0, "more": chunks is not None, "busy": 0.0, "last": arr[-1] if arr else 0.0}
    hooks = _SharedQueueHooks(env, pool_size, state, arr)
    pool = ScalingController(scaler, pool_size, hooks, replicas)
    sizes, dispatch, completion, steps, who = array("i"), array("d"), array("d"), array("d"), array("i")
    table = cost.step_table_s(rule.max_batch_size).tolist()
    jitter = cost.jitter(noise_rng) if cost.is_noisy() else None
    limit, delay, pmin = rule.max_batch_size, rule.delay_s, rule.smallest - 1

    def load(upto: int) -> None:
        while len(arr) <= upto and state["more"]:
            chunk = next(chunks, None)
            if chunk is None:
                state["more"] = False
            elif len(chunk):
                arr.extend(np.asarray(chunk, float).tolist())
                state["last"] = arr[-1]
    state["load"] = load

    def flush() -> None:
        h = state["head"]
        sink.take(np.asarray(arr[:h], float), np.frombuffer(sizes, np.int32).copy(),
                  np.frombuffer(dispatch, np.float64).copy(), np.frombuffer(completion, np.float64).copy(),
                  np.frombuffer(who, np.int32).copy(), np.frombuffer(steps, np.float64).copy(),
                  arr[-1] if arr else -math.inf)
        del arr[:h]
        state["head"] = 0
        for a in (sizes, dispatch, completion, steps, who):
            del a[:]

    def replica(rid: int):
        while True:
            if pool.status[rid] != ON:
                if pool.status[rid] == DRAINING:
                    pool.drained(rid, env.now)
                hooks.wake[rid] = env.event()
                yield hooks.wake[rid]
                continue
            h = state["head"]
            if h + limit >= len(arr) and state["more"]:
                load(h + limit)
            n = len(arr)
            if h >= n:
                return
            t = env.now
            first = arr[h]
            if first > t:  # nothing waits: sleep until the next arrival (the shared queue's rule from there)
                yield env.timeout(first - t)
                continue
            due = first + delay
            j = h + pmin
            full = arr[j] if j < n else math.inf
            d = max(min(full, due), t)
            if d == math.inf:
                return  # a partial static batch that will never fill
            k = bisect_right(arr, d, h, min(h + limit, n)) - h
            if d < due and not rule.plain:
                k = rule._floor[k]
            state["head"] = h + k
            step = table[k] * (jitter(k) if jitter is not None else 1.0)
            end = d + step
            hooks.busy_until[rid] = end
            state["busy"] += step
            sizes.append(k)
            dispatch.append(d)
            completion.append(end)
            steps.append(step)
            who.append(rid)
            if sink is not None and h + k >= flush_requests:
                flush()
            yield env.timeout(end - t)

    def controller():
        while pool.next_time() < math.inf:
            yield env.timeout(pool.next_time() - env.now)
            pool.fire(env.now)

    pool.start(0.0)
    for rid in range(pool_size):
        env.process(replica(rid))
    env.process(controller())
    env.run()
    if sink is not None:
        flush()
        sink.finish(np.asarray(arr[state["head"]:], float))
    scaling = pool.record(state["last"] if end_s is None else end_s)
    if sink is not None:
        return None, scaling
    log = BatchLog(arrival_s=np.asarray(arrival_s, float), size=np.frombuffer(sizes, np.int32).copy(),
                   dispatch_s=np.frombuffer(dispatch, np.float64).copy(),
                   completion_s=np.frombuffer(completion, np.float64).copy(),
                   replica=np.frombuffer(who, np.int32).copy(), step_s=np.frombuffer(steps, np.float64).copy())
    return log, scaling


class _EngineHooks(PoolHooks):
    """The autoscaler's view of continuous-batching engines sharing one waiting queue: a released engine admits
    nothing new and finishes its sequences (a preempted one goes back to the shared queue); target_utilization
    reads the serving engines' mean KV-cache use at the decision (an engine with any sequence is busy every
    step, so busy time says nothing about headroom: vLLM's gpu_cache_usage is the measure)."""

    def __init__(self, replicas: list, waiting):
        self.replicas, self.waiting = replicas, waiting
        self.push = None
        for r in replicas:
            r.accepting = False

    def busy(self, rid, t):
        r = self.replicas[rid]
        return r.running_step is not None or bool(r.prefilling) or r.n_dec > 0

    def serve(self, rid, t):
        r = self.replicas[rid]
        r.accepting = True
        if r.in_run:
            r.cut(t, self.push)  # a draining engine kept in a run of decode steps admits at its next step
        else:
            self.push((t, 1, rid))  # wake it (a step start): it may admit from the queue now

    def stop(self, rid, t):
        self.replicas[rid].accepting = False

    def idle(self, replica) -> bool:
        return not replica.prefilling and replica.n_dec == 0

    def over(self, t: float) -> bool:
        return self.arrivals_over(t) and not self.waiting and all(r.running_step is None for r in self.replicas)

    def observe(self, t, serving):
        if self.over(t):
            return None
        engines = [self.replicas[i] for i in serving]
        for r in engines:
            if r.in_run:
                r.sync(t)  # a run of decode steps allocates its blocks when brought up to date
        util = (sum(r.kv_use for r in engines) / len(engines)) if engines else 0.0
        return util, self.queued(serving)

    def queued(self, serving) -> int:
        return len(self.waiting)


class _RoutedEngineHooks(_EngineHooks):
    """Continuous-batching engines with queues of their own behind a router: a released engine leaves the
    router's members (sim.fleet.counts) and serves what was routed to it before it leaves."""

    def __init__(self, replicas: list, out):
        self.replicas, self.out = replicas, out
        self.push = None
        for i in range(len(replicas)):
            out.park(i)

    def busy(self, rid, t):
        return super().busy(rid, t) or bool(self.replicas[rid].waiting)

    def serve(self, rid, t):
        self.out.unpark(rid)

    def stop(self, rid, t):
        self.out.park(rid)

    def idle(self, replica) -> bool:
        return super().idle(replica) and not replica.waiting

    def over(self, t: float) -> bool:
        return self.arrivals_over(t) and all(r.running_step is None and not r.waiting for r in self.replicas)

    def queued(self, serving) -> int:
        return sum(len(self.replicas[i].waiting) for i in serving)


class _QueuedHooks(PoolHooks):
    """Request-level replicas with queues of their own behind a router: a released replica leaves the router's
    members and serves its queue before it leaves; utilisation is the serving replicas' busy time over the
    interval (batch steps counted when they start)."""

    def __init__(self, replicas: list, out):
        self.replicas, self.out = replicas, out
        self.push = None
        self.on_idle = None  # FleetScaler's callback: a replica reports its last batch's end only while it drains
        for i in range(len(replicas)):
            out.park(i)

    def busy(self, rid, t):
        return self.replicas[rid].holds_work()

    def serve(self, rid, t):
        self.out.unpark(rid)
        self.replicas[rid].on_idle = None  # hot path: a serving replica's batch ends report nothing

    def stop(self, rid, t):
        self.out.park(rid)
        self.replicas[rid].on_idle = self.on_idle

    def idle(self, replica) -> bool:
        return not replica.holds_work()

    def observe(self, t, serving):
        reps = self.replicas
        if self.arrivals_over(t) and not any(r.progressing() for r in reps):
            return None  # nothing more arrives and nothing will run (what waits is a batch that never fills)
        util = self.interval_utilization(sum(r.busy_s(t) for r in reps), t, serving)
        return util, sum(reps[i].queued() for i in serving)


class _PoolServerHooks(PoolHooks):
    """Request-level servers behind one queue with limits, priorities or stages (sim.replica.shared_pool): a
    released server takes no new batch and finishes the one it runs; utilisation is the serving servers' busy time
    over the interval (batch steps counted when they start)."""

    def __init__(self, pool):
        self.pool = pool
        self.push = None
        self.unit = pool.unit  # the controller's replica u is servers u * unit .. (u + 1) * unit - 1 (a GPU's instances)
        pool.active = [False] * len(pool.servers)
        pool.idle = []
        pool._sync()

    def servers(self, u: int) -> range:
        return range(u * self.unit, (u + 1) * self.unit)

    def busy(self, rid, t):
        return any(self.pool.server_busy(s) for s in self.servers(rid))

    def serve(self, rid, t):
        for s in self.servers(rid):
            self.pool.set_active(s, True, t, self.push)

    def stop(self, rid, t):
        for s in self.servers(rid):
            self.pool.set_active(s, False, t, self.push)

    def server_idle(self, controller, rid: int, t: float) -> None:
        """A stopped server's batch ended: its replica is drained once none of its servers runs one."""
        u = rid // self.unit
        if not self.busy(u, t):
            controller.drained(u, t)

    def observe(self, t, serving):
        pool = self.pool
        if self.arrivals_over(t) and not pool.progressing():
            return None
        return self.interval_utilization(pool.busy_s(t), t, serving), pool.waiting


class _StaticSharedHooks(PoolHooks):
    """llm_static replicas behind one shared queue (sim.replica.llm_static.StaticSharedQueue): a released replica
    claims no new batch and finishes the one it claimed (an idle one leaves at once); utilisation is the serving
    replicas' busy time over the interval (batches counted when claimed), the queue what arrived and no batch
    claimed."""

    def __init__(self, pool):
        self.pool = pool
        self.push = None
        pool.active = [False] * len(pool.active)
        pool.wait_for_arrivals = True

    def busy(self, rid, t):
        return self.pool.until[rid] > t

    def serve(self, rid, t):
        self.pool.serve(rid, t, self.push)

    def stop(self, rid, t):
        self.pool.stop(rid)

    def observe(self, t, serving):
        pool = self.pool
        if pool.over(t):
            return None
        return self.interval_utilization(pool.busy_total_s, t, serving), pool.waiting(t)


class FleetScaler:
    """The one controller (sim.fleet.controller) as an event handler on the kernel (sim.kernel; its index is
    len(replicas)), over any pool: engines behind the shared queue (`waiting`), request-level replicas or engines
    behind a router (`out`, the router's counts, whose members it keeps), the servers of a request-level shared
    queue (`pool`), or llm_static replicas behind the shared queue (`static`)."""

    def __init__(self, scaler, replicas: list, server_replicas: int, waiting=None, out=None, pool=None, source=None,
                 static=None):
        self.index = len(replicas)
        self._init_hooks(scaler, replicas, server_replicas, waiting, out, pool, static)
        self.hooks.source = source

    def _init_hooks(self, scaler, replicas, server_replicas, waiting, out, pool, static) -> None:
        if static is not None:  # llm_static replicas behind one shared queue
            self.hooks = _StaticSharedHooks(static)
            self.control = ScalingController(scaler, len(replicas), self.hooks, server_replicas)
            self.pushed = None
            static.on_stopped = self.control.drained
            return
        if pool is not None:  # the servers of one shared-queue pool (the fleet's only replica)
            self.hooks = _PoolServerHooks(pool)
            self.control = ScalingController(scaler, len(pool.servers) // pool.unit, self.hooks, server_replicas)
            self.pushed = None
            pool.on_server_idle = lambda rid, t: self.hooks.server_idle(self.control, rid, t)
            return
        if out is None:
            self.hooks = _EngineHooks(replicas, waiting)
        elif hasattr(replicas[0], "kv"):
            self.hooks = _RoutedEngineHooks(replicas, out)
        else:
            self.hooks = _QueuedHooks(replicas, out)
        self.control = ScalingController(scaler, len(replicas), self.hooks, server_replicas)
        self.pushed = None
        self.hooks.on_idle = self._idle
        for r in replicas:
            r.on_idle = self._idle

    @property
    def arrivals_done(self) -> bool:
        return self.hooks.arrivals_done

    @arrivals_done.setter
    def arrivals_done(self, value: bool) -> None:
        self.hooks.arrivals_done = value

    def start(self, push) -> None:
        self.hooks.push = push
        self.control.start(0.0)
        self._next(push)

    def _next(self, push) -> None:
        t = self.control.next_time()
        if t < math.inf and t != self.pushed:
            self.pushed = t
            push((t, 1, self.index))

    def on_event(self, t: float, kind: int, push) -> None:
        if t != self.control.next_time():
            return  # stale
        self.pushed = None
        self.control.fire(t)
        self._next(push)

    def _idle(self, replica, t: float) -> None:
        if self.hooks.idle(replica):
            self.control.drained(replica.index, t)

    def record(self, end_s: float) -> dict:
        """Returns the scaling record (as simulate_autoscaled's), lives clipped to `end_s`."""
        return self.control.record(end_s)


def LlmScaler(scaler, replicas: list, waiting, server_replicas: int) -> FleetScaler:
    """The autoscaler of continuous-batching engines behind a shared waiting queue."""
    return FleetScaler(scaler, replicas, server_replicas, waiting=waiting)
