"""Request classes with non-preemptive priority: Cobham's formula and conservation against M/D/1, a naive
per-request reference model request for request, per-class sections and SLOs, bad input."""
import heapq

import numpy as np
import pytest

import sim
from sim.theory import cobham_waits_s, md1_mean_latency_s

from .conftest import run_cli, scenario_dict

TWO = [{"name": "gold", "share": 0.3, "priority": 1}, {"name": "bronze", "share": 0.7, "priority": 2}]


def prioritised(rate_rps, classes=TWO, seed=0, requests=60000, server=None, **extra):
    return sim.validate(scenario_dict(requests=requests, seed=seed, warmup_s=1.0,
                                      workload={"arrival": {"process": "poisson", "rate_rps": rate_rps},
                                                "classes": classes},
                                      cost_model={"kind": "affine", "base_ms": 1.0, "per_item_ms": 0.25},
                                      server=server or {"batching": {"policy": "none"}},
                                      outputs={"records": True, "plots": False}, **extra))


def test_cobham_per_class_waits_and_conservation():
    lam, d = 640.0, 0.00125  # batch 1: step 1 + 0.25 ms, load 0.8
    exact = cobham_waits_s([0.3 * lam, 0.7 * lam], [d, d], [d * d, d * d])
    runs = [sim.run(prioritised(lam, seed=s)).summary for s in range(8)]
    for name, w in zip(("gold", "bronze"), exact):
        got = np.array([r["classes"][name]["queue_wait_s"]["mean"] for r in runs])
        half = 2.365 * got.std(ddof=1) / np.sqrt(got.size)
        assert abs(got.mean() - w) <= 3 * half, (name, got.mean(), half, w)
    # conservation: the share-weighted mean wait is M/D/1's, whatever the priorities
    md1_wait = md1_mean_latency_s(lam, d) - d
    assert 0.3 * exact[0] + 0.7 * exact[1] == pytest.approx(md1_wait, rel=1e-12)
    mixed = np.array([r["queue_wait_s"]["mean"] for r in runs])
    half = 2.365 * mixed.std(ddof=1) / np.sqrt(mixed.size)
    assert abs(mixed.mean() - md1_wait) <= 3 * half, (mixed.mean(), half, md1_wait)


def naive_priority(arrival, level, max_batch, step_s):
    """One request at a time: whenever the server is free and someone waits, a batch of up to max_batch takes
    the waiting requests by (level, arrival); returns each request's dispatch time."""
    n, i, free = arrival.size, 0, 0.0
    waiting, dispatch = [], np.full(arrival.size, np.nan)
    while i < n or waiting:
        t = free if waiting else max(free, arrival[i])
        while i < n and arrival[i] <= t:
            heapq.heappush(waiting, (level[i], arrival[i], i))
            i += 1
        batch = [heapq.heappop(waiting) for _ in range(min(max_batch, len(waiting)))]
        for _, _, j in batch:
            dispatch[j] = t
        free = t + step_s(len(batch))
    return dispatch


@pytest.mark.parametrize("max_batch", [1, 4])
def test_priority_batches_equal_a_naive_model_request_for_request(max_batch):
    classes = [{"name": "a", "share": 0.2, "priority": 3}, {"name": "b", "share": 0.5, "priority": 1},
               {"name": "c", "share": 0.3, "priority": 2}]
    server = {"batching": {"policy": "dynamic", "max_batch_size": max_batch, "max_queue_delay_ms": 0}}
    res = sim.run(prioritised(700.0 * max_batch ** 0.5, classes, requests=20000, server=server))
    df = res.requests
    level = df["class"].map({"a": 2, "b": 0, "c": 1}).to_numpy(int)
    ref = naive_priority(df["arrival_s"].to_numpy(), level, max_batch, lambda k: 0.001 + 0.00025 * k)
    assert np.array_equal(df["dispatch_s"].to_numpy(), ref)


def test_each_class_gets_its_own_slo_and_rejections_are_misses():
    classes = [{"name": "gold", "share": 0.3, "priority": 1, "slo": {"latency_p99_ms": 4}},
               {"name": "bronze", "share": 0.7, "priority": 2}]
    s = sim.run(prioritised(900.0, classes, server={"batching": {"policy": "none"}, "queue": {"max_queue_size": 3}},
                            slo={"latency_p99_ms": 8.0})).summary
    gold, bronze = s["classes"]["gold"], s["classes"]["bronze"]
    assert gold["slo"]["targets"]["p99"]["target_ms"] == 4 and bronze["slo"]["targets"]["p99"]["target_ms"] == 8
    for c in (gold, bronze):
        measured = c["requests"] + c["rejected"]["count"]
        assert c["slo_attainment"] <= c["requests"] / measured + 1e-12
        for key in ("latency_s", "queue_wait_s", "throughput_rps", "offered_rps", "rejected", "timed_out"):
            assert key in c
    # the limit holds per priority level: the low class is turned away far more often
    assert bronze["rejected"]["fraction"] > 5 * gold["rejected"]["fraction"]
    assert sum(c["requests"] for c in s["classes"].values()) == s["requests"]
    assert sum(c["rejected"]["count"] for c in s["classes"].values()) == s["rejected"]["count"]


def test_classes_with_closed_loop_clients_and_routers():
    s = sim.validate(scenario_dict(requests=20000, workload={"clients": {"count": 16, "think_time_ms": 2},
                                                             "classes": TWO},
                                   cost_model={"kind": "affine", "base_ms": 1.0, "per_item_ms": 0.25},
                                   server={"replicas": 2, "router": {"policy": "join_shortest_queue"},
                                           "batching": {"policy": "dynamic", "max_batch_size": 4}},
                                   outputs={"records": True, "plots": False}))
    res = sim.run(s)
    c = res.summary["classes"]
    assert c["gold"]["latency_s"]["mean"] < c["bronze"]["latency_s"]["mean"]
    assert res.summary["closed_loop"]["law_rel_error"] < 0.01
    assert set(res.requests["class"].unique()) == {"gold", "bronze"}


@pytest.mark.parametrize("policy", ["none", "dynamic", "static"])
def test_a_prioritised_queue_with_everyone_in_one_level_is_fcfs(policy):
    from sim.fleet.build import run_batch_fleet
    from sim.runner import generate_workload

    batching = {"policy": policy, "max_batch_size": 4} if policy != "none" else {"policy": policy}
    if policy == "dynamic":
        batching.update(max_queue_delay_ms=0.7, preferred_batch_sizes=[2, 4])
    if policy == "static":
        batching["max_queue_delay_ms"] = 2.0
    s = prioritised(1500.0, requests=8000, server={"batching": batching, "queue": {"max_queue_size": 5}})
    arrivals = generate_workload(s).arrival_s
    g = s.fleet_groups
    fcfs = run_batch_fleet(g, s.server.router, arrivals, 0, 0, max_queue=5)
    one_level = run_batch_fleet(g, s.server.router, arrivals, 0, 0, max_queue=5, level=[0] * arrivals.size, levels=2)
    for key in ("size", "dispatch_s", "completion_s", "order", "rejected"):
        assert np.array_equal(getattr(fcfs, key), getattr(one_level, key)), key


def test_a_same_instant_higher_priority_arrival_takes_the_place_and_the_limit_holds():
    from sim.fleet.build import _batch_replicas
    from sim.fleet.fleet import Fleet
    from sim.fleet.routers import SharedQueue

    s = prioritised(100.0, requests=10, server={"batching": {"policy": "none"}, "queue": {"max_queue_size": 0}})
    g = s.fleet_groups[0]
    spec = (g.batching.rule(g.cost_model.batch_limit()), g.cost_model)
    out = SharedQueue().counts(1)
    (r,) = _batch_replicas([spec], out, 0, 0, 0, None, [1, 0, 0], 2)
    Fleet([r], lambda sid, a: 0).run([0.0, 0.0, 0.0])
    # the high-priority request 1 is served; 0 lost its place at that instant and 2 found the level full
    assert r.served == [1] and sorted(r.rejected) == [0, 2]
    assert out.n[0] == 0


def test_a_class_nobody_served_misses_its_slo():
    s = sim.validate(scenario_dict(
        requests=400, workload={"arrival": {"process": "poisson", "rate_rps": 2},
                                "prompt_tokens": {"dist": "fixed", "value": 100},
                                "output_tokens": {"dist": "fixed", "value": 20},
                                "classes": [{"name": "small", "share": 0.5},
                                            {"name": "huge", "share": 0.5, "prompt_tokens": {"dist": "fixed", "value": 9000}}]},
        cost_model={"kind": "llm", "base_ms": 10.0, "prefill_token_ms": 0.05, "decode_seq_ms": 0.05},
        server={"batching": {"policy": "continuous", "max_num_seqs": 8, "max_num_batched_tokens": 16384,
                             "kv_cache_tokens": 4000}},
        slo={"ttft_p99_ms": 1000}))
    c = sim.run(s).summary["classes"]
    assert c["huge"]["requests"] == 0 and c["huge"]["slo_attainment"] == 0 and c["huge"]["slo"]["met"] is False
    assert c["huge"]["rejected"]["count"] == 0 and c["huge"]["unserved"] > 0  # refused, not turned away by a limit
    assert c["small"]["slo_attainment"] == 1


def test_an_unknown_class_key_lists_the_allowed_ones(write_yaml):
    raw = scenario_dict(workload={"arrival": {"process": "poisson", "rate_rps": 10},
                                  "classes": [{"name": "a", "share": 1, "bogus": 1}]})
    proc = run_cli("check", write_yaml(raw))
    assert proc.returncode == 2 and "workload.classes.0.bogus" in proc.stderr and "priority" in proc.stderr, proc.stderr


@pytest.mark.parametrize("classes,server,key,text", [
    ([{"name": "a", "share": 0.5}, {"name": "b", "share": 0.4}], None, "workload.classes", "sum to 0.9"),
    ([], None, "workload.classes", "is empty"),
    ([{"name": "a", "share": 0.5}, {"name": "a", "share": 0.5}], None, "workload.classes.1.name", "names two"),
    ([{"name": "a", "share": 1, "prompt_tokens": {"dist": "fixed", "value": 3}}], None,
     "workload.classes.0.prompt_tokens", "LLM policies only"),
    ([{"name": "a", "share": 1, "slo": {"ttft_p99_ms": 3}}], None, "workload.classes.0.slo.ttft_p99_ms", "LLM"),
    ([{"name": "a", "share": 1, "priority": 0}], None, "workload.classes.0.priority", "greater than or equal to 1"),
])
def test_bad_classes(write_yaml, classes, server, key, text):
    raw = scenario_dict(workload={"arrival": {"process": "poisson", "rate_rps": 10}, "classes": classes})
    if server:
        raw["server"] = server
    proc = run_cli("check", write_yaml(raw))
    assert proc.returncode == 2, proc.stderr
    assert f": {key}: " in proc.stderr and text in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
