"""Closed-loop clients (`workload.clients`), as load generators such as perf_analyzer's concurrency mode
drive a server: N clients each send a request, wait for its answer (or its rejection), think, and send
the next. There is no offered rate: the load follows from how fast the server answers.

`ClientLoop` is the arrival source a fleet pulls from (sim.fleet.Fleet.run_closed): it issues request
ids in time order and is told when each request's cycle ends. `law_check` compares the run with the
interactive response-time law R = N / X - Z.
"""
from __future__ import annotations

import math
from heapq import heapify, heappop, heappush
from typing import Optional

import numpy as np
from pydantic import Field, field_validator

from .config import StrictModel
from .durations import DurationDist, FixedDuration, Sampler, number_is_fixed


class Clients(StrictModel):
    count: int = Field(ge=1, le=1_000_000, description="concurrent clients, each with one request outstanding at a time")
    think_time_ms: DurationDist = Field(default_factory=lambda: FixedDuration(value_ms=0),
                                        description="pause between an answer and the client's next request: a number "
                                        "of milliseconds or {dist: fixed|exponential|uniform|lognormal, ...}; default 0")
    ramp_up_s: float = Field(default=0.0, ge=0, le=1e7, description="client i starts at i x ramp_up_s / count; "
                             "default 0 (all start together at t = 0)")

    _number = field_validator("think_time_ms", mode="before")(number_is_fixed)


class ClientLoop:
    """Issues the requests of `clients` in the order they reach the batcher: `next_time()` is when the next
    one does (inf: none is due, or the run is over), `pop()` hands it over and returns (request id, time),
    `done(ids, t, answered)` ends those requests' cycles: answered by the GPU at t (then through the
    postprocess pool and the pipeline latency, `stages`), or rejected at t. Each client then thinks and
    sends again. A send is an event of its own: the fleet's clock reaches it before it enters the preprocess
    pool (first come, first served), and the request reaches the batcher when it leaves the pool. The run stops
    sending after `requests` requests, or at `until_s`."""

    def __init__(self, clients: Clients, rng: np.random.Generator, requests: Optional[int] = None,
                 until_s: Optional[float] = None, classes=None, stages=None):
        n = clients.count
        self.sends = [(i * clients.ramp_up_s / n, i) for i in range(n)]  # (send time, client)
        heapify(self.sends)
        self.ready: list = []  # (time it reaches the batcher, sequence, client, send time, preprocess wait)
        self.seq = 0
        self.think = Sampler(clients.think_time_ms, rng)
        self.limit = requests if requests is not None else math.inf
        self.until = until_s if until_s is not None else math.inf
        self.stages = stages
        self.pre = stages.pre if stages is not None else None
        self.arrival: list[float] = []   # per request id: when it reached the batcher (time order)
        self.sent: list[float] = []      # when its client sent it
        self.pre_wait: list[float] = []
        self.client: list[int] = []
        self.think_s: list[float] = []   # the think time after each request's cycle (NaN: cycle not ended)
        self.cycle_end: list[float] = []  # when the client had the answer (or the rejection)
        self.post_wait: list[float] = []
        self.classes = classes  # sim.classes.ClassDraws or None: each request's class, drawn as it is handed over
        self.level = classes.level if classes is not None else None  # priority level per request id

    def _send_due(self) -> bool:
        """Returns whether the next event is a client's send (not a request reaching the batcher)."""
        sends = self.sends
        return (bool(sends) and self.seq < self.limit and sends[0][0] < self.until
                and (not self.ready or sends[0][0] <= self.ready[0][0]))

    def next_time(self) -> float:
        """Returns the time of the next send or batcher arrival (inf: none)."""
        if self._send_due():
            return self.sends[0][0]
        return self.ready[0][0] if self.ready else math.inf

    def pop(self) -> Optional[tuple[int, float]]:
        """Handles the next event: a send goes into the preprocess pool (returns None: nothing reaches the
        batcher yet; the pool serves sends in the order they happen, so the fleet's clock must have reached
        them); a request reaching the batcher gets its id (returns (request id, time))."""
        if self._send_due():
            a, c = heappop(self.sends)
            b, wait = self.pre.serve(a) if self.pre is not None else (a, 0.0)
            heappush(self.ready, (b, self.seq, c, a, wait))
            self.seq += 1
            return None
        b, _, c, a, wait = heappop(self.ready)
        sid = len(self.arrival)
        self.arrival.append(b)
        self.sent.append(a)
        self.pre_wait.append(wait)
        self.client.append(c)
        self.think_s.append(math.nan)
        self.cycle_end.append(math.nan)
        self.post_wait.append(math.nan)
        if self.classes is not None and sid >= len(self.level):
            self.classes.upto(sid + 1)
        return sid, b

    def finished(self, t: float) -> bool:
        """Returns whether no request will reach the batcher after t (every send made, none in preprocessing)."""
        return not self.ready and (self.seq >= self.limit or t >= self.until)

    def done(self, ids, t: float, answered: bool = True) -> None:
        think, sends, client = self.think, self.sends, self.client
        for sid in ids:
            end, wait = self.stages.answer(t) if answered and self.stages is not None else (t, math.nan)
            z = think()
            self.think_s[sid] = z
            self.cycle_end[sid] = end
            self.post_wait[sid] = wait
            heappush(sends, (end + z, client[sid]))

    def columns(self) -> dict:
        """Returns numpy columns per request id: arrival_s (at the batcher), sent_s, pre_wait_s, client, think_s
        (after its cycle), cycle_end_s, post_wait_s, and class (None without classes)."""
        n = len(self.arrival)
        return {"arrival_s": np.asarray(self.arrival, float), "sent_s": np.asarray(self.sent, float),
                "pre_wait_s": np.asarray(self.pre_wait, float), "client": np.asarray(self.client, np.int32),
                "think_s": np.asarray(self.think_s, float), "cycle_end_s": np.asarray(self.cycle_end, float),
                "post_wait_s": np.asarray(self.post_wait, float),
                "class": self.classes.upto(n) if self.classes is not None else None}


def law_check(clients: Clients, runs: list[tuple[np.ndarray, np.ndarray, np.ndarray]], warmup_s: float) -> dict:
    """Returns the interactive response-time law check over the measured window of each replication.

    `runs` holds (sent_s, cycle_end_s, think_s) per replication (sent_s sorted: without a preprocess pool
    requests reach the batcher in the order they were sent; with one, sort). A cycle is a request sent at or
    after warmup_s and before the last request was sent: X = cycles / window (rejected and timed-out cycles
    included), R their mean response time (send to answer or rejection), Z their mean realised think time.
    N = X (R + Z) holds up to edge effects of about one cycle per client over the window, so the relative
    error shrinks like clients / cycles."""
    n = clients.count
    cycles, span, r_sum, z_sum = 0, 0.0, 0.0, 0.0
    for arrival, end, think in runs:
        if arrival.size < 2:
            continue
        order = np.argsort(arrival, kind="stable")
        arrival, end, think = arrival[order], end[order], think[order]
        t0 = warmup_s if warmup_s > 0 else float(arrival[0])
        t1 = float(arrival[-1])
        sel = (arrival >= t0) & (arrival < t1) & np.isfinite(end)
        if t1 <= t0 or not sel.any():
            continue
        cycles += int(sel.sum())
        span += t1 - t0
        r_sum += float((end[sel] - arrival[sel]).sum())
        z_sum += float(think[sel].sum())
    if cycles == 0:
        return {"clients": n, "cycles": 0, "throughput_rps": math.nan, "response_time_s": math.nan,
                "think_time_s": math.nan, "law_response_time_s": math.nan, "law_rel_error": math.nan}
    x = cycles / span
    r, z = r_sum / cycles, z_sum / cycles
    law = n / x - z
    return {"clients": n, "cycles": cycles, "throughput_rps": x, "response_time_s": r, "think_time_s": z,
            "law_response_time_s": law, "law_rel_error": abs(law - r) / r if r > 0 else math.nan,
            "law": "R = N / X - Z (interactive response-time law; X counts every cycle, rejected ones included)"}
