"""The simulation kernel: one SimPy Environment per run, whose events are engine, pool and controller events.

A fleet's handlers (replicas, pools, an autoscaler controller) schedule events as `push((t, kind, index))`: at
the absolute instant t (s), of kind DONE (0: a batch completes, seen by a router arriving at that instant),
START (1: a batch or engine step starts, after every arrival at t has been routed) or TIMEOUT (2: a waiting
request's deadline, after a batch starting at that instant took what it takes), for handler `index`. The
kernel fires `handlers[index].on_event(t, kind, push)` from SimPy's own `step`. Same-instant order is defined
here once: by kind (completions, then arrivals, then starts and control, then deadlines), then by handler index. Arrivals are not
events: a loop hands an arrival at a in once the head of SimPy's queue is no longer below `(a, kernel.arrival)`
(every event earlier than a, and every completion at a, has run).
"""
from __future__ import annotations

from heapq import heappush

import simpy

DONE, START, TIMEOUT = 0, 1, 2  # the fleet's event kinds: a batch completes (before an arrival at that instant), a
#                                batch or engine step starts (after every arrival at that instant), a waiting request's
#                                deadline passes (after the batches starting at that instant: waiting exactly the
#                                timeout is not waiting past it)


class Handler:
    """A handler made of one callable, `on_event(t, kind, push)`: an engine's bound method or a `partial` binding
    the replica's number (no Python frame of its own between SimPy's step and the engine)."""

    __slots__ = ("on_event",)

    def __init__(self, on_event):
        self.on_event = on_event


class _Due:
    """One scheduled handler event; SimPy's `step` pops it, runs its callbacks and reads `_ok`."""

    __slots__ = ("callbacks",)
    _ok = True  # a handler event never fails: nothing for SimPy to re-raise


class Kernel(simpy.Environment):
    """SimPy's Environment driving `handlers`: `push` schedules, `step` (SimPy's) fires the next event, `queue` is
    SimPy's event queue, whose head the loops compare with `(a, self.arrival)` before handing in an arrival at a."""

    def __init__(self, handlers: list, kinds: int = TIMEOUT + 1, arrival_kind: int = START):
        """`kinds` event kinds, 0 first at an instant; an arrival at t comes before the events of `arrival_kind`
        at t and after those of lower kinds. A kernel hosts handlers or SimPy processes, not both: processes'
        events carry SimPy's own priorities (0, 1), which are handler slots here."""
        super().__init__()
        n = len(handlers)
        self.handlers = handlers
        self.arrival = arrival_kind * n
        self.queue = self._queue
        now = self  # the callbacks read the instant SimPy's step has just set
        # fires[kind * n + index]: the callbacks of that handler's events of that kind; the same number is the event's
        # SimPy priority, which keeps (time, kind, index) order
        fires = [((lambda ev, on=h.on_event, k=kind: on(now._now, k, push)),)
                 for kind in range(kinds) for h in handlers]
        queue, eid = self._queue, self._eid

        def push(item) -> None:
            t, kind, i = item
            ev = _Due()
            ev.callbacks = fires[p := kind * n + i]
            # SimPy's schedule takes a delay from now, and now + (t - now) is not t in floating point: the absolute
            # instant goes into SimPy's queue in its own entry layout, so that ties stay ties
            heappush(queue, (t, p, next(eid), ev))
        self.push = push

    def drain(self) -> None:
        """Runs every remaining event (after the last arrival)."""
        q, step = self._queue, self.step
        while q:
            step()


__all__ = ["DONE", "Handler", "Kernel", "START", "TIMEOUT"]
