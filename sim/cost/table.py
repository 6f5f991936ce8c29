"""Measured step times per batch size, with monotone (PCHIP) interpolation between the points."""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from . import REGISTRY
from ..fitting import pchip
from .base import CostModel


@REGISTRY.register
class TableCost(CostModel):
    kind: Literal["table"] = "table"
    step_ms: dict[int, float] = Field(max_length=100_000, description="measured step time in ms per batch size, e.g. {1: 2.1, 8: 3.0}")

    @field_validator("step_ms")
    @classmethod
    def _points(cls, v: dict[int, float]):
        if not v:
            raise ValueError("give at least one batch size: step time point")
        for k, ms in v.items():
            if not 1 <= k <= 1_000_000:
                raise ValueError(f"batch size {k} must be in 1..1000000")
            if not (ms > 0 and np.isfinite(ms)):
                raise ValueError(f"step time {ms!r} for batch size {k} must be a finite number of ms > 0")
        return dict(sorted(v.items()))

    def batch_limit(self) -> int:
        return max(self.step_ms)

    def compute_s(self, batch_size):
        x = np.fromiter(self.step_ms.keys(), dtype=float)
        y = np.fromiter(self.step_ms.values(), dtype=float)
        return pchip(x, y, np.asarray(batch_size, dtype=float)) / 1000.0
