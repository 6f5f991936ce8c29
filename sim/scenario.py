"""Scenario YAML -> validated, frozen config.

Every field, its default and its allowed range is documented in docs/scenario-reference.md, generated
from these models and the registered classes (`python -m sim.docgen --write`; a test fails when it is
stale). In short:

    name, seed (0), requests (100000; a trace replays whole) | duration_s, warmup_s (0), replications (1)
    workload: {arrival: {process: poisson|constant|gamma|trace, ...}, prompt_tokens, output_tokens (LLM)}
    cost_model: {kind: affine|table|roofline|profile|llm|llm_roofline, ...}
    server: {replicas: 1, batching: {policy: none|static|dynamic|continuous|llm_static, ...},
             router: {policy: shared_queue|round_robin|random|join_shortest_queue|power_of_two|
                      least_outstanding_tokens|least_kv}, gpus_per_replica, cost_per_hour,
             groups: [{name, replicas, cost_model, batching, gpus_per_replica, cost_per_hour}]}
    slo: {latency_p99_ms, ... | ttft_p99_ms, tpot_p99_ms} (default none); outputs: {records: true, plots: true}
"""
import math
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, Optional, Union, get_args, get_origin

import numpy as np
import yaml
from pydantic import BaseModel, Field, PrivateAttr, ValidationError, field_validator

from . import arrivals, batching, cost, durations, sizes
from .fleet import routers
from .batching.base import MAX_QUEUE_DELAY_MS
from .clients import Clients
from .durations import DurationDist, number_is_fixed
from .stages import Stage
from . import plugins as _plugins

_plugins.load()  # plugins register their pieces before the schema's unions are built (docs/extending.md)
from .fleet.autoscaler import Autoscaler  # noqa: E402
from .config import StrictModel, load_yaml, read_yaml_mapping
from .errors import ScenarioError, shown

DEFAULT_REQUESTS = 100_000
# Memory is ~150-200 bytes per simulated request: keep one run well inside a 24 GiB machine.
MAX_TOTAL_REQUESTS = 100_000_000
RECORDS_MAX = 20_000_000          # beyond this many requests a run streams (outputs.streaming) unless told not to
MAX_STREAMING_REQUESTS = 2_000_000_000
_TAGS = ("process", "policy", "kind", "dist")

ArrivalSpec = arrivals.REGISTRY.union()
BatchingSpec = batching.REGISTRY.union()
CostSpec = cost.REGISTRY.union()
RouterSpec = routers.REGISTRY.union()


class Workload(StrictModel):
    arrival: Optional[ArrivalSpec] = Field(default=None, description="arrival process (open loop); give it or "
                                           "clients")
    clients: Optional[Clients] = Field(default=None, description="closed-loop clients instead of an arrival "
                                       "process: each sends its next request when the last is answered, plus a "
                                       "think time")
    prompt_tokens: Optional[sizes.TokenDist] = Field(default=None, description="LLM prompt length distribution")
    output_tokens: Optional[sizes.TokenDist] = Field(default=None, description="LLM output length distribution")
    token_correlation: float = Field(default=0.0, ge=-1, le=1, description="Gaussian-copula correlation of the two")
    tokens_from_trace: bool = Field(default=False, description="take prompt/output tokens from the trace file")
    classes: Optional[list["RequestClass"]] = Field(default=None, description="request classes, each request drawn "
                                                    "by share; default: one class")
    client_timeout_ms: Optional[float] = Field(default=None, gt=0, le=MAX_QUEUE_DELAY_MS, description="LLM: a client "
                                               "still waiting for admission this long gives up (timed out); default: "
                                               "never")

    @property
    def has_tokens(self) -> bool:
        if self.tokens_from_trace or (self.prompt_tokens is not None and self.output_tokens is not None):
            return True
        return bool(self.classes) and all((c.prompt_tokens or self.prompt_tokens) is not None
                                          and (c.output_tokens or self.output_tokens) is not None for c in self.classes)

    @property
    def priority_levels(self) -> int:
        """Returns how many distinct priorities the request classes have (1 without classes)."""
        return len({c.priority for c in self.classes}) if self.classes else 1


class Group(StrictModel):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$",
                      description="names the group in outputs (letters, digits, _ . -)")
    replicas: int = Field(ge=1, le=100_000, description="identical replicas in this group")
    cost_model: Optional[CostSpec] = Field(default=None, description="this group's step time; default: the "
                                           "scenario's cost_model")
    batching: Optional[BatchingSpec] = Field(default=None, description="this group's batching policy; default: "
                                             "server.batching")
    gpus_per_replica: int = Field(default=1, ge=1, le=1024, description="GPUs one replica uses (prices it)")
    cost_per_hour: Optional[float] = Field(default=None, ge=0, le=1e6, description="USD per replica-hour; default: "
                                           "gpus_per_replica x the GPU's on-demand price (sim.prices)")


class QueuePolicy(StrictModel):
    max_queue_size: Optional[int] = Field(default=None, ge=0, le=10 ** 9, description="most requests waiting in a "
                                          "replica's queue (not those being served), as Triton's max_queue_size; an "
                                          "arrival finding it full is rejected; default: unlimited")
    max_waiting: Optional[int] = Field(default=None, ge=0, le=10 ** 9, description="LLM (continuous): most sequences "
                                       "waiting for admission; an arrival finding that many is rejected; default: "
                                       "unlimited")
    timeout_ms: Optional[float] = Field(default=None, gt=0, le=MAX_QUEUE_DELAY_MS, description="a request still "
                                        "waiting this long leaves the queue unserved (timed out); default: none")
    timeout_action: Literal["reject", "delay"] = Field(default="reject", description="what a timeout does: reject "
                                                       "(Triton's default) drops the request; delay keeps it, behind "
                                                       "every request of its priority and above that has not timed out")


class Server(StrictModel):
    replicas: int = Field(default=1, ge=1, le=100_000, description="identical replicas (not with groups)")
    batching: BatchingSpec = Field(default_factory=batching.DynamicBatching,
                                   description="batching policy; default: dynamic with the cost model's batch limit "
                                   "and no queue delay")
    router: RouterSpec = Field(default_factory=routers.SharedQueue,
                               description="which replica a request joins; default: shared_queue (one FCFS queue "
                               "that every replica takes from)")
    queue: QueuePolicy = Field(default_factory=QueuePolicy, description="queue limits; default: unlimited")
    groups: Optional[list[Group]] = Field(default=None, min_length=1, description="heterogeneous replicas behind one "
                                          "router, instead of replicas; default: none")
    gpus_per_replica: int = Field(default=1, ge=1, le=1024, description="GPUs one replica uses (prices it; not with "
                                  "groups)")
    preprocess: Optional[Stage] = Field(default=None, description="CPU workers every request passes before the "
                                        "batcher (decoding, resizing, tokenizing), first come first served; default: "
                                        "none")
    postprocess: Optional[Stage] = Field(default=None, description="CPU workers every answered request passes after "
                                         "the GPU, in completion order; default: none")
    pipeline_latency_ms: Optional[DurationDist] = Field(default=None, description="latency that occupies nothing "
                                                        "(overlapped copies, the network), added to every answer: a "
                                                        "number of milliseconds or a distribution; default 0")
    autoscaler: Optional[Autoscaler] = Field(default=None, description="change the number of replicas over the run "
                                             "(behind the shared queue or any router); default: none (server.replicas serve "
                                             "throughout)")
    instances_per_gpu: int = Field(default=1, ge=1, le=64, description="model instances on each replica's GPU (Triton's "
                                   "instance group count), each forming batches from the shared queue; default 1")
    instance_contention: Optional[list[float]] = Field(default=None, min_length=1, max_length=64, description="how much "
                                                       "slower a step runs while k instances run at once, one entry per "
                                                       "k = 1..instances_per_gpu: [1, 1.6, 2.3]; default: k (the GPU's "
                                                       "throughput is shared)")

    _pipeline_number = field_validator("pipeline_latency_ms", mode="before")(number_is_fixed)
    cost_per_hour: Optional[float] = Field(default=None, ge=0, le=1e6, description="USD per replica-hour; default: "
                                           "gpus_per_replica x the GPU's on-demand price (sim.prices); not with groups")


class Slo(StrictModel):
    ttft_p99_ms: Optional[float] = Field(default=None, gt=0, description="LLM: time to first token target")
    tpot_p99_ms: Optional[float] = Field(default=None, gt=0, description="LLM: time per output token target")
    latency_mean_ms: Optional[float] = Field(default=None, gt=0, description="mean latency target")
    latency_p50_ms: Optional[float] = Field(default=None, gt=0, description="median latency target")
    latency_p90_ms: Optional[float] = Field(default=None, gt=0, description="90th percentile latency target")
    latency_p95_ms: Optional[float] = Field(default=None, gt=0, description="95th percentile latency target")
    latency_p99_ms: Optional[float] = Field(default=None, gt=0, description="99th percentile latency target")

    def targets_ms(self) -> dict[str, float]:
        """Returns {'mean': ms, 'p99': ms, ...} for the targets given."""
        out = {}
        for q in ("mean", "p50", "p90", "p95", "p99"):
            v = getattr(self, f"latency_{q}_ms")
            if v is not None:
                out[q] = v
        return out


class RequestClass(StrictModel):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$",
                      description="names the class in outputs (letters, digits, _ . -)")
    share: float = Field(gt=0, le=1, description="fraction of requests in this class; shares sum to 1")
    priority: int = Field(default=1, ge=1, le=1000, description="1 is the highest (as in Triton); a batch takes "
                          "higher priorities first, never interrupting a running one; default 1")
    slo: Optional[Slo] = Field(default=None, description="this class's targets; default: the scenario's slo")
    prompt_tokens: Optional[sizes.TokenDist] = Field(default=None, description="LLM: this class's prompt lengths; "
                                                     "default: workload.prompt_tokens")
    output_tokens: Optional[sizes.TokenDist] = Field(default=None, description="LLM: this class's output lengths; "
                                                     "default: workload.output_tokens")


class PlanSpec(StrictModel):
    target_rate_rps: Optional[float] = Field(default=None, gt=0, le=1e9, description="`servesim plan` names the "
                                             "cheapest configuration that meets the SLO at this rate")


class Outputs(StrictModel):
    records: bool = Field(default=True, description="write requests.parquet")
    plots: bool = Field(default=True, description="write PNG plots")
    streaming: Optional[bool] = Field(default=None, description="keep fixed-memory statistics instead of per-request "
                                      "records (no requests.parquet or plots; percentiles within 0.25%); default: "
                                      f"records, switching to streaming with a notice beyond {20_000_000:,} requests")
    window_s: Optional[float] = Field(default=None, gt=0, le=1e7, description="cut the run into windows of this "
                                      "many seconds of arrival time: windows.parquet (p50/p90/p99, throughput, "
                                      "utilisation, SLO attainment per window) and windows.png; default: none")


Workload.model_rebuild()


class Scenario(StrictModel):
    name: str = Field(min_length=1, max_length=200, description="names the outputs and plots")
    seed: int = Field(default=0, ge=0, lt=2 ** 63, description="root of every random stream")
    requests: Optional[int] = Field(default=None, ge=1, le=2_000_000_000,
                                    description="run length in arrivals; default 100000 (a trace replays whole)")
    duration_s: Optional[float] = Field(default=None, gt=0, description="run length in seconds of arrivals, instead "
                                        "of requests")
    warmup_s: float = Field(default=0.0, ge=0, description="requests arriving before this are simulated, not measured")
    replications: int = Field(default=1, ge=1, le=10_000, description="independent runs, for confidence intervals "
                              "across them (one run: batch means)")
    workload: Workload = Field(description="arrivals and, for LLM policies, request sizes")
    cost_model: Optional[CostSpec] = Field(default=None, description="step time of one batch (or LLM engine step); "
                                           "required unless every server.groups entry gives its own")
    server: Server = Field(default_factory=Server, description="replicas and batching policy")
    slo: Optional[Slo] = Field(default=None, description="latency targets; default: none")
    outputs: Outputs = Field(default_factory=Outputs, description="what `servesim run` writes")
    plan: Optional[PlanSpec] = Field(default=None, description="what `servesim plan` looks for; default: none")
    # dotted key -> "--set KEY=VALUE" for keys a command-line override set, so errors name the flag
    _overrides: dict = PrivateAttr(default_factory=dict)
    _groups_cache: Optional[tuple] = PrivateAttr(default=None)
    _expected_requests: float = PrivateAttr(default=0.0)

    @property
    def streaming(self) -> bool:
        """True when the run keeps fixed-memory statistics instead of records: asked for, or (by default) when
        it is too long for records and nothing in it needs them (sim.scenario.streaming_unsupported)."""
        if self.outputs.streaming is not None:
            return self.outputs.streaming
        asked = {k for k in ("records", "plots") if k in self.outputs.model_fields_set and getattr(self.outputs, k)}
        return self._expected_requests > RECORDS_MAX and not asked and not streaming_unsupported(self)

    @property
    def is_llm(self) -> bool:
        """True when the replicas are LLM engines (the engine kind is chosen from this in sim.kinds)."""
        pols = [g.batching or self.server.batching for g in self.server.groups] if self.server.groups else [self.server.batching]
        return any(getattr(pol, "is_llm", False) for pol in pols)

    @property
    def rule(self) -> batching.DispatchRule:
        """The dispatch rule of server.batching with the scenario's cost model (the first group's, with groups)."""
        g = self.fleet_groups[0]
        return g.batching.rule(g.cost_model.batch_limit())

    @property
    def fleet_groups(self) -> list:
        """Returns the replica groups (sim.fleet.ReplicaGroup), each with its cost model, batching and price
        resolved; a scenario without server.groups is one group named 'default'."""
        key = (id(self.server), id(self.cost_model))
        if self._groups_cache is not None and self._groups_cache[0] == key:
            return self._groups_cache[1]
        groups = self._resolve_groups()
        self._groups_cache = (key, groups)  # keyed by the objects: a model_copy with new ones recomputes
        return groups

    def _resolve_groups(self) -> list:
        from .fleet import ReplicaGroup
        from .fleet.pricing import replica_price

        srv = self.server
        if not srv.groups:
            price, note = replica_price(self.cost_model, srv.gpus_per_replica, srv.cost_per_hour)
            # autoscaled: the pool of replicas that can serve (the autoscaler section says how many did)
            n = srv.autoscaler.pool(srv.replicas) if srv.autoscaler is not None else srv.replicas
            return [ReplicaGroup("default", n, self.cost_model, srv.batching, srv.gpus_per_replica, price, note)]
        out = []
        for g in srv.groups:
            cm = g.cost_model or self.cost_model
            price, note = replica_price(cm, g.gpus_per_replica, g.cost_per_hour)
            out.append(ReplicaGroup(g.name, g.replicas, cm, g.batching or srv.batching, g.gpus_per_replica, price, note))
        return out

    @property
    def total_replicas(self) -> int:
        return sum(g.replicas for g in self.fleet_groups)

    def closed_requests(self) -> Optional[int]:
        """Returns how many requests closed-loop clients send in all (None: until duration_s)."""
        if self.requests is not None:
            return self.requests
        return None if self.duration_s is not None else DEFAULT_REQUESTS

    def horizon(self) -> dict[str, Any]:
        """Returns the run length as keyword arguments for ArrivalProcess.arrival_times_s."""
        if self.requests is not None:
            return {"requests": self.requests}
        if self.duration_s is not None:
            return {"until_s": self.duration_s}
        if isinstance(self.workload.arrival, arrivals.TraceArrivals):
            return {}
        return {"requests": DEFAULT_REQUESTS}

    def batching_description(self) -> str:
        """Returns the fleet's batching and routing in one line, as the CLI and summary.json show it."""
        groups = self.fleet_groups
        described = [_group_description(g) for g in groups]
        if not self.server.groups:
            line = f"{described[0]}, {groups[0].replicas} replica(s)"
        elif len(set(described)) == 1:
            line = described[0] + "; groups " + ", ".join(f"{g.name} x {g.replicas}" for g in groups)
        else:
            line = "; ".join(f"{g.name} x {g.replicas}: {d}" for g, d in zip(groups, described))
        if self.total_replicas > 1:
            line += f", router {self.server.router.policy}"
        return line

    def capacity_rps(self) -> float:
        """Returns the saturated throughput of the whole fleet (all replicas, full batches), requests/s.
        (LLM scenarios estimate theirs from the sampled token counts: sim.llm_metrics.)"""
        k = self.server.instances_per_gpu
        # k instances all running slow down by s(k): the GPU does k / s(k) solo steps at once (default s(k) = k)
        per_gpu = k / self.server.instance_contention[k - 1] if self.server.instance_contention else 1.0
        return per_gpu * sum(g.replicas * g.cost_model.capacity_rps(g.batching.rule(g.cost_model.batch_limit()).max_batch_size)
                             for g in self.fleet_groups)


def _group_description(g) -> str:
    pol = g.batching
    if getattr(pol, "is_llm", False):
        fields = pol.model_dump(exclude={"policy"})
        return pol.policy + ", " + ", ".join(f"{k} {v}" for k, v in fields.items() if v is not None)
    rule = pol.rule(g.cost_model.batch_limit())
    parts = [pol.policy, f"max_batch_size {rule.max_batch_size}"]
    if rule.delay_s != float("inf") and pol.policy != "none":
        parts.append(f"max_queue_delay_ms {rule.delay_s * 1000:g}")
    if rule.preferred_batch_sizes != (rule.max_batch_size,):
        parts.append(f"preferred {list(rule.preferred_batch_sizes)}")
    return ", ".join(parts)


def blame(source: str, path: str, overrides: dict) -> str:
    """Returns what to name as the origin of a problem at dotted key `path`: the `--set KEY=VALUE` that set
    that key (or a key inside it), "FILE with --set ..." when an override set a key below a problem found
    on a whole section, else the scenario file `source`."""
    for key in sorted(overrides, key=len, reverse=True):
        if path == key or path.startswith(key + "."):
            return overrides[key]
    inside = [overrides[k] for k in overrides if path and k.startswith(path + ".")]
    return f"{source} with {', '.join(inside)}" if inside else source


def check(scenario: Scenario, source: str = "<scenario>") -> Scenario:
    """Cross-field checks the per-field schema cannot express; raises ScenarioError, returns the scenario."""
    problems: list[tuple[str, str]] = []
    if scenario.requests is not None and scenario.duration_s is not None:
        problems.append(("requests", "give either 'requests' or 'duration_s', not both"))
    if scenario.duration_s is not None and scenario.warmup_s >= scenario.duration_s:
        problems.append(("warmup_s", f"{scenario.warmup_s} must be below duration_s={scenario.duration_s}"))
    wl = scenario.workload
    problems += _check_workload_source(scenario)
    problems += _check_classes(scenario)
    problems += _check_stages(scenario)
    problems += _check_autoscaler(scenario)
    fleet_problems = _check_fleet(scenario)
    problems += fleet_problems
    llm_policy = scenario.is_llm
    if llm_policy and not wl.has_tokens:
        problems.append(("workload.prompt_tokens", "LLM policies need request sizes: give prompt_tokens and "
                         "output_tokens (e.g. {dist: fixed, value: 512}) or tokens_from_trace: true"))
    if not llm_policy and (wl.prompt_tokens is not None or wl.output_tokens is not None or wl.tokens_from_trace):
        problems.append(("workload.prompt_tokens", "token sizes apply to LLM policies only (continuous, llm_static)"))
    if wl.tokens_from_trace and not isinstance(wl.arrival, arrivals.TraceArrivals):
        problems.append(("workload.tokens_from_trace", "needs workload.arrival.process: trace with a file"))
    if scenario.slo is not None:
        llm_keys = [k for k in ("ttft_p99_ms", "tpot_p99_ms") if getattr(scenario.slo, k) is not None]
        req_keys = list(scenario.slo.targets_ms())
        if llm_policy and req_keys:
            problems.append((f"slo.latency_{req_keys[0]}_ms", "LLM scenarios take ttft_p99_ms and tpot_p99_ms"))
        if not llm_policy and llm_keys:
            problems.append((f"slo.{llm_keys[0]}", "TTFT/TPOT targets apply to LLM policies; use latency_mean_ms, "
                             "latency_p50_ms..latency_p99_ms"))
    arr = scenario.workload.arrival
    if arr is None:
        expected = float(scenario.closed_requests() or 0)
    elif isinstance(arr, arrivals.TraceArrivals):
        size = arr.load().size
        if scenario.requests is not None and scenario.requests > size and not arr.loop:
            problems.append(("requests", f"{scenario.requests} exceeds the {size} requests in the trace "
                             f"{arr.path or 'times_s'}; allowed 1..{size} (or loop: true to replay it again)"))
        expected = float(scenario.requests or size)
        noisy = any(g.cost_model is not None and g.cost_model.is_noisy() for g in _pairs(scenario))
        if scenario.replications > 1 and not noisy and scenario.server.router.policy in ("shared_queue", "round_robin"):
            problems.append(("replications", f"{scenario.replications} replications of a trace replay without "
                             "cost-model noise are identical copies; use 1 (intervals then come from batch means)"))
    else:
        expected = (float(scenario.requests) if scenario.requests is not None else
                    arr.rate_rps * scenario.duration_s if scenario.duration_s is not None else DEFAULT_REQUESTS)
    total = expected * scenario.replications
    scenario._expected_requests = total
    why_not = streaming_unsupported(scenario)
    out = scenario.outputs
    if out.streaming and why_not:
        problems.append(("outputs.streaming", f"streaming runs support {why_not}"))
    elif out.streaming and out.records and "records" in out.model_fields_set:
        problems.append(("outputs.records", "a streaming run keeps no per-request records: leave records out (or "
                         "set it false)"))
    if out.window_s is not None and not problems:
        from .windows import MAX_STREAMING_WINDOWS, MAX_WINDOWS

        rate = getattr(arr, "rate_rps", None) if arr is not None else None
        horizon = scenario.duration_s or (expected / rate if rate else None)
        cap = MAX_STREAMING_WINDOWS if scenario.streaming else MAX_WINDOWS
        if horizon is not None and horizon / out.window_s > cap:
            problems.append(("outputs.window_s", f"{out.window_s:g} s cuts about {horizon:.6g} s into "
                             f"{horizon / out.window_s:,.0f} windows; at most {cap:,} "
                             f"({'streaming' if scenario.streaming else 'records'}): give at least "
                             f"{horizon / cap:.3g} s"))
    limit = MAX_STREAMING_REQUESTS if scenario.streaming else MAX_TOTAL_REQUESTS
    if total > limit:
        hint = ("; a streaming run (outputs.streaming: true) takes up to " f"{MAX_STREAMING_REQUESTS:,}"
                if not scenario.streaming and not why_not else "")
        problems.append(("requests" if scenario.requests is not None else "duration_s",
                         f"about {total:.3g} requests in all (x{scenario.replications} replications) is beyond one "
                         f"run's limit of {limit:,}{hint}; shorten the run or split it into several seeds"))
    if not fleet_problems:
        for g in _pairs(scenario):
            _check_pair(scenario, g, problems)
    if problems:
        (path, msg), rest = problems[0], problems[1:]
        where = scenario._overrides
        raise ScenarioError(blame(source, path, where), path, msg, [f"{blame(source, p, where)}: {p}: {m}" for p, m in rest])
    return scenario


def streaming_unsupported(scenario: Scenario) -> str:
    """Returns what streaming runs support when `scenario` needs something else ('' when it can stream)."""
    srv, wl = scenario.server, scenario.workload
    needs = []
    if scenario.is_llm:
        needs.append("LLM engines")
    if srv.router.policy != "shared_queue" and scenario.total_replicas > 1:
        needs.append(f"router {srv.router.policy}")
    if srv.queue.max_queue_size is not None or srv.queue.timeout_ms is not None:
        needs.append("queue limits")
    if wl.clients is not None or wl.classes:
        needs.append("closed-loop clients" if wl.clients is not None else "request classes")
    if srv.preprocess is not None or srv.postprocess is not None or srv.pipeline_latency_ms is not None:
        needs.append("server stages")
    if srv.instances_per_gpu > 1:
        needs.append("instance groups")
    if not needs:
        return ""
    return ("request-level batching behind the shared queue (open-loop arrivals, any batching policy, groups); this "
            "scenario has " + ", ".join(needs) + ": use records (outputs.streaming: false) and a shorter run")


def _check_autoscaler(scenario: Scenario) -> list[tuple[str, str]]:
    """Returns problems with server.autoscaler: what it does not simulate yet."""
    srv, wl = scenario.server, scenario.workload
    if srv.autoscaler is None:
        return []
    needs = []
    if scenario.is_llm and not all(p.batching.policy == "continuous" for p in _pairs(scenario)):
        needs.append("llm_static")
    if srv.groups:
        needs.append("server.groups")
    if wl.clients is not None:
        needs.append("closed-loop clients")
    if srv.instances_per_gpu > 1:
        needs.append("instance groups")
    if srv.router.policy == "shared_queue":
        # behind a router every replica keeps its own queue, limits, priorities and stages; one shared queue
        # with an autoscaler is the shared-queue engine, which has none of them yet
        if scenario.is_llm and (wl.client_timeout_ms is not None or srv.queue.max_waiting is not None):
            needs.append("LLM queue limits or client timeouts behind the shared queue")
        if srv.queue.max_queue_size is not None or srv.queue.timeout_ms is not None:
            needs.append("queue limits behind the shared queue")
        if wl.priority_levels > 1:
            needs.append("priorities behind the shared queue")
        if srv.preprocess is not None or srv.postprocess is not None or srv.pipeline_latency_ms is not None:
            needs.append("server stages behind the shared queue")
    if needs:
        return [("server.autoscaler", "autoscaling is simulated for replicas of one kind (request-level, or "
                 "continuous-batching LLM engines) behind the shared queue or any router; not with "
                 + ", ".join(needs) + " yet (behind a router, queue limits, priorities and stages work)")]
    return []


def _check_classes(scenario: Scenario) -> list[tuple[str, str]]:
    """Returns problems with workload.classes and workload.client_timeout_ms."""
    wl, srv, problems = scenario.workload, scenario.server, []
    llm = scenario.is_llm
    if wl.client_timeout_ms is not None and not (llm and all(p.batching.policy == "continuous" for p in _pairs(scenario))):
        problems.append(("workload.client_timeout_ms", "applies to continuous batching (LLM clients waiting for "
                         "admission); request-level batching takes server.queue.timeout_ms"))
    if wl.classes is None:
        return problems
    if not wl.classes:
        return problems + [("workload.classes", "is empty: give at least one class ({name, share}) or leave classes out")]
    total = sum(c.share for c in wl.classes)
    if abs(total - 1) > 1e-6:
        problems.append(("workload.classes", f"the shares sum to {total:.6g}; they must sum to 1 ("
                         + " + ".join(f"{c.name} {c.share:g}" for c in wl.classes) + ")"))
    names = [c.name for c in wl.classes]
    dup = next((i for i, n in enumerate(names) if n in names[:i]), None)
    if dup is not None:
        problems.append((f"workload.classes.{dup}.name", f"{names[dup]!r} names two classes; names must differ"))
    for i, c in enumerate(wl.classes):
        if not llm and (c.prompt_tokens is not None or c.output_tokens is not None):
            problems.append((f"workload.classes.{i}.prompt_tokens", "token sizes apply to LLM policies only"))
        if llm and wl.tokens_from_trace and (c.prompt_tokens is not None or c.output_tokens is not None):
            problems.append((f"workload.classes.{i}.prompt_tokens", "the trace gives every request's tokens "
                             "(tokens_from_trace): leave the class's token sizes out"))
        if c.slo is not None:
            llm_keys = [k for k in ("ttft_p99_ms", "tpot_p99_ms") if getattr(c.slo, k) is not None]
            req_keys = list(c.slo.targets_ms())
            if llm and req_keys:
                problems.append((f"workload.classes.{i}.slo.latency_{req_keys[0]}_ms", "LLM scenarios take ttft_p99_ms "
                                 "and tpot_p99_ms"))
            if not llm and llm_keys:
                problems.append((f"workload.classes.{i}.slo.{llm_keys[0]}", "TTFT/TPOT targets apply to LLM policies"))
    if wl.priority_levels > 1:
        if llm and not all(p.batching.policy == "continuous" for p in _pairs(scenario)):
            problems.append(("workload.classes", "priorities apply to continuous batching (admission order); "
                             "llm_static batches first come, first served: give every class the same priority"))
    return problems


def _check_stages(scenario: Scenario) -> list[tuple[str, str]]:
    """Returns problems with server stages and instance groups."""
    srv, problems = scenario.server, []
    if scenario.is_llm:
        for key in ("preprocess", "postprocess", "pipeline_latency_ms"):
            if getattr(srv, key) is not None:
                problems.append((f"server.{key}", "applies to request-level batching (none, static, dynamic); LLM "
                                 "engines' tokenization and streaming are not simulated yet"))
        if srv.instances_per_gpu > 1:
            problems.append(("server.instances_per_gpu", "applies to request-level batching; an LLM engine owns its GPU"))
    if srv.instance_contention is not None:
        c = srv.instance_contention
        if srv.instances_per_gpu == 1:
            problems.append(("server.instance_contention", "needs server.instances_per_gpu above 1"))
        elif len(c) != srv.instances_per_gpu:
            problems.append(("server.instance_contention", f"gives {len(c)} slowdowns; give one for each k = 1.."
                             f"{srv.instances_per_gpu} instances running at once"))
        elif c[0] != 1 or any(x < 1 for x in c) or any(b < a for a, b in zip(c, c[1:])):
            problems.append(("server.instance_contention", f"{c}: the slowdown with k instances running must start at "
                             "1 (one instance alone), never fall below 1 and never fall as k grows"))
    return problems


def _check_workload_source(scenario: Scenario) -> list[tuple[str, str]]:
    """Returns problems with where requests come from: an arrival process or closed-loop clients."""
    wl, srv = scenario.workload, scenario.server
    if wl.arrival is None and wl.clients is None:
        return [("workload.arrival", "required key is missing: give an arrival process (open loop) or "
                 "workload.clients (closed loop)")]
    if wl.arrival is not None and wl.clients is not None:
        return [("workload.clients", "closed-loop clients send as they are answered: give workload.clients or "
                 "workload.arrival, not both")]
    if wl.clients is None:
        return []
    problems = []
    if scenario.is_llm and not all(p.batching.policy == "continuous" for p in _pairs(scenario)):
        problems.append(("workload.clients", "closed-loop LLM clients drive continuous batching; llm_static takes an "
                         "arrival process"))
    if wl.client_timeout_ms is not None:
        problems.append(("workload.client_timeout_ms", "closed-loop clients that give up are not simulated yet; leave "
                         "client_timeout_ms out"))
    think = wl.clients.think_time_ms
    limit = srv.queue.max_queue_size if srv.queue.max_queue_size is not None else srv.queue.max_waiting
    if limit is not None and getattr(think, "dist", "") == "fixed" and think.value_ms == 0:
        problems.append(("workload.clients.think_time_ms", "with a queue limit a rejected client "
                         "sends again after its think time: give one above 0 ms (with 0 it would retry at the same "
                         "instant forever)"))
    if srv.queue.timeout_ms is not None:
        problems.append(("server.queue.timeout_ms", "closed-loop clients with queue timeouts are not simulated; "
                         "use max_queue_size (a rejected client thinks and sends again)"))
    if not problems and not scenario.is_llm and all(p.cost_model is not None for p in _pairs(scenario)):
        n = wl.clients.count
        for pair in _pairs(scenario):
            rule = pair.batching.rule(pair.cost_model.batch_limit())
            if math.isinf(rule.delay_s) and rule.smallest > n:
                problems.append((pair.batching_key + ".max_batch_size", f"{n} client(s) can never fill a batch of "
                                 f"{rule.smallest} (each has one request outstanding): lower it to at most {n} or "
                                 "set max_queue_delay_ms"))
                break
    return problems


class _Pair:
    """One group's cost model and batching with the dotted keys that set them (for error messages)."""

    def __init__(self, cost_model, batching, cost_key: str, batching_key: str):
        self.cost_model, self.batching, self.cost_key, self.batching_key = cost_model, batching, cost_key, batching_key


def _pairs(scenario: Scenario) -> list[_Pair]:
    srv = scenario.server
    if not srv.groups:
        return [_Pair(scenario.cost_model, srv.batching, "cost_model", "server.batching")]
    return [_Pair(g.cost_model or scenario.cost_model, g.batching or srv.batching,
                  f"server.groups.{i}.cost_model" if g.cost_model is not None else "cost_model",
                  f"server.groups.{i}.batching" if g.batching is not None else "server.batching")
            for i, g in enumerate(srv.groups)]


def _check_fleet(scenario: Scenario) -> list[tuple[str, str]]:
    """Returns problems with the fleet's shape: replicas and groups, kinds, cost models, router, prices."""
    srv, problems = scenario.server, []
    if srv.groups:
        for key in ("replicas", "gpus_per_replica", "cost_per_hour"):
            if key in srv.model_fields_set:
                problems.append((f"server.{key}", f"give server.{key} inside each server.groups entry, not beside "
                                 "groups (groups replace server.replicas)"))
        names = [g.name for g in srv.groups]
        dup = next((i for i, n in enumerate(names) if n in names[:i]), None)
        if dup is not None:
            problems.append((f"server.groups.{dup}.name", f"{names[dup]!r} names two groups; names must differ"))
    pairs = _pairs(scenario)
    for pair in pairs:
        if pair.cost_model is None:
            problems.append((pair.cost_key, "required key is missing (give cost_model, or one in every server.groups entry)"))
    if problems:
        return problems
    kinds = [bool(getattr(p.batching, "is_llm", False)) for p in pairs]
    if any(kinds) and not all(kinds):
        i = kinds.index(not kinds[0])
        problems.append((pairs[i].batching_key + ".policy", f"{pairs[i].batching.policy!r} cannot share a fleet with "
                         f"{pairs[0].batching.policy!r}: groups must be all request-level (none, static, dynamic) or "
                         "all LLM (continuous, llm_static)"))
    llm_static = [p.batching.policy == "llm_static" for p in pairs]
    if any(kinds) and all(kinds) and any(llm_static) and not all(llm_static):
        i = llm_static.index(not llm_static[0])
        problems.append((pairs[i].batching_key + ".policy", "continuous and llm_static replicas cannot share a fleet; "
                         "give every group the same LLM policy"))
    router = srv.router
    q = srv.queue
    if q.timeout_ms is not None:
        if any(kinds):
            problems.append(("server.queue.timeout_ms", "applies to request-level batching; LLM clients' timeouts are "
                             "not simulated yet"))
        elif q.timeout_action == "reject":
            for pair in pairs:
                delay_ms = pair.batching.rule(pair.cost_model.batch_limit()).delay_s * 1000
                if delay_ms >= q.timeout_ms:
                    problems.append((pair.batching_key + ".max_queue_delay_ms", f"a batch may wait {delay_ms:g} ms "
                                     f"for requests that time out after {q.timeout_ms:g} ms (server.queue.timeout_ms): "
                                     "give a queue delay below the timeout"))
                    break
    if q.max_waiting is not None and not all(p.batching.policy == "continuous" for p in pairs):
        problems.append(("server.queue.max_waiting", "applies to continuous batching (sequences waiting for admission); "
                         "request-level batching takes max_queue_size"))
    if srv.queue.max_queue_size is not None:
        if any(kinds):
            problems.append(("server.queue.max_queue_size", "applies to request-level batching (none, static, dynamic); "
                             "continuous batching takes max_waiting"))
    if router.llm_only and not any(kinds):
        problems.append(("server.router.policy", f"{router.policy!r} reads the KV cache of LLM replicas; request-level "
                         "replicas allow: " + ", ".join(n for n in routers.REGISTRY.names()
                                                         if not routers.REGISTRY.get(n).llm_only)))
    return problems


def _check_pair(scenario: Scenario, pair: _Pair, problems: list) -> None:
    """Checks one group's cost model against its batching policy."""
    cm, pol, ck, bk = pair.cost_model, pair.batching, pair.cost_key, pair.batching_key
    llm_policy, llm_cost = getattr(pol, "is_llm", False), getattr(cm, "is_llm_cost", False)
    if llm_policy and not llm_cost:
        problems.append((f"{ck}.kind", f"policy {pol.policy!r} prices engine steps: it needs kind: llm or "
                         "llm_roofline (prefill and decode costs)"))
    if llm_cost and not llm_policy:
        problems.append((f"{bk}.policy", "an llm cost model needs an LLM policy; allowed: continuous, llm_static"))
    if llm_policy != llm_cost:
        return
    wl = scenario.workload
    if llm_policy and getattr(pol, "chunked_prefill", True) is False and wl.prompt_tokens is not None:
        top = wl.prompt_tokens.max_tokens if not isinstance(wl.prompt_tokens, sizes.EmpiricalTokens) else None
        if top is not None and top > pol.max_num_batched_tokens:
            problems.append((f"{bk}.max_num_batched_tokens", f"{pol.max_num_batched_tokens} is below the "
                             f"longest prompt ({top}); without chunked prefill a prompt must fit in one step"))
    if isinstance(cm, cost.ProfileCost) and cm.max_batch_size is not None and cm.max_batch_size > cm.measured_limit:
        problems.append((f"{ck}.max_batch_size", f"{cm.max_batch_size} is beyond the largest measured batch; "
                         f"allowed 1..{cm.measured_limit} (profile {cm.paths[-1]})"))
    limit = cm.batch_limit()
    b = getattr(pol, "max_batch_size", None) if not llm_policy else None
    if not llm_policy:
        steps = cm.step_table_s(min(b or limit, limit))[1:]
        bad = np.flatnonzero(~(steps > 0) | ~np.isfinite(steps))
        if bad.size:
            problems.append((ck, f"the step time at batch size {int(bad[0]) + 1} is {shown(steps[bad[0]])} s; "
                             "step times must be finite and > 0"))
    if b is not None and b > limit:
        problems.append((f"{bk}.max_batch_size",
                         f"{b} exceeds the cost model's limit; allowed 1..{limit} (cost_model max batch size)"))
    pref = getattr(pol, "preferred_batch_sizes", None)
    if pref:
        top = b or limit
        over = [s for s in pref if s > top]
        if over:
            problems.append((f"{bk}.preferred_batch_sizes", f"{over} exceed max_batch_size={top}; allowed 1..{top}"))


def scenario_warnings(scenario: Scenario) -> list[str]:
    """Returns notices about inputs that are accepted but suspicious (an unsorted trace, step times that
    fall as the batch grows); `servesim check` prints them and every run's summary lists them."""
    out: list[str] = []
    arr = scenario.workload.arrival
    if hasattr(arr, "warnings"):
        out += arr.warnings()
    if scenario.server.queue.max_queue_size == 0:
        out.append("server.queue.max_queue_size: 0 lets no request wait (an arrival finding its replica busy is "
                   "rejected); in Triton's model configuration 0 means unlimited: leave the key out for that")
    seen = set()
    for pair in _pairs(scenario):
        if (pair.cost_key, pair.batching_key) in seen:
            continue
        seen.add((pair.cost_key, pair.batching_key))
        out += _cost_warnings(pair)
    return out


def _cost_warnings(pair) -> list[str]:
    """Returns a notice when a group's step time falls as its batch grows."""
    cm, pol = pair.cost_model, pair.batching
    if getattr(cm, "is_llm_cost", False) or getattr(pol, "is_llm", False):
        return []
    b = pol.rule(cm.batch_limit()).max_batch_size
    if isinstance(cm, cost.ProfileCost):
        k, ms = cm.load()[0].table()
        k, ms = k[k <= b], ms[k <= b]
        fall = _first_fall(ms, 0.10)  # measured medians: a fall beyond their noise
        if fall:
            hi, lo = fall
            return [f"{pair.cost_key}: the profile's measured step time falls from {ms[hi]:.4g} ms at batch "
                    f"{int(k[hi])} to {ms[lo]:.4g} ms at batch {int(k[lo])}; real on some CPUs (the matrix kernel "
                    "changes with the batch size) or noise: the simulation uses the fit through these points as measured"]
        return []
    ms = cm.step_table_s(b)[1:] * 1000
    fall = _first_fall(ms, 0.01)
    if fall:
        hi, lo = fall
        where = f"{pair.cost_key}.step_ms" if isinstance(cm, cost.TableCost) else pair.cost_key
        return [f"{where}: the step time falls from {ms[hi]:.4g} ms at batch {hi + 1} to {ms[lo]:.4g} ms at "
                f"batch {lo + 1}; a larger batch is rarely faster on real hardware (a typo?)"]
    return []


def _first_fall(values: np.ndarray, tolerance: float) -> Optional[tuple[int, int]]:
    """Returns (index of the earlier maximum, index) of the first value more than `tolerance` below the
    largest value before it, or None."""
    peak = np.maximum.accumulate(values)
    drop = np.flatnonzero(values < (1 - tolerance) * peak)
    if not drop.size:
        return None
    lo = int(drop[0])
    return int(np.argmax(values[:lo + 1])), lo


def set_override(raw: dict, assignment: str) -> str:
    """Applies one `dotted.key=value` override (value parsed as YAML) to the raw scenario dict in place;
    returns the dotted key."""
    key, sep, text = assignment.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ScenarioError("--set", assignment, "expected dotted.key=value, e.g. server.batching.max_batch_size=64")
    try:
        value = load_yaml(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise ScenarioError("--set", key, f"value {text!r} is not valid YAML ({exc.__class__.__name__})") from None
    node = raw
    parts = key.split(".")
    for i, part in enumerate(parts):
        if isinstance(node, list):  # server.groups.1.replicas: an index into a list that exists
            if not part.isdigit() or int(part) >= len(node):
                raise ScenarioError("--set", ".".join(parts[: i + 1]), f"is not an index of the {len(node)}-item list "
                                    f"{'.'.join(parts[:i])}; allowed 0..{len(node) - 1}")
            part = int(part)
        elif not isinstance(node, dict):
            raise ScenarioError("--set", ".".join(parts[:i]), f"is a {type(node).__name__}, not a mapping; cannot set {key}")
        if i == len(parts) - 1:
            node[part] = value
            return key
        nxt = node[part] if isinstance(node, list) else node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        node = nxt
    return key


def load_scenario(path: Union[str, Path], overrides: Iterable[str] = ()) -> Scenario:
    """Reads, overrides and validates a scenario YAML file; returns the frozen Scenario or raises ScenarioError."""
    src = str(path)
    raw = read_yaml_mapping(path, "scenario")
    origins = {}
    for assignment in overrides:
        origins[set_override(raw, assignment)] = f"--set {assignment.strip()}"
    return validate(raw, src, Path(path).parent, origins)


def validate(raw: dict, source: str = "<scenario>", base_dir: Union[str, Path, None] = None,
             overrides: Optional[dict] = None) -> Scenario:
    """Validates a raw scenario dict; returns the Scenario or raises ScenarioError naming source and key path.

    Relative file paths inside (traces, profiles) are resolved against `base_dir` (default: the current
    folder). `overrides` maps dotted keys set on the command line to their `--set KEY=VALUE`, which errors
    about those keys name instead of the file.
    """
    overrides = dict(overrides or {})
    if not isinstance(raw, dict):
        raise ScenarioError(source, "", f"the top level must be a mapping of keys, got a {type(raw).__name__}")
    bad_keys = [k for k in raw if not isinstance(k, str)]
    if bad_keys:
        raise ScenarioError(source, "", f"keys must be strings, got {bad_keys[0]!r}")
    cm = raw.get("cost_model")
    if isinstance(cm, dict) and "profile" in cm and "kind" not in cm:
        raw = {**raw, "cost_model": {"kind": "profile", **cm}}
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        lines = [_describe(err, raw, source) for err in exc.errors()]
        first, rest = lines[0], lines[1:]
        err = ScenarioError(blame(source, first[0], overrides), first[0], first[1],
                            [f"{blame(source, p, overrides)}: {p}: {m}" if p else f"{source}: {m}" for p, m in rest[:9]])
        raise err from None
    scenario._overrides = overrides
    scenario = _resolve_files(scenario, Path(base_dir) if base_dir is not None else Path.cwd())
    return check(scenario, source)


def _resolve_files(scenario: Scenario, base: Path) -> Scenario:
    """Resolves relative paths against `base` and loads referenced files now, so a bad trace or profile
    is reported (with its own file name) before any output is written."""
    update = {}
    wl_update = {}
    arr = scenario.workload.arrival
    if hasattr(arr, "with_base_dir"):
        arr = arr.with_base_dir(base)
        arr.load()
        if scenario.workload.tokens_from_trace:
            arr.load_tokens()
        wl_update["arrival"] = arr
    for key in ("prompt_tokens", "output_tokens"):
        dist = getattr(scenario.workload, key)
        if isinstance(dist, sizes.EmpiricalTokens):
            dist = dist.with_base_dir(base)
            dist.load()
            wl_update[key] = dist
    if wl_update:
        update["workload"] = scenario.workload.model_copy(update=wl_update)
    if scenario.cost_model is not None and hasattr(scenario.cost_model, "with_base_dir"):
        update["cost_model"] = _resolved_cost(scenario.cost_model, base)
    if scenario.server.groups and any(hasattr(g.cost_model, "with_base_dir") for g in scenario.server.groups):
        groups = [g.model_copy(update={"cost_model": _resolved_cost(g.cost_model, base)})
                  if hasattr(g.cost_model, "with_base_dir") else g for g in scenario.server.groups]
        update["server"] = scenario.server.model_copy(update={"groups": groups})
    return scenario.model_copy(update=update) if update else scenario


def _resolved_cost(cm, base: Path):
    cm = cm.with_base_dir(base)
    if hasattr(cm, "load"):
        cm.load()
    return cm


# ---- turning pydantic's errors into one line a planner can act on ----

def _describe(err: dict, raw: Any, source: str) -> tuple[str, str]:
    loc = _clean_loc(err["loc"], raw)
    path = ".".join(str(p) for p in loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1], raw)
        allowed = ", ".join(_key_names(n, f) for n, f in parent.model_fields.items() if n not in _TAGS) if parent else ""
        tag = next((t for t in _TAGS if parent and t in parent.model_fields), None)
        extra = f" (for {tag} '{parent.model_fields[tag].default}')" if tag else ""
        return path, f"unknown key '{loc[-1]}'; allowed keys{extra}: {allowed or '(none)'}"
    if kind == "missing":
        return path, "required key is missing"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tag = err.get("ctx", {}).get("discriminator", "").strip("'")
        reg = {"process": arrivals.REGISTRY, "policy": batching.REGISTRY, "kind": cost.REGISTRY}.get(tag)
        if tag == "policy" and loc and loc[-1] == "router":
            reg = routers.REGISTRY
        if tag == "policy" and loc and loc[-1] == "autoscaler":
            from .fleet.autoscaling import REGISTRY as autoscaling

            reg = autoscaling
        names = ", ".join(reg.names()) if reg else "fixed, uniform, lognormal, empirical"
        what = reg.what if reg else "token distribution"
        if tag == "dist" and loc and str(loc[-1]).endswith("_ms"):  # think_time_ms, time_ms: sim.durations
            names, what = ", ".join(durations.NAMES), "duration distribution"
        path = f"{path}.{tag}" if path else tag
        if kind == "union_tag_not_found":
            return path, f"required key is missing; allowed: {names}"
        return path, f"unknown {what} {err['input'].get(tag)!r}; allowed: {names}"
    if kind == "model_type" or kind == "dict_type":
        return path, f"expected a mapping of keys, got {shown(err['input'])}"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    else:
        msg = msg[0].lower() + msg[1:]
    if isinstance(err.get("input"), dict):  # a check across a section's keys: the message names them
        return path, msg
    return path, f"got {shown(err.get('input'))}: {msg}"


def _key_names(name: str, field) -> str:
    """Returns a field's YAML key with the other spellings it accepts: 'low (or min)'."""
    alias = field.validation_alias
    if isinstance(alias, str):
        return alias  # the key users write (trace's rate_rps; its field is target_rate_rps)
    others = [a for a in getattr(alias, "choices", ()) if isinstance(a, str) and a != name]
    return f"{name} (or {', '.join(others)})" if others else name


def _clean_loc(loc: tuple, raw: Any) -> list:
    """Drops the union tags pydantic puts in error locations (workload.arrival.poisson.rate_rps)."""
    out, node, skipped = [], raw, None
    for part in loc:
        # pydantic puts the tag right after the union's key, even where a key of the same name exists (the
        # autoscaler policy `schedule` and its `schedule` key)
        if isinstance(node, dict) and skipped is not node and any(node.get(t) == part for t in _TAGS):
            skipped = node
            continue
        out.append(part)
        node = node.get(part) if isinstance(node, dict) else (node[part] if isinstance(node, list) and isinstance(part, int) and part < len(node) else None)
    return out


def _model_at(loc: list, raw: Any) -> Optional[type[BaseModel]]:
    cls: Any = Scenario
    node = raw
    for part in loc:
        if isinstance(part, int) and get_origin(cls) is list:  # an item of a list (server.groups.0, classes.1)
            node = node[part] if isinstance(node, list) and part < len(node) else None
            cls = _pick(get_args(cls)[0], node)
            continue
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or part not in cls.model_fields:
            return None
        node = node.get(part) if isinstance(node, dict) else None
        cls = _pick(cls.model_fields[part].annotation, node)
    return _pick(cls, node) if cls is not None else None


def _pick(ann: Any, node: Any) -> Any:
    """Resolves Optional / discriminated unions to the model class that `node` selects."""
    origin = get_origin(ann)
    if origin is Annotated:
        return _pick(get_args(ann)[0], node)
    if origin is Union or str(origin) == "types.UnionType":
        members = [a for a in get_args(ann) if a is not type(None)]
        for m in members:
            m = _pick(m, node)
            if get_origin(m) is list:  # Optional[list[Model]]: _model_at steps into the item
                return m
            if isinstance(m, type) and issubclass(m, BaseModel):
                tag = next((t for t in _TAGS if t in m.model_fields), None)
                if tag is None or (isinstance(node, dict) and node.get(tag) == m.model_fields[tag].default):
                    return m
        return None
    return ann
