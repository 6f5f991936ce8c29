"""latency_histogram: how many measured requests fall in each latency bin (exact counts, records or streaming)."""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from . import REGISTRY
from .base import SinkMetric


@REGISTRY.register
class LatencyHistogram(SinkMetric):
    metric: Literal["latency_histogram"] = "latency_histogram"
    edges_ms: list[float] = Field(min_length=1, max_length=10_000,
                                  description="bin edges in ms, ascending; below the first and from the last on are "
                                              "bins too")

    @field_validator("edges_ms")
    @classmethod
    def _ascending(cls, v: list[float]) -> list[float]:
        if any(b <= a for a, b in zip(v, v[1:])) or any(not np.isfinite(x) or x < 0 for x in v):
            raise ValueError("must be finite, >= 0 and strictly ascending")
        return v

    def start(self):
        return _Counts(np.asarray(self.edges_ms) / 1000)

    def summarize(self, accumulators: list) -> dict:
        counts = sum(a.counts for a in accumulators)
        return {"edges_ms": list(self.edges_ms), "counts": [int(c) for c in counts],
                "fraction": [float(c) / max(int(counts.sum()), 1) for c in counts]}


class _Counts:
    def __init__(self, edges_s: np.ndarray):
        self.edges_s = edges_s
        self.counts = np.zeros(edges_s.size + 1, np.int64)

    def add(self, block) -> None:
        # bin i holds edges[i-1] <= latency < edges[i]
        self.counts += np.bincount(np.searchsorted(self.edges_s, block.latency_s, side="right"),
                                   minlength=self.counts.size)
