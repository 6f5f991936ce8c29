"""The golden cases: every scenario in scenarios/ (shortened) and configurations covering each event loop and
path of the simulator as it was before the single simulation core (issue 17). Their outputs, recorded by
`python -m tests.golden.record --write`, are what the core must reproduce request for request."""
from __future__ import annotations

import copy
from pathlib import Path

from sim.config import read_yaml_mapping

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"

# each scenario file, shortened: dotted key -> value (None deletes the key)
SCENARIO_CASES = {
    "day-autoscaled": {"duration_s": 900, "warmup_s": 30, "workload.arrival.mean_rate_rps": 20,
                       "workload.arrival.period_s": 900, "workload.arrival.peak_at_s": 450,
                       "outputs.window_s": 300},
    "embeddings-cpu-profile": {"requests": 1500, "warmup_s": 1},
    "embeddings-h100-l4-fleet": {"duration_s": 0.1, "warmup_s": 0.01},
    "embeddings-h100-roofline": {"duration_s": 0.1, "warmup_s": 0.01},
    "embeddings-mmpp-bursts": {"duration_s": 0.5, "warmup_s": 0.02},
    "embeddings-trace-replay": {"requests": 3000, "warmup_s": 0.1},
    "llm-chat-concurrency": {"requests": 300, "warmup_s": 2},
    "llm-chat-continuous": {"requests": 400, "warmup_s": 2},
    "llm-chat-fleet": {"requests": 600, "warmup_s": 2},
    "llm-chat-static": {"requests": 300, "warmup_s": 2},
    "llm-day-autoscaled": {"duration_s": 1800, "warmup_s": 10, "workload.arrival.period_s": 1800,
                           "workload.arrival.peak_at_s": 900, "workload.arrival.mean_rate_rps": 1.0,
                           "outputs.window_s": 600},
    "llm-h100-roofline": {"requests": 1000, "warmup_s": 1},
    "plan-llm-chat": {"requests": 400, "warmup_s": 2},
    "plan-vision": {"requests": 2000, "warmup_s": 0.1},
    "validate-llm-cpu": {"requests": 200, "warmup_s": 0.5},
    "validate-mlp-cpu": {"requests": 1500, "warmup_s": 0.1},
    "vision-bursty-replicas": {"duration_s": 0.3, "warmup_s": 0.02},
    "vision-dynamic": {"requests": 2000, "warmup_s": 0.2},
    "vision-none": {"requests": 2000, "warmup_s": 0.2},
    "vision-perf-analyzer": {"requests": 2000, "warmup_s": 0.05},
    "vision-priority-diurnal": {"duration_s": 600, "warmup_s": 10, "workload.arrival.period_s": 600,
                                "workload.arrival.peak_at_s": 300, "workload.arrival.mean_rate_rps": 4},
    "vision-static": {"requests": 2000, "warmup_s": 0.2},
}

AFFINE = {"kind": "affine", "base_ms": 2.0, "per_item_ms": 0.5, "max_batch_size": 32}
DYNAMIC = {"policy": "dynamic", "max_batch_size": 8, "max_queue_delay_ms": 1}
LLM_COST = {"kind": "llm", "base_ms": 12.0, "prefill_token_ms": 0.06, "prefill_attention_ms": 0.000004,
            "decode_seq_ms": 0.08, "decode_context_ms": 0.00002}
CONTINUOUS = {"policy": "continuous", "max_num_seqs": 32, "max_num_batched_tokens": 2048, "chunked_prefill": True,
              "kv_cache_tokens": 60000, "block_size": 16}
LLM_STATIC = {"policy": "llm_static", "max_batch_size": 8, "max_queue_delay_ms": 50, "kv_cache_tokens": 60000}
TOKENS = {"prompt_tokens": {"dist": "lognormal", "mean": 600, "cv": 1.0, "min": 8, "max": 4000},
          "output_tokens": {"dist": "lognormal", "mean": 120, "cv": 0.8, "min": 1, "max": 1000}}


def _batch(server=None, workload=None, **top):
    raw = {"name": "golden", "seed": 3, "requests": 1500, "warmup_s": 0.05,
           "workload": {"arrival": {"process": "poisson", "rate_rps": 1500}},
           "cost_model": AFFINE, "server": {"replicas": 3, "batching": DYNAMIC},
           "slo": {"latency_p99_ms": 20}, "outputs": {"records": True, "plots": False}}
    raw["server"].update(server or {})
    raw["workload"].update(workload or {})
    raw.update(top)
    return raw


def _llm(server=None, workload=None, **top):
    raw = {"name": "golden-llm", "seed": 5, "requests": 400, "warmup_s": 1.0,
           "workload": {"arrival": {"process": "poisson", "rate_rps": 6}, **TOKENS},
           "cost_model": LLM_COST, "server": {"replicas": 3, "batching": CONTINUOUS},
           "slo": {"ttft_p99_ms": 2000, "tpot_p99_ms": 60}, "outputs": {"records": True, "plots": False}}
    raw["server"].update(server or {})
    raw["workload"].update(workload or {})
    raw.update(top)
    return raw


CLASSES = [{"name": "gold", "share": 0.3, "priority": 1}, {"name": "bulk", "share": 0.7, "priority": 2}]
STAGES = {"preprocess": {"workers": 3, "time_ms": {"dist": "exponential", "mean_ms": 1.5}},
          "postprocess": {"workers": 2, "time_ms": {"dist": "uniform", "low_ms": 0.2, "high_ms": 0.6}},
          "pipeline_latency_ms": 0.4}
SCHEDULE = {"policy": "schedule", "schedule": [[0, 1], [0.4, 3], [0.8, 2]], "interval_s": 0.1}

# configurations covering each of the old loops and paths (sim/fleet/build.py, sim/kinds.py, sim/runner.py)
CONFIG_CASES = {
    # request-level, shared queue (sim.engine.simulate_shared)
    "batch-shared-one": _batch(server={"replicas": 1}, workload={"arrival": {"process": "poisson", "rate_rps": 1200}}),
    "batch-shared-three-noise": _batch(cost_model={**AFFINE, "noise": {"cv": 0.1}}),
    "batch-shared-mmc-exponential": _batch(server={"batching": {"policy": "none"}},
                                           cost_model={**AFFINE, "noise": {"dist": "exponential"}},
                                           workload={"arrival": {"process": "poisson", "rate_rps": 1000}}),
    "batch-shared-static-preferred": _batch(server={"batching": {"policy": "static", "max_batch_size": 8,
                                                                 "max_queue_delay_ms": 4}}),
    "batch-shared-preferred-sizes": _batch(server={"batching": {**DYNAMIC, "preferred_batch_sizes": [2, 4, 8],
                                                                "max_queue_delay_ms": 3}}),
    "batch-shared-groups": _batch(server={"replicas": None, "groups": [
        {"name": "fast", "replicas": 1},
        {"name": "slow", "replicas": 2, "cost_model": {**AFFINE, "base_ms": 4.0, "per_item_ms": 1.0}}]}),
    "batch-shared-replications": _batch(replications=3, requests=800),
    "batch-shared-windows": _batch(outputs={"records": True, "plots": False, "window_s": 0.25}),
    "batch-shared-gamma-trace": _batch(workload={"arrival": {"process": "gamma", "rate_rps": 1500, "cv": 3}}),
    # state-blind routers (split up front, each replica alone)
    "batch-round-robin": _batch(server={"router": {"policy": "round_robin"}}),
    "batch-random": _batch(server={"router": {"policy": "random"}}, cost_model={**AFFINE, "noise": {"cv": 0.1}}),
    # routers that read state
    "batch-jsq": _batch(server={"router": {"policy": "join_shortest_queue"}}),
    "batch-jsq-groups": _batch(server={"replicas": None, "router": {"policy": "join_shortest_queue"}, "groups": [
        {"name": "fast", "replicas": 2},
        {"name": "slow", "replicas": 2, "cost_model": {**AFFINE, "base_ms": 4.0, "per_item_ms": 1.0}}]}),
    "batch-power-of-two": _batch(server={"router": {"policy": "power_of_two"}}),
    # queue limits and timeouts
    "batch-jsq-queue-limit": _batch(server={"router": {"policy": "join_shortest_queue"},
                                            "queue": {"max_queue_size": 4}},
                                    workload={"arrival": {"process": "poisson", "rate_rps": 4000}}),
    "batch-round-robin-timeout": _batch(server={"router": {"policy": "round_robin"}, "queue": {"timeout_ms": 5}},
                                        workload={"arrival": {"process": "poisson", "rate_rps": 3500}}),
    "batch-one-queue-limit": _batch(server={"replicas": 1, "queue": {"max_queue_size": 6}},
                                    workload={"arrival": {"process": "poisson", "rate_rps": 2000}}),
    # classes with priorities (sim.replica.priority)
    "batch-priority-jsq": _batch(server={"router": {"policy": "join_shortest_queue"}},
                                 workload={"classes": CLASSES, "arrival": {"process": "poisson", "rate_rps": 3000}}),
    "batch-priority-delay": _batch(server={"replicas": 1, "queue": {"timeout_ms": 6, "timeout_action": "delay"}},
                                   workload={"classes": CLASSES, "arrival": {"process": "poisson", "rate_rps": 1300}}),
    "batch-classes-one-level": _batch(workload={"classes": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}]}),
    # one queue shared by several replicas with limits, priorities, timeouts (sim.replica.shared_pool)
    "batch-shared-pool-limit": _batch(server={"queue": {"max_queue_size": 5}},
                                      workload={"arrival": {"process": "poisson", "rate_rps": 5000}}),
    "batch-shared-pool-priority-delay": _batch(server={"queue": {"timeout_ms": 4, "timeout_action": "delay"}},
                                               workload={"classes": CLASSES,
                                                         "arrival": {"process": "poisson", "rate_rps": 4000}}),
    "batch-shared-pool-timeout-groups": _batch(server={"replicas": None, "queue": {"timeout_ms": 3}, "groups": [
        {"name": "fast", "replicas": 1},
        {"name": "slow", "replicas": 2, "cost_model": {**AFFINE, "base_ms": 4.0, "per_item_ms": 1.0}}]},
        workload={"arrival": {"process": "poisson", "rate_rps": 3000}}),
    "batch-shared-pool-closed": _batch(server={"queue": {"max_queue_size": 4}},
                                       workload={"arrival": None, "classes": CLASSES,
                                                 "clients": {"count": 30, "think_time_ms": 1}}),
    # closed loops (sim.fleet.fleet.drive_closed)
    "batch-closed-one": _batch(server={"replicas": 1}, workload={"arrival": None, "clients":
                                                                 {"count": 12, "think_time_ms": 2}}),
    "batch-closed-jsq-limit": _batch(server={"router": {"policy": "join_shortest_queue"},
                                             "queue": {"max_queue_size": 3}},
                                     workload={"arrival": None, "clients": {"count": 40, "think_time_ms":
                                                                            {"dist": "exponential", "mean_ms": 3}}}),
    "batch-closed-round-robin-classes": _batch(server={"router": {"policy": "round_robin"}},
                                               workload={"arrival": None, "classes": CLASSES,
                                                         "clients": {"count": 20, "think_time_ms": 1,
                                                                     "ramp_up_s": 0.05}}),
    # server stages
    "batch-stages-open": _batch(server=STAGES),
    "batch-stages-closed": _batch(server={**STAGES, "replicas": 1},
                                  workload={"arrival": None, "clients": {"count": 10, "think_time_ms": 1}}),
    # instance groups (sim.instances)
    "batch-instances": _batch(server={"replicas": 2, "instances_per_gpu": 2, "instance_contention": [1.0, 1.6]}),
    "batch-instances-jsq-limit": _batch(server={"replicas": 2, "instances_per_gpu": 2, "router":
                                                {"policy": "join_shortest_queue"}, "queue": {"max_queue_size": 4}},
                                        workload={"arrival": {"process": "poisson", "rate_rps": 3000}}),
    "batch-instances-priority-shared": _batch(server={"replicas": 2, "instances_per_gpu": 3,
                                                      "instance_contention": [1.0, 1.5, 2.2]},
                                              workload={"classes": CLASSES,
                                                        "arrival": {"process": "poisson", "rate_rps": 2500}}),
    # autoscaling (sim.fleet.scaling.simulate_autoscaled)
    "batch-autoscaled-schedule": _batch(requests=None, duration_s=1.2, server={"autoscaler": SCHEDULE},
                                        workload={"arrival": {"process": "poisson", "rate_rps": 2500}}),
    "batch-autoscaled-utilization": _batch(requests=None, duration_s=2.0, server={"replicas": 4, "autoscaler": {
        "policy": "target_utilization", "target": 0.5, "interval_s": 0.1, "scale_up_delay_s": 0.05,
        "scale_down_delay_s": 0.2}}, workload={"arrival": {"process": "piecewise", "points":
                                                           [[0, 500], [1.0, 4000], [2.0, 500]]}},
        outputs={"records": True, "plots": False, "window_s": 0.5}),
    "batch-autoscaled-queue-length": _batch(requests=None, duration_s=1.5, server={"replicas": 4, "autoscaler": {
        "policy": "queue_length", "target": 4, "interval_s": 0.05, "min_replicas": 1}},
        workload={"arrival": {"process": "poisson", "rate_rps": 3000}}),
    # autoscaling behind a router (sim.fleet.controller through sim.fleet.scaling.FleetScaler)
    "batch-autoscaled-jsq": _batch(requests=None, duration_s=1.2, server={"router": {"policy": "join_shortest_queue"},
                                                                          "autoscaler": {**SCHEDULE,
                                                                                         "scale_down_delay_s": 0.1}},
                                   workload={"arrival": {"process": "poisson", "rate_rps": 2500}}),
    "batch-autoscaled-p2c-utilization": _batch(requests=None, duration_s=2.0, server={
        "replicas": 4, "router": {"policy": "power_of_two"}, "queue": {"max_queue_size": 20},
        "autoscaler": {"policy": "target_utilization", "target": 0.5, "interval_s": 0.1, "scale_up_delay_s": 0.05}},
        workload={"arrival": {"process": "piecewise", "points": [[0, 500], [1.0, 4000], [2.0, 500]]}}),
    "batch-autoscaled-shared-pool-limit": _batch(requests=None, duration_s=1.2, server={
        "queue": {"max_queue_size": 10}, "autoscaler": {**SCHEDULE, "scale_down_delay_s": 0.1}},
        workload={"arrival": {"process": "poisson", "rate_rps": 4000}}),
    "batch-autoscaled-closed-jsq": _batch(server={"router": {"policy": "join_shortest_queue"}, "autoscaler": {
        "policy": "target_utilization", "target": 0.5, "interval_s": 0.05}},
        workload={"arrival": None, "clients": {"count": 30, "think_time_ms": 5}}),
    "batch-autoscaled-instances-jsq": _batch(requests=None, duration_s=1.2, server={
        "router": {"policy": "join_shortest_queue"}, "instances_per_gpu": 2, "autoscaler": SCHEDULE},
        workload={"arrival": {"process": "poisson", "rate_rps": 2500}}),
    # streaming (sim.sinks): the shared queue and the autoscaled shared queue
    "batch-streaming-shared": _batch(requests=20000, outputs={"streaming": True, "window_s": 2.0}),
    "batch-streaming-autoscaled": _batch(requests=None, duration_s=3.0, server={"replicas": 4, "autoscaler": {
        "policy": "target_utilization", "target": 0.6, "interval_s": 0.2, "scale_down_delay_s": 0.4}},
        workload={"arrival": {"process": "piecewise", "points": [[0, 500], [1.5, 5000], [3.0, 500]]}},
        outputs={"streaming": True, "window_s": 1.0}),
    # continuous-batching LLM engines
    "llm-one": _llm(server={"replicas": 1}, workload={"arrival": {"process": "poisson", "rate_rps": 3}}),
    "llm-one-preempting": _llm(server={"replicas": 1, "batching": {**CONTINUOUS, "kv_cache_tokens": 8000}},
                               workload={"arrival": {"process": "poisson", "rate_rps": 4}}),
    "llm-one-no-chunking": _llm(server={"replicas": 1, "batching": {**CONTINUOUS, "chunked_prefill": False,
                                                                    "max_num_batched_tokens": 4096}},
                                workload={"arrival": {"process": "poisson", "rate_rps": 3}}),
    "llm-shared": _llm(),
    "llm-shared-groups": _llm(server={"replicas": None, "groups": [
        {"name": "big", "replicas": 1}, {"name": "small", "replicas": 2,
                                         "batching": {**CONTINUOUS, "kv_cache_tokens": 20000}}]}),
    "llm-round-robin": _llm(server={"router": {"policy": "round_robin"}}),
    "llm-random": _llm(server={"router": {"policy": "random"}}),
    "llm-jsq": _llm(server={"router": {"policy": "join_shortest_queue"}}),
    "llm-power-of-two": _llm(server={"router": {"policy": "power_of_two"}}),
    "llm-least-tokens": _llm(server={"router": {"policy": "least_outstanding_tokens"}}),
    "llm-least-tokens-oracle": _llm(server={"router": {"policy": "least_outstanding_tokens", "oracle": True}}),
    "llm-least-kv": _llm(server={"router": {"policy": "least_kv"}}),
    "llm-max-waiting-shared": _llm(server={"queue": {"max_waiting": 2}},
                                   workload={"arrival": {"process": "poisson", "rate_rps": 40}}),
    "llm-max-waiting-jsq": _llm(server={"router": {"policy": "join_shortest_queue"}, "queue": {"max_waiting": 1}},
                                workload={"arrival": {"process": "poisson", "rate_rps": 40}}),
    "llm-classes-shared-timeout": _llm(workload={"classes": CLASSES, "client_timeout_ms": 400,
                                                 "arrival": {"process": "poisson", "rate_rps": 40}}),
    "llm-classes-jsq": _llm(server={"router": {"policy": "join_shortest_queue"}},
                            workload={"classes": CLASSES, "arrival": {"process": "poisson", "rate_rps": 12}}),
    "llm-closed-shared": _llm(workload={"arrival": None, "clients": {"count": 24, "think_time_ms": 500}}),
    "llm-closed-jsq-limit": _llm(server={"router": {"policy": "join_shortest_queue"}, "queue": {"max_waiting": 1}},
                                 workload={"arrival": None, "clients": {"count": 60, "think_time_ms": 300}}, warmup_s=0.2),
    "llm-closed-round-robin": _llm(server={"router": {"policy": "round_robin"}},
                                   workload={"arrival": None, "clients": {"count": 16, "think_time_ms": 100}}),
    "llm-autoscaled-schedule": _llm(requests=None, duration_s=120,
                                    server={"autoscaler": {"policy": "schedule", "schedule": [[0, 1], [40, 3], [80, 2]],
                                                           "scale_up_delay_s": 5}},
                                    workload={"arrival": {"process": "poisson", "rate_rps": 6}}),
    "llm-autoscaled-utilization": _llm(requests=None, duration_s=200, server={"replicas": 4, "autoscaler": {
        "policy": "target_utilization", "target": 0.3, "interval_s": 10, "scale_down_delay_s": 30}},
        workload={"arrival": {"process": "piecewise", "points": [[0, 2], [100, 12], [200, 2]]}},
        outputs={"records": True, "plots": False, "window_s": 50}),
    "llm-autoscaled-jsq": _llm(requests=None, duration_s=120, server={
        "router": {"policy": "join_shortest_queue"},
        "autoscaler": {"policy": "schedule", "schedule": [[0, 1], [40, 3], [80, 2]], "scale_down_delay_s": 5}},
        workload={"arrival": {"process": "poisson", "rate_rps": 6}}),
    "llm-autoscaled-shared-max-waiting": _llm(requests=None, duration_s=120, server={
        "queue": {"max_waiting": 2},
        "autoscaler": {"policy": "schedule", "schedule": [[0, 1], [40, 3], [80, 2]]}},
        workload={"arrival": {"process": "poisson", "rate_rps": 12}}),
    "llm-windows": _llm(outputs={"records": True, "plots": False, "window_s": 20}),
    # llm_static (padded request-level batches)
    "llm-static-one": _llm(server={"replicas": 1, "batching": LLM_STATIC},
                           workload={"arrival": {"process": "poisson", "rate_rps": 2}}),
    "llm-static-shared": _llm(server={"batching": LLM_STATIC}),
    "llm-static-jsq": _llm(server={"router": {"policy": "join_shortest_queue"}, "batching": LLM_STATIC}),
    "llm-static-round-robin": _llm(server={"router": {"policy": "round_robin"}, "batching": LLM_STATIC}),
}


def _set(raw: dict, key: str, value) -> None:
    node = raw
    *path, last = key.split(".")
    for part in path:
        node = node.setdefault(part, {})
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value


def _clean(raw: dict) -> dict:
    """Drops keys set to None (a case removing a default key of its base)."""
    return {k: _clean(v) if isinstance(v, dict) else v for k, v in raw.items() if v is not None}


def cases() -> dict:
    """Returns {name: (raw scenario dict, base folder)} of every golden case."""
    out = {}
    for name, changes in SCENARIO_CASES.items():
        raw = read_yaml_mapping(SCENARIOS / f"{name}.yaml", "scenario")
        for key, value in changes.items():
            if key in ("duration_s",):
                raw.pop("requests", None)
            if key == "requests":
                raw.pop("duration_s", None)
            _set(raw, key, value)
        raw.setdefault("outputs", {})
        if not raw["outputs"].get("streaming"):
            raw["outputs"].update({"records": True, "plots": False})
        else:
            raw["outputs"]["plots"] = False
        out[f"scenario-{name}"] = (raw, SCENARIOS)
    for name, raw in CONFIG_CASES.items():
        out[name] = (_clean(copy.deepcopy(raw)), SCENARIOS)
    return out
