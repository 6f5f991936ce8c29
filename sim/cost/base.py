"""Cost models: how long one batch step takes on one replica, as a function of batch size."""
from __future__ import annotations

import math
from typing import Callable, Literal, Optional

import numpy as np
from pydantic import Field, model_validator

from ..config import StrictModel


class StepNoise(StrictModel):
    """Multiplicative jitter per batch: step time * X with mean 1. `dist: lognormal` (the default) takes
    the coefficient of variation `cv`; `dist: exponential` has cv 1 (with batch 1, exponential service:
    M/M/c theory applies)."""

    dist: Literal["lognormal", "exponential"] = Field(default="lognormal", description="distribution of the factor")
    cv: Optional[float] = Field(default=None, gt=0, le=10, description="coefficient of variation of the step time "
                                "(lognormal; required there)")

    @model_validator(mode="after")
    def _cv(self):
        if self.dist == "lognormal" and self.cv is None:
            raise ValueError("give cv (the coefficient of variation) for lognormal noise, or dist: exponential")
        if self.dist == "exponential" and self.cv is not None:
            raise ValueError("exponential noise has cv 1 by definition: leave cv out")
        return self

    @property
    def sigma(self) -> float:
        return math.sqrt(math.log1p(self.cv ** 2))

    def factors(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Returns `n` multiplicative factors with mean 1 (and the configured coefficient of variation)."""
        if self.dist == "exponential":
            return rng.exponential(1.0, size=n)
        s = self.sigma
        return rng.lognormal(-0.5 * s * s, s, size=n)


LognormalNoise = StepNoise  # the name before exponential noise existed


class Draws:
    """Buffered draws from a vectorised sampler, handed out one at a time (cheap in the engine's loop)."""

    def __init__(self, sample: Callable[[int], np.ndarray], chunk: int = 1 << 16):
        self._sample = sample
        self._chunk = chunk
        self._buf: list[float] = []

    def next(self) -> float:
        if not self._buf:
            self._buf = self._sample(self._chunk)[::-1].tolist()
        return self._buf.pop()


class CostModel(StrictModel):
    """Base of every cost model; `kind` is its registered name."""

    noise: Optional[StepNoise] = Field(default=None, description="per-batch jitter; default: deterministic")
    overhead_ms: float = Field(default=0.0, ge=0, le=1e6, description="fixed scheduling gap added to every step "
                               "(batch formation, input assembly, launch), ms; measured by `servesim validate`")

    def is_noisy(self) -> bool:
        """Returns True when step times are random (the engine then needs a Generator)."""
        return self.noise is not None

    def jitter(self, rng: np.random.Generator) -> Optional[Callable[[int], float]]:
        """Returns f(batch_size) -> multiplicative step-time factor drawn from `rng`, or None when deterministic."""
        if self.noise is None:
            return None
        draws = Draws(lambda n: self.noise.factors(rng, n))
        return lambda k: draws.next()

    def batch_limit(self) -> int:
        """Returns the largest batch size the model can run."""
        raise NotImplementedError

    def compute_s(self, batch_size: np.ndarray | int) -> np.ndarray:
        """Returns the model's own step time in seconds for each batch size (vectorised), without overhead."""
        raise NotImplementedError

    def step_s(self, batch_size: np.ndarray | int) -> np.ndarray:
        """Returns the mean step time in seconds for each batch size: compute plus the fixed overhead."""
        return self.compute_s(batch_size) + self.overhead_ms / 1000.0

    def step_table_s(self, limit: int) -> np.ndarray:
        """Returns mean step seconds indexed by batch size 0..limit (entry 0 is 0)."""
        k = np.arange(1, limit + 1)
        return np.concatenate([[0.0], np.asarray(self.step_s(k), dtype=float)])

    def capacity_rps(self, batch_size: int) -> float:
        """Returns the saturated throughput of one replica running full batches, requests per second."""
        return batch_size / float(self.step_s(batch_size))
