"""What the non-renewal arrival processes share: arrivals drawn in chunks of time until enough have come."""
from __future__ import annotations

import numpy as np

from .base import ArrivalProcess


class TimeVaryingArrivals(ArrivalProcess):
    """Base for processes whose rate changes over time (not renewal processes): subclasses return the
    arrivals in [t0, t1) with `window(rng, t0, t1)`; `rate_rps` is the long-run mean rate."""

    def window(self, rng: np.random.Generator, t0: float, t1: float) -> np.ndarray:
        raise NotImplementedError

    def arrival_times_s(self, rng: np.random.Generator, *, requests: int | None = None,
                        until_s: float | None = None) -> np.ndarray:
        """Returns sorted arrival times in seconds: the first `requests`, or all before `until_s`."""
        if until_s is not None:
            return self.window(rng, 0.0, until_s)
        assert requests is not None
        chunks, t0, have, empty = [], 0.0, 0, 0
        span = max(requests / self.rate_rps, 1e-9)
        while have < requests and empty < 50:  # 50 empty windows: the rate has fallen to 0 for good
            t = self.window(rng, t0, t0 + span)
            chunks.append(t)
            have += t.size
            empty = empty + 1 if t.size == 0 else 0
            t0 += span
            span = max((requests - have) / self.rate_rps * 1.1, span / 4)
        return np.concatenate(chunks)[:requests]

    @property
    def var_gap_s2(self) -> float:
        return float("nan")  # not a renewal process: its gaps are correlated


def thinned_poisson(rng: np.random.Generator, t0: float, t1: float, peak_rps: float, rate_at) -> np.ndarray:
    """Returns the arrivals in [t0, t1) of a Poisson process of rate rate_at(t) <= peak_rps (Lewis-Shedler
    thinning: candidates at the peak rate, each kept with probability rate_at(t) / peak_rps), sorted."""
    n = rng.poisson(peak_rps * (t1 - t0))
    t = np.sort(t0 + rng.random(n) * (t1 - t0))
    return t[rng.random(n) * peak_rps < rate_at(t)]
