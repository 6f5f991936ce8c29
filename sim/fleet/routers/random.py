"""random: each request goes to a replica drawn uniformly from the router's own stream (no state read)."""
from __future__ import annotations

from typing import Literal

import numpy as np

from . import REGISTRY
from .base import Router, Uniforms


@REGISTRY.register
class RandomRouter(Router):
    policy: Literal["random"] = "random"
    reads_state = False

    def split(self, n: int, replicas: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, replicas, size=n, dtype=np.int32)

    def pool_chooser(self, replicas, out, rng):
        u, members = Uniforms(rng), out.members
        return lambda sid, arrival_s: members[int(u.next() * len(members))]
