"""schedule: [[t_s, replicas], ...], a step function of time, decided at its own times. A drop takes effect
scale_down_delay_s after its time unless the schedule rose again meanwhile (sim.fleet.controller)."""
from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from . import REGISTRY
from .base import AutoscalerPolicy


@REGISTRY.register
class Schedule(AutoscalerPolicy):
    policy: Literal["schedule"] = "schedule"

    @model_validator(mode="after")
    def _schedule(self):
        if not self.schedule:
            raise ValueError("policy schedule needs schedule: [[t_s, replicas], ...] starting at 0")
        bad = next((p for p in self.schedule if len(p) != 2 or p[1] != int(p[1])), None)
        if bad is not None:
            raise ValueError(f"schedule entry {bad}: give [t_s, replicas] with a whole number of replicas")
        times = [t for t, _ in self.schedule]
        if times[0] != 0 or any(b <= a for a, b in zip(times, times[1:])):
            raise ValueError(f"schedule times {times} must start at 0 and increase")
        if any(r < 1 for _, r in self.schedule):
            raise ValueError("every schedule entry needs at least 1 replica")
        if self.target is not None:
            raise ValueError("policy schedule takes no target")
        return self

    def pool(self, replicas):
        return max(super().pool(replicas), int(max(r for _, r in self.schedule)))

    def initial(self, replicas):
        return int(self.schedule[0][1])

    def decision_times(self):
        return [t for t, _ in self.schedule[1:]]

    def desired(self, t, active, utilization, waiting, replicas):
        value = int(self.schedule[0][1])
        for at, r in self.schedule:
            if at <= t:
                value = int(r)
        return value
