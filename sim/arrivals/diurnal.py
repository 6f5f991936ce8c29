"""Diurnal arrivals: a Poisson process whose rate follows a daily cycle,

    rate(t) = mean_rate_rps * (1 + a cos(2 pi (t - peak_at_s) / period_s)),   a = (r - 1) / (r + 1),

so the peak is r = peak_to_trough times the trough and the mean over a period is mean_rate_rps."""
from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import Field

from . import REGISTRY
from .modulated import TimeVaryingArrivals, thinned_poisson


@REGISTRY.register
class DiurnalArrivals(TimeVaryingArrivals):
    process: Literal["diurnal"] = "diurnal"
    mean_rate_rps: float = Field(ge=1e-6, le=1e9, description="mean rate over a period, requests per second")
    peak_to_trough: float = Field(ge=1, le=1e6, description="peak rate / trough rate (1: constant)")
    period_s: float = Field(default=86400.0, gt=0, description="length of one cycle, seconds (default: a day)")
    peak_at_s: float = Field(default=0.0, ge=0, description="time of the first peak, seconds")

    @property
    def rate_rps(self) -> float:
        return self.mean_rate_rps

    @property
    def amplitude(self) -> float:
        return (self.peak_to_trough - 1) / (self.peak_to_trough + 1)

    def rate_at(self, t):
        """Returns the arrival rate at times t (seconds), requests per second."""
        return self.mean_rate_rps * (1 + self.amplitude * np.cos(2 * math.pi * (np.asarray(t) - self.peak_at_s)
                                                                  / self.period_s))

    def expected_count(self, t0: float, t1: float) -> float:
        """Returns the integral of the rate over [t0, t1): the expected arrivals."""
        w = 2 * math.pi / self.period_s
        return self.mean_rate_rps * ((t1 - t0) + self.amplitude / w * (math.sin(w * (t1 - self.peak_at_s))
                                                                        - math.sin(w * (t0 - self.peak_at_s))))

    def window(self, rng, t0, t1):
        return thinned_poisson(rng, t0, t1, self.mean_rate_rps * (1 + self.amplitude), self.rate_at)
