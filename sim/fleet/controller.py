"""The autoscaler controller (`server.autoscaler`), written once for every pool: request-level replicas and
continuous-batching LLM engines, behind the shared queue or a router.

It owns what the policy decides and the replicas' lifecycle; the pool it drives only answers a few questions
through `PoolHooks`. Lifecycle of a replica: OFF -> (requested) STARTING -> (after scale_up_delay_s) ON ->
(released) DRAINING while it finishes what it holds -> OFF. Lives are [replica, requested_s, serving_s,
released_s], billed from request to release.

Decisions (sim.fleet.autoscaler): every `interval_s`, or at a schedule's own times. A lower count takes effect
once it has been wanted for `scale_down_delay_s`: for metric policies the highest count wanted over that window
is kept (HPA's stabilisation window); a schedule's drop is applied that long after its time unless the schedule
rose again meanwhile. Victims: a starting replica first (newest), then an idle serving one, then a busy one
(highest index). A released busy replica drains; raising the count again keeps a draining replica (its life
goes on) before requesting a new one.

The controller is independent of the event loop hosting it: the host asks `next_time()` and calls `fire(t)` at
that instant; its own events at one instant run in the order they were scheduled (SimPy's rule).
"""
from __future__ import annotations

import heapq
import math
from typing import Optional

OFF, STARTING, ON, DRAINING = 0, 1, 2, 3
_COLD, _DECIDE, _DROP = 0, 1, 2


class PoolHooks:
    """What a pool tells its autoscaler; one subclass per pool kind."""

    arrivals_done = False  # set by the host loop once the last open-loop arrival is in
    source = None          # closed-loop clients (sim.clients.ClientLoop): over once they have sent everything
    _last_busy = _last_t = 0.0

    def arrivals_over(self, t: float) -> bool:
        """Returns whether no request arrives after t."""
        return self.arrivals_done or (self.source is not None and self.source.finished(t))

    def interval_utilization(self, busy_s: float, t: float, serving: list) -> float:
        """Returns the busy fraction of the `serving` replicas since the last call, from cumulative busy seconds."""
        dt = t - self._last_t
        util = (busy_s - self._last_busy) / (max(len(serving), 1) * dt) if dt > 0 else 0.0
        self._last_busy, self._last_t = busy_s, t
        return util

    def busy(self, rid: int, t: float) -> bool:
        """Returns whether replica `rid` still holds work at t (a released busy replica drains it)."""
        raise NotImplementedError

    def serve(self, rid: int, t: float) -> None:
        """Replica `rid` starts (or goes back to) taking new work at t."""
        raise NotImplementedError

    def stop(self, rid: int, t: float) -> None:
        """Replica `rid` takes no new work from t (released or draining)."""

    def observe(self, t: float, serving: list) -> Optional[tuple]:
        """Returns (utilisation 0..1 of the `serving` replicas over the last interval or now, requests waiting)
        for a metric policy's decision at t, or None when the run is over (no more decisions)."""
        raise NotImplementedError


class ScalingController:
    """One autoscaler for one pool of `size` replicas (sim.fleet.autoscaler.Autoscaler `scaler`)."""

    def __init__(self, scaler, size: int, hooks: PoolHooks, server_replicas: int):
        self.scaler, self.hooks, self.server_replicas = scaler, hooks, server_replicas
        self.status = [OFF] * size
        self.life: list = [None] * size
        self.lives: list = []
        self.history: list = []  # (time, count wanted) over the scale-down window
        self.ups = self.downs = self.decisions = 0
        self.events: list = []   # (time, order, kind, payload)
        self.order = 0
        self.times = scaler.decision_times()

    # ---- the host loop's interface ----
    def start(self, t: float = 0.0) -> None:
        """Brings up the initial replicas, warm at t, and schedules the first decision."""
        self._set(self.scaler.initial(self.server_replicas), t, warm=True)
        self._next_decision(t)

    def next_time(self) -> float:
        """Returns when the controller next acts (seconds; inf: never again)."""
        return self.events[0][0] if self.events else math.inf

    def fire(self, t: float) -> None:
        """Runs every controller event due at t, in the order they were scheduled."""
        while self.events and self.events[0][0] <= t:
            _, _, kind, payload = heapq.heappop(self.events)
            if kind == _COLD:
                rid, life = payload
                if self.status[rid] == STARTING and self.life[rid] == life:
                    self._serve(rid, t)
            elif kind == _DECIDE:
                self._decide(t)
            else:
                self._late_drop(t, payload)

    def drained(self, rid: int, t: float) -> None:
        """A draining replica finished its last work at t: its life ends."""
        if self.status[rid] == DRAINING:
            self.status[rid] = OFF
            self.lives[self.life[rid]][3] = t

    def count(self) -> int:
        """Returns the replicas serving or starting (draining ones are on their way out)."""
        return sum(1 for s in self.status if s in (STARTING, ON))

    def serving(self) -> list:
        """Returns the replicas that serve work (on, or draining what they hold)."""
        return [i for i, s in enumerate(self.status) if s in (ON, DRAINING)]

    def record(self, end_s: float) -> dict:
        """Returns the scaling record: lives (released_s clipped to the billing end `end_s`), the billing end,
        the decision count, scale-ups and scale-downs, the pool size."""
        lives = [[r, req, serve, min(rel if rel == rel else end_s, end_s)] for r, req, serve, rel in self.lives
                 if req < end_s]
        return {"lives": lives, "end_s": end_s, "decisions": self.decisions, "scale_ups": self.ups,
                "scale_downs": self.downs, "pool": len(self.status)}

    # ---- decisions ----
    def _push(self, t: float, kind: int, payload=None) -> None:
        heapq.heappush(self.events, (t, self.order, kind, payload))
        self.order += 1

    def _next_decision(self, t: float) -> None:
        if self.times is None:
            self._push(t + self.scaler.interval_s, _DECIDE)
            return
        while self.times and self.times[0] <= t:  # a policy's times must increase: never decide in the past
            self.times.pop(0)
        if self.times:
            self._push(self.times.pop(0), _DECIDE)

    def _decide(self, t: float) -> None:
        sc = self.scaler
        util, waiting = 0.0, 0
        if sc.reads:
            seen = self.hooks.observe(t, self.serving())
            if seen is None:
                return  # every request is served: no more decisions
            util, waiting = seen
        want = sc.desired(t, self.count(), util, waiting, self.server_replicas)
        self.decisions += 1
        self.history = [(h, w) for h, w in self.history if h > t - sc.scale_down_delay_s] + [(t, want)]
        if want < self.count() and sc.scale_down_delay_s > 0:
            if self.times is not None:  # a scheduled drop takes effect after the delay (unless raised again)
                self._next_decision(t)
                self._push(t + sc.scale_down_delay_s, _DROP, want)
                return
            want = max(w for _, w in self.history)  # the highest count wanted over the stabilisation window
        self._set(want, t)
        self._next_decision(t)

    def _late_drop(self, t: float, want: int) -> None:
        now_wanted = self.scaler.desired(t, self.count(), 0.0, 0, self.server_replicas)
        if now_wanted <= want:
            self._set(min(self.count(), max(want, now_wanted)), t)

    # ---- lifecycle ----
    def _set(self, want: int, t: float, warm: bool = False) -> None:
        """Requests or releases replicas until `want` serve or start."""
        have = self.count()
        while have < want:
            rid = next((i for i, s in enumerate(self.status) if s == DRAINING), None)
            if rid is not None:  # still finishing its last work: kept, its life goes on
                self.status[rid] = ON
                self.hooks.serve(rid, t)
            else:
                rid = self.status.index(OFF)
                self.lives.append([rid, t, math.nan, math.nan])
                self.life[rid] = len(self.lives) - 1
                if not warm:
                    self.ups += 1
                if self.scaler.scale_up_delay_s > 0 and not warm:
                    self.status[rid] = STARTING
                    self._push(t + self.scaler.scale_up_delay_s, _COLD, (rid, self.life[rid]))
                else:
                    self._serve(rid, t)
            have += 1
        while have > want:
            self._release(self._victim(t), t)
            have -= 1

    def _victim(self, t: float) -> int:
        starting = [i for i, s in enumerate(self.status) if s == STARTING]
        if starting:
            return starting[-1]
        on = [i for i, s in enumerate(self.status) if s == ON]
        idle = [i for i in on if not self.hooks.busy(i, t)]
        return (idle or on)[-1]

    def _release(self, rid: int, t: float) -> None:
        self.downs += 1
        was = self.status[rid]
        self.hooks.stop(rid, t)
        if was == ON and self.hooks.busy(rid, t):
            self.status[rid] = DRAINING  # it finishes what it holds: released (and billed) until then
            return
        self.status[rid] = OFF
        self.lives[self.life[rid]][3] = t

    def _serve(self, rid: int, t: float) -> None:
        self.status[rid] = ON
        self.lives[self.life[rid]][2] = t
        self.hooks.serve(rid, t)
