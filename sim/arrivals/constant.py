"""Constant-rate arrivals: evenly spaced, as from a closed benchmark client at fixed pacing."""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from . import REGISTRY
from .base import ArrivalProcess


@REGISTRY.register
class ConstantArrivals(ArrivalProcess):
    process: Literal["constant"] = "constant"
    rate_rps: float = Field(ge=1e-6, le=1e9, description="arrival rate, requests per second (gap = 1/rate)")

    @property
    def var_gap_s2(self) -> float:
        return 0.0

    def gaps_s(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.full(n, self.mean_gap_s)
