"""Static batching: wait until exactly max_batch_size requests are queued (or, optionally, a timeout)."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from . import REGISTRY
from .base import MAX_QUEUE_DELAY_MS, BatchingPolicy, DispatchRule, delay_s_from_ms


@REGISTRY.register
class StaticBatching(BatchingPolicy):
    policy: Literal["static"] = "static"
    max_batch_size: Optional[int] = Field(default=None, ge=1, le=1_000_000, description="batch size; default: the cost model's limit")
    max_queue_delay_ms: Optional[float] = Field(
        default=None, ge=0, le=MAX_QUEUE_DELAY_MS, description="send a partial batch once the oldest request waited this long; default: never")

    def batch_limit(self, model_limit: int) -> int:
        return self.max_batch_size or model_limit

    def rule(self, model_limit: int) -> DispatchRule:
        b = self.batch_limit(model_limit)
        return DispatchRule(b, (b,), delay_s_from_ms(self.max_queue_delay_ms))
