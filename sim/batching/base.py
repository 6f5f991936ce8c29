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
    max_batch_size: int
    preferred_batch_sizes: tuple[int, ...]  # ascending; (max_batch_size,) when none are preferred
    delay_s: float  # math.inf: never dispatch a partial batch


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
