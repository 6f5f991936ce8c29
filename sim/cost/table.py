"""Measured step times per batch size, with monotone (PCHIP) interpolation between the points."""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from . import REGISTRY
from .base import CostModel


def pchip(x: np.ndarray, y: np.ndarray, xq: np.ndarray) -> np.ndarray:
    """Returns the shape-preserving (Fritsch-Carlson) cubic interpolant of (x, y) at xq; flat outside [x0, xn]."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    xq = np.clip(np.asarray(xq, dtype=float), x[0], x[-1])
    if x.size == 1:
        return np.full(xq.shape, y[0])
    h = np.diff(x)
    delta = np.diff(y) / h
    d = np.zeros_like(y)
    if x.size == 2:
        d[:] = delta[0]
    else:
        w1 = 2 * h[1:] + h[:-1]
        w2 = h[1:] + 2 * h[:-1]
        same = delta[:-1] * delta[1:] > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            harm = (w1 + w2) / (w1 / delta[:-1] + w2 / delta[1:])
        d[1:-1] = np.where(same, harm, 0.0)
        d[0] = _end_slope(h[0], h[1], delta[0], delta[1])
        d[-1] = _end_slope(h[-1], h[-2], delta[-1], delta[-2])
    i = np.clip(np.searchsorted(x, xq, side="right") - 1, 0, x.size - 2)
    t = (xq - x[i]) / h[i]
    h00 = (1 + 2 * t) * (1 - t) ** 2
    h10 = t * (1 - t) ** 2
    h01 = t * t * (3 - 2 * t)
    h11 = t * t * (t - 1)
    return h00 * y[i] + h10 * h[i] * d[i] + h01 * y[i + 1] + h11 * h[i] * d[i + 1]


def _end_slope(h0, h1, m0, m1):
    d = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
    if np.sign(d) != np.sign(m0):
        return 0.0
    if np.sign(m0) != np.sign(m1) and abs(d) > abs(3 * m0):
        return 3 * m0
    return d


@REGISTRY.register
class TableCost(CostModel):
    kind: Literal["table"] = "table"
    step_ms: dict[int, float] = Field(description="measured step time in ms per batch size, e.g. {1: 2.1, 8: 3.0}")

    @field_validator("step_ms")
    @classmethod
    def _points(cls, v: dict[int, float]):
        if not v:
            raise ValueError("give at least one batch size: step time point")
        for k, ms in v.items():
            if k < 1:
                raise ValueError(f"batch size {k} must be >= 1")
            if not (ms > 0 and np.isfinite(ms)):
                raise ValueError(f"step time {ms!r} for batch size {k} must be a finite number of ms > 0")
        return dict(sorted(v.items()))

    def batch_limit(self) -> int:
        return max(self.step_ms)

    def step_s(self, batch_size):
        x = np.fromiter(self.step_ms.keys(), dtype=float)
        y = np.fromiter(self.step_ms.values(), dtype=float)
        return pchip(x, y, np.asarray(batch_size, dtype=float)) / 1000.0
