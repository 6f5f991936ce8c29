"""Static (request-level) batching for LLMs, as served before continuous batching.

A batch forms like request-level static batching (max_batch_size requests, or the oldest request's
max_queue_delay_ms), is prefilled together with prompts padded to the longest, then decodes every slot
until its longest output finishes; nobody joins a running batch. Each slot reserves KV cache for the
batch's longest prompt plus longest output, so a batch is cut short when kv_cache_tokens would not hold it.
"""
from __future__ import annotations

from typing import ClassVar, Literal, Optional

import numpy as np
from pydantic import Field

from . import REGISTRY
from .base import MAX_QUEUE_DELAY_MS, BatchingPolicy, DispatchRule, delay_s_from_ms


@REGISTRY.register
class LlmStaticBatching(BatchingPolicy):
    is_llm: ClassVar[bool] = True
    policy: Literal["llm_static"] = "llm_static"
    max_batch_size: int = Field(default=32, ge=1, le=100_000, description="requests per batch")
    max_queue_delay_ms: Optional[float] = Field(default=None, ge=0, le=MAX_QUEUE_DELAY_MS, description="send a partial batch after this; "
                                                "default: wait for a full batch")
    kv_cache_tokens: int = Field(default=1 << 20, ge=1, le=10 ** 10, description="KV cache capacity in tokens")

    def fits(self, prompt_tokens, output_tokens) -> np.ndarray:
        """Returns, per request, whether it fits the KV cache alone (prompt + output tokens); the engine
        refuses the others."""
        return np.asarray(prompt_tokens, np.int64) + np.asarray(output_tokens, np.int64) <= self.kv_cache_tokens

    def batch_limit(self, model_limit: int) -> int:
        return self.max_batch_size

    def rule(self, model_limit: int) -> DispatchRule:
        return DispatchRule(self.max_batch_size, (self.max_batch_size,), delay_s_from_ms(self.max_queue_delay_ms))
