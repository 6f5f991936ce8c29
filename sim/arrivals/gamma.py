"""Gamma-renewal arrivals: tune burstiness with the gap's coefficient of variation (cv>1 is burstier than Poisson)."""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from . import REGISTRY
from .base import ArrivalProcess


@REGISTRY.register
class GammaArrivals(ArrivalProcess):
    process: Literal["gamma"] = "gamma"
    rate_rps: float = Field(ge=1e-6, le=1e9, description="mean arrival rate, requests per second")
    cv: float = Field(default=1.0, gt=0, le=100, description="coefficient of variation of the gaps (1 = Poisson)")

    @property
    def var_gap_s2(self) -> float:
        return (self.cv * self.mean_gap_s) ** 2

    def gaps_s(self, rng: np.random.Generator, n: int) -> np.ndarray:
        shape = 1.0 / self.cv ** 2
        return rng.gamma(shape, self.mean_gap_s / shape, size=n)
