"""What every autoscaler policy is: the bounds and delays every policy shares, and `desired`, the count it
wants at a decision. A metric policy reads what the pool observes (`reads`); a schedule decides at its own
times (`decision_times`)."""
from __future__ import annotations

import math
from typing import ClassVar, Optional

from pydantic import Field, model_validator

from ...config import StrictModel


class AutoscalerPolicy(StrictModel):
    """Base of every autoscaler policy config; `policy` is its registered name."""

    # what a decision reads from the pool: "utilization" (0..1 over the last interval) and/or "waiting" (requests);
    # empty: nothing (the policy decides from the time alone)
    reads: ClassVar[frozenset] = frozenset()

    target: Optional[float] = Field(default=None, gt=0, le=1e6, description="target_utilization: the utilisation to "
                                    "keep (0 < x <= 1); queue_length: waiting requests per replica")
    min_replicas: int = Field(default=1, ge=1, le=100_000, description="fewest replicas; default 1")
    max_replicas: Optional[int] = Field(default=None, ge=1, le=100_000, description="most replicas; default: "
                                        "server.replicas")
    initial_replicas: Optional[int] = Field(default=None, ge=1, le=100_000, description="replicas serving at t = 0 "
                                            "(already warm); default: min_replicas (schedule: its value at 0)")
    interval_s: float = Field(default=60.0, gt=0, le=1e6, description="time between decisions; default 60")
    scale_up_delay_s: float = Field(default=0.0, ge=0, le=1e6, description="from request to serving (cold start: "
                                    "model load), billed; default 0")
    scale_down_delay_s: float = Field(default=0.0, ge=0, le=1e6, description="how long a lower count must be "
                                      "wanted before replicas are released; default 0")
    schedule: Optional[list[list[float]]] = Field(default=None, min_length=1, description="schedule: "
                                                  "[[t_s, replicas], ...] from t = 0, times increasing")

    @model_validator(mode="after")
    def _bounds(self):
        if self.max_replicas is not None and self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) is below min_replicas ({self.min_replicas})")
        return self

    def needs_target(self) -> None:
        """Raises the schema's message when a metric policy has no target or is given a schedule."""
        if self.target is None:
            raise ValueError(f"policy {self.policy} needs a target")
        if self.schedule is not None:
            raise ValueError(f"policy {self.policy} takes no schedule")

    def pool(self, replicas: int) -> int:
        """Returns the most replicas that can ever serve (max_replicas, default server.replicas)."""
        return self.max_replicas if self.max_replicas is not None else replicas

    def initial(self, replicas: int) -> int:
        """Returns the replicas serving (warm) at t = 0."""
        return min(max(self.initial_replicas or self.min_replicas, self.min_replicas), self.pool(replicas))

    def decision_times(self) -> Optional[list]:
        """Returns the times of every decision after t = 0 (seconds), or None: one every interval_s."""
        return None

    def desired(self, t: float, active: int, utilization: float, waiting: int, replicas: int) -> int:
        """Returns the replica count wanted at t, given `active` replicas serving or starting, the pool's
        utilisation and waiting requests (what `reads` names), and server.replicas."""
        raise NotImplementedError

    def clip(self, want: int, replicas: int) -> int:
        """Returns `want` within [min_replicas, pool size]."""
        return min(max(want, self.min_replicas), self.pool(replicas))


def ceil_ratio(x: float, target: float) -> int:
    """Returns ceil(x / target), forgiving rounding just above a whole number."""
    return math.ceil(x / target - 1e-9)
