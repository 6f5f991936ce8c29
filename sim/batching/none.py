"""No batching: each request runs alone as soon as a replica is free (batch size 1)."""
from __future__ import annotations

from typing import Literal

from . import REGISTRY
from .base import BatchingPolicy, DispatchRule


@REGISTRY.register
class NoBatching(BatchingPolicy):
    policy: Literal["none"] = "none"

    def batch_limit(self, model_limit: int) -> int:
        return 1

    def rule(self, model_limit: int) -> DispatchRule:
        return DispatchRule(1, (1,), 0.0)
