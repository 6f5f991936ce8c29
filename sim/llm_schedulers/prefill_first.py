"""prefill_first (vLLM without chunked prefill, its V0 default): a step with prefill work runs prefill only, with the
whole budget; decodes run in the steps where no prefill can progress."""
from __future__ import annotations

from . import register
from .base import LlmScheduler


@register
class PrefillFirst(LlmScheduler):
    name = "prefill_first"
    decodes_every_step = False

    def plan(self, engine, budget_tokens: int) -> tuple[int, tuple]:
        pre = engine.plan_prefill(budget_tokens)
        return (engine.plan_decode() if pre[0] == 0 else 0), pre
