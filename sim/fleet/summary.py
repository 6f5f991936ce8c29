"""Per-replica and per-group sections of the summary, and what the fleet costs; shared by every engine kind.

Each kind hands over, per replication, a ReplicaView: for every measured request the replica it was
routed to (or, behind a shared queue, served by) and its latency (NaN: never served), plus per replica
the requests completed and the busy seconds inside the measured window."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..stats import point_stats


@dataclass
class ReplicaView:
    replica: np.ndarray     # int, per measured request
    latency_s: np.ndarray   # float, per measured request (NaN: never served)
    completed: np.ndarray   # int, per replica: requests finished inside the window
    busy_s: np.ndarray      # float, per replica: busy seconds inside the window
    span_s: float           # length of the measured window


def replica_index(groups) -> list[tuple[int, str]]:
    """Returns (index, group name) for every replica, numbered group by group."""
    return [(i, name) for i, name in enumerate(g.name for g in groups for _ in range(g.replicas))]


def _section(views: list[ReplicaView], members: np.ndarray, n_replicas: int) -> dict:
    lat = np.concatenate([v.latency_s[np.isin(v.replica, members)] for v in views])
    span = sum(v.span_s for v in views)
    done = sum(int(v.completed[members].sum()) for v in views)
    busy = sum(float(v.busy_s[members].sum()) for v in views)
    served = lat[np.isfinite(lat)]
    return {"requests": int(lat.size), "throughput_rps": done / span if span > 0 else math.nan,
            "utilization": busy / (n_replicas * span) if span > 0 else math.nan,
            "latency_s": point_stats(served)}


def fleet_sections(groups, views: list[ReplicaView], throughput_rps: float) -> dict:
    """Returns the summary keys `replicas`, `groups`, `fleet_cost_per_hour`, `cost_per_million_requests`
    and `cost_note` (why a cost is null, or where the prices came from)."""
    index = replica_index(groups)
    replicas = []
    for i, name in index:
        replicas.append({"index": i, "group": name, **_section(views, np.array([i]), 1)})
    out_groups, start = {}, 0
    for g in groups:
        members = np.arange(start, start + g.replicas)
        start += g.replicas
        out_groups[g.name] = {"replicas": g.replicas, "gpus_per_replica": g.gpus_per_replica,
                              "cost_per_hour": None if g.cost_per_hour is None else g.replicas * g.cost_per_hour,
                              **_section(views, members, g.replicas)}
    unknown = [g for g in groups if g.cost_per_hour is None]
    if unknown:
        cost, per_million = None, None
        note = "; ".join(f"{g.name}: {g.price_note}" for g in unknown)
    else:
        cost = float(sum(g.replicas * g.cost_per_hour for g in groups))
        per_million = cost / (throughput_rps * 3600) * 1e6 if throughput_rps > 0 else None
        note = "; ".join(f"{g.name}: {g.price_note}" for g in groups)
    return {"replicas": replicas, "groups": out_groups, "fleet_cost_per_hour": cost,
            "cost_per_million_requests": per_million, "cost_note": note}
