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
from pathlib import Path
from typing import Any, Iterable, Literal, Optional, Union

import yaml
from pydantic import Field, PrivateAttr, ValidationError, field_validator

from . import arrivals, batching, cost, sink_metrics, sizes
from .fleet import routers
from .batching.base import MAX_QUEUE_DELAY_MS
from .clients import Clients
from .durations import DurationDist, number_is_fixed
from .stages import Stage
from . import plugins as _plugins

_plugins.load()  # plugins register their pieces before the schema's unions are built (docs/extending.md)
from .fleet.autoscaler import Autoscaler  # noqa: E402
from .config import StrictModel, load_yaml, read_yaml_mapping
from .errors import ScenarioError

DEFAULT_REQUESTS = 100_000
# Memory is ~150-200 bytes per simulated request: keep one run well inside a 24 GiB machine.
MAX_TOTAL_REQUESTS = 100_000_000
RECORDS_MAX = 20_000_000          # beyond this many requests a run streams (outputs.streaming) unless told not to
MAX_STREAMING_REQUESTS = 2_000_000_000
from .schema_errors import _describe  # noqa: E402

ArrivalSpec = arrivals.REGISTRY.union()
BatchingSpec = batching.REGISTRY.union()
CostSpec = cost.REGISTRY.union()
RouterSpec = routers.REGISTRY.union()
MetricSpec = sink_metrics.REGISTRY.union()


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
    metrics: list[MetricSpec] = Field(default_factory=list, max_length=64,
                                      description="sink metrics (sim.sink_metrics) added to summary.json under "
                                      "`metrics`, by name, in records and streaming runs alike: "
                                      "[{metric: latency_histogram, edges_ms: [...]}, ...]; default: none")

    @field_validator("metrics")
    @classmethod
    def _distinct_metrics(cls, v: list) -> list:
        names = [m.metric for m in v]
        if len(set(names)) != len(names):
            raise ValueError("each metric at most once")
        return v


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
        it is too long for records and nothing in it needs them (sim.checks.streaming_unsupported)."""
        if self.outputs.streaming is not None:
            return self.outputs.streaming
        asked = {k for k in ("records", "plots") if k in self.outputs.model_fields_set and getattr(self.outputs, k)}
        from .checks import streaming_unsupported

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

    @property
    def scaling_replicas(self) -> int:
        """Returns what an autoscaler's max_replicas defaults to: server.replicas, or with groups every group's
        replicas (the pool the autoscaler draws on, in the order the groups list them)."""
        return self.total_replicas if self.server.groups else self.server.replicas

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
    from .checks import check

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


def __getattr__(name):
    # check, scenario_warnings and streaming_unsupported live in sim.checks (imported late: they need Scenario)
    if name in ("check", "scenario_warnings", "streaming_unsupported"):
        from . import checks

        return getattr(checks, name)
    raise AttributeError(f"module 'sim.scenario' has no attribute {name!r}")
