"""decode_first (vLLM's default with chunked prefill): every running sequence decodes, then prefill takes the
leftover budget."""
from __future__ import annotations

from . import register
from .base import LlmScheduler


@register
class DecodeFirst(LlmScheduler):
    name = "decode_first"

    def plan(self, engine, budget_tokens: int) -> tuple[int, tuple]:
        dec = engine.plan_decode()
        return dec, engine.plan_prefill(budget_tokens - dec)
