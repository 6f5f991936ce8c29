"""The summary sections every engine kind and sink shares, registered once: the closed loop, request classes, the
load definition, the fleet (replicas, groups, cost) and the autoscaler.

Each builder (sim.metrics for request-level records, sim.llm_metrics for LLM runs, sim.stream_summary for
request-level streams) computes its own core keys, then describes the run as a `RunView` and calls
`add_sections`: every registered section that applies adds its keys, in registration order. A section reads only
the view, so a new engine kind or sink gets every section by filling it in.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

# what offered_load and stable mean where there is no offered rate, or where the excess is turned away
LOAD_CLOSED = ("closed loop: no offered rate (offered_rps null); offered_load is the throughput the clients achieved "
               "over the fleet's full-batch capacity; stable holds a priori (at most clients.count requests are in "
               "the system) and the growth test confirms it")
LOAD_FINITE = ("finite queue: offered_load is the offered rate over full-batch capacity and may exceed 1; stable holds "
               "a priori because the queue limit or timeout turns the excess away (see rejected, timed_out)")


@dataclass
class RunView:
    """What the shared sections read of a run, per replication where a list."""

    scenario: Any
    throughput_rps: float
    latency: dict                     # the fleet's latency statistics (E2E for LLM engines)
    fleet_views: list                 # sim.fleet.summary.ReplicaView
    windows: list                     # (start_s, end_s) of each measured window
    busy_s: float                     # busy seconds inside the windows, every replica
    limited: bool                     # a queue limit or timeout turns requests away
    scalings: Optional[list] = None   # the autoscaler's records (sim.fleet.scaling)
    clients: Optional[list] = None    # closed loop: (sent_s, cycle_end_s, think_s)
    class_reps: Optional[list] = None  # classes: what sim.classes.class_sections reads
    class_targets: Optional[Callable] = None  # the SLO targets of a class
    sketches: Optional[list] = None   # streaming: each replica's latency sketch ...
    requests: Optional[list] = None   # ... and its measured requests


SECTIONS: list[tuple[str, Callable[[RunView], dict]]] = []


def section(name: str):
    """Registers a section builder: `build(view) -> dict of summary keys` ({} when it does not apply)."""
    def wrap(fn):
        SECTIONS.append((name, fn))
        return fn
    return wrap


def add_sections(summary: dict, view: RunView) -> None:
    """Adds every registered section's keys to `summary`."""
    for _, build in SECTIONS:
        summary.update(build(view))


@section("closed_loop")
def _closed_loop(view: RunView) -> dict:
    if view.clients is None:
        return {}
    from .clients import law_check

    return {"closed_loop": law_check(view.scenario.workload.clients, view.clients, view.scenario.warmup_s)}


@section("classes")
def _classes(view: RunView) -> dict:
    if view.class_reps is None or not view.scenario.workload.classes:
        return {}
    from .classes import class_sections

    return {"classes": class_sections(view.scenario.workload.classes, view.class_reps, view.class_targets)}


@section("load_definition")
def _load_definition(view: RunView) -> dict:
    if view.scenario.workload.clients is not None:
        return {"load_definition": LOAD_CLOSED}
    return {"load_definition": LOAD_FINITE} if view.limited else {}


@section("fleet")
def _fleet(view: RunView) -> dict:
    from .fleet.summary import fleet_sections

    return fleet_sections(view.scenario.fleet_groups, view.fleet_views, view.throughput_rps, view.latency,
                          sketches=view.sketches, requests=view.requests)


@section("autoscaler")
def _autoscaler(view: RunView) -> dict:
    if not view.scalings:
        return {}
    from .fleet.autoscaler import autoscaler_keys

    return autoscaler_keys(view.scenario.fleet_groups, view.scalings, view.windows, view.busy_s, view.throughput_rps)
