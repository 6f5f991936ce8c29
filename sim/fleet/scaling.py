"""The shared-queue engine with an autoscaler (sim.fleet.autoscaler): a pool of identical replicas, of which a
changing number serve, one SimPy process each, plus a controller process.

The queue rule is the shared queue's (sim.engine.simulate_shared, whose hot loop inlines the same rule): a
serving replica that is free takes the next requests under its DispatchRule. One difference: a free replica
with no request waiting sleeps until the next arrival instead of claiming it ahead, so a replica released
while idle is idle (released at once) rather than committed to a batch in the future. Lives are recorded as
[replica, requested_s, serving_s, released_s] and billed from request to release.
"""
from __future__ import annotations

import math
from array import array
from bisect import bisect_right
from typing import Optional

import numpy as np
import simpy

from ..engine import BatchLog

OFF, STARTING, ON, DRAINING = 0, 1, 2, 3


class _Pool:
    """Which replicas serve, and their lives."""

    def __init__(self, env: simpy.Environment, size: int, scaler, delay_up: float):
        self.env = env
        self.status = [OFF] * size
        self.life = [None] * size      # index into lives of the replica's current life
        self.lives: list = []          # [replica, requested_s, serving_s, released_s]
        self.wake = [env.event() for _ in range(size)]
        self.busy_until = [0.0] * size
        self.scaler = scaler
        self.delay_up = delay_up
        self.ups = self.downs = 0

    def count(self) -> int:
        """Replicas serving or on their way (starting), not those draining."""
        return sum(1 for s in self.status if s in (STARTING, ON))

    def serving(self) -> int:
        return sum(1 for s in self.status if s in (ON, DRAINING))

    def set(self, want: int) -> None:
        """Requests or releases replicas until `want` are serving or starting."""
        now = self.env.now
        have = self.count()
        while have < want:
            rid = next((i for i, s in enumerate(self.status) if s == DRAINING), None)
            if rid is not None:  # a replica still finishing its last batch is kept: its life goes on
                self.status[rid] = ON
            else:
                rid = self.status.index(OFF)
                self.lives.append([rid, now, math.nan, math.nan])
                self.life[rid] = len(self.lives) - 1
                self.ups += 1
                if self.delay_up > 0:
                    self.status[rid] = STARTING
                    self.env.process(self._start(rid, self.life[rid]))
                else:
                    self._serve(rid)
            have += 1
        while have > want:
            self._release(self._victim())
            have -= 1

    def _victim(self) -> int:
        """Starting replicas go first (newest), then idle ones, then busy ones (highest index)."""
        now = self.env.now
        for wanted in ((STARTING, False), (ON, True), (ON, False)):
            found = [i for i, s in enumerate(self.status) if s == wanted[0]
                     and (wanted[0] == STARTING or (self.busy_until[i] <= now) == wanted[1])]
            if found:
                return found[-1]
        raise AssertionError("no replica to release")

    def _release(self, rid: int) -> None:
        now = self.env.now
        self.downs += 1
        if self.status[rid] == ON and self.busy_until[rid] > now:
            self.status[rid] = DRAINING  # its batch runs to the end: released (and billed) until then
            return
        self.status[rid] = OFF
        self.lives[self.life[rid]][3] = now

    def drained(self, rid: int) -> None:
        """A draining replica finished its batch."""
        self.status[rid] = OFF
        self.lives[self.life[rid]][3] = self.env.now

    def _serve(self, rid: int) -> None:
        self.status[rid] = ON
        self.lives[self.life[rid]][2] = self.env.now
        if not self.wake[rid].triggered:
            self.wake[rid].succeed()

    def _start(self, rid: int, life: int):
        yield self.env.timeout(self.delay_up)
        if self.status[rid] == STARTING and self.life[rid] == life:
            self._serve(rid)


def simulate_autoscaled(rule, cost, scaler, replicas: int, arrival_s: Optional[np.ndarray], *,
                        end_s: Optional[float] = None,
                        noise_rng: Optional[np.random.Generator] = None, chunks=None, sink=None,
                        flush_requests: int = 1 << 20):
    """Runs the autoscaled shared queue over sorted arrival times (or `chunks` into `sink`, as
    sim.engine.simulate_shared does); returns (BatchLog or None, scaling), where scaling holds `lives`
    ([replica, requested_s, serving_s, released_s], released_s clipped to `end_s`, the run's billing end:
    default the last arrival), the billing end, the decision count and the ups and downs."""
    pool_size = scaler.pool(replicas)
    env = simpy.Environment()
    pool = _Pool(env, pool_size, scaler, scaler.scale_up_delay_s)
    arr: list = [] if chunks is not None else np.asarray(arrival_s, float).tolist()
    state = {"head": 0, "more": chunks is not None, "busy": 0.0, "last": arr[-1] if arr else 0.0}
    sizes, dispatch, completion, steps, who = array("i"), array("d"), array("d"), array("d"), array("i")
    table = cost.step_table_s(rule.max_batch_size).tolist()
    jitter = cost.jitter(noise_rng) if cost.is_noisy() else None
    limit, delay, pmin = rule.max_batch_size, rule.delay_s, rule.smallest - 1

    def load(upto: int) -> None:
        while len(arr) <= upto and state["more"]:
            chunk = next(chunks, None)
            if chunk is None:
                state["more"] = False
            elif len(chunk):
                arr.extend(np.asarray(chunk, float).tolist())
                state["last"] = arr[-1]

    def flush() -> None:
        h = state["head"]
        sink.take(np.asarray(arr[:h], float), np.frombuffer(sizes, np.int32).copy(),
                  np.frombuffer(dispatch, np.float64).copy(), np.frombuffer(completion, np.float64).copy(),
                  np.frombuffer(who, np.int32).copy(), np.frombuffer(steps, np.float64).copy(),
                  arr[-1] if arr else -math.inf)
        del arr[:h]
        state["head"] = 0
        for a in (sizes, dispatch, completion, steps, who):
            del a[:]

    def replica(rid: int):
        while True:
            if pool.status[rid] != ON:
                if pool.status[rid] == DRAINING:
                    pool.drained(rid)
                pool.wake[rid] = env.event()
                yield pool.wake[rid]
                continue
            h = state["head"]
            if h + limit >= len(arr) and state["more"]:
                load(h + limit)
            n = len(arr)
            if h >= n:
                return
            t = env.now
            first = arr[h]
            if first > t:  # nothing waits: sleep until the next arrival (the shared queue's rule from there)
                yield env.timeout(first - t)
                continue
            due = first + delay
            j = h + pmin
            full = arr[j] if j < n else math.inf
            d = max(min(full, due), t)
            if d == math.inf:
                return  # a partial static batch that will never fill
            k = bisect_right(arr, d, h, min(h + limit, n)) - h
            if d < due and not rule.plain:
                k = rule._floor[k]
            state["head"] = h + k
            step = table[k] * (jitter(k) if jitter is not None else 1.0)
            end = d + step
            pool.busy_until[rid] = end
            state["busy"] += step
            sizes.append(k)
            dispatch.append(d)
            completion.append(end)
            steps.append(step)
            who.append(rid)
            if sink is not None and h + k >= flush_requests:
                flush()
            yield env.timeout(end - t)

    decisions = {"n": 0}

    def controller():
        history: list = []  # (time, desired) over the scale-down window
        last_busy, last_t = 0.0, 0.0
        times = ([t for t, _ in scaler.schedule[1:]] if scaler.policy == "schedule" else None)
        while True:
            if times is not None:
                if not times:
                    return
                yield env.timeout(times.pop(0) - env.now)
                want = scaler.scheduled(env.now)
            else:
                yield env.timeout(scaler.interval_s)
                if not state["more"] and state["head"] >= len(arr) and not any(s in (ON, DRAINING) and
                                                                                 pool.busy_until[i] > env.now
                                                                                 for i, s in enumerate(pool.status)):
                    return  # every request is served: no more decisions
                serving = max(pool.serving(), 1)
                util = (state["busy"] - last_busy) / (serving * (env.now - last_t))
                last_busy, last_t = state["busy"], env.now
                while state["more"] and (not arr or arr[-1] <= env.now):  # streaming: see every arrival by now
                    load(len(arr))
                waiting = bisect_right(arr, env.now, state["head"]) - state["head"] if arr else 0
                want = scaler.desired(pool.count(), util, waiting, replicas)
            decisions["n"] += 1
            history = [(t, w) for t, w in history if t > env.now - scaler.scale_down_delay_s] + [(env.now, want)]
            if want < pool.count() and scaler.scale_down_delay_s > 0:
                if times is not None:  # a scheduled drop takes effect after the delay (unless raised again)
                    env.process(_later_drop(scaler.scale_down_delay_s, want))
                    continue
                want = max(w for _, w in history)  # the highest count wanted over the stabilisation window
            pool.set(want)

    def _later_drop(wait: float, want: int):
        yield env.timeout(wait)
        if scaler.scheduled(env.now) <= want:
            pool.set(min(pool.count(), max(want, scaler.scheduled(env.now))))

    pool.set(scaler.initial(replicas))
    for life in pool.lives:  # the initial replicas are warm at t = 0
        life[2] = 0.0
    for rid in range(pool_size):
        if pool.status[rid] == STARTING:
            pool._serve(rid)
        env.process(replica(rid))
    env.process(controller())
    env.run()
    if sink is not None:
        flush()
        sink.finish(np.asarray(arr[state["head"]:], float))
    end_s = state["last"] if end_s is None else end_s
    lives = [[r, req, serve, min(rel if rel == rel else end_s, end_s)] for r, req, serve, rel in pool.lives
             if req < end_s]
    scaling = {"lives": lives, "end_s": end_s, "decisions": decisions["n"], "scale_ups": pool.ups,
               "scale_downs": pool.downs, "pool": pool_size}
    if sink is not None:
        return None, scaling
    log = BatchLog(arrival_s=np.asarray(arrival_s, float), size=np.frombuffer(sizes, np.int32).copy(),
                   dispatch_s=np.frombuffer(dispatch, np.float64).copy(),
                   completion_s=np.frombuffer(completion, np.float64).copy(),
                   replica=np.frombuffer(who, np.int32).copy(), step_s=np.frombuffer(steps, np.float64).copy())
    return log, scaling


class LlmScaler:
    """The autoscaler of a continuous-batching fleet behind a shared waiting queue (sim.fleet.fleet.run_shared_llm):
    an event handler in the fleet's loop (index len(replicas)). A replica serves while `accepting`; a released one
    admits nothing new, finishes its sequences (a preempted one goes back to the shared queue) and its life ends
    when it is idle. Decisions as sim.fleet.autoscaler describes; for engines, target_utilization reads the mean
    KV-cache use of the serving engines at the decision (busy time is always full while any sequence runs)."""

    def __init__(self, scaler, replicas: list, waiting, server_replicas: int):
        self.scaler, self.replicas, self.waiting = scaler, replicas, waiting
        self.index = len(replicas)
        self.server_replicas = server_replicas
        self.status = [OFF] * len(replicas)
        self.life = [None] * len(replicas)
        self.lives: list = []
        self.starting: list = []   # (serving time, replica, life)
        self.history: list = []
        self.push = None
        self.now = 0.0
        self.ups = self.downs = self.decisions = 0
        self.arrivals_done = False
        self.times = [t for t, _ in scaler.schedule[1:]] if scaler.policy == "schedule" else None
        for r in replicas:
            r.accepting = False
            r.on_idle = self._idle

    def start(self, push) -> None:
        self.push = push
        self.set(self.scaler.initial(self.server_replicas), warm=True)
        self._next()

    def _next(self) -> None:
        if self.times is not None:
            if self.times:
                self.push((self.times.pop(0), 1, self.index))
        else:
            self.push((self.now + self.scaler.interval_s, 1, self.index))

    def count(self) -> int:
        return sum(1 for s in self.status if s in (STARTING, ON))

    def on_event(self, t: float, kind: int, push) -> None:
        """kind 0: replicas whose cold start ends now begin serving; kind 1: a decision."""
        self.now = t
        if kind == 0:
            for when, rid, life in [x for x in self.starting if x[0] <= t]:
                self.starting.remove((when, rid, life))
                if self.status[rid] == STARTING and self.life[rid] == life:
                    self._serve(rid, t)
            return
        self._decide(t)

    def _decide(self, t: float) -> None:
        sc = self.scaler
        if sc.policy == "schedule":
            want = sc.scheduled(t)
        else:
            if self.arrivals_done and not self.waiting and all(r.running_step is None for r in self.replicas):
                return  # the run is over
            # an engine with any sequence is busy every step, so busy time says nothing about headroom: the LLM
            # utilisation is the KV cache's use (vLLM's gpu_cache_usage), over the serving engines, now
            serving = [self.replicas[i] for i, st in enumerate(self.status) if st in (ON, DRAINING)]
            for r in serving:
                if r.in_run:
                    r.sync(t)  # a run of decode steps allocates its blocks when brought up to date
            util = (sum(r.kv_use for r in serving) / len(serving)) if serving else 0.0
            want = sc.desired(self.count(), util, len(self.waiting), self.server_replicas)
        self.decisions += 1
        self.history = [(h, w) for h, w in self.history if h > t - sc.scale_down_delay_s] + [(t, want)]
        if want < self.count() and sc.scale_down_delay_s > 0:
            want = max(w for _, w in self.history)
        self.set(want)
        self._next()

    def set(self, want: int, warm: bool = False) -> None:
        t = self.now
        have = self.count()
        while have < want:
            rid = next((i for i, s in enumerate(self.status) if s == DRAINING), None)
            if rid is not None:
                self.status[rid] = ON
                self.replicas[rid].accepting = True
                self.push((t, 1, rid))
            else:
                rid = self.status.index(OFF)
                self.lives.append([rid, t, math.nan, math.nan])
                self.life[rid] = len(self.lives) - 1
                self.ups += 0 if warm else 1
                if self.scaler.scale_up_delay_s > 0 and not warm:
                    self.status[rid] = STARTING
                    when = t + self.scaler.scale_up_delay_s
                    self.starting.append((when, rid, self.life[rid]))
                    self.push((when, 0, self.index))
                else:
                    self._serve(rid, t)
            have += 1
        while have > want:
            self._release(self._victim(), t)
            have -= 1

    def _victim(self) -> int:
        for wanted in (STARTING, ON):
            found = [i for i, s in enumerate(self.status) if s == wanted]
            if found:
                idle = [i for i in found if self.replicas[i].running_step is None]
                return (idle or found)[-1]
        raise AssertionError("no replica to release")

    def _release(self, rid: int, t: float) -> None:
        self.downs += 1
        r = self.replicas[rid]
        r.accepting = False
        if self.status[rid] == ON and (r.running_step is not None or r.prefilling or r.n_dec):
            self.status[rid] = DRAINING
            return
        self.status[rid] = OFF
        self.lives[self.life[rid]][3] = t

    def _idle(self, replica, t: float) -> None:
        rid = replica.index
        if self.status[rid] == DRAINING and not replica.prefilling and replica.n_dec == 0:
            self.status[rid] = OFF
            self.lives[self.life[rid]][3] = t

    def _serve(self, rid: int, t: float) -> None:
        self.status[rid] = ON
        self.lives[self.life[rid]][2] = t
        self.replicas[rid].accepting = True
        self.push((t, 1, rid))  # wake it (a step start): it may admit from the shared queue now

    def record(self, end_s: float) -> dict:
        """Returns the scaling record (as simulate_autoscaled's), lives clipped to `end_s`."""
        lives = [[r, req, serve, min(rel if rel == rel else end_s, end_s)] for r, req, serve, rel in self.lives
                 if req < end_s]
        return {"lives": lives, "end_s": end_s, "decisions": self.decisions, "scale_ups": self.ups,
                "scale_downs": self.downs, "pool": len(self.replicas)}
