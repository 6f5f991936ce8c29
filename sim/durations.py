"""Time distributions for things that are not GPU steps: client think times, CPU pre/post-processing.

Written in milliseconds in YAML, as a plain number (every draw equals it) or a mapping with `dist`:

    fixed {value_ms} | exponential {mean_ms} | uniform {low_ms, high_ms} | lognormal {mean_ms, cv}

`sample_s(rng, n)` returns seconds. `Sampler` hands out draws one at a time from blocks (one numpy call
per block, so a per-request loop pays a list pop, not a Generator call).
"""
from __future__ import annotations

import math
from typing import Annotated, Literal, Union

import numpy as np
from pydantic import Field, model_validator

from .config import StrictModel

MAX_MS = 1e9  # about 11.6 days


class _Duration(StrictModel):
    def sample_s(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Returns `n` independent draws in seconds."""
        raise NotImplementedError

    @property
    def mean_s(self) -> float:
        """Returns the mean in seconds."""
        raise NotImplementedError


class FixedDuration(_Duration):
    dist: Literal["fixed"] = "fixed"
    value_ms: float = Field(ge=0, le=MAX_MS, description="every draw, milliseconds")

    def sample_s(self, rng, n):
        return np.full(n, self.value_ms / 1000)

    @property
    def mean_s(self):
        return self.value_ms / 1000

    @property
    def cv(self):
        return 0.0


class ExponentialDuration(_Duration):
    dist: Literal["exponential"] = "exponential"
    mean_ms: float = Field(gt=0, le=MAX_MS, description="mean, milliseconds")

    def sample_s(self, rng, n):
        return rng.exponential(self.mean_ms / 1000, size=n)

    @property
    def mean_s(self):
        return self.mean_ms / 1000

    @property
    def cv(self):
        return 1.0


class UniformDuration(_Duration):
    dist: Literal["uniform"] = "uniform"
    low_ms: float = Field(ge=0, le=MAX_MS, description="smallest draw, milliseconds")
    high_ms: float = Field(ge=0, le=MAX_MS, description="largest draw, milliseconds")

    @model_validator(mode="after")
    def _order(self):
        if self.high_ms < self.low_ms:
            raise ValueError(f"high_ms ({self.high_ms:g}) must be >= low_ms ({self.low_ms:g})")
        return self

    def sample_s(self, rng, n):
        return rng.uniform(self.low_ms / 1000, self.high_ms / 1000, size=n)

    @property
    def mean_s(self):
        return (self.low_ms + self.high_ms) / 2000

    @property
    def cv(self):
        m = (self.low_ms + self.high_ms) / 2
        return (self.high_ms - self.low_ms) / math.sqrt(12) / m if m > 0 else 0.0


class LognormalDuration(_Duration):
    dist: Literal["lognormal"] = "lognormal"
    mean_ms: float = Field(gt=0, le=MAX_MS, description="mean, milliseconds")
    cv: float = Field(gt=0, le=10, description="coefficient of variation (sd / mean)")

    def sample_s(self, rng, n):
        s = math.sqrt(math.log1p(self.cv ** 2))
        return rng.lognormal(math.log(self.mean_ms / 1000) - 0.5 * s * s, s, size=n)

    @property
    def mean_s(self):
        return self.mean_ms / 1000


DurationDist = Annotated[Union[FixedDuration, ExponentialDuration, UniformDuration, LognormalDuration],
                         Field(discriminator="dist")]
NAMES = ("fixed", "exponential", "uniform", "lognormal")


def as_duration(value) -> _Duration:
    """Returns the distribution a YAML value describes: a plain number of milliseconds is `fixed`."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return FixedDuration(value_ms=value)
    return value


def number_is_fixed(value):
    """Pydantic 'before' hook: lets a plain number stand for {dist: fixed, value_ms: number}."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not 0 <= value <= MAX_MS:
            raise ValueError(f"a duration in milliseconds must be between 0 and {MAX_MS:g}")
        return {"dist": "fixed", "value_ms": value}
    return value


class Sampler:
    """Draws one duration (seconds) at a time from `dist`, `block` draws per numpy call (the draws depend
    on the block size, so it is fixed here for reproducibility)."""

    def __init__(self, dist: _Duration, rng: np.random.Generator, block: int = 4096):
        self.dist, self.rng, self.block = dist, rng, block
        self.fixed = dist.mean_s if isinstance(dist, FixedDuration) else None
        self.buf: list = []

    def __call__(self) -> float:
        if self.fixed is not None:
            return self.fixed
        if not self.buf:
            self.buf = self.dist.sample_s(self.rng, self.block)[::-1].tolist()
        return self.buf.pop()
