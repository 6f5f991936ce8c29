"""The part every request-level replica shares: its own FCFS queue and when its next batch starts."""
from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..batching import DispatchRule

from ..kernel import DONE, START, TIMEOUT  # noqa: F401 (the event kinds, defined by the kernel; replicas import them here)


@dataclass
class Harvest:
    """What a replica did since its last harvest: batches started (sizes, dispatch and completion times in s,
    the ids they took in batch order) and the ids of requests turned away (queue full) or timed out."""

    size: np.ndarray
    dispatch_s: np.ndarray
    completion_s: np.ndarray
    ids: np.ndarray
    rejected: list
    timed_out: list
    replica: Optional[np.ndarray] = None  # per batch, where a pool's servers log under several replica indices
    delayed: list = ()                    # ids a timeout sent behind the others (timeout_action delay)


class QueuedReplica:
    """A replica with its own FCFS queue that starts batches under a DispatchRule.

    Subclasses run the batch: `run_batch(t, head, k)` returns (requests taken, end time). Events: a batch
    start at d (kind START, run once every arrival at d has been routed, so it takes them) and its
    completion (kind DONE, applied before a router looks at an arrival of that instant). With a timeout and a
    closed loop (`notify`), the oldest waiting request's deadline is an event too (kind TIMEOUT): a client who
    gives up learns it at arrival + timeout_s and sends its next request from then, so the purge cannot wait for
    the replica's next look (an open loop needs no such event: nothing depends on when a give-up is seen)."""

    def __init__(self, index: int, rule: DispatchRule, out: list, max_queue: Optional[int] = None,
                 timeout_s: Optional[float] = None):
        self.index = index
        self.max_queue = max_queue  # most requests waiting (not in service); None: unlimited
        self.timeout_s = timeout_s  # a request waiting longer leaves unserved; None: never
        self.rejected: list[int] = []
        self.timed_out: list[int] = []
        self.served: list[int] = []  # request ids in the order batches took them
        self._served_out = 0  # how many of them the last harvest handed out
        self.notify = None  # closed loop: notify(ids, t, answered) when requests finish (True) or are rejected at t
        self.timer = None  # closed loop with timeouts: the instant of the pending TIMEOUT event (None: none pending)
        self.on_idle = None  # autoscaled pool: on_idle(replica, t) when a batch ends and nothing is left here
        self.rule = rule
        self.out = out          # the fleet's outstanding counts; this replica owns out[index]
        self.arr: list[float] = []
        self.ids: list[int] = []
        self.head = 0           # queue position of the next request to dispatch
        self.free_s = -math.inf  # when the replica last became free
        self.inflight = 0       # requests in the running batch (0: idle)
        self.pending = None     # start time of the next batch once known (stale kernel events differ)
        self.sizes = array("i")
        self.dispatch = array("d")
        self.completion = array("d")

    def accept(self, sid: int, arrival_s: float, push) -> None:
        """Queues request `sid` (or rejects it when max_queue requests already wait); schedules or brings
        forward the next batch start when the replica is idle."""
        if self.timeout_s is not None:
            self._purge(arrival_s)
        if self.max_queue is not None and self._full(arrival_s):
            self.rejected.append(sid)
            if self.notify is not None:
                self.notify((sid,), arrival_s, False)
            return
        self.arr.append(arrival_s)
        self.ids.append(sid)
        self.out.inc(self.index)
        if self.timeout_s is not None and self.timer is None and self.notify is not None:
            self._arm(push)
        if self.inflight:
            return  # busy: the next start is decided when the running batch completes
        waiting = len(self.arr) - self.head
        if waiting == self.rule.smallest or (waiting == 1 and self.pending is None):
            self._schedule(push)

    def holds_work(self) -> bool:
        """Returns whether a batch runs or a request waits here."""
        return self.inflight > 0 or self.head < len(self.arr)

    def queued(self) -> int:
        """Returns the requests waiting here (not in service)."""
        return len(self.arr) - self.head

    def progressing(self) -> bool:
        """Returns whether a batch runs or one is due to start (requests left waiting otherwise can never form a
        batch: a static batch that never fills)."""
        return self.inflight > 0 or self.pending is not None

    def accepted_ids(self) -> list[int]:
        """Returns the ids of every request this replica queued (served, timed out or still waiting)."""
        return self.ids

    def _purge(self, now: float, deadline: bool = False) -> None:
        """Drops the requests that have waited past the timeout by `now` (with `deadline`, also those whose
        deadline is `now`: the TIMEOUT event's instant): FCFS, so they are the oldest. (Exact: the scenario check
        keeps the queue delay below the timeout, so an idle replica starts a request's batch before it times out,
        and a busy one purges when it frees.) A closed loop hears of each at its deadline."""
        arr, limit, timeout = self.arr, now - self.timeout_s, self.timeout_s
        h = h0 = self.head
        while h < len(arr) and (arr[h] + timeout <= now if deadline else arr[h] < limit):
            h += 1
        if h != h0:
            gone = self.ids[h0:h]
            self.timed_out.extend(gone)
            self.out.dec(self.index, h - h0)
            self.head = h
            if self.notify is not None:
                for sid, a in zip(gone, arr[h0:h]):
                    self.notify((sid,), a + timeout, False)

    def _oldest_arrival(self) -> float:
        """Returns the arrival time (s) of the oldest request waiting here (inf: none)."""
        return self.arr[self.head] if self.head < len(self.arr) else math.inf

    def _arm(self, push) -> None:
        """Schedules the TIMEOUT event at the oldest waiting request's deadline (closed loop with timeouts)."""
        oldest = self._oldest_arrival()
        if oldest != math.inf:
            self.timer = oldest + self.timeout_s
            push((self.timer, TIMEOUT, self.index))

    def _on_timeout(self, t: float, push) -> None:
        """The oldest waiting request's deadline: drops what timed out by t (a batch may have taken it first) and
        arms the next deadline."""
        self.timer = None
        self._purge(t, deadline=True)
        self._arm(push)

    def _full(self, a: float) -> bool:
        """Returns whether an arrival at `a` finds max_queue requests waiting. Requests a batch starting at
        this very instant takes are not waiting (an idle replica takes an arrival straight into service)."""
        waiting, rule = len(self.arr) - self.head, self.rule
        if not self.inflight:
            oldest = self.arr[self.head] if waiting else a
            k = waiting + 1
            ready = (self.arr[self.head + rule.smallest - 1] if rule.smallest <= waiting else
                     a if rule.smallest == k else math.inf)
            if rule.start_s(self.free_s, oldest, ready) <= a:
                return k - rule.take(k, a < oldest + rule.delay_s) > self.max_queue
        return waiting >= self.max_queue

    def _schedule(self, push) -> None:
        h, arr = self.head, self.arr
        if h >= len(arr):
            return
        j = h + self.rule.smallest - 1
        d = self.rule.start_s(self.free_s, arr[h], arr[j] if j < len(arr) else math.inf)
        if d != math.inf and d != self.pending:
            self.pending = d
            push((d, START, self.index))

    def on_event(self, t: float, kind: int, push) -> None:
        """Completes the running batch (DONE), starts the next one (START; stale starts are ignored) or drops the
        requests whose deadline is t (TIMEOUT)."""
        if kind == DONE:
            if self.notify is not None:
                self.notify(self.served[len(self.served) - self.inflight:], t, True)
            self.out.dec(self.index, self.inflight)
            self.inflight = 0
            self.free_s = t
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
        h = self.head
        # every request routed here has arrived by t (the fleet starts batches only after routing them)
        k = self.rule.take(len(self.arr) - h, t < self.arr[h] + self.rule.delay_s)
        k, end = self.run_batch(t, h, k)
        self.served.extend(self.ids[h:h + k])
        self.head = h + k
        self.inflight = k
        self.sizes.append(k)
        self.dispatch.append(t)
        self.completion.append(end)
        push((end, DONE, self.index))

    def harvest(self) -> "Harvest":
        """Returns the batches started since the last call and the requests turned away meanwhile, and forgets
        them and every request already dispatched, so a streaming run holds only the requests in flight
        (sim.fleet.streamed). A run that harvests keeps no records of its own."""
        got = Harvest(np.frombuffer(self.sizes, np.int32).copy(), np.frombuffer(self.dispatch, np.float64).copy(),
                      np.frombuffer(self.completion, np.float64).copy(),
                      np.asarray(self.served[self._served_out:], np.int64), self.rejected, self.timed_out)
        self.sizes, self.dispatch, self.completion = array("i"), array("d"), array("d")
        # the running batch's ids stay: a completion reports them (notify)
        del self.served[:len(self.served) - self.inflight]
        self._served_out = len(self.served)
        self.rejected, self.timed_out = [], []
        self._forget_dispatched()
        return got

    def _forget_dispatched(self) -> None:
        """Drops the queue positions before the head (dispatched or timed out)."""
        del self.arr[:self.head]
        del self.ids[:self.head]
        self.head = 0

    def run_batch(self, t: float, head: int, k: int) -> tuple[int, float]:
        """Runs a batch of queue positions head..head+k-1 starting at t; returns (requests taken, end time)."""
        raise NotImplementedError
