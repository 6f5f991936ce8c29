"""Autoscaling (`server.autoscaler`): replicas behind the shared queue are requested and released over the run
by a policy, Kubernetes HPA-style, and billed from the moment they are requested (cold start included).

Policies (sim/fleet/autoscaling/, one module each, registered by name), one decision per `interval_s`
(schedule: at its own times):
- `target_utilization`: desired = ceil(active x utilisation over the last interval / target);
- `queue_length`: desired = ceil(requests waiting / target) (target: waiting requests per replica);
- `schedule`: [[t_s, replicas], ...], a step function of time.
Desired counts are clipped to [min_replicas, max_replicas]. A new replica serves `scale_up_delay_s` after it is
requested (model load); a lower count takes effect only once it has been wanted for `scale_down_delay_s` (the
highest count wanted over that window is kept, as HPA's stabilisation window does). Released replicas finish the
batch they run; a replica still starting is cancelled first, then idle ones, then busy ones.
"""
from __future__ import annotations

from .autoscaling import REGISTRY

# the scenario's `server.autoscaler`: any registered policy (sim.fleet.autoscaling), chosen by `policy`
Autoscaler = REGISTRY.union()


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
