"""What every router is: a config (its YAML schema) that builds a chooser for one run.

A router decides at the request's arrival instant from the replicas' state at that instant (the fleet
brings every replica up to date first). Routers that read no state split all arrivals up front in numpy
(`split`); the others return `choose(sid, arrival_s) -> replica index`. Randomness comes only from the
router's own stream (`rng`), so changing the router shifts no other random draw.
"""
from __future__ import annotations

from typing import Callable, ClassVar

import numpy as np

from ...config import StrictModel


class Router(StrictModel):
    """Base of every router config; `policy` is its registered name."""

    reads_state: ClassVar[bool] = True   # False: arrivals are split up front (`split`)
    llm_only: ClassVar[bool] = False     # True: needs replicas with a KV cache
    reads_kv: ClassVar[bool] = False     # True: reads KV use, so runs of decode steps are synced to the arrival
    # True: reads LLM engines' outstanding_tokens(), so the engines keep those counts (they cost a heap per engine,
    # kept only for a router that declares it reads them)
    reads_tokens: ClassVar[bool] = False

    def counts(self, replicas: int, pool: bool = False):
        """Returns the outstanding-count keeper the replicas update (sim.fleet.counts); `pool`: for an
        autoscaled pool, whose members change."""
        from ..counts import Counts

        return Counts(replicas)

    def split(self, n: int, replicas: int, rng: np.random.Generator) -> np.ndarray:
        """Returns the replica index of each of `n` requests (routers that read no state)."""
        raise NotImplementedError

    def chooser(self, replicas: list, out, rng: np.random.Generator) -> Callable[[int, float], int]:
        """Returns choose(sid, arrival_s) -> replica index, reading `replicas` and their outstanding
        request counts `out.n` (sim.fleet.counts, kept exact by the replicas)."""
        raise NotImplementedError

    def pool_chooser(self, replicas: list, out, rng: np.random.Generator) -> Callable[[int, float], int]:
        """Returns choose(sid, arrival_s) -> replica index among `out.members`, the replicas of an autoscaled
        pool taking new work now (the set changes as the autoscaler requests and releases replicas). A router
        without one is refused behind an autoscaler (sim.checks)."""
        raise NotImplementedError


class Uniforms:
    """Buffered uniform draws in [0, 1) from the router's stream, handed out one at a time."""

    def __init__(self, rng: np.random.Generator, chunk: int = 1 << 14):
        self.rng, self.chunk, self.buf = rng, chunk, []

    def next(self) -> float:
        if not self.buf:
            self.buf = self.rng.random(self.chunk).tolist()
        return self.buf.pop()


def argmin_member(value, members: list, u: Uniforms) -> int:
    """Returns the member with the smallest value(i), uniformly at random among equal smallest ones."""
    return members[argmin_random_tie([value(i) for i in members], u)]


def argmin_random_tie(values: list, u: Uniforms) -> int:
    """Returns the index of the smallest value, uniformly at random among equal smallest ones."""
    m = min(values)
    ties = values.count(m)
    i = values.index(m)
    if ties > 1:
        for _ in range(int(u.next() * ties)):
            i = values.index(m, i + 1)
    return i
