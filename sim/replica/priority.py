"""A request-level replica whose queue has priority levels (Triton's dynamic batcher with
`priority_levels`): a batch takes the waiting requests of the highest priority first, first come first
served within a level, and never interrupts a running batch (non-preemptive priority)."""
from __future__ import annotations

import math
from typing import Callable, Optional

from ..batching import DispatchRule
from ..cost import CostModel
from .batch import BatchReplica
from .queued import DONE, TIMEOUT


class PriorityBatchReplica(BatchReplica):
    """BatchReplica with one FCFS queue per priority level. `level[sid]` is request sid's level (0: highest),
    a list the caller may grow while the run goes on (closed-loop clients). When a batch starts and how many
    it takes follow the DispatchRule over all waiting requests (the oldest one's delay, the count waiting);
    which ones it takes follows the levels. `max_queue` and `timeout_s` apply to each level's queue, as
    Triton's queue policy does."""

    def __init__(self, index: int, rule: DispatchRule, cost: CostModel, out: list, level: list, levels: int,
                 jitter: Optional[Callable[[int], float]] = None, max_queue: Optional[int] = None,
                 timeout_s: Optional[float] = None, delay: bool = False):
        super().__init__(index, rule, cost, out, jitter, max_queue, timeout_s)
        # timeout_action delay (Triton): a request past its timeout waits behind every request of its level and the
        # levels above that has not timed out. Levels then come in pairs: 2p holds priority p's requests, 2p + 1 its
        # delayed ones (the caller maps priority p to level 2p)
        self.delay = delay
        self.delayed: list[int] = []
        self.level = level
        self.qa: list[list[float]] = [[] for _ in range(levels)]  # arrival times per level, FCFS
        self.qi: list[list[int]] = [[] for _ in range(levels)]    # request ids per level
        self.qh = [0] * levels                                   # head of each level's queue
        self.waiting = 0
        self.last_a = -math.inf  # the latest accepted arrival (<= now: stands in for a past `ready` time)

    def holds_work(self) -> bool:
        return self.inflight > 0 or self.waiting > 0

    def queued(self) -> int:
        return self.waiting

    def accepted_ids(self) -> list[int]:
        return [sid for ids in self.qi for sid in ids]

    def harvest(self):
        got = super().harvest()
        got.delayed, self.delayed = self.delayed, []
        return got

    def _forget_dispatched(self) -> None:
        super()._forget_dispatched()
        for lv in range(len(self.qa)):
            del self.qa[lv][:self.qh[lv]]
            del self.qi[lv][:self.qh[lv]]
            self.qh[lv] = 0

    def _oldest(self) -> float:
        qa, qh = self.qa, self.qh
        return min((qa[lv][qh[lv]] for lv in range(len(qa)) if qh[lv] < len(qa[lv])), default=math.inf)

    def accept(self, sid: int, arrival_s: float, push) -> None:
        if self.timeout_s is not None:
            self._purge(arrival_s)
        lv = self.level[sid]
        if self.max_queue is not None and self._full_level(arrival_s, lv):
            self.rejected.append(sid)
            if self.notify is not None:
                self.notify((sid,), arrival_s, False)
            return
        self.qa[lv].append(arrival_s)
        self.qi[lv].append(sid)
        self.waiting += 1
        self.last_a = arrival_s
        self.out.inc(self.index)
        if self.timeout_s is not None and self.timer is None and self.notify is not None and not self.delay:
            self._arm(push)
        if self.inflight:
            return
        if self.waiting == self.rule.smallest or (self.waiting == 1 and self.pending is None):
            self._schedule(push)

    def _purge(self, now: float, deadline: bool = False) -> None:
        limit, timeout = now - self.timeout_s, self.timeout_s
        if self.delay:
            self._delay(limit)
            return
        gone = []  # (deadline, id): a closed loop hears of them in deadline order, whatever their levels
        for lv, arr in enumerate(self.qa):
            h0 = h = self.qh[lv]
            while h < len(arr) and (arr[h] + timeout <= now if deadline else arr[h] < limit):
                h += 1
            if h != h0:
                ids = self.qi[lv][h0:h]
                self.timed_out.extend(ids)
                self.out.dec(self.index, h - h0)
                self.waiting -= h - h0
                self.qh[lv] = h
                if self.notify is not None:
                    gone.extend(zip((a + timeout for a in arr[h0:h]), ids))
        if gone:
            gone.sort()
            for end, sid in gone:
                self.notify((sid,), end, False)

    def _oldest_arrival(self) -> float:
        return self._oldest()

    def _delay(self, limit: float) -> None:
        """Moves every request of a priority that arrived before `limit` to the back of its delayed queue
        (arrival order is kept: they time out in the order they arrived)."""
        for lv in range(0, len(self.qa), 2):
            arr, ids = self.qa[lv], self.qi[lv]
            h0 = h = self.qh[lv]
            while h < len(arr) and arr[h] < limit:
                h += 1
            if h != h0:
                self.qa[lv + 1].extend(arr[h0:h])
                self.qi[lv + 1].extend(ids[h0:h])
                self.delayed.extend(ids[h0:h])
                self.qh[lv] = h

    def _count(self, lv: int) -> int:
        """Returns the requests waiting at priority level lv (its delayed ones too)."""
        n = len(self.qa[lv]) - self.qh[lv]
        return n + len(self.qa[lv + 1]) - self.qh[lv + 1] if self.delay else n

    def _full_level(self, a: float, lv: int) -> bool:
        """Returns whether an arrival at `a` of level `lv` finds max_queue requests of its level waiting (those
        a batch starting at this very instant takes are not waiting)."""
        in_level = self._count(lv)
        rule = self.rule
        if not self.inflight:
            oldest = min(self._oldest(), a)
            k = self.waiting + 1
            ready = self.last_a if rule.smallest <= self.waiting else a if rule.smallest == k else math.inf
            if rule.start_s(self.free_s, oldest, ready) <= a:
                take = rule.take(k, a < oldest + rule.delay_s)
                higher = sum(len(self.qa[u]) - self.qh[u] for u in range(lv))  # sub-levels taken first
                taken = min(max(take - higher, 0), in_level + 1)
                return in_level + 1 - taken > self.max_queue
        return in_level >= self.max_queue

    def _turn_away_excess(self, t: float) -> None:
        """A request admitted at t because the batch starting at t would take it may have lost its place to a
        higher-priority arrival of the same instant: past its level's limit now, it is turned away at t, the
        newest first (what an FCFS queue would have rejected on arrival)."""
        for lv in range(0, len(self.qa), 2 if self.delay else 1):
            qa, qi = self.qa[lv], self.qi[lv]
            while self._count(lv) > self.max_queue and len(qa) > self.qh[lv] and qa[-1] == t:
                qa.pop()
                sid = qi.pop()
                self.waiting -= 1
                self.out.dec(self.index)
                self.rejected.append(sid)
                if self.notify is not None:
                    self.notify((sid,), t, False)

    def _schedule(self, push) -> None:
        if not self.waiting:
            return
        ready = self.last_a if self.waiting >= self.rule.smallest else math.inf
        d = self.rule.start_s(self.free_s, self._oldest(), ready)
        if d != math.inf and d != self.pending:
            self.pending = d
            push((d, 1, self.index))

    def on_event(self, t: float, kind: int, push) -> None:
        if kind == DONE or kind == TIMEOUT:
            super().on_event(t, kind, push)
            return
        if t != self.pending:
            return
        self.pending = None
        if self.delay:
            self._purge(t)  # a request may time out while its batch waits to fill: it now waits behind the others
        k = self.rule.take(self.waiting, t < self._oldest() + self.rule.delay_s)
        k, end = self.run_batch(t, 0, k)
        left = k
        for lv in range(len(self.qa)):  # highest priority first, FCFS within a level
            h = self.qh[lv]
            n = min(left, len(self.qa[lv]) - h)
            if n:
                self.served.extend(self.qi[lv][h:h + n])
                self.qh[lv] = h + n
                left -= n
                if not left:
                    break
        self.waiting -= k
        if self.max_queue is not None:
            self._turn_away_excess(t)
        self.inflight = k
        self.sizes.append(k)
        self.dispatch.append(t)
        self.completion.append(end)
        push((end, DONE, self.index))
