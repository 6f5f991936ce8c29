"""SimPy engine for request-level batching on replicas sharing one FCFS queue (the `shared_queue`
router's fast path; replicas with queues of their own are sim.replica.batch).

Performance design: arrivals are known in advance (open loop) and kept in a plain list, so a free
replica finds how many requests have arrived by time t with `bisect` instead of one SimPy process or
event per request. Each replica is one handler on the kernel (sim.kernel) with one event per batch: when it is
free it claims the next batch (the wait for the batch to form plus its step time) and schedules its end. Per-batch results go into typed arrays; per-request columns are
derived from them with numpy once the run ends.
"""
from __future__ import annotations

import math
from array import array
from bisect import bisect_right
from dataclasses import dataclass
from functools import partial
from typing import Optional

import numpy as np

from .batching import DispatchRule
from .cost import CostModel
from .kernel import Handler, Kernel


@dataclass
class BatchLog:
    """What one simulated run produced: one entry per batch, plus the arrival times it served.

    Batches are listed in the order they claimed requests, and each batch takes the next `size`
    requests in arrival order, so request i belongs to batch `np.repeat(arange, size)[i]`.
    """

    arrival_s: np.ndarray      # every generated arrival, sorted
    size: np.ndarray           # int32, requests per batch
    dispatch_s: np.ndarray     # batch start times
    completion_s: np.ndarray   # batch end times
    replica: np.ndarray        # int32, replica that ran each batch
    step_s: np.ndarray         # step duration of each batch (completion - dispatch, kept exact)
    # replicas with queues of their own (sim.fleet) take requests out of arrival order: `order` lists the
    # request ids in the order the batches took them (None: arrival order, the shared queue), `routed` the
    # replica each request was sent to (None: shared queue, where the batch's replica is the one)
    order: Optional[np.ndarray] = None
    routed: Optional[np.ndarray] = None
    rejected: Optional[np.ndarray] = None  # bool per request: turned away by a full queue (server.queue)
    timed_out: Optional[np.ndarray] = None  # bool per request: left the queue unserved after the timeout
    delayed: Optional[np.ndarray] = None  # bool per request: timed out and waited behind the others (timeout_action delay)
    clients: Optional[dict] = None  # closed loop: per request client, think_s, cycle_end_s (sim.clients)
    classes: Optional[np.ndarray] = None  # class index per request (workload.classes)
    # server stages (sim.stages): per request sent_s (by the client; arrival_s is when it reached the batcher),
    # pre_wait_s, answered_s (NaN: not answered) and post_wait_s
    stages: Optional[dict] = None
    scaling: Optional[dict] = None  # autoscaler: replica lives, billing end, decisions (sim.fleet.scaling)

    def request_batch(self) -> np.ndarray:
        """Returns, per request in arrival order, the index of the batch that served it (-1: never served)."""
        n = self.arrival_s.size
        batch = np.full(n, -1, dtype=np.int64)
        served = self.served
        of = np.repeat(np.arange(self.size.size, dtype=np.int64), self.size)
        if self.order is None:
            batch[:served] = of
        else:
            batch[self.order] = of
        return batch

    def request_times(self, key: str) -> np.ndarray:
        """Returns per request, in arrival order, the dispatch_s or completion_s of its batch (NaN: never served)."""
        batch = self.request_batch()
        ok = batch >= 0
        out = np.full(batch.size, np.nan)
        out[ok] = getattr(self, key)[batch[ok]]
        return out

    @property
    def served(self) -> int:
        """Returns the number of requests that were dispatched (the rest never formed a batch)."""
        return int(self.size.sum(dtype=np.int64))


def step_samplers(specs: list, noise_rng: Optional[np.random.Generator]) -> list:
    """Returns, per (DispatchRule, CostModel) in `specs`, (step table in seconds by batch size, jitter sampler or
    None): one table per distinct cost model and batch limit, one sampler per distinct cost model, all drawing from
    `noise_rng` in the order batches ask (the shared-queue rule: replicas of one model share its stream)."""
    tables, jitters, out = {}, {}, []
    for rule, cost in specs:
        key = (id(cost), rule.max_batch_size)
        if key not in tables:
            tables[key] = cost.step_table_s(rule.max_batch_size).tolist()
        if id(cost) not in jitters:
            if cost.is_noisy() and noise_rng is None:
                raise ValueError("the cost model has noise: pass noise_rng")
            jitters[id(cost)] = cost.jitter(noise_rng) if noise_rng is not None else None
        out.append((tables[key], jitters[id(cost)]))
    return out


def simulate(rule: DispatchRule, cost: CostModel, arrival_s: np.ndarray, *, replicas: int = 1,
             noise_rng: Optional[np.random.Generator] = None) -> BatchLog:
    """Runs `replicas` identical replicas sharing one FCFS queue over the given sorted arrival times
    (seconds); returns the BatchLog. `noise_rng` drives the cost model's per-batch jitter; it is required
    when the cost model has noise."""
    return simulate_shared([(rule, cost)] * replicas, arrival_s, noise_rng=noise_rng)


def simulate_shared(specs: list, arrival_s: Optional[np.ndarray], *, noise_rng: Optional[np.random.Generator] = None,
                    chunks=None, sink=None, flush_requests: int = 1 << 20) -> Optional[BatchLog]:
    """Runs one replica per (DispatchRule, CostModel) in `specs`, all sharing one FCFS queue, over the
    sorted arrival times (seconds); returns the BatchLog. Replicas may differ (heterogeneous groups):
    whichever is free first takes the head of the queue under its own rule. One jitter sampler per
    distinct cost model, all drawn from `noise_rng` in batch order.

    Streaming (sim.sinks): with `chunks`, an iterator of sorted arrival-time arrays that continue one another,
    instead of `arrival_s`, arrivals are loaded as the queue's head needs them, and once `flush_requests`
    requests are taken the finished batches go to `sink.take` with those requests and are forgotten, so memory
    does not grow with the run; returns None.

    Long on purpose: the hot path (one kernel handler per replica, closures over the queue's local state so the
    per-batch work is local-variable access, not attribute lookups); the golden outputs pin it."""
    arr: list = []
    state = {"head": 0, "n": 0, "more": chunks is not None}
    if chunks is None:
        arrivals = np.ascontiguousarray(arrival_s, dtype=float)
        arr = arrivals.tolist()
        state["n"] = len(arr)
    inf = math.inf
    sizes = array("i")
    dispatch = array("d")
    completion = array("d")
    steps = array("d")
    who = array("i")
    flush_at = flush_requests if sink is not None else inf
    samplers = step_samplers(specs, noise_rng)

    def load(upto: int) -> int:
        """Appends chunks until `upto` arrivals are loaded or none are left; returns how many are loaded."""
        while len(arr) <= upto and state["more"]:
            chunk = next(chunks, None)
            if chunk is None:
                state["more"] = False
            else:
                arr.extend(np.asarray(chunk, float).tolist())
        state["n"] = len(arr)
        return state["n"]

    def flush() -> None:
        """Hands the batches recorded so far, and the requests they took (the first `head` loaded), to the sink."""
        h = state["head"]
        sink.take(np.asarray(arr[:h], float), np.frombuffer(sizes, np.int32).copy(),
                  np.frombuffer(dispatch, np.float64).copy(), np.frombuffer(completion, np.float64).copy(),
                  np.frombuffer(who, np.int32).copy(), np.frombuffer(steps, np.float64).copy(),
                  arr[-1] if arr else -inf)
        del arr[:h]
        state["head"], state["n"] = 0, len(arr)
        for a in (sizes, dispatch, completion, steps, who):
            del a[:]

    cfg = [(rule.max_batch_size, rule.delay_s, rule._floor, rule.plain, rule.smallest - 1, table, jitter)
           for (rule, _), (table, jitter) in zip(specs, samplers)]

    def claim(rid: int, t: float, kind: int, push) -> None:
        """Replica `rid` is free at t: it claims the next batch and schedules its end (nothing left: it stops)."""
        # hot path: DispatchRule.start_s and .take inlined (one batch per call, no call per request)
        limit, delay, floor_pref, plain, pmin, table, jitter = cfg[rid]
        h = state["head"]
        n = state["n"]
        if h + limit >= n and state["more"]:  # streaming: the batch may reach past the loaded arrivals
            n = load(h + limit)
        if h >= n:
            return
        first = arr[h]
        due = first + delay
        j = h + pmin  # the request whose arrival completes the smallest preferred batch
        full = arr[j] if j < n else inf
        d = full if full < due else due
        if d < t:
            d = t
        if d == inf:
            return  # a partial static batch that will never fill
        k = bisect_right(arr, d, h, h + limit if h + limit < n else n) - h
        if d < due and not plain:
            k = floor_pref[k]
        state["head"] = h + k
        step = table[k]
        if jitter is not None:  # one sampler per cost model: draws follow batch order
            step *= jitter(k)
        end = d + step
        sizes.append(k)
        dispatch.append(d)
        completion.append(end)
        steps.append(step)
        who.append(rid)
        if h + k >= flush_at:
            flush()
        push((end, 0, rid))

    kernel = Kernel([Handler(partial(claim, rid)) for rid in range(len(specs))], kinds=1, arrival_kind=0)
    for rid in range(len(specs)):
        kernel.push((0.0, 0, rid))
    kernel.drain()
    if sink is not None:
        flush()
        sink.finish(np.asarray(arr, float))  # arrivals no batch ever took (a static batch that never filled)
        return None
    return BatchLog(
        arrival_s=arrivals,
        size=np.frombuffer(sizes, dtype=np.int32).copy(),
        dispatch_s=np.frombuffer(dispatch, dtype=np.float64).copy(),
        completion_s=np.frombuffer(completion, dtype=np.float64).copy(),
        replica=np.frombuffer(who, dtype=np.int32).copy(),
        step_s=np.frombuffer(steps, dtype=np.float64).copy(),
    )
