"""Poisson arrivals: exponential gaps, the memoryless baseline of queueing theory."""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from . import REGISTRY
from .base import ArrivalProcess


@REGISTRY.register
class PoissonArrivals(ArrivalProcess):
    process: Literal["poisson"] = "poisson"
    rate_rps: float = Field(ge=1e-6, le=1e9, description="mean arrival rate, requests per second")

    @property
    def var_gap_s2(self) -> float:
        return self.mean_gap_s ** 2

    def gaps_s(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.exponential(self.mean_gap_s, size=n)
