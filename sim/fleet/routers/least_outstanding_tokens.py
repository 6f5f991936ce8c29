"""least_outstanding_tokens: the LLM replica with the fewest outstanding tokens: prompt tokens not yet
prefilled plus the remaining output of every request there. A real router cannot know output lengths,
so the remaining output is estimated as the workload's mean output length minus the tokens generated so
far, floored at 0; `oracle: true` uses the true lengths (a what-if bound). Ties: uniformly at random.
On request-level replicas it is join_shortest_queue."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from . import REGISTRY
from .base import Uniforms, argmin_member, argmin_random_tie
from .join_shortest_queue import JoinShortestQueue


@REGISTRY.register
class LeastOutstandingTokens(JoinShortestQueue):
    reads_tokens: ClassVar[bool] = True
    policy: Literal["least_outstanding_tokens"] = "least_outstanding_tokens"
    oracle: bool = Field(default=False, description="use the true output lengths instead of the mean estimate")

    def chooser(self, replicas, out, rng):
        if not hasattr(replicas[0], "outstanding_tokens"):
            return super().chooser(replicas, out, rng)
        u = Uniforms(rng)
        readers = [r.outstanding_tokens for r in replicas]
        return lambda sid, arrival_s: argmin_random_tie([f(arrival_s) for f in readers], u)

    def pool_chooser(self, replicas, out, rng):
        if not hasattr(replicas[0], "outstanding_tokens"):
            return super().pool_chooser(replicas, out, rng)
        u, members = Uniforms(rng), out.members
        return lambda sid, arrival_s: argmin_member(lambda i: replicas[i].outstanding_tokens(arrival_s), members, u)
