"""queue_length: desired = ceil(requests waiting / target), the target being waiting requests per replica."""
from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from . import REGISTRY
from .base import AutoscalerPolicy, ceil_ratio


@REGISTRY.register
class QueueLength(AutoscalerPolicy):
    policy: Literal["queue_length"] = "queue_length"
    reads = frozenset({"waiting"})

    @model_validator(mode="after")
    def _target(self):
        self.needs_target()
        return self

    def desired(self, t, active, utilization, waiting, replicas):
        return self.clip(ceil_ratio(waiting, self.target), replicas)
