"""round_robin: request i goes to replica i mod c (no state read)."""
from __future__ import annotations

from typing import Literal

import numpy as np

from . import REGISTRY
from .base import Router


@REGISTRY.register
class RoundRobin(Router):
    policy: Literal["round_robin"] = "round_robin"
    reads_state = False

    def split(self, n: int, replicas: int, rng: np.random.Generator) -> np.ndarray:
        return (np.arange(n, dtype=np.int64) % replicas).astype(np.int32)

    def pool_chooser(self, replicas, out, rng):
        members, turn = out.members, [0]

        def choose(sid: int, arrival_s: float) -> int:  # the next member after the last one chosen
            i = turn[0]
            j = next((m for m in members if m >= i), members[0])
            turn[0] = j + 1
            return j
        return choose
