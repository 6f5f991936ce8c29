"""What the non-renewal arrival processes share: arrivals drawn in chunks of time until enough have come."""
from __future__ import annotations

import numpy as np

from .base import _CHUNK, ArrivalProcess


class TimeVaryingArrivals(ArrivalProcess):
    """Base for processes whose rate changes over time (not renewal processes): subclasses return the
    arrivals in [t0, t1) with `window(rng, t0, t1)`; `rate_rps` is the long-run mean rate."""

    def window(self, rng: np.random.Generator, t0: float, t1: float) -> np.ndarray:
        raise NotImplementedError

    def arrival_chunks(self, rng: np.random.Generator, *, requests: int | None = None,
                       until_s: float | None = None):
        """Yields sorted arrival times window by window: the first `requests`, or all before `until_s` (in
        windows of about a million expected arrivals, so a streaming run holds one at a time)."""
        if until_s is not None:
            step = max(_CHUNK / self.rate_rps, 1e-9)
            t0 = 0.0
            while t0 < until_s:
                t1 = min(t0 + step, until_s)
                yield self.window(rng, t0, t1)
                t0 = t1
            return
        assert requests is not None
        t0, have, empty = 0.0, 0, 0
        span = max(min(requests, _CHUNK) / self.rate_rps, 1e-9)
        while have < requests and empty < 50:  # 50 empty windows: the rate has fallen to 0 for good
            t = self.window(rng, t0, t0 + span)
            t = t[: requests - have]
            have += t.size
            empty = empty + 1 if t.size == 0 else 0
            yield t
            t0 += span
            span = max(min(requests - have, _CHUNK) / self.rate_rps * 1.1, span / 4)

    @property
    def var_gap_s2(self) -> float:
        return float("nan")  # not a renewal process: its gaps are correlated


def thinned_poisson(rng: np.random.Generator, t0: float, t1: float, peak_rps: float, rate_at) -> np.ndarray:
    """Returns the arrivals in [t0, t1) of a Poisson process of rate rate_at(t) <= peak_rps (Lewis-Shedler
    thinning: candidates at the peak rate, each kept with probability rate_at(t) / peak_rps), sorted."""
    n = rng.poisson(peak_rps * (t1 - t0))
    t = np.sort(t0 + rng.random(n) * (t1 - t0))
    return t[rng.random(n) * peak_rps < rate_at(t)]
