"""LLM request classes (admission by priority) and clients that give up (workload.client_timeout_ms), on one
engine and on fleets: a prioritised queue with one level is FCFS bit for bit, nobody was admitted after its
client gave up, nobody who gave up got a token, and the high class waits less."""
import numpy as np
import pytest

import sim
from sim.fleet.build import run_llm_fleet
from sim.runner import generate_workload

from .conftest import run_cli, scenario_dict

CLASSES = [{"name": "chat", "share": 0.3, "priority": 1}, {"name": "bulk", "share": 0.7, "priority": 2}]


def llm(rate_rps=7.0, requests=3000, server=None, **workload):
    return sim.validate(scenario_dict(
        requests=requests, seed=4, warmup_s=10,
        workload={"arrival": {"process": "poisson", "rate_rps": rate_rps},
                  "prompt_tokens": {"dist": "lognormal", "mean": 600, "cv": 1.0, "min": 8, "max": 4000},
                  "output_tokens": {"dist": "lognormal", "mean": 200, "cv": 0.8, "min": 1, "max": 1500}, **workload},
        cost_model={"kind": "llm", "base_ms": 12.0, "prefill_token_ms": 0.06, "decode_seq_ms": 0.08,
                    "decode_context_ms": 0.00002},
        server=server or {"batching": {"policy": "continuous", "max_num_seqs": 48, "max_num_batched_tokens": 2048,
                                       "kv_cache_tokens": 120000}},
        outputs={"records": True, "plots": False}))


@pytest.mark.parametrize("router", ["shared_queue", "join_shortest_queue", "least_outstanding_tokens"])
def test_one_level_queue_is_fcfs_bit_for_bit(router):
    s = llm(server={"replicas": 2, "router": {"policy": router},
                    "batching": {"policy": "continuous", "max_num_seqs": 24, "max_num_batched_tokens": 2048,
                                 "kv_cache_tokens": 40000}}, rate_rps=9.0, requests=1500)
    wl = generate_workload(s)
    args = (s.fleet_groups, s.server.router, wl.arrival_s, wl.prompt_tokens, wl.output_tokens, 4, 0)
    plain = run_llm_fleet(*args)
    classed = run_llm_fleet(*args, level=[0] * wl.arrival_s.size, levels=2)
    for key in ("first_token_s", "finish_s", "preemptions", "step_start_s", "step_s"):
        assert np.array_equal(getattr(plain, key), getattr(classed, key), equal_nan=True), key


@pytest.mark.parametrize("server", [None, {"replicas": 2, "router": {"policy": "shared_queue"},
                                           "batching": {"policy": "continuous", "max_num_seqs": 24,
                                                        "max_num_batched_tokens": 2048, "kv_cache_tokens": 60000}},
                                    {"replicas": 2, "router": {"policy": "join_shortest_queue"},
                                     "batching": {"policy": "continuous", "max_num_seqs": 24,
                                                  "max_num_batched_tokens": 2048, "kv_cache_tokens": 60000}}])
def test_clients_give_up_and_priorities_hold(server):
    res = sim.run(llm(rate_rps=9.0 if server is None else 20.0, server=server, classes=CLASSES, client_timeout_ms=3000))
    df, s = res.requests, res.summary
    gave_up = df["timed_out"].to_numpy()
    assert gave_up.sum() > 0 and s["timed_out"]["count"] == int(gave_up[df["arrival_s"] >= 10].sum())
    served = df["admitted_s"].notna().to_numpy()
    # nobody was admitted after their client gave up; nobody who gave up was ever admitted or got a token
    assert np.all(df["admitted_s"][served] - df["arrival_s"][served] <= 3.0 + 1e-9)
    assert not np.any(served & gave_up) and df["first_token_s"][gave_up].isna().all()
    c = s["classes"]
    assert c["chat"]["ttft_s"]["mean"] < c["bulk"]["ttft_s"]["mean"]
    assert c["chat"]["timed_out"]["fraction"] < c["bulk"]["timed_out"]["fraction"]
    assert sum(x["timed_out"]["count"] for x in c.values()) == s["timed_out"]["count"]
    assert s["stable"] and "load_definition" in s


def test_class_token_sizes_and_slos():
    classes = [{"name": "short", "share": 0.5, "output_tokens": {"dist": "fixed", "value": 10},
                "slo": {"ttft_p99_ms": 500}},
               {"name": "long", "share": 0.5, "output_tokens": {"dist": "fixed", "value": 300}}]
    res = sim.run(llm(rate_rps=4.0, classes=classes))
    df = res.requests
    assert set(df.loc[df["class"] == "short", "output_tokens"]) == {10}
    assert set(df.loc[df["class"] == "long", "output_tokens"]) == {300}
    sec = res.summary["classes"]["short"]
    assert sec["slo"]["targets"]["ttft_p99"]["target_ms"] == 500 and "slo" not in res.summary["classes"]["long"]


@pytest.mark.parametrize("change,key,text", [
    ({"client_timeout_ms": 100}, "workload.client_timeout_ms", "continuous"),
])
def test_bad_llm_class_input(write_yaml, change, key, text):
    raw = scenario_dict(workload={"arrival": {"process": "poisson", "rate_rps": 10}, **change})
    proc = run_cli("check", write_yaml(raw))
    assert proc.returncode == 2 and f": {key}: " in proc.stderr and text in proc.stderr, proc.stderr


def test_llm_static_refuses_priorities(write_yaml):
    raw = llm(classes=CLASSES).model_dump(mode="json", exclude_none=True)
    raw["server"]["batching"] = {"policy": "llm_static", "max_batch_size": 8, "kv_cache_tokens": 100000}
    proc = run_cli("check", write_yaml(raw))
    assert proc.returncode == 2 and ": workload.classes: " in proc.stderr and "llm_static" in proc.stderr, proc.stderr


def test_a_queue_timeout_on_llm_engines_names_the_client_timeout(write_yaml):
    raw = llm().model_dump(mode="json", exclude_none=True)
    raw["server"]["queue"] = {"timeout_ms": 500}
    proc = run_cli("check", write_yaml(raw))
    assert proc.returncode == 2 and ": server.queue.timeout_ms: " in proc.stderr, proc.stderr
    assert "workload.client_timeout_ms" in proc.stderr and "Traceback" not in proc.stderr
