"""The waiting queue of continuous-batching replicas when requests have priorities or clients give up
(`workload.classes`, `workload.client_timeout_ms`); without either, replicas use a plain deque."""
from __future__ import annotations

import math
from collections import deque
from typing import Callable, Optional

WAITING = 0  # sim.replica.continuous's state of a request not admitted (or preempted back)


class ClassWaiting:
    """Deque-like (append, appendleft, popleft, [0], len): one FCFS deque per priority level, the highest
    level first, so admission takes higher priorities first and never interrupts running sequences. With
    `timeout_s`, `expire(t)` drops every request still waiting for its first admission more than timeout_s
    after it arrived (the client gave up: `reqs.timed_out`), calling `on_expire(sid)` for each."""

    def __init__(self, reqs, level: Optional[list], levels: int, timeout_s: Optional[float]):
        self.r = reqs
        self.level = level
        self.q = [deque() for _ in range(levels)]
        self.n = 0
        self.timeout_s = timeout_s
        self.deadlines: deque = deque()  # (deadline, sid) in arrival order
        self.on_expire: Optional[Callable[[int], None]] = None
        # closed loop: notify((sid,), deadline, False) tells the client it gave up at its deadline
        self.notify = None
        # deadlines as kernel events (closed loops, whose clients send again from a give-up; shared queues, where a
        # give-up at the head may unblock an idle engine): `timer` is the pending TIMEOUT event's instant
        self.deadline_events = False
        self.timer: Optional[float] = None

    def __len__(self) -> int:
        return self.n

    def _lv(self, sid: int) -> int:
        return self.level[sid] if self.level is not None else 0

    def append(self, sid: int) -> None:
        self.q[self._lv(sid)].append(sid)
        self.n += 1
        if self.timeout_s is not None:
            self.deadlines.append((self.r.arrival[sid] + self.timeout_s, sid))

    def appendleft(self, sid: int) -> None:
        """A preempted request goes back to the front of its level (it was admitted: it no longer times out)."""
        self.q[self._lv(sid)].appendleft(sid)
        self.n += 1

    def __getitem__(self, i: int) -> int:
        if i != 0 or not self.n:
            raise IndexError(i)
        for q in self.q:
            if q:
                return q[0]
        raise IndexError(i)

    def popleft(self) -> int:
        for q in self.q:
            if q:
                self.n -= 1
                return q.popleft()
        raise IndexError("pop from an empty queue")

    def _waits(self, sid: int) -> bool:
        """Returns whether request sid still waits for its first admission (it may still give up)."""
        r = self.r
        return r.state[sid] == WAITING and r.preempt[sid] == 0 and not r.timed_out[sid]

    def expire(self, t: float, deadline: bool = False) -> None:
        """Drops the requests whose deadline passed before t (with `deadline`, at t too: the TIMEOUT event's
        instant) and that were never admitted."""
        r, dl = self.r, self.deadlines
        while dl and (dl[0][0] <= t if deadline else dl[0][0] < t):
            end, sid = dl.popleft()
            if self._waits(sid):
                self.q[self._lv(sid)].remove(sid)  # the oldest of its level: near the front
                self.n -= 1
                r.timed_out[sid] = True
                if self.on_expire is not None:
                    self.on_expire(sid)
                if self.notify is not None:
                    self.notify((sid,), end, False)

    def next_deadline(self) -> float:
        """Returns the earliest deadline of a request still waiting for its first admission (inf: none), forgetting
        the deadlines of those admitted meanwhile."""
        dl = self.deadlines
        while dl and not self._waits(dl[0][1]):
            dl.popleft()
        return dl[0][0] if dl else math.inf
