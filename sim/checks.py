"""Cross-field checks of a scenario (what one field's schema cannot say), the refusals of what is not simulated
(docs/design.md, "What is refused") and the warnings about a valid scenario. `check` raises one ScenarioError
naming the file (or the --set that set the key), the dotted key path and what is allowed."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from . import arrivals, cost, sizes
from .errors import ScenarioError, shown
from .fleet import routers
from .scenario import DEFAULT_REQUESTS, MAX_STREAMING_REQUESTS, MAX_TOTAL_REQUESTS, Scenario, blame


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
    _check_size_and_outputs(scenario, problems)
    if not fleet_problems:
        for g in _pairs(scenario):
            _check_pair(scenario, g, problems)
    if problems:
        (path, msg), rest = problems[0], problems[1:]
        where = scenario._overrides
        raise ScenarioError(blame(source, path, where), path, msg, [f"{blame(source, p, where)}: {p}: {m}" for p, m in rest])
    return scenario


def _check_size_and_outputs(scenario: Scenario, problems: list) -> None:
    """Appends the problems of the run's size (requests against the trace and the run limits) and of its outputs
    (streaming, records, windows); sets the scenario's expected request count."""
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
        cap = MAX_STREAMING_WINDOWS if scenario.streaming and not scenario.is_llm else MAX_WINDOWS
        if horizon is not None and horizon / out.window_s > cap:
            problems.append(("outputs.window_s", f"{out.window_s:g} s cuts about {horizon:.6g} s into "
                             f"{horizon / out.window_s:,.0f} windows; at most {cap:,} "
                             f"({'streaming' if scenario.streaming else 'records'}): give at least "
                             f"{horizon / cap:.3g} s"))
    # an LLM stream keeps its per-request columns (sim.replica.step_stats): the records limit holds
    limit = MAX_STREAMING_REQUESTS if scenario.streaming and not scenario.is_llm else MAX_TOTAL_REQUESTS
    if total > limit:
        hint = ("; a streaming run (outputs.streaming: true) takes up to " f"{MAX_STREAMING_REQUESTS:,}"
                if not scenario.streaming and not why_not and not scenario.is_llm else "")
        problems.append(("requests" if scenario.requests is not None else "duration_s",
                         f"about {total:.3g} requests in all (x{scenario.replications} replications) is beyond one "
                         f"run's limit of {limit:,}{hint}; shorten the run or split it into several seeds"))


def streaming_unsupported(scenario: Scenario) -> str:
    """Returns what streaming runs support when `scenario` needs something else ('' when it can stream)."""
    srv, wl = scenario.server, scenario.workload
    needs = []
    if scenario.is_llm:  # the engines' step rows are streamed; the window must be known before the run
        if wl.clients is not None:
            needs.append("LLM closed-loop clients")
    else:
        if wl.clients is not None:
            needs.append("closed-loop clients")
        if srv.preprocess is not None or srv.postprocess is not None or srv.pipeline_latency_ms is not None:
            needs.append("server stages")
    if not needs:
        return ""
    return ("request-level batching (open-loop arrivals, any batching policy, router and groups, queue limits, "
            "instance groups, request classes, fixed or autoscaled) and LLM engines with open-loop arrivals (any "
            "router, classes, limits, autoscaling); this scenario has " + ", ".join(needs) + ": use records (outputs.streaming: false) and a shorter run")


def _check_autoscaler(scenario: Scenario) -> list[tuple[str, str]]:
    """Returns problems with server.autoscaler: what it does not simulate yet."""
    srv = scenario.server
    if srv.autoscaler is None:
        return []
    needs = []
    static = [p.batching.policy == "llm_static" for p in _pairs(scenario)] if scenario.is_llm else []
    if any(static) and not all(static):
        needs.append("llm_static beside continuous batching")
    if srv.groups:
        total = scenario.total_replicas
        sc = srv.autoscaler
        top = max([sc.max_replicas or 0, sc.initial_replicas or 0, sc.min_replicas]
                  + [int(r) for _, r in (sc.schedule or [])])
        if top > total:
            return [("server.autoscaler", f"asks for up to {top} replicas; with groups the pool is the groups' "
                     f"{total} replicas (started in the order the groups list them): give at most {total}")]
    if srv.router.policy != "shared_queue" and type(srv.router).pool_chooser is routers.Router.pool_chooser:
        needs.append(f"router {srv.router.policy} (it has no pool_chooser: which of the serving replicas to pick)")
    if needs:
        return [("server.autoscaler", "autoscaling is simulated for replicas of one kind (request-level, "
                 "continuous-batching LLM engines or llm_static, behind the shared queue or any router); "
                 "not with "
                 + ", ".join(needs) + " yet")]
    return []


def _check_classes(scenario: Scenario) -> list[tuple[str, str]]:
    """Returns problems with workload.classes and workload.client_timeout_ms."""
    wl, problems = scenario.workload, []
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
    think = wl.clients.think_time_ms
    limit = srv.queue.max_queue_size if srv.queue.max_queue_size is not None else srv.queue.max_waiting
    if limit is not None and getattr(think, "dist", "") == "fixed" and think.value_ms == 0:
        problems.append(("workload.clients.think_time_ms", "with a queue limit a rejected client "
                         "sends again after its think time: give one above 0 ms (with 0 it would retry at the same "
                         "instant forever)"))
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
            problems.append(("server.queue.timeout_ms", "applies to request-level batching; for LLM engines give "
                             "workload.client_timeout_ms (clients who give up waiting for admission)"))
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
