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

import math
from typing import Optional

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


def replica_prices(groups) -> Optional[list]:
    """Returns each replica's price per hour, replicas numbered group by group (None when any is unknown)."""
    prices = [g.cost_per_hour for g in groups for _ in range(g.replicas)]
    return None if any(p is None for p in prices) else prices


def scaling_section(scaling: list, prices: Optional[list]) -> dict:
    """Returns the summary's `autoscaler` section from each replication's scaling record: replica-hours (billed
    from request, cold starts included), the mean and peak count, cost of the run and per day (each replica at its
    group's price, `prices` per replica index; None: unknown), against a fixed fleet of the peak count (the first
    replicas in start order, which is group order)."""
    hours, means, peaks, ups, downs, decisions, costs = [], [], [], [], [], [], []
    for sc in scaling:
        end = sc["end_s"]
        billed = lives_overlap(sc["lives"], 0.0, end, serving=False)
        hours.append(billed / 3600)
        means.append(billed / end if end > 0 else math.nan)
        if prices is not None:
            costs.append(sum(lives_overlap([life], 0.0, end, serving=False) * prices[int(life[0])]
                             for life in sc["lives"]) / 3600)
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
    if prices is not None:
        out["cost"] = sum(costs) / len(costs)
        out["cost_per_day"] = out["cost"] * 86400 / end if end > 0 else None
        out["fixed_peak_cost_per_day"] = sum(prices[:max(peaks)]) * 24
    return out


def autoscaler_keys(groups, scaling: list, windows: list, busy_s: float, throughput_rps: float) -> dict:
    """Returns the summary keys of an autoscaled run (request-level, LLM, streaming alike): `autoscaler`,
    `replica_hours`, `cost_per_day`, utilisation as busy time over serving replica-time inside each replication's
    measured window [(start_s, end_s)], and the fleet's mean cost per hour and per million requests."""
    prices = replica_prices(groups)
    sec = scaling_section(scaling, prices)
    serving = sum(lives_overlap(sc["lives"], t0, t1) for sc, (t0, t1) in zip(scaling, windows))
    out = {"autoscaler": sec, "replica_hours": sec["replica_hours"], "cost_per_day": sec.get("cost_per_day"),
           "utilization": busy_s / serving if serving > 0 else math.nan}
    if prices is not None and throughput_rps:
        out["fleet_cost_per_hour"] = sec["cost"] / (sec["billed_s"] / 3600) if sec["billed_s"] > 0 else math.nan
        out["cost_per_million_requests"] = out["fleet_cost_per_hour"] / (throughput_rps * 3600) * 1e6
    return out
