"""SimPy engine for request-level batching on replicas sharing one FCFS queue.

Performance design: arrivals are known in advance (open loop) and kept in a plain list, so a free
replica finds how many requests have arrived by time t with `bisect` instead of one SimPy process or
event per request. Each replica is one SimPy process that yields one timeout per batch (the wait for
the batch to form plus its step time). Per-batch results go into typed arrays; per-request columns are
derived from them with numpy once the run ends.
"""
from __future__ import annotations

import math
from array import array
from bisect import bisect_right
from dataclasses import dataclass
from typing import Optional

import numpy as np
import simpy

from .batching import DispatchRule
from .cost import CostModel


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

    @property
    def served(self) -> int:
        """Returns the number of requests that were dispatched (the rest never formed a batch)."""
        return int(self.size.sum(dtype=np.int64))


def simulate(rule: DispatchRule, cost: CostModel, arrival_s: np.ndarray, *, replicas: int = 1,
             noise_rng: Optional[np.random.Generator] = None) -> BatchLog:
    """Runs the batching system over the given sorted arrival times (seconds); returns the BatchLog.

    `noise_rng` drives the cost model's per-batch jitter; it is required when the cost model has noise.
    """
    arrivals = np.ascontiguousarray(arrival_s, dtype=float)
    arr = arrivals.tolist()
    n = len(arr)
    limit = rule.max_batch_size
    preferred = rule.preferred_batch_sizes
    pmin = preferred[0] - 1  # offset of the request whose arrival completes the smallest preferred batch
    delay = rule.delay_s
    # floor_pref[k]: largest preferred size <= k (only used once k >= smallest preferred size)
    floor_pref = [0] * (limit + 1)
    best = 0
    for k in range(limit + 1):
        if k in preferred:
            best = k
        floor_pref[k] = best
    plain = preferred == (limit,)
    table = cost.step_table_s(limit).tolist()
    if cost.is_noisy() and noise_rng is None:
        raise ValueError("the cost model has noise: pass noise_rng")
    jitter = cost.jitter(noise_rng) if noise_rng is not None else None

    sizes = array("i")
    dispatch = array("d")
    completion = array("d")
    steps = array("d")
    who = array("i")
    state = {"head": 0}
    inf = math.inf

    def replica(env: simpy.Environment, rid: int):
        timeout = env.timeout
        while True:
            h = state["head"]
            if h >= n:
                return
            t = env.now
            first = arr[h]
            due = first + delay
            j = h + pmin
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
            if jitter is not None:  # one sampler shared by all replicas: draws follow batch order
                step *= jitter(k)
            end = d + step
            sizes.append(k)
            dispatch.append(d)
            completion.append(end)
            steps.append(step)
            who.append(rid)
            yield timeout(end - t)

    env = simpy.Environment()
    for rid in range(replicas):
        env.process(replica(env, rid))
    env.run()
    return BatchLog(
        arrival_s=arrivals,
        size=np.frombuffer(sizes, dtype=np.int32).copy(),
        dispatch_s=np.frombuffer(dispatch, dtype=np.float64).copy(),
        completion_s=np.frombuffer(completion, dtype=np.float64).copy(),
        replica=np.frombuffer(who, dtype=np.int32).copy(),
        step_s=np.frombuffer(steps, dtype=np.float64).copy(),
    )
