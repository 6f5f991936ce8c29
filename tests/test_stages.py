"""Server stages outside the GPU: the preprocess pool is an M/M/c station, latency adds up stage by stage,
the postprocess pool and pipeline latency come after the GPU, Little's law still holds, closed loops see the
stages, bad input."""
import numpy as np
import pytest

import sim
from sim.theory import mmc_mean_wait_s

from .conftest import run_cli, scenario_dict


def staged(server_extra, rate_rps=300.0, seed=0, requests=40000, **extra):
    server = {"batching": {"policy": "dynamic", "max_batch_size": 16, "max_queue_delay_ms": 1}, **server_extra}
    return sim.validate(scenario_dict(requests=requests, seed=seed, warmup_s=1.0,
                                      workload={"arrival": {"process": "poisson", "rate_rps": rate_rps}},
                                      cost_model={"kind": "affine", "base_ms": 2.0, "per_item_ms": 0.5},
                                      server=server, outputs={"records": True, "plots": False}, **extra))


@pytest.mark.parametrize("workers,mean_ms", [(1, 2.5), (3, 8.0)])
def test_preprocess_pool_is_mmc(workers, mean_ms):
    # Poisson arrivals, exponential work, c workers, in front of a GPU that never holds them back: M/M/c
    pre = {"preprocess": {"workers": workers, "time_ms": {"dist": "exponential", "mean_ms": mean_ms}}}
    waits = np.array([sim.run(staged(pre, seed=s)).summary["stages"]["preprocess"]["wait_s"]["mean"]
                      for s in range(6)])
    exact = mmc_mean_wait_s(300.0, mean_ms / 1000, workers)
    half = 2.571 * waits.std(ddof=1) / np.sqrt(waits.size)
    assert abs(waits.mean() - exact) <= 3 * half, (waits, exact)


def test_latency_adds_up_stage_by_stage_and_littles_law_holds():
    res = sim.run(staged({"preprocess": {"workers": 2, "time_ms": {"dist": "uniform", "low_ms": 1, "high_ms": 5}},
                          "postprocess": {"workers": 1, "time_ms": 0.4},
                          "pipeline_latency_ms": {"dist": "exponential", "mean_ms": 3}}, rate_rps=600.0))
    df, s = res.requests, res.summary
    served = df[df["completion_s"].notna()]
    parts = served["preprocess_s"] + served["queue_wait_s"] + (served["completion_s"] - served["dispatch_s"]) \
        + served["postprocess_s"]
    assert np.allclose(parts, served["latency_s"], rtol=0, atol=1e-12)
    assert (served["preprocess_s"] >= 0.001 - 1e-12).all() and (served["postprocess_s"] >= 0.0004 - 1e-12).all()
    # the batcher sees requests in the order they leave the pool, not the order they were sent
    assert (np.diff(served.sort_values("request_id")["arrival_s"].to_numpy()) >= 0).all()
    assert not served["sent_s"].is_monotonic_increasing
    assert s["littles_law"]["rel_error"] < 0.01
    assert s["latency_s"]["mean"] > s["queue_wait_s"]["mean"] + 0.003


def test_a_pool_with_many_workers_is_a_pure_delay():
    res = sim.run(staged({"preprocess": {"workers": 10000, "time_ms": 4}, "postprocess": {"workers": 10000, "time_ms": 1},
                          "pipeline_latency_ms": 2}, requests=5000))
    df = res.requests
    assert np.allclose(df["preprocess_s"], 0.004) and np.allclose(df["postprocess_s"], 0.003)
    plain = sim.run(staged({}, requests=5000)).requests
    # the same arrivals shifted by 4 ms: the batcher does exactly what it did without stages
    assert np.allclose(df["latency_s"] - 0.007, plain["latency_s"], rtol=0, atol=1e-9)


def test_closed_loop_clients_wait_for_every_stage():
    s = sim.validate(scenario_dict(requests=20000, workload={"clients": {"count": 12, "think_time_ms": 1}},
                                   cost_model={"kind": "affine", "base_ms": 2.0, "per_item_ms": 0.5},
                                   server={"batching": {"policy": "dynamic", "max_batch_size": 8},
                                           "preprocess": {"workers": 4, "time_ms": {"dist": "exponential", "mean_ms": 3}},
                                           "postprocess": {"workers": 2, "time_ms": 0.5}, "pipeline_latency_ms": 1},
                                   outputs={"records": True, "plots": False}))
    res = sim.run(s)
    df, cl = res.requests, res.summary["closed_loop"]
    assert cl["law_rel_error"] < 0.01
    assert cl["response_time_s"] == pytest.approx(res.summary["latency_s"]["mean"], rel=0.01)
    for _, g in df.groupby("client"):  # one request at a time: the next is sent after the answer plus the think time
        g = g.sort_values("sent_s")
        assert (g["sent_s"].to_numpy()[1:] >= g["answered_s"].to_numpy()[:-1] + 0.001 - 1e-12).all()


@pytest.mark.parametrize("server,key,text", [
    ({"preprocess": {"workers": 0, "time_ms": 1}}, "server.preprocess.workers", "greater than or equal to 1"),
    ({"preprocess": {"time_ms": -2}}, "server.preprocess.time_ms", "between 0"),
    ({"postprocess": {"workers": 2}}, "server.postprocess.time_ms", "missing"),
    ({"instance_contention": [1, 2]}, "server.instance_contention", "instances_per_gpu above 1"),
    ({"instances_per_gpu": 2, "instance_contention": [1, 0.8]}, "server.instance_contention", "never fall below 1"),
])
def test_bad_stage_input(write_yaml, server, key, text):
    raw = scenario_dict()
    raw["server"].update(server)
    proc = run_cli("check", write_yaml(raw))
    assert proc.returncode == 2 and f": {key}: " in proc.stderr and text in proc.stderr, proc.stderr


def test_llm_stages_are_refused(write_yaml):
    raw = scenario_dict(workload={"arrival": {"process": "poisson", "rate_rps": 1},
                                  "prompt_tokens": {"dist": "fixed", "value": 10},
                                  "output_tokens": {"dist": "fixed", "value": 10}},
                        cost_model={"kind": "llm", "base_ms": 10.0, "prefill_token_ms": 0.05, "decode_seq_ms": 0.05},
                        server={"batching": {"policy": "continuous", "kv_cache_tokens": 10000},
                                "preprocess": {"workers": 2, "time_ms": 1}})
    proc = run_cli("check", write_yaml(raw))
    assert proc.returncode == 2 and ": server.preprocess: " in proc.stderr, proc.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_closed_loop_sends_pass_the_pool_first_come_first_served(workers):
    # a GPU answer can create a send earlier than sends already waiting: it must not queue behind them
    s = sim.validate(scenario_dict(requests=600, workload={"clients": {"count": 5, "ramp_up_s": 3.0,
                                                                      "think_time_ms": {"dist": "uniform", "low_ms": 0,
                                                                                        "high_ms": 400}}},
                                   cost_model={"kind": "affine", "base_ms": 200.0, "per_item_ms": 0.0},
                                   server={"batching": {"policy": "none"},
                                           "preprocess": {"workers": workers, "time_ms": 1500}},
                                   outputs={"records": True, "plots": False}))
    df = sim.run(s).requests.sort_values(["sent_s", "request_id"])
    free = [0.0] * workers
    for sent, leave in zip(df["sent_s"], df["arrival_s"]):  # a naive FCFS pool over the sends in time order
        start = max(sent, min(free))
        free[free.index(min(free))] = start + 1.5
        assert leave == pytest.approx(start + 1.5, abs=1e-9)


def test_an_overloaded_pool_is_unstable():
    s = sim.run(staged({"preprocess": {"workers": 1, "time_ms": 2.0}}, rate_rps=600.0, requests=20000)).summary
    assert not s["stable"] and any("server.preprocess" in w and "add workers" in w for w in s["warnings"])
    assert sim.run(staged({"preprocess": {"workers": 2, "time_ms": 2.0}}, rate_rps=600.0,
                          requests=20000)).summary["stable"]
