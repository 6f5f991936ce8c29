"""Dynamic batching with Triton's semantics.

A batch is sent when max_batch_size requests wait (or a preferred size can be formed), or when the
OLDEST waiting request has waited max_queue_delay_ms; then it takes every waiting request up to the limit.
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator

from . import REGISTRY
from .base import MAX_QUEUE_DELAY_MS, BatchingPolicy, DispatchRule


@REGISTRY.register
class DynamicBatching(BatchingPolicy):
    policy: Literal["dynamic"] = "dynamic"
    max_batch_size: Optional[int] = Field(default=None, ge=1, le=1_000_000, description="largest batch; default: the cost model's limit")
    max_queue_delay_ms: float = Field(default=0.0, ge=0, le=MAX_QUEUE_DELAY_MS, description="longest the oldest request waits for a fuller batch")
    preferred_batch_sizes: Optional[list[int]] = Field(
        default=None, description="sizes to send as soon as they can be formed; default: max_batch_size")

    @field_validator("preferred_batch_sizes")
    @classmethod
    def _sizes(cls, v):
        if v is None:
            return v
        if not v:
            raise ValueError("give at least one size, or leave the key out")
        if any(s < 1 for s in v) or len(set(v)) != len(v):
            raise ValueError("sizes must be distinct integers >= 1")
        return sorted(v)

    def batch_limit(self, model_limit: int) -> int:
        return self.max_batch_size or model_limit

    def rule(self, model_limit: int) -> DispatchRule:
        b = self.batch_limit(model_limit)
        preferred = tuple(s for s in (self.preferred_batch_sizes or [b]) if s <= b)
        return DispatchRule(b, preferred or (b,), self.max_queue_delay_ms / 1000.0)
