"""Batching policies decide when a free replica starts a batch and how many waiting requests it takes.

Every request-level policy reduces to one `DispatchRule` over a FCFS queue, which the engine executes:
when a replica is free at time t and the oldest waiting request arrived at a0, the batch starts at

    max(t, min(a0 + delay_s, time the queue first holds min(preferred) requests))

and takes the largest preferred size that is waiting, or, once the oldest request's delay has expired,
every waiting request up to max_batch_size (Triton's dynamic-batcher semantics).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import StrictModel

# One hour: far beyond any batching delay a server uses, and small enough that a run's last partial batch
# cannot push the simulated clock to absurd times (1e308 ms once gave "1e+305 s simulated").
MAX_QUEUE_DELAY_MS = 3_600_000.0


@dataclass(frozen=True)
class DispatchRule:
    """Triton's dynamic-batcher rule, the one place it is written down: the simulated replicas
    (sim.engine, sim.replica) and the real serving loop (profiler/serve.py) all call these two methods."""

    max_batch_size: int
    preferred_batch_sizes: tuple[int, ...]  # ascending; (max_batch_size,) when none are preferred
    delay_s: float  # math.inf: never dispatch a partial batch

    def __post_init__(self):
        # floor[k]: the largest preferred size <= k (0 below the smallest), so take() is one lookup
        floor, best = [0] * (self.max_batch_size + 1), 0
        for k in range(self.max_batch_size + 1):
            if k in self.preferred_batch_sizes:
                best = k
            floor[k] = best
        object.__setattr__(self, "_floor", floor)
        object.__setattr__(self, "plain", self.preferred_batch_sizes == (self.max_batch_size,))
        # the fewest waiting requests that can start a batch before the delay runs out (a plain attribute: the
        # replicas read it on every arrival and batch end)
        object.__setattr__(self, "smallest", self.preferred_batch_sizes[0])

    def start_s(self, free_s: float, oldest_s: float, ready_s: float) -> float:
        """Returns when a replica free at `free_s` starts its next batch (seconds; inf: never): when the
        oldest waiting request (arrived at `oldest_s`) has waited `delay_s`, or earlier at `ready_s`, when
        the `smallest`-th waiting request arrives (inf when it has not arrived yet)."""
        due = oldest_s + self.delay_s
        d = ready_s if ready_s < due else due
        return d if d > free_s else free_s

    def take(self, waiting: int, before_due: bool) -> int:
        """Returns how many of `waiting` requests a batch takes: every one up to max_batch_size once the
        oldest request's delay has run out, before that the largest preferred size that is waiting."""
        k = waiting if waiting < self.max_batch_size else self.max_batch_size
        return self._floor[k] if before_due and not self.plain else k


class BatchingPolicy(StrictModel):
    """Base of every batching policy config; `policy` is its registered name."""

    def batch_limit(self, model_limit: int) -> int:
        """Returns the largest batch this policy forms when the cost model allows `model_limit`."""
        raise NotImplementedError

    def rule(self, model_limit: int) -> DispatchRule:
        """Returns the dispatch rule the engine executes."""
        raise NotImplementedError


def delay_s_from_ms(delay_ms: float | None) -> float:
    return math.inf if delay_ms is None else delay_ms / 1000.0
