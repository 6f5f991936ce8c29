"""Affine step time h(k) = base + per_item * k: a fixed launch/weight-read cost plus work per item."""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from . import REGISTRY
from .base import CostModel


@REGISTRY.register
class AffineCost(CostModel):
    kind: Literal["affine"] = "affine"
    base_ms: float = Field(ge=0, le=1e9, description="step time independent of batch size, ms")
    per_item_ms: float = Field(ge=0, le=1e9, description="step time added per request in the batch, ms")
    max_batch_size: int = Field(default=1024, ge=1, le=1_000_000, description="largest batch the model runs (memory limit)")

    @model_validator(mode="after")
    def _positive(self):
        if self.base_ms + self.per_item_ms <= 0:
            raise ValueError("base_ms + per_item_ms must be > 0 (a step cannot take no time)")
        return self

    def batch_limit(self) -> int:
        return self.max_batch_size

    def compute_s(self, batch_size):
        return (self.base_ms + self.per_item_ms * np.asarray(batch_size, dtype=float)) / 1000.0
