"""One LLM engine on its own: continuous (iteration-level) or static (request-level) batching.

The engines themselves are replicas (sim.replica.continuous, sim.replica.llm_static) driven by a fleet
(sim.fleet); these functions run a fleet of one, the way tests and the naive reference models use them.
"""
from __future__ import annotations

from .batching import ContinuousBatching, LlmStaticBatching
from .cost import LlmCost
from .replica.llm_log import LlmLog

__all__ = ["LlmLog", "simulate_continuous", "simulate_static"]


def _one(policy, cost, arrival_s, prompt_tokens, output_tokens, coalesce: bool = True) -> LlmLog:
    from .fleet.build import run_llm_fleet
    from .fleet.fleet import ReplicaGroup
    from .fleet.routers import SharedQueue

    return run_llm_fleet([ReplicaGroup("default", 1, cost, policy)], SharedQueue(), arrival_s, prompt_tokens,
                         output_tokens, seed=0, replication=0, coalesce=coalesce)


def simulate_continuous(policy: ContinuousBatching, cost: LlmCost, arrival_s, prompt_tokens, output_tokens,
                        coalesce: bool = True) -> LlmLog:
    """Runs continuous batching over the given requests (sorted arrivals, seconds); returns the LlmLog.
    With `coalesce` off, every engine step is its own event and step row (runs of decode steps are
    otherwise one event and one row: same results)."""
    return _one(policy, cost, arrival_s, prompt_tokens, output_tokens, coalesce)


def simulate_static(policy: LlmStaticBatching, cost: LlmCost, arrival_s, prompt_tokens, output_tokens) -> LlmLog:
    """Runs request-level static batching for an LLM (padded prefill, decode to the longest); returns the LlmLog."""
    return _one(policy, cost, arrival_s, prompt_tokens, output_tokens)
