"""Continuous (iteration-level) batching for LLMs, as vLLM schedules it.

Every engine step decodes one token for each running sequence and spends the rest of the token budget
(max_num_batched_tokens) on prefill: with chunked prefill, a long prompt is split across steps
(at most chunk_size tokens of one sequence per step); without it, a prompt runs whole in one step.
Sequences are admitted first come, first served while fewer than max_num_seqs run and the KV cache
(kv_cache_tokens, in blocks of block_size) has room; when a running sequence needs a new block and none
is free, the most recently admitted sequence is preempted and later recomputed from scratch.
"""
from __future__ import annotations

from typing import ClassVar, Literal, Optional

import numpy as np
from pydantic import Field, field_validator, model_validator

from . import REGISTRY
from .base import BatchingPolicy


@REGISTRY.register
class ContinuousBatching(BatchingPolicy):
    is_llm: ClassVar[bool] = True
    policy: Literal["continuous"] = "continuous"
    max_num_seqs: int = Field(default=256, ge=1, le=100_000, description="most sequences running at once")
    max_num_batched_tokens: int = Field(default=8192, ge=1, le=10_000_000, description="token budget per step")
    chunked_prefill: bool = Field(default=True, description="split long prompts across steps")
    chunk_size: Optional[int] = Field(default=None, ge=1, le=10_000_000,
                                      description="most prefill tokens of one sequence per step; default: the budget")
    order: str = Field(
        default="decode_first", description="the step scheduler (sim/llm_schedulers/, registered by name): "
        "decode_first: decodes, then prefill in the leftover budget; prefill_first: a step with prefill work runs "
        "prefill only", json_schema_extra={"choices_from": "sim.llm_schedulers:names"})
    kv_cache_tokens: int = Field(default=1 << 20, ge=1, le=10 ** 10, description="KV cache capacity in tokens")
    block_size: int = Field(default=16, ge=1, le=4096, description="KV cache block size in tokens")

    @field_validator("order")
    @classmethod
    def _scheduler(cls, v: str) -> str:
        from ..llm_schedulers import SCHEDULERS, names

        if v not in SCHEDULERS:
            raise ValueError(f"unknown LLM scheduler; allowed: {', '.join(names())}")
        return v

    @model_validator(mode="after")
    def _budget(self):
        if self.kv_cache_tokens < self.block_size:
            raise ValueError(f"kv_cache_tokens ({self.kv_cache_tokens}) is below one block of block_size "
                             f"({self.block_size}): the cache could hold no sequence")
        if self.scheduler().decodes_every_step and self.max_num_batched_tokens < self.max_num_seqs:
            raise ValueError(f"max_num_batched_tokens ({self.max_num_batched_tokens}) must be >= max_num_seqs "
                             f"({self.max_num_seqs}) so every running sequence can decode each step")
        return self

    def scheduler(self):
        """Returns a new step scheduler of this policy's `order` (sim.llm_schedulers)."""
        from ..llm_schedulers import scheduler

        return scheduler(self.order)

    @property
    def kv_blocks(self) -> int:
        return self.kv_cache_tokens // self.block_size

    @property
    def chunk(self) -> int:
        return min(self.chunk_size or self.max_num_batched_tokens, self.max_num_batched_tokens)

    def fits(self, prompt_tokens, output_tokens) -> np.ndarray:
        """Returns, per request, whether it can ever run (vLLM refuses the others on arrival): its KV at
        its last step (prompt + output - 1 tokens, in whole blocks) within the whole cache, and, without
        chunked prefill, a (re)prefill of that length within one step's token budget."""
        last_kv = np.asarray(prompt_tokens, np.int64) + np.asarray(output_tokens, np.int64) - 1
        ok = -(-last_kv // self.block_size) <= self.kv_blocks
        return ok if self.chunked_prefill else ok & (last_kv <= self.max_num_batched_tokens)

    def batch_limit(self, model_limit: int) -> int:
        return self.max_num_seqs

    def rule(self, model_limit: int):
        raise TypeError("continuous batching is iteration-level; it has no request-level dispatch rule")
