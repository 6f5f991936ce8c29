"""target_utilization: desired = ceil(active x utilisation over the last interval / target), as Kubernetes' HPA
does with CPU; for LLM engines the utilisation is the KV cache's use (busy time is always full)."""
from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from . import REGISTRY
from .base import AutoscalerPolicy, ceil_ratio


@REGISTRY.register
class TargetUtilization(AutoscalerPolicy):
    policy: Literal["target_utilization"] = "target_utilization"
    reads = frozenset({"utilization"})

    @model_validator(mode="after")
    def _target(self):
        self.needs_target()
        if self.target > 1:
            raise ValueError(f"target {self.target:g}: a utilisation target lies in (0, 1]")
        return self

    def desired(self, t, active, utilization, waiting, replicas):
        return self.clip(ceil_ratio(active * utilization, self.target), replicas)
