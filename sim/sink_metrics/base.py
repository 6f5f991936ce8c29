"""What every sink metric offers, and how runs feed them (sim.sink_metrics)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ..config import StrictModel


@dataclass
class RequestBlock:
    """Measured requests that finished, in arrival order: per request its arrival (s), latency (s: end-to-end,
    to the last token for LLM engines), queue wait (s: to its batch's start, or to admission for LLM engines) and
    replica; LLM runs add time to first token and time per output token (s; NaN with one output token)."""

    arrival_s: np.ndarray
    latency_s: np.ndarray
    queue_wait_s: np.ndarray
    replica: np.ndarray
    ttft_s: Optional[np.ndarray] = None
    tpot_s: Optional[np.ndarray] = None


class SinkMetric(StrictModel):
    """Base of every sink metric: `metric` is its registered name."""

    def start(self) -> Any:
        """Returns a fresh accumulator for one replication: any object with `add(block: RequestBlock)`."""
        raise NotImplementedError

    def summarize(self, accumulators: list) -> Any:
        """Returns the metric's JSON-able value (summary.json `metrics.<name>`) from the replications'
        accumulators."""
        raise NotImplementedError


def feed(accumulators: list, block: RequestBlock) -> None:
    """Hands one block to every accumulator of a replication."""
    if block.arrival_s.size:
        for acc in accumulators:
            acc.add(block)


def section(metrics: list, accumulators: list[list]) -> dict:
    """Returns summary.json's `metrics` section: each metric's value, by name, from its accumulators (one list per
    replication, in the order of `metrics`)."""
    return {m.metric: m.summarize([accs[i] for accs in accumulators]) for i, m in enumerate(metrics)}
