"""What an LLM step scheduler sees of an engine: two planning primitives, so one scheduler drives the simulated engine
(sim/replica/continuous.py) and the real serving loop (profiler/llm_serve.py) alike."""
from __future__ import annotations

from typing import ClassVar


class LlmScheduler:
    """Plans one engine step: `plan(engine, budget_tokens)` returns (decode tokens, the engine's prefill plan).

    The engine offers:
      plan_decode() -> int         one token for every decoding sequence this step (0 when none decodes); it also
                                   makes their KV room, preempting if the cache is full
      plan_prefill(budget) -> tuple  prefill within `budget` tokens: chunked prefills continue, then waiting requests
                                   are admitted first come, first served; item 0 of the tuple is the prefill tokens
    A scheduler decides which runs, in which order and with what share of the budget; admission order, KV and
    preemption stay the engine's."""

    name: ClassVar[str] = ""
    # whether every running sequence decodes in every step, inside the step's token budget (then that budget must
    # hold max_num_seqs decode tokens: sim.batching.continuous checks it)
    decodes_every_step: ClassVar[bool] = True

    def plan(self, engine, budget_tokens: int) -> tuple[int, tuple]:
        raise NotImplementedError
