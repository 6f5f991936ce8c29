"""A fleet owns the replicas and the router, and drives them in time order on the kernel (sim.kernel).

Events are per batch or engine step, on one SimPy Environment (sim.kernel.Kernel): before routing the arrival at
time a, the fleet runs every event earlier than a (and every batch completion at a), so the router reads each
replica's state at the arrival instant. A batch or step starting at a is run only after every arrival at a has
been routed, so it takes them (the shared queue's rule: a batch starting at t takes the requests that arrived by t).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from ..kernel import START, Kernel


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

    def __init__(self, replicas: list, choose: Callable[[int, float], int], controller=None):
        self.replicas = replicas
        self.choose = choose
        # an autoscaler (sim.fleet.scaling.FleetScaler) handles the events pushed with index len(replicas)
        self.controller = controller

    def run(self, arrival_s, chunks=None, after_chunk: Optional[Callable[[], None]] = None) -> None:
        """Routes every arrival (sorted times in s; or the blocks `chunks` yields, request ids numbered on across
        them, with `after_chunk()` called once each block is routed) and runs every replica event."""
        replicas, choose, ctl = self.replicas, self.choose, self.controller
        kernel = Kernel(replicas if ctl is None else replicas + [ctl])
        if ctl is not None:
            ctl.start(kernel.push)

        def arrive(sid: int, a: float, push) -> None:
            replicas[choose(sid, a)].accept(sid, a, push)
        run_open(kernel, arrive, arrival_s, chunks, after_chunk, ctl)

    def run_closed(self, source) -> None:
        """Routes the requests of a closed-loop source (sim.clients.ClientLoop), whose next arrival may be
        created by any replica event (a completion or rejection ends a client's cycle); replicas report
        through their `notify` hook, which the caller points at `source.done`."""
        replicas, choose, ctl = self.replicas, self.choose, self.controller
        kernel = Kernel(replicas if ctl is None else replicas + [ctl])
        if ctl is not None:
            ctl.start(kernel.push)
        drive_closed(kernel, source, lambda sid, a, push: replicas[choose(sid, a)].accept(sid, a, push))


def drive_closed(kernel: Kernel, source, arrive) -> None:
    """The closed-loop event loop: runs the kernel's events (replicas, and an autoscaler after them) in time order
    and hands each request the source sends to `arrive(sid, a, push)` at its arrival instant. A replica event may
    make the source send earlier than its next pending arrival (a completion at t with no think time sends again at
    t), so the next arrival is looked up again after every event."""
    push, q, step, below = kernel.push, kernel.queue, kernel.step, kernel.arrival
    next_time, pop = source.next_time, source.pop
    while True:
        a = next_time()
        key = (a, below)
        while q and q[0] < key:
            step()
            a = next_time()
            key = (a, below)
        if a == math.inf:
            return
        got = pop()
        if got is not None:  # else a client's send went into the preprocess pool: nothing arrives yet
            arrive(got[0], got[1], push)


def run_least_loaded(replicas: list, counts, rng, arrival_s, chunks=None,
                     after_chunk: Optional[Callable[[], None]] = None, controller=None) -> Optional[np.ndarray]:
    """join_shortest_queue over request-level replicas (sim.replica.queued): the same routing as
    Fleet(replicas, JoinShortestQueue.chooser(...), controller).run, with the router, the bucket update
    (BucketCounts.inc) and a busy replica's accept inlined; returns the replica each request joined (None when
    the arrivals come in `chunks`, as Fleet.run takes them: a streaming run keeps nothing per request). With an
    autoscaler `controller` the counts are PoolBucketCounts, whose buckets hold only the members."""
    kernel = Kernel(replicas if controller is None else replicas + [controller])
    push, q, step, below = kernel.push, kernel.queue, kernel.step, kernel.arrival
    if controller is not None:
        controller.start(push)
    buckets, pos, n_out = counts.buckets, counts.pos, counts.n
    routed: Optional[list] = [0] * len(arrival_s) if chunks is None else None
    buf: list = []
    base = 0
    for block in ([arrival_s] if chunks is None else chunks):
        block = block.tolist() if isinstance(block, np.ndarray) else block
        # hot path: one comparison with the kernel's queue head (sim.kernel), one bucket lookup and
        # one bucket move per arrival
        for sid, a in enumerate(block, base):
            if q and q[0] < (a, below):
                key = (a, below)
                while q and q[0] < key:
                    step()
            b = buckets[counts.low]
            if len(b) > 1:
                if not buf:
                    buf = rng.random(1 << 14).tolist()
                i = b[int(buf.pop() * len(b))]
            else:
                i = b[0]
            if routed is not None:
                routed[sid] = i
            r = replicas[i]
            # QueuedReplica.accept inlined (no limit here): queue it, BucketCounts.inc, and an idle replica plans
            # its next start
            r.arr.append(a)
            r.ids.append(sid)
            v = n_out[i]
            n_out[i] = v + 1
            last = b.pop()
            if last != i:
                p = pos[i]
                b[p] = last
                pos[last] = p
            if v + 1 == len(buckets):
                buckets.append([])
            nb = buckets[v + 1]
            pos[i] = len(nb)
            nb.append(i)
            if not b:
                counts.low = v + 1
            if not r.inflight:
                waiting = len(r.arr) - r.head
                if waiting == r.rule.smallest or (waiting == 1 and r.pending is None):
                    r._schedule(push)
        base += len(block)
        if after_chunk is not None:
            after_chunk()
    if controller is not None:
        controller.arrivals_done = True
    kernel.drain()
    return np.asarray(routed, np.int32) if routed is not None else None


def run_shared_llm(replicas: list, waiting, reqs, arrival_s, source=None, controller=None, chunks=None,
                   after_chunk: Optional[Callable[[], None]] = None) -> None:
    """Drives continuous-batching replicas that share one waiting queue: each arrival joins it and wakes
    the idle replicas; a replica admits from it at each step start. A request that fits no replica's KV
    cache is refused on arrival. With `source` (closed-loop clients) requests come from it instead of
    `arrival_s`, and turned-away ones end their clients' cycles. A `controller` (an autoscaler,
    sim.fleet.scaling.LlmScaler) receives the events pushed with index len(replicas). `chunks` and
    `after_chunk`: as Fleet.run."""
    kernel = Kernel(replicas if controller is None else replicas + [controller])
    push = kernel.push
    for r in replicas:
        r.peers, r.push = replicas, push
    notify = replicas[0].notify
    timed = replicas[0].expiring  # client timeouts: the shared queue's deadlines are events (sim.replica.waiting)
    if timed:
        waiting.deadline_events = True
    if controller is not None:
        controller.start(push)

    def arrive(sid: int, a: float, push) -> None:
        if not any(r.fits[sid] for r in replicas):
            reqs.refused[sid] = True
        else:
            if replicas[0].expiring:
                waiting.expire(a)
            cap = replicas[0].max_waiting
            if cap is None or len(waiting) < cap:
                waiting.append(sid)
                if timed:
                    replicas[0].arm_timeout(push)  # replica 0 keeps the shared queue's deadline event
                for r in replicas:
                    if not r.accepting:
                        continue  # starting, released or draining: it admits nothing new
                    if r.running_step is None:
                        push((a, START, r.index))
                    elif r.in_run:
                        r.cut(a, push)  # any replica may admit it at its next step
                return
            reqs.rejected[sid] = True  # the shared waiting queue is full
        if notify is not None:
            notify((sid,), a, False)

    if source is not None:
        drive_closed(kernel, source, arrive)
        return
    run_open(kernel, arrive, arrival_s, chunks, after_chunk, controller)


def run_open(kernel: Kernel, arrive, arrival_s, chunks=None, after_chunk: Optional[Callable[[], None]] = None,
             controller=None) -> None:
    """The open-loop event loop: hands each arrival (sorted times in s, or the blocks `chunks` yields, request ids
    numbered on across them, `after_chunk()` called after each) to `arrive(sid, a, push)` once every kernel event
    before it has run, then runs the rest; tells an autoscaler `controller` when the arrivals end."""
    push, q, step, below = kernel.push, kernel.queue, kernel.step, kernel.arrival
    base = 0
    for block in ([arrival_s] if chunks is None else chunks):
        block = block.tolist() if isinstance(block, np.ndarray) else block
        # hot path: one comparison with the kernel's queue head per arrival (sim.kernel); events only
        # when one is due
        for sid, a in enumerate(block, base):
            key = (a, below)
            while q and q[0] < key:
                step()
            arrive(sid, a, push)
        base += len(block)
        if after_chunk is not None:
            after_chunk()
    if controller is not None:
        controller.arrivals_done = True
    kernel.drain()
