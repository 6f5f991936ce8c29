"""One queue shared by several request-level replicas (Triton's one model with several instances, or a shared
request queue in front of a pool) with what a queue of its own has: priority levels, a size limit, timeouts
(reject or delay) and closed-loop notifications.

`SharedQueuePool` is the prioritised queue of sim.replica.priority served by c servers instead of one: the queue
logic (admission, limits, timeouts, which requests a batch takes) is written once there; this module only says
which server runs the next batch. The server idle longest (earliest free, then lowest index) takes the next
batch under its own DispatchRule, as the shared-queue engine's earliest-free replica does (sim.engine): with no
limit, one level and the same noise stream both give the same batches request for request (tests). Step-time
noise: one sampler per distinct cost model, drawn in batch order from one stream, as sim.engine does.
"""
from __future__ import annotations

import heapq
import math
from array import array
from typing import Optional

import numpy as np

from ..engine import step_samplers
from .priority import PriorityBatchReplica
from .queued import DONE, TIMEOUT


class _Server:
    __slots__ = ("rid", "rule", "table", "jitter", "free_s", "ids")

    def __init__(self, rid, rule, table, jitter):
        self.rid, self.rule, self.table, self.jitter = rid, rule, table, jitter
        self.free_s = -math.inf
        self.ids: list = []  # the running batch's request ids


class SharedQueuePool(PriorityBatchReplica):
    """c servers (one per (DispatchRule, CostModel) in `specs`) behind one prioritised FCFS queue. To the fleet it
    is one replica (index 0): `accept` queues, its events start batches (START) and end them (DONE)."""

    def __init__(self, specs: list, out, level: list, levels: int, noise_rng=None, max_queue: Optional[int] = None,
                 timeout_s: Optional[float] = None, delay: bool = False, index: int = 0):
        rule0, cost0 = specs[0]
        super().__init__(index, rule0, cost0, out, level, levels, None, max_queue, timeout_s, delay)
        self.servers = [_Server(rid, rule, table, jitter)
                        for rid, ((rule, _), (table, jitter)) in enumerate(zip(specs, step_samplers(specs, noise_rng)))]
        self.idle = list(range(len(specs)))  # idle servers, longest idle first
        self.ends: list = []                 # (end, server) of running batches
        self.who = array("i")                # server of each batch
        # autoscaled (sim.fleet.scaling.FleetScaler): only active servers take batches; `on_server_idle(rid, t)`
        # is told when a server's batch ends and it holds nothing more
        self.active = [True] * len(specs)
        self.on_server_idle = None
        self.pending_rid = None  # the server the pending START is for
        self._sync()

    def _sync(self) -> None:
        """The queue logic reads one replica: it sees the first idle server (or none idle: `inflight`)."""
        if self.idle:
            s = self.servers[self.idle[0]]
            self.inflight, self.free_s, self.rule = 0, s.free_s, s.rule
        else:
            self.inflight = 1

    def holds_work(self) -> bool:
        return bool(self.ends) or self.waiting > 0

    def progressing(self) -> bool:
        return len(self.idle) < sum(self.active) or self.pending is not None

    def on_event(self, t: float, kind: int, push) -> None:
        """Ends the batch of the server finishing at t (DONE), starts the next batch on the first idle server
        (START; stale starts are ignored), or drops the requests whose deadline is t (TIMEOUT)."""
        if kind == DONE:
            rid = self._ended(t, push)
            if rid is None:
                return  # a stale end (instance groups: the step's end moved)
            s = self.servers[rid]
            if self.notify is not None:
                self.notify(s.ids, t, True)
            self.out.dec(self.index, len(s.ids))
            s.ids, s.free_s = [], t
            if self.active[rid]:
                self.idle.append(rid)
            elif self.on_server_idle is not None:
                self.on_server_idle(rid, t)
            self._sync()
            if self.timeout_s is not None:
                self._purge(t)
            self._schedule(push)
            if self.on_idle is not None and not self.holds_work():
                self.on_idle(self, t)
            return
        if kind == TIMEOUT:
            self._on_timeout(t, push)
            return
        if t != self.pending:
            return
        self.pending = None
        rid = self.pending_rid if self.pending_rid in self.idle else None
        if rid is None:
            return  # the server it was for stopped (autoscaled); the next to free up takes the batch
        if self.delay:
            self._purge(t)
        self.idle.remove(rid)
        s = self.servers[rid]
        k = s.rule.take(self.waiting, t < self._oldest() + s.rule.delay_s)
        step = s.table[k] * (s.jitter(k) if s.jitter is not None else 1.0)
        s.ids = self._take(k)
        self.sizes.append(k)
        self.dispatch.append(t)
        self.who.append(self.replica_of(s.rid))
        self._begin(s, t, step, push)
        self._sync()
        if self.max_queue is not None:
            self._turn_away_excess(t)
        if self.idle:
            self._schedule(push)  # another idle server may start a batch of what is left

    def set_active(self, rid: int, active: bool, t: float, push) -> None:
        """An autoscaler starts (True) or stops (False) server rid taking batches; a stopped server running a batch
        finishes it first."""
        if self.active[rid] == active:
            return
        self.active[rid] = active
        if active and not self.servers[rid].ids:
            self.servers[rid].free_s = t
            self.idle.append(rid)  # free from now: the shortest time of all idle servers
        elif not active and rid in self.idle:
            self.idle.remove(rid)
        self._sync()
        self.pending = None  # a START planned for a server that stopped, or before one started, is stale
        if self.timeout_s is not None:
            self._purge(t)  # what timed out while no server was free leaves before a new one takes it
        if self.idle and self.waiting:
            self._schedule(push)

    def _schedule(self, push) -> None:
        """Plans the next batch start: the longest-idle server whose rule can start one (a static server whose
        batch can never fill lets the next one take the requests, as the shared-queue engine's replica does)."""
        if not self.waiting:
            return
        oldest, servers = self._oldest(), self.servers
        for rid in self.idle:
            s = servers[rid]
            rule = s.rule
            d = rule.start_s(s.free_s, oldest, self.last_a if self.waiting >= rule.smallest else math.inf)
            if d != math.inf:
                if d != self.pending or rid != self.pending_rid:
                    self.pending, self.pending_rid = d, rid
                    push((d, 1, self.index))
                return

    def harvest(self):
        got = super().harvest()
        got.replica = np.frombuffer(self.who, np.int32).copy()
        self.who = array("i")
        return got

    def server_busy(self, rid: int) -> bool:
        """Returns whether server rid runs a batch."""
        return bool(self.servers[rid].ids)

    unit = 1  # servers an autoscaler starts and stops together (instance groups: a GPU's instances)

    def replica_of(self, rid: int) -> int:
        """Returns the replica index a server's batches are logged under."""
        return rid

    def _begin(self, s: _Server, t: float, step: float, push) -> None:
        """Runs server s's batch of `step` seconds from t: its end is known now."""
        end = t + step
        self.steps.append(step)
        self.completion.append(end)
        heapq.heappush(self.ends, (end, s.rid))
        push((end, DONE, self.index))

    def _ended(self, t: float, push) -> Optional[int]:
        """Returns the server whose batch ends at t (None: the event is stale)."""
        return heapq.heappop(self.ends)[1]

    def _take(self, k: int) -> list:
        """Takes k waiting requests, highest priority first, FCFS within a level; returns their ids."""
        taken, left = [], k
        for lv in range(len(self.qa)):
            h = self.qh[lv]
            n = min(left, len(self.qa[lv]) - h)
            if n:
                taken.extend(self.qi[lv][h:h + n])
                self.qh[lv] = h + n
                left -= n
                if not left:
                    break
        self.served.extend(taken)
        self.waiting -= k
        return taken
