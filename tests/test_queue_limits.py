"""Queue limits (Triton's max_queue_size): blocking against M/D/1/K, the limit is never exceeded, rejected
requests are reported apart and count as SLO misses."""
import numpy as np
import pytest

import sim
from sim.theory import md1k_blocking

from .conftest import run_cli, scenario_dict


def limited(rate_rps, k, seed=1, requests=40000, **extra):
    return sim.validate(scenario_dict(requests=requests, seed=seed, warmup_s=1.0,
                                      workload={"arrival": {"process": "poisson", "rate_rps": rate_rps}},
                                      cost_model={"kind": "affine", "base_ms": 1.0, "per_item_ms": 0.0},
                                      server={"batching": {"policy": "none"}, "queue": {"max_queue_size": k}},
                                      outputs={"records": True, "plots": False}, **extra))


@pytest.mark.parametrize("rho,k", [(0.9, 2), (0.6, 0), (1.3, 4)])
def test_blocking_probability_is_md1k(rho, k):
    # batch 1, deterministic 1 ms step, room for k waiting besides the one in service: M/D/1/(k+1)
    fractions = [sim.run(limited(rho * 1000, k, seed=s)).summary["rejected"]["fraction"] for s in range(8)]
    mean, half = np.mean(fractions), 2.365 * np.std(fractions, ddof=1) / np.sqrt(len(fractions))
    exact = md1k_blocking(rho, k)
    assert abs(mean - exact) <= 3 * half + 1e-4, (mean, half, exact)


def test_the_limit_is_never_exceeded_and_rejections_are_misses():
    res = sim.run(limited(1500, 3, slo={"latency_p99_ms": 4.0}))
    df, s = res.requests, res.summary
    served = df[df["dispatch_s"].notna()]
    # requests waiting (arrived, not yet dispatched) just after each admitted arrival: never more than the limit
    a, d = np.sort(served["arrival_s"].to_numpy()), np.sort(served["dispatch_s"].to_numpy())
    waiting = np.arange(1, a.size + 1) - np.searchsorted(d, a, side="right")
    assert waiting.max() <= 3
    assert s["stable"] and s["rejected"]["count"] > 0 and s["unserved"] == 0
    measured = s["requests"] + s["rejected"]["count"]
    assert s["slo_attainment"] <= s["requests"] / measured + 1e-12  # a rejected request is a miss
    assert any("queue limit turns the excess away" in w for w in s["warnings"])


def test_a_limit_on_one_queue_shared_by_several_replicas_is_simulated(write_yaml):
    # one queue for several replicas (sim.replica.shared_pool; M/M/c/K in tests/test_shared_queue.py)
    raw = scenario_dict(server={"replicas": 2, "queue": {"max_queue_size": 4},
                                "batching": {"policy": "dynamic", "max_batch_size": 8}})
    assert run_cli("check", write_yaml(raw)).returncode == 0
    raw["server"]["instances_per_gpu"] = 2  # instance groups share their GPU's queue and its limit
    assert run_cli("check", write_yaml(raw)).returncode == 0


def test_no_served_request_waited_past_the_timeout_and_timeouts_are_reported():
    s = limited(1400, None, requests=30000)
    s = sim.validate({**s.model_dump(mode="json", exclude_none=True),
                      "server": {"batching": {"policy": "dynamic", "max_batch_size": 4, "max_queue_delay_ms": 0.5},
                                 "queue": {"timeout_ms": 5.0}},
                      "cost_model": {"kind": "affine", "base_ms": 2.0, "per_item_ms": 0.5}})
    res = sim.run(s)
    df, summary = res.requests, res.summary
    served = df[df["dispatch_s"].notna()]
    assert (served["queue_wait_s"] <= 0.005 + 1e-12).all()
    assert summary["timed_out"]["count"] > 0 and summary["rejected"]["count"] == 0
    assert summary["timed_out"]["count"] + summary["requests"] + summary["unserved"] == (df["arrival_s"] >= 1.0).sum()
    assert summary["stable"]


@pytest.mark.parametrize("queue,batching,words", [
    ({"timeout_ms": 1.0}, {"policy": "dynamic", "max_batch_size": 8, "max_queue_delay_ms": 2}, "give a queue delay below"),
    ({"timeout_ms": 10.0}, {"policy": "static", "max_batch_size": 8}, "give a queue delay below"),
])
def test_timeouts_a_policy_cannot_honour_are_refused(queue, batching, words, write_yaml):
    proc = run_cli("check", write_yaml(scenario_dict(server={"batching": batching, "queue": queue})))
    assert proc.returncode == 2 and words in proc.stderr, proc.stderr


@pytest.mark.parametrize("router", ["shared_queue", "round_robin"])
def test_an_llm_waiting_queue_limit_rejects_the_excess(router):
    raw = scenario_dict(requests=3000, seed=2, workload={
        "arrival": {"process": "poisson", "rate_rps": 60.0},
        "prompt_tokens": {"dist": "fixed", "value": 200}, "output_tokens": {"dist": "fixed", "value": 100}},
        cost_model={"kind": "llm", "base_ms": 8.0, "prefill_token_ms": 0.02, "decode_seq_ms": 0.1},
        server={"replicas": 2, "router": {"policy": router}, "queue": {"max_waiting": 5},
                "batching": {"policy": "continuous", "max_num_seqs": 8, "max_num_batched_tokens": 512}})
    res = sim.run(sim.validate(raw))
    s, log = res.summary, res.logs[0]
    assert s["rejected"]["count"] > 100 and s["stable"]
    assert log.step_waiting.max() <= 5  # every step saw at most the limit waiting (shared: the one queue)
    assert s["requests"] + s["rejected"]["count"] + s["unfinished"] + s["refused"] == 3000 - int(
        (log.arrival_s < raw.get("warmup_s", 0.0)).sum())


def naive_delay(arrival, step_s, timeout_s):
    """Batch 1: whenever the server frees, the oldest request that has not timed out goes first, else the oldest
    timed-out one (Triton's timeout_action DELAY); returns dispatch times."""
    n, free, i = arrival.size, 0.0, 0
    waiting, dispatch = [], np.full(n, np.nan)
    while i < n or waiting:
        t = free if waiting else max(free, arrival[i])
        while i < n and arrival[i] <= t:
            waiting.append(i)
            i += 1
        fresh = [j for j in waiting if arrival[j] >= t - timeout_s]
        j = fresh[0] if fresh else waiting[0]
        waiting.remove(j)
        dispatch[j] = t
        free = t + step_s
    return dispatch


@pytest.mark.parametrize("rate_rps", [900.0, 1200.0])
def test_timeout_action_delay_serves_timed_out_requests_last(rate_rps):
    s = sim.validate(scenario_dict(requests=6000, seed=3, workload={"arrival": {"process": "poisson", "rate_rps": rate_rps}},
                                   cost_model={"kind": "affine", "base_ms": 1.0, "per_item_ms": 0.0},
                                   server={"batching": {"policy": "none"},
                                           "queue": {"timeout_ms": 3.0, "timeout_action": "delay"}},
                                   outputs={"records": True, "plots": False}))
    res = sim.run(s)
    df = res.requests
    ref = naive_delay(df["arrival_s"].to_numpy(), 0.001, 0.003)
    assert np.array_equal(df["dispatch_s"].to_numpy(), ref)
    summary = res.summary
    assert summary["delayed"]["count"] > 0 and summary["timed_out"]["count"] == 0 and summary["unserved"] == 0


def test_delay_with_priorities_and_a_batching_delay_longer_than_the_timeout():
    classes = [{"name": "hi", "share": 0.4, "priority": 1}, {"name": "lo", "share": 0.6, "priority": 2}]
    s = sim.validate(scenario_dict(requests=8000, workload={"arrival": {"process": "poisson", "rate_rps": 1500.0},
                                                            "classes": classes},
                                   cost_model={"kind": "affine", "base_ms": 2.0, "per_item_ms": 0.5},
                                   server={"batching": {"policy": "dynamic", "max_batch_size": 4, "max_queue_delay_ms": 5},
                                           "queue": {"timeout_ms": 2.0, "timeout_action": "delay", "max_queue_size": 50}},
                                   outputs={"records": True, "plots": False}))
    res = sim.run(s)
    c = res.summary["classes"]
    assert res.summary["delayed"]["count"] > 0
    assert c["hi"]["latency_s"]["mean"] < c["lo"]["latency_s"]["mean"]
    df = res.requests
    assert (df["delayed"] & df["dispatch_s"].notna()).sum() > 0  # delayed requests are served, late
