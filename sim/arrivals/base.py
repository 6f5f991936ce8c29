"""Arrival processes: open-loop request arrival times, generated in numpy chunks."""
from __future__ import annotations

import math

import numpy as np

from ..config import StrictModel

_CHUNK = 1 << 20


class ArrivalProcess(StrictModel):
    """Base for renewal processes: subclasses draw inter-arrival gaps and state their moments."""

    # Subclasses define `rate_rps` (a field, or a property for traces): mean arrivals per second.

    @property
    def mean_gap_s(self) -> float:
        """Analytic mean inter-arrival time in seconds."""
        return 1.0 / self.rate_rps

    @property
    def var_gap_s2(self) -> float:
        """Analytic variance of the inter-arrival time in seconds squared."""
        raise NotImplementedError

    def gaps_s(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Returns `n` inter-arrival gaps in seconds."""
        raise NotImplementedError

    def arrival_times_s(self, rng: np.random.Generator, *, requests: int | None = None,
                        until_s: float | None = None) -> np.ndarray:
        """Returns sorted arrival times in seconds: the first `requests`, or all before `until_s`."""
        chunks = list(self.arrival_chunks(rng, requests=requests, until_s=until_s))
        return np.concatenate(chunks) if len(chunks) > 1 else chunks[0]

    def arrival_chunks(self, rng: np.random.Generator, *, requests: int | None = None,
                       until_s: float | None = None):
        """Yields the arrival times of `arrival_times_s` in sorted chunks of at most about a million (streaming
        runs hold one chunk at a time; the concatenation is exactly arrival_times_s, draw for draw)."""
        if requests is not None:
            t0, left = 0.0, requests
            while True:
                n = min(_CHUNK, left)
                # one sequential sum from the previous chunk's last time: the same floats as a single cumsum
                t = np.cumsum(np.concatenate([[t0], self.gaps_s(rng, n)]))[1:]
                yield t
                left -= n
                if left <= 0:
                    return
                t0 = float(t[-1])
        assert until_s is not None
        t0, first = 0.0, True
        expected = max(16, int(until_s / self.mean_gap_s * 1.02) + 16)
        while True:
            n = min(_CHUNK, expected) if first else _CHUNK
            first = False
            t = t0 + np.cumsum(self.gaps_s(rng, n))
            if t[-1] >= until_s:
                yield t[: np.searchsorted(t, until_s, side="left")]
                return
            yield t
            t0 = float(t[-1])

    def offered_rps(self, times_s: np.ndarray) -> float:
        """Returns the offered arrival rate in requests/s (analytic here; traces measure the replayed times)."""
        return float(self.rate_rps)

    @property
    def gap_cv(self) -> float:
        """Coefficient of variation of the inter-arrival time."""
        return math.sqrt(self.var_gap_s2) / self.mean_gap_s
