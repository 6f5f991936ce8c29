"""Server stages outside the GPU (`server.preprocess`, `server.postprocess`, `server.pipeline_latency_ms`):
a pool of CPU workers that decodes and resizes an image or tokenizes a prompt before the batcher, one that
serialises the answer after it, and a delay that occupies nothing (overlapped copies, the network).

Each pool serves requests first come, first served with `workers` identical workers (an M/G/c station):
`WorkerPool.serve(t, service_s)` returns when a request that reaches the pool at t leaves it.
"""
from __future__ import annotations

import math
from heapq import heapify, heapreplace
import numpy as np
from pydantic import Field, field_validator

from .config import StrictModel
from .durations import DurationDist, Sampler, number_is_fixed


class Stage(StrictModel):
    workers: int = Field(default=1, ge=1, le=100_000, description="CPU workers serving the stage in parallel; "
                         "default 1")
    time_ms: DurationDist = Field(description="time one request takes on a worker: a number of milliseconds or "
                                  "{dist: fixed|exponential|uniform|lognormal, ...}")

    _number = field_validator("time_ms", mode="before")(number_is_fixed)


class WorkerPool:
    """`workers` FCFS workers: serve(t, s) takes the earliest-free worker at or after t for s seconds and
    returns (leave time, wait). Requests must be presented in the order they reach the pool."""

    def __init__(self, workers: int):
        self.free = [-math.inf] * workers
        heapify(self.free)

    def serve(self, t: float, service_s: float) -> tuple[float, float]:
        f = self.free[0]
        start = f if f > t else t
        end = start + service_s
        heapreplace(self.free, end)
        return end, start - t


class StageRunner:
    """One stage of one replication: its pool and its service-time draws (its own stream)."""

    def __init__(self, stage: Stage, rng: np.random.Generator):
        self.pool = WorkerPool(stage.workers)
        self.draw = Sampler(stage.time_ms, rng)

    def serve(self, t: float) -> tuple[float, float]:
        return self.pool.serve(t, self.draw())

    def run(self, times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Returns (leave times, waits) of requests reaching the pool at `times_s` (served in that order;
        ties in the given order)."""
        serve = self.serve
        out = [serve(t) for t in np.asarray(times_s, float).tolist()]
        if not out:
            return np.zeros(0), np.zeros(0)
        done, wait = zip(*out)
        return np.asarray(done, float), np.asarray(wait, float)


class Stages:
    """The stages of one replication: `pre`, `post` (StageRunner or None) and `pipeline` (a Sampler or None)."""

    def __init__(self, server, seed: int, replication: int):
        from .rng import component_rng

        self.pre = (StageRunner(server.preprocess, component_rng(seed, replication, "server.preprocess"))
                    if server.preprocess is not None else None)
        self.post = (StageRunner(server.postprocess, component_rng(seed, replication, "server.postprocess"))
                     if server.postprocess is not None else None)
        pl = server.pipeline_latency_ms
        self.pipeline = (Sampler(pl, component_rng(seed, replication, "server.pipeline"))
                         if pl is not None and pl.mean_s > 0 else None)

    def answer(self, t: float) -> tuple[float, float]:
        """Returns (when the client has the answer of a request the GPU finished at t, postprocess wait)."""
        wait = 0.0
        if self.post is not None:
            t, wait = self.post.serve(t)
        if self.pipeline is not None:
            t += self.pipeline()
        return t, wait

    def answers(self, completion_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Returns (answered_s, postprocess waits) per request from GPU completion times (NaN: not served),
        the postprocess pool taking requests in completion order."""
        answered = np.full(completion_s.size, np.nan)
        wait = np.full(completion_s.size, np.nan)
        ok = np.flatnonzero(np.isfinite(completion_s))
        order = ok[np.argsort(completion_s[ok], kind="stable")]
        answer = self.answer
        for i, t in zip(order.tolist(), completion_s[order].tolist()):
            answered[i], wait[i] = answer(t)
        return answered, wait


def has_stages(server) -> bool:
    """Returns whether requests spend time outside the batcher (a pool or a pipeline latency)."""
    pl = server.pipeline_latency_ms
    return server.preprocess is not None or server.postprocess is not None or (pl is not None and pl.mean_s > 0)


__all__ = ["Stage", "StageRunner", "Stages", "WorkerPool", "has_stages"]
