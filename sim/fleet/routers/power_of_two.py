"""power_of_two: two distinct replicas drawn at random; the one with fewer outstanding requests (the
first drawn on a tie, which is itself a uniform pick)."""
from __future__ import annotations

from typing import Literal

from . import REGISTRY
from .base import Router, Uniforms


@REGISTRY.register
class PowerOfTwo(Router):
    policy: Literal["power_of_two"] = "power_of_two"

    def chooser(self, replicas, out, rng):
        c = len(replicas)
        if c == 1:
            return lambda sid, arrival_s: 0
        u = Uniforms(rng)
        out = out.n

        def choose(sid: int, arrival_s: float) -> int:
            i = int(u.next() * c)
            j = int(u.next() * (c - 1))
            if j >= i:
                j += 1  # distinct from i
            return j if out[j] < out[i] else i
        return choose

    def pool_chooser(self, replicas, out, rng):
        u, members, n = Uniforms(rng), out.members, out.n

        def choose(sid: int, arrival_s: float) -> int:
            c = len(members)
            if c == 1:
                return members[0]
            i = int(u.next() * c)
            j = int(u.next() * (c - 1))
            if j >= i:
                j += 1
            i, j = members[i], members[j]
            return j if n[j] < n[i] else i
        return choose
