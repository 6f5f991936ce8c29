"""A fleet owns the replicas and the router, and drives them in time order.

Events are per batch or engine step: the fleet keeps one heap of replica events and, before routing the
arrival at time a, runs every replica event earlier than a (and every batch completion at a), so the
router reads each replica's state at the arrival instant. A batch or step starting at a is run only after
every arrival at a has been routed, so it takes them (the shared queue's rule: a batch starting at t
takes the requests that arrived by t).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from heapq import heappop, heappush
from typing import Any, Callable, Optional

import numpy as np

from ..replica.queued import START


@dataclass(frozen=True)
class ReplicaGroup:
    """`replicas` identical replicas: their cost model, batching policy, GPUs and price per replica-hour."""

    name: str
    replicas: int
    cost_model: Any
    batching: Any
    gpus_per_replica: int = 1
    cost_per_hour: Optional[float] = None   # per replica, USD; None: unknown
    price_note: str = ""                    # where cost_per_hour came from, or why it is unknown


def replica_groups(groups: list[ReplicaGroup]) -> np.ndarray:
    """Returns the group index of each replica, replicas numbered group by group."""
    return np.repeat(np.arange(len(groups), dtype=np.int32), [g.replicas for g in groups])


class Fleet:
    """Replicas behind a router: `run(arrival_s)` routes every arrival and runs every replica event."""

    def __init__(self, replicas: list, choose: Callable[[int, float], int]):
        self.replicas = replicas
        self.choose = choose

    def run(self, arrival_s) -> None:
        replicas, choose = self.replicas, self.choose
        heap: list = []
        push = partial(heappush, heap)
        # hot path: one heap comparison per arrival; replica events only when one is due
        for sid, a in enumerate(arrival_s):
            key = (a, START)
            while heap and heap[0] < key:
                t, kind, rid = heappop(heap)
                replicas[rid].on_event(t, kind, push)
            replicas[choose(sid, a)].accept(sid, a, push)
        drain(replicas, heap, push)


def drain(replicas: list, heap: list, push) -> None:
    """Runs every remaining replica event (after the last arrival)."""
    while heap:
        t, kind, rid = heappop(heap)
        replicas[rid].on_event(t, kind, push)


def run_shared_llm(replicas: list, waiting, reqs, arrival_s) -> None:
    """Drives continuous-batching replicas that share one waiting queue: each arrival joins it and wakes
    the idle replicas; a replica admits from it at each step start. A request that fits no replica's KV
    cache is refused on arrival."""
    heap: list = []
    push = partial(heappush, heap)
    fits_any = np.zeros(reqs.n, bool)
    for r in replicas:
        fits_any |= np.asarray(r.fits, bool)
    fits_any = fits_any.tolist()
    for sid, a in enumerate(arrival_s):
        key = (a, START)
        while heap and heap[0] < key:
            t, kind, rid = heappop(heap)
            replicas[rid].on_event(t, kind, push)
        if not fits_any[sid]:
            reqs.refused[sid] = True
            continue
        waiting.append(sid)
        for r in replicas:
            if r.running_step is None:
                push((a, START, r.index))
    drain(replicas, heap, push)
