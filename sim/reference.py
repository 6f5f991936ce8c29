"""A deliberately naive SimPy model of the same batching system: one process and one event per request.

It is an independent implementation of the dispatch semantics in `sim.batching.base`, written the
obvious way, used two ways: tests check that the fast engine reproduces it request for request, and
`bench/` measures how much faster the engine is.
"""
from __future__ import annotations

import math

import numpy as np
import simpy

from .batching import DispatchRule
from .cost import CostModel


def naive_simulate(rule: DispatchRule, cost: CostModel, arrival_s: np.ndarray, *, replicas: int = 1):
    """Returns (dispatch_s, completion_s, batch_size) arrays per request, in arrival order (NaN if never served).

    Deterministic step times only (the cost model's noise is ignored).
    """
    env = simpy.Environment()
    n = len(arrival_s)
    dispatch = np.full(n, np.nan)
    completion = np.full(n, np.nan)
    size = np.zeros(n, dtype=np.int32)
    queue: list[tuple[float, int, simpy.Event]] = []
    state = {"arrived": env.event()}
    smallest = rule.preferred_batch_sizes[0]
    table = cost.step_table_s(rule.max_batch_size)

    def request(i: int):
        done = env.event()
        queue.append((env.now, i, done))
        ev, state["arrived"] = state["arrived"], env.event()
        ev.succeed()
        yield done
        completion[i] = env.now

    def source():
        for i, a in enumerate(arrival_s):
            if a > env.now:
                yield env.timeout(a - env.now)
            env.process(request(i))

    def server():
        while True:
            while not queue:
                yield state["arrived"]
            # wait for a preferred/full batch or for the oldest request's delay to run out
            while queue and len(queue) < smallest and env.now < queue[0][0] + rule.delay_s:
                waits = [state["arrived"]]
                if rule.delay_s != math.inf:
                    waits.append(env.timeout(queue[0][0] + rule.delay_s - env.now))
                yield env.any_of(waits)
            if not queue:
                continue
            waiting = min(len(queue), rule.max_batch_size)
            if env.now < queue[0][0] + rule.delay_s:
                waiting = max(p for p in rule.preferred_batch_sizes if p <= waiting)
            batch = queue[:waiting]
            del queue[:waiting]
            for _, i, _ in batch:
                dispatch[i] = env.now
                size[i] = waiting
            yield env.timeout(float(table[waiting]))
            for _, _, done in batch:
                done.succeed()

    env.process(source())
    for _ in range(replicas):
        env.process(server())
    env.run()
    return dispatch, completion, size
