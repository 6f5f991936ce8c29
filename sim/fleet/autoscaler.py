"""Autoscaling (`server.autoscaler`): replicas behind the shared queue are requested and released over the run
by a policy, Kubernetes HPA-style, and billed from the moment they are requested (cold start included).

Policies, one decision per `interval_s` (schedule: at its own times):
- `target_utilization`: desired = ceil(active x utilisation over the last interval / target);
- `queue_length`: desired = ceil(requests waiting / target) (target: waiting requests per replica);
- `schedule`: [[t_s, replicas], ...], a step function of time.
Desired counts are clipped to [min_replicas, max_replicas]. A new replica serves `scale_up_delay_s` after it is
requested (model load); a lower count takes effect only once it has been wanted for `scale_down_delay_s` (the
highest count wanted over that window is kept, as HPA's stabilisation window does). Released replicas finish the
batch they run; a replica still starting is cancelled first, then idle ones, then busy ones.
"""
from __future__ import annotations

import math
from typing import Literal, Optional

from pydantic import Field, model_validator

from ..config import StrictModel


class Autoscaler(StrictModel):
    policy: Literal["target_utilization", "queue_length", "schedule"] = Field(description="how the replica count "
                                                                                "is chosen")
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
    def _consistent(self):
        if self.policy == "schedule":
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
        else:
            if self.target is None:
                raise ValueError(f"policy {self.policy} needs a target")
            if self.policy == "target_utilization" and self.target > 1:
                raise ValueError(f"target {self.target:g}: a utilisation target lies in (0, 1]")
            if self.schedule is not None:
                raise ValueError(f"policy {self.policy} takes no schedule")
        if self.max_replicas is not None and self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) is below min_replicas ({self.min_replicas})")
        return self

    def pool(self, replicas: int) -> int:
        """Returns the most replicas that can ever serve (max_replicas, default server.replicas)."""
        top = self.max_replicas if self.max_replicas is not None else replicas
        if self.schedule:
            top = max(top, int(max(r for _, r in self.schedule)))
        return top

    def initial(self, replicas: int) -> int:
        if self.policy == "schedule":
            return int(self.schedule[0][1])
        return min(max(self.initial_replicas or self.min_replicas, self.min_replicas), self.pool(replicas))

    def desired(self, active: int, utilization: float, waiting: int, replicas: int) -> int:
        """Returns the replica count this policy wants now (metric policies), clipped to its bounds."""
        if self.policy == "target_utilization":
            want = math.ceil(active * utilization / self.target - 1e-9)
        else:
            want = math.ceil(waiting / self.target - 1e-9)
        return min(max(want, self.min_replicas), self.pool(replicas))

    def scheduled(self, t: float) -> int:
        """Returns the schedule's count at time t."""
        value = int(self.schedule[0][1])
        for at, r in self.schedule:
            if at <= t:
                value = int(r)
        return value


def lives_overlap(lives: list, t0: float, t1: float, serving: bool = True) -> float:
    """Returns replica-seconds inside [t0, t1] of the lives ([replica, requested_s, serving_s, released_s]):
    serving time (from serving_s), or billed time (from requested_s)."""
    total = 0.0
    for _, req, serve, rel in lives:
        start = serve if serving else req
        if start != start:  # cancelled while starting: never served
            continue
        total += max(0.0, min(rel, t1) - max(start, t0))
    return total


def scaling_section(scaling: list, price_per_hour, windows: list) -> dict:
    """Returns the summary's `autoscaler` section from each replication's scaling record and measured window
    [(start_s, end_s)]: replica-hours (billed from request, cold starts included), the mean and peak count,
    cost of the run and per day, against a fixed fleet of the peak count."""
    hours, means, peaks, ups, downs, decisions = [], [], [], [], [], []
    for sc in scaling:
        end = sc["end_s"]
        billed = lives_overlap(sc["lives"], 0.0, end, serving=False)
        hours.append(billed / 3600)
        means.append(billed / end if end > 0 else math.nan)
        edges = sorted([(req, 1) for _, req, _, _ in sc["lives"]] + [(rel, -1) for _, _, _, rel in sc["lives"]],
                       key=lambda e: (e[0], e[1]))
        level = peak = 0
        for _, step in edges:
            level += step
            peak = max(peak, level)
        peaks.append(peak)
        ups.append(sc["scale_ups"])
        downs.append(sc["scale_downs"])
        decisions.append(sc["decisions"])
    end = sum(sc["end_s"] for sc in scaling) / len(scaling)
    rh = sum(hours) / len(hours)
    out = {"replica_hours": rh, "mean_replicas": sum(means) / len(means), "peak_replicas": max(peaks),
           "scale_ups": sum(ups) / len(ups), "scale_downs": sum(downs) / len(downs),
           "decisions": sum(decisions) / len(decisions), "billed_s": end}
    if price_per_hour is not None:
        out["cost"] = rh * price_per_hour
        out["cost_per_day"] = rh * price_per_hour * 86400 / end if end > 0 else None
        out["fixed_peak_cost_per_day"] = max(peaks) * price_per_hour * 24
    return out
