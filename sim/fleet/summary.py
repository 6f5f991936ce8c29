"""Per-replica and per-group sections of the summary, and what the fleet costs; shared by every engine kind.

Each kind hands over, per replication, a ReplicaView: for every measured request the replica it was
routed to (or, behind a shared queue, served by) and its latency (NaN: never served), plus per replica
the requests completed and the busy seconds inside the measured window."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from ..stats import point_stats


@dataclass
class ReplicaView:
    replica: Callable[[], np.ndarray]    # -> int, per measured request (built only for fleets of several)
    latency_s: Callable[[], np.ndarray]  # -> float, per measured request (NaN: never served)
    requests: int           # measured requests
    completed: np.ndarray   # int, per replica: requests finished inside the window
    busy_s: np.ndarray      # float, per replica: busy seconds inside the window
    span_s: float           # length of the measured window


def replica_index(groups) -> list[tuple[int, str]]:
    """Returns (index, group name) for every replica, numbered group by group."""
    return [(i, name) for i, name in enumerate(g.name for g in groups for _ in range(g.replicas))]


def _rates(views: list[ReplicaView], members, n_replicas: int) -> dict:
    span = sum(v.span_s for v in views)
    done = sum(int(v.completed[members].sum()) for v in views)
    busy = sum(float(v.busy_s[members].sum()) for v in views)
    return {"throughput_rps": done / span if span > 0 else math.nan,
            "utilization": busy / (n_replicas * span) if span > 0 else math.nan}


def fleet_sections(groups, views: list[ReplicaView], throughput_rps: float, overall: Optional[dict] = None,
                   sketches: Optional[list] = None, requests: Optional[list] = None) -> dict:
    """Returns the summary keys `replicas`, `groups`, `fleet_cost_per_hour`, `cost_per_million_requests`
    and `cost_note` (why a cost is null, or where the prices came from). With one replica its latency is the
    fleet's (`overall`, the summary's latency statistics), so nothing per request is recomputed. Streaming
    runs give each replica's latency as a sketch (`sketches`, sim.sketch) instead of per-request views, and its
    measured requests (`requests`: served there, or routed there when a router turned some away)."""
    index = replica_index(groups)
    c = len(index)
    if sketches is not None:
        requests = requests if requests is not None else [sk.n for sk in sketches]
        lat_of = [sk.stats() for sk in sketches]
    elif c == 1 and overall is not None:
        lat_of = [{k: overall[k] for k in ("mean", "p50", "p90", "p95", "p99", "max")}]
        requests = [sum(v.requests for v in views)]
    else:
        rep = np.concatenate([v.replica() for v in views])
        lat = np.concatenate([v.latency_s() for v in views])
        order = np.argsort(rep, kind="stable")
        cuts = np.searchsorted(rep[order], np.arange(c + 1))
        per = [lat[order[cuts[i]:cuts[i + 1]]] for i in range(c)]  # replica -1 (never served) is left out
        requests = [int(x.size) for x in per]
        lat_of = [point_stats(x[np.isfinite(x)]) for x in per]
    replicas = [{"index": i, "group": name, "requests": requests[i], **_rates(views, [i], 1), "latency_s": lat_of[i]}
                for i, name in index]
    out_groups, start = {}, 0
    for g in groups:
        members = list(range(start, start + g.replicas))
        start += g.replicas
        if len(groups) == 1 and overall is not None:  # the group is the fleet
            lat = {k: overall[k] for k in ("mean", "p50", "p90", "p95", "p99", "max")}
        elif c == 1:
            lat = lat_of[0]
        elif sketches is not None:
            from ..sketch import merged

            lat = merged(sketches[i] for i in members).stats()
        else:
            chosen = np.concatenate([per[i] for i in members])
            lat = point_stats(chosen[np.isfinite(chosen)])
        out_groups[g.name] = {"replicas": g.replicas, "gpus_per_replica": g.gpus_per_replica,
                              "cost_per_hour": None if g.cost_per_hour is None else g.replicas * g.cost_per_hour,
                              "requests": sum(requests[i] for i in members), **_rates(views, members, g.replicas),
                              "latency_s": lat}
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
