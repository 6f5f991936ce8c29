"""Piecewise-linear rate: a Poisson process whose rate is interpolated between `points: [[t_s, rate_rps],
...]` (sorted by time; constant before the first point and after the last)."""
from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import Field, field_validator

from . import REGISTRY
from .modulated import TimeVaryingArrivals, thinned_poisson

Point = Annotated[list[Annotated[float, Field(ge=0, le=1e12)]], Field(min_length=2, max_length=2)]


@REGISTRY.register
class PiecewiseArrivals(TimeVaryingArrivals):
    process: Literal["piecewise"] = "piecewise"
    points: list[Point] = Field(min_length=1, description="[[t_s, rate_rps], ...], times increasing; the rate is "
                                "linear between points")

    @field_validator("points")
    @classmethod
    def _sorted(cls, pts):
        t = [p[0] for p in pts]
        if any(b <= a for a, b in zip(t, t[1:])):
            raise ValueError("the points' times must increase")
        if max(p[1] for p in pts) <= 0:
            raise ValueError("at least one point needs a rate above 0")
        return pts

    def rate_at(self, t):
        """Returns the arrival rate at times t (seconds), requests per second."""
        pts = np.asarray(self.points, float)
        return np.interp(np.asarray(t, float), pts[:, 0], pts[:, 1])

    def expected_count(self, t0: float, t1: float) -> float:
        """Returns the integral of the rate over [t0, t1) (exact: trapezoids between the points)."""
        pts = np.asarray(self.points, float)
        knots = np.unique(np.concatenate([[t0, t1], pts[(pts[:, 0] > t0) & (pts[:, 0] < t1), 0]]))
        r = self.rate_at(knots)
        return float(np.sum((r[1:] + r[:-1]) / 2 * np.diff(knots)))

    @property
    def rate_rps(self) -> float:
        """The mean rate over the points' span (the last rate when there is one point)."""
        pts = np.asarray(self.points, float)
        span = pts[-1, 0] - pts[0, 0]
        return float(self.expected_count(pts[0, 0], pts[-1, 0]) / span) if span > 0 else float(pts[0, 1])

    def window(self, rng, t0, t1):
        return thinned_poisson(rng, t0, t1, float(np.max(np.asarray(self.points)[:, 1])), self.rate_at)
