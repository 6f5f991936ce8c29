"""Streaming runs of request-level replicas on the fleet's event loop: behind a router (fixed or autoscaled), or one
queue shared by them (autoscaled over groups, with queue limits or timeouts, priorities), instance groups too. The
fleet takes the arrivals block by block and, after each block, every replica hands over what it did (`harvest`)
and forgets it. (An unlimited FCFS shared queue streams on sim.engine's fast path instead.)

Batches go to the sink at once (sizes, busy time and completions do not depend on order). Requests go through
`ArrivalOrder`: the request columns of the requests in flight (a struct of arrays indexed by request id), whose
leading run of finished rows goes to the sink in arrival order, so the sink's confidence-interval sections are
the same contiguous runs of arrivals a records run cuts (sim.stats.with_ci). Memory is bounded by the requests
between the oldest one not yet dispatched and the newest arrival, not by the run.
"""
from __future__ import annotations

from typing import Iterable, Optional

import numpy as np

from ..classes import LevelOf
from ..rng import component_rng

WAITING, SERVED, REJECTED, TIMED_OUT = 0, 1, 2, 3
HARVEST_BLOCK = 1 << 16  # arrivals between two hand-overs


class ArrivalOrder:
    """Request columns (arrival, dispatch and completion in s, replica, state) of the requests from id `base` on;
    finished leading rows are handed to `sink` (sim.sinks.StreamingSink) in arrival order and dropped."""

    def __init__(self, sink, routed: bool = True, draws=None, class_sinks: Optional[list] = None):
        self.sink = sink
        self.routed = routed  # behind a router a turned-away request belongs to the replica it was sent to
        # request classes (sim.classes.ClassDraws): each class's requests also go to its own sink
        self.draws, self.class_sinks = draws, class_sinks
        self.cls = np.empty(0, np.int16)
        self.base = 0
        self.arrival = np.empty(0)
        self.dispatch = np.empty(0)
        self.completion = np.empty(0)
        self.replica = np.empty(0, np.int32)
        self.state = np.empty(0, np.int8)
        self.delayed = np.empty(0, bool)  # served after a timeout sent it behind the others (timeout_action delay)

    def tap(self, chunks: Iterable[np.ndarray], block_size: int = HARVEST_BLOCK) -> Iterable[np.ndarray]:
        """Yields the arrivals in blocks of at most `block_size` as the fleet takes them, adding a row for each of
        their requests first (the replicas hand over what they did after each block, so what they hold between
        two hand-overs stays small whatever the arrival process's chunks)."""
        for chunk in chunks:
            chunk = np.asarray(chunk, float)
            for i in range(0, chunk.size, block_size):
                yield self._rows(chunk[i:i + block_size])

    def _rows(self, block: np.ndarray) -> np.ndarray:
        """Adds a row for each request of `block`; returns the block."""
        n = block.size
        self.arrival = np.concatenate([self.arrival, block])
        self.dispatch = np.concatenate([self.dispatch, np.full(n, np.nan)])
        self.completion = np.concatenate([self.completion, np.full(n, np.nan)])
        self.replica = np.concatenate([self.replica, np.full(n, -1, np.int32)])
        self.state = np.concatenate([self.state, np.zeros(n, np.int8)])
        self.delayed = np.concatenate([self.delayed, np.zeros(n, bool)])
        if self.draws is not None:
            end = self.base + self.state.size  # request ids up to here have arrived
            self.cls = np.concatenate([self.cls, self.draws.upto(end)[-n:] if n else np.empty(0, np.int16)])
        return block

    def add(self, got, replica: int) -> None:
        """Adds one replica's harvest (sim.replica.queued.Harvest): its batches to the sink, its requests' rows."""
        size = got.size
        if size.size:
            who = got.replica if got.replica is not None else np.full(size.size, replica, np.int32)
            self.sink.take_batches(size, got.dispatch_s, got.completion_s, who)
            per = np.repeat(np.arange(size.size), size)
            pos = got.ids - self.base
            self.dispatch[pos] = got.dispatch_s[per]
            self.completion[pos] = got.completion_s[per]
            self.replica[pos] = who[per]
            self.state[pos] = SERVED
        for ids, state in ((got.rejected, REJECTED), (got.timed_out, TIMED_OUT)):
            if ids:
                pos = np.asarray(ids, np.int64) - self.base
                self.state[pos] = state
                self.replica[pos] = replica
        if got.delayed:
            self.delayed[np.asarray(got.delayed, np.int64) - self.base] = True

    def flush(self) -> None:
        """Hands the leading run of finished rows to the sink and drops them."""
        waiting = np.flatnonzero(self.state == WAITING)
        n = int(waiting[0]) if waiting.size else self.state.size
        if n:
            self._take(np.arange(n))
            self._drop(n)

    def finish(self) -> None:
        """Ends the run: served and turned-away rows go to the sink in arrival order, rows never dispatched as
        never taken."""
        self._take(np.flatnonzero(self.state != WAITING))
        never = self.state == WAITING
        self.sink.finish(self.arrival[never])
        if self.class_sinks is not None:
            for c, sub in enumerate(self.class_sinks):
                sub.finish(self.arrival[never & (self.cls == c)])
        self._drop(self.state.size)

    def _take(self, rows: np.ndarray) -> None:
        state = self.state[rows]
        served = rows[state == SERVED]
        self.sink.take_requests(self.arrival[served], self.dispatch[served], self.completion[served],
                                self.replica[served], self.delayed[served] if self.delayed.any() else None)
        turned = rows[state >= REJECTED]
        if turned.size:
            self.sink.take_turned(self.arrival[turned], self.state[turned] == TIMED_OUT,
                                  self.replica[turned] if self.routed else None)
        if self.class_sinks is not None:
            self._take_classes(served, turned)

    def _take_classes(self, served: np.ndarray, turned: np.ndarray) -> None:
        """Hands each class's served and turned-away rows to its own sink, counting completions inside the run's
        measured window (as its requests' throughput)."""
        start, end = self.sink._start(), self.sink.known_end
        for c, sub in enumerate(self.class_sinks):
            mine = served[self.cls[served] == c]
            if mine.size:
                sub.take_requests(self.arrival[mine], self.dispatch[mine], self.completion[mine], self.replica[mine])
                done = self.completion[mine]
                sub.completed_requests += int(((done >= start) & (done <= end)).sum())
            gone = turned[self.cls[turned] == c]
            if gone.size:
                sub.take_turned(self.arrival[gone], self.state[gone] == TIMED_OUT)

    def _drop(self, n: int) -> None:
        self.base += n
        if self.draws is not None:
            self.cls = self.cls[n:]
        for k in ("arrival", "dispatch", "completion", "replica", "state", "delayed"):
            setattr(self, k, getattr(self, k)[n:])


def stream_batch_fleet(groups: list, router, chunks: Iterable[np.ndarray], sink, seed: int, replication: int,
                       autoscaler=None, server_replicas: int = 1, end_s: Optional[float] = None,
                       max_queue: Optional[int] = None, timeout_s: Optional[float] = None,
                       delay: bool = False, instances: int = 1, slowdown: Optional[list] = None,
                       draws=None, priorities: int = 1) -> Optional[dict]:
    """Runs request-level replicas behind `router` (None: one queue shared by them) over the arrival `chunks` into
    `sink`, with the queue limits and instance groups (`instances` per GPU, `slowdown` with k running) of
    sim.fleet.build.run_batch_fleet, and request classes (`draws`: sim.classes.ClassDraws, `priorities` distinct
    levels; each class's requests also go to its sink in `sink.classes`); returns the autoscaler's record of
    replica lives (None without one), billed until `end_s` (default: the last arrival)."""
    from .build import LEAST_LOADED_FAST, _per_replica, _Zeros
    from .fleet import Fleet, run_least_loaded

    per = _per_replica(groups)
    specs = [(g.batching.rule(g.cost_model.batch_limit()), g.cost_model) for g in per]
    rng = component_rng(seed, replication, "server.router")
    levels = priorities * (2 if delay else 1)
    limited = max_queue is not None or timeout_s is not None or levels > 1
    level = LevelOf(draws, 2 if delay else 1) if draws is not None else _Zeros()
    limits = (max_queue, timeout_s, delay, level, levels)
    if instances > 1:
        replicas, out, ctl, choose = _stream_pools(router, specs, seed, replication, autoscaler, server_replicas,
                                                   limits, rng, instances, slowdown)
        sink.union_busy = True  # a GPU is busy while any of its instances runs
    else:
        replicas, out, ctl, choose = _stream_fleet(router, specs, seed, replication, autoscaler, server_replicas,
                                                   limits, rng)
    # a request turned away belongs to the replica it was sent to, as records count it, unless one pool shared by
    # every replica turned it away
    routed = router is not None or not hasattr(replicas[0], "servers")
    order = ArrivalOrder(sink, routed=routed, draws=draws, class_sinks=sink.classes)

    def after_chunk() -> None:
        for r in replicas:
            order.add(r.harvest(), r.index)
        order.flush()
        if draws is not None:
            draws.forget_below(order.base + order.state.size)  # every arrival so far was routed

    blocks = order.tap(chunks)
    if router is not None and router.policy in LEAST_LOADED_FAST and not limited and instances == 1:
        run_least_loaded(replicas, out, rng, None, blocks, after_chunk, ctl)
    else:
        Fleet(replicas, choose, ctl).run(None, blocks, after_chunk)
    after_chunk()  # what ran after the last arrival
    order.finish()
    if ctl is None:
        return None
    return ctl.record(end_s if end_s is not None else max(sink.last_arrival, 0.0))


def _stream_fleet(router, specs: list, seed: int, replication: int, autoscaler, server_replicas: int, limits,
                  rng) -> tuple:
    """Returns (replicas, router counts, autoscaler or None, chooser) as sim.fleet.build builds them for records:
    behind the shared queue one pool of every replica (a lone replica without an autoscaler: itself), behind a
    router one replica each, prioritised (two levels) for timeout_action delay."""
    from .build import _batch_replicas, _shared_pool
    from .scaling import FleetScaler

    max_queue, timeout_s, delay, level, levels = limits
    # behind the shared queue the pool, as records run it; one replica with a queue limit or priorities alone
    queue_limited = max_queue is not None or timeout_s is not None or levels > 1
    if router is None and (len(specs) > 1 or autoscaler is not None or not queue_limited):
        pool = _shared_pool(specs, seed, replication, max_queue, timeout_s, level, levels, delay)
        ctl = FleetScaler(autoscaler, [pool], server_replicas, pool=pool) if autoscaler is not None else None
        return [pool], None, ctl, _first
    out = (router.counts(len(specs), pool=autoscaler is not None) if router is not None else
           _one_replica_counts())
    replicas = _batch_replicas(specs, out, seed, replication, max_queue, timeout_s, level, levels, delay)
    if router is None:
        return replicas, out, None, _first
    return (replicas, out, *_routed(router, replicas, out, rng, autoscaler, server_replicas))


def _routed(router, replicas: list, out, rng, autoscaler, server_replicas: int) -> tuple:
    """Returns (autoscaler or None, chooser) of replicas with queues of their own behind `router`."""
    from .build import _Split
    from .scaling import FleetScaler

    if autoscaler is not None:
        return FleetScaler(autoscaler, replicas, server_replicas, out=out), router.pool_chooser(replicas, out, rng)
    if router.reads_state:
        return None, router.chooser(replicas, out, rng)
    return None, _Split(router, len(replicas), rng).choose


def _stream_pools(router, specs: list, seed: int, replication: int, autoscaler, server_replicas: int, limits, rng,
                  instances: int, slowdown: Optional[list]) -> tuple:
    """Instance groups as sim.fleet.build._run_pools runs them: behind the shared queue one pool of every GPU's
    instances, behind a router one pool per GPU; returns (pools, router counts, autoscaler or None, chooser)."""
    from .build import _instance_pools
    from .routers.shared_queue import SharedQueue
    from .scaling import FleetScaler

    max_queue, timeout_s, delay, level, levels = limits
    pools = _instance_pools(specs, router if router is not None else SharedQueue(), instances, slowdown, seed,
                            replication, max_queue, timeout_s, level, levels, delay, autoscaler is not None)
    if router is None:
        ctl = FleetScaler(autoscaler, pools, server_replicas, pool=pools[0]) if autoscaler is not None else None
        return pools, None, ctl, _first
    return (pools, pools[0].out, *_routed(router, pools, pools[0].out, rng, autoscaler, server_replicas))


def _one_replica_counts():
    from .counts import Counts

    return Counts(1)


def _first(sid: int, a: float) -> int:
    return 0
