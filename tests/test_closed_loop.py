"""Closed-loop clients (workload.clients): exact timelines, the interactive response-time law on every run,
mean value analysis of the machine-repairman model, queue limits, queue timeouts (against a naive model, request
for request), routers, determinism and bad input."""
import heapq
import math

import numpy as np
import pytest

import sim

from .conftest import run_cli, scenario_dict

AFFINE = {"kind": "affine", "base_ms": 2.0, "per_item_ms": 0.5, "max_batch_size": 16}


def closed(count, think=0, requests=20000, seed=0, server=None, cost=None, **extra):
    return sim.validate(scenario_dict(requests=requests, seed=seed,
                                      workload={"clients": {"count": count, "think_time_ms": think}},
                                      cost_model=cost or AFFINE,
                                      server=server or {"batching": {"policy": "dynamic", "max_batch_size": 16,
                                                                     "max_queue_delay_ms": 0}},
                                      outputs={"records": True, "plots": False}, **extra))


@pytest.mark.parametrize("n", [1, 5, 16])
def test_zero_think_time_gives_exactly_h_of_n(n):
    # every client is answered by the same batch of n and sends again at once: latency h(n), throughput n / h(n)
    res = sim.run(closed(n, requests=200 * n))
    h = (2.0 + 0.5 * n) / 1000
    df = res.requests
    assert np.all(df["batch_size"] == n)
    assert np.allclose(df["latency_s"], h, rtol=0, atol=1e-12)
    assert res.summary["throughput_rps"] == pytest.approx(n / h, rel=1e-9)
    cl = res.summary["closed_loop"]
    assert cl["law_rel_error"] < 1e-9 and cl["think_time_s"] == 0


@pytest.mark.parametrize("think", [{"dist": "exponential", "mean_ms": 8}, 3.0,
                                   {"dist": "uniform", "low_ms": 0, "high_ms": 20},
                                   {"dist": "lognormal", "mean_ms": 5, "cv": 2}])
def test_response_time_law_holds_on_every_run(think):
    for seed in range(3):
        s = closed(12, think, seed=seed, requests=30000, warmup_s=0.5)
        cl = sim.run(s).summary["closed_loop"]
        # edge effects: about one cycle per client over the window
        assert cl["law_rel_error"] < 12 / cl["cycles"] * 20, cl


def test_mean_value_analysis_of_the_machine_repairman_model():
    # batch 1, exponential service S, N clients thinking Z: exact MVA for the closed network
    n_clients, s_ms, z_ms = 6, 2.0, 6.0
    cost = {"kind": "affine", "base_ms": s_ms, "per_item_ms": 0.0, "noise": {"dist": "exponential"}}
    q = 0.0
    for n in range(1, n_clients + 1):
        r = s_ms * (1 + q)
        x = n / (r + z_ms)
        q = x * r
    runs = [sim.run(closed(n_clients, {"dist": "exponential", "mean_ms": z_ms}, seed=seed, requests=40000, warmup_s=1,
                           cost=cost, server={"batching": {"policy": "none"}})).summary for seed in range(6)]
    lat = np.array([s["latency_s"]["mean"] * 1000 for s in runs])
    thr = np.array([s["closed_loop"]["throughput_rps"] / 1000 for s in runs])
    for got, exact in ((lat, r), (thr, x)):
        half = 2.571 * got.std(ddof=1) / np.sqrt(got.size)
        assert abs(got.mean() - exact) <= 3 * half + 1e-3 * exact, (got, exact)


def test_ramp_up_spreads_the_first_requests():
    res = sim.run(sim.validate(scenario_dict(requests=40, workload={"clients": {"count": 4, "think_time_ms": 1000,
                                                                                "ramp_up_s": 2.0}},
                                             cost_model=AFFINE, outputs={"records": True, "plots": False})))
    first = res.requests.groupby("client")["arrival_s"].min().sort_index().to_numpy()
    assert np.allclose(first, [0.0, 0.5, 1.0, 1.5])


def test_a_rejected_client_thinks_and_sends_again():
    # batch 1, room for one waiting request: most of the 8 clients are turned away and come back after thinking
    res = sim.run(closed(8, 1.0, requests=20000, server={"batching": {"policy": "none"}, "queue": {"max_queue_size": 1}}))
    s = res.summary
    assert s["rejected"]["count"] > 1000 and s["stable"]
    assert s["closed_loop"]["law_rel_error"] < 0.01
    df = res.requests
    # every client's requests follow each other: the next is sent after the previous cycle ended plus its think time
    for _, g in df.groupby("client"):
        a = g["arrival_s"].to_numpy()
        assert np.all(np.diff(a) > 0)


@pytest.mark.parametrize("router", ["round_robin", "random", "join_shortest_queue", "power_of_two"])
def test_routers_with_closed_loop(router):
    s = closed(24, {"dist": "exponential", "mean_ms": 4}, requests=30000,
               server={"replicas": 3, "router": {"policy": router},
                       "batching": {"policy": "dynamic", "max_batch_size": 8, "max_queue_delay_ms": 0.5}})
    res = sim.run(s)
    assert res.summary["closed_loop"]["law_rel_error"] < 0.01
    assert set(res.requests["replica"].unique()) == {0, 1, 2}
    # never more requests outstanding than clients
    df = res.requests
    a, c = np.sort(df["arrival_s"].to_numpy()), np.sort(df["completion_s"].to_numpy())
    assert (np.arange(1, a.size + 1) - np.searchsorted(c, a, side="right")).max() <= 24


def test_same_seed_same_run():
    s = closed(10, {"dist": "exponential", "mean_ms": 3}, requests=5000,
               server={"replicas": 2, "router": {"policy": "join_shortest_queue"}})
    a, b = sim.run(s).requests, sim.run(s).requests
    assert a.equals(b)


def test_duration_bounds_the_sending():
    s = sim.validate(scenario_dict(duration_s=2.0, requests=None, workload={"clients": {"count": 3, "think_time_ms": 10}},
                                   cost_model=AFFINE, outputs={"records": True, "plots": False}))
    df = sim.run(s).requests
    assert df["arrival_s"].max() < 2.0 and len(df) > 100


@pytest.mark.parametrize("change,key,text", [
    ({"workload": {"clients": {"count": 4}, "arrival": {"process": "poisson", "rate_rps": 10}}},
     "workload.clients", "not both"),
    ({"workload": {}}, "workload.arrival", "workload.clients"),
    ({"workload": {"clients": {"count": 0}}}, "workload.clients.count", "greater than or equal to 1"),
    ({"workload": {"clients": {"count": 2, "think_time_ms": -1}}}, "workload.clients.think_time_ms", "between 0"),
    ({"workload": {"clients": {"count": 2, "think_time_ms": {"dist": "gamma"}}}},
     "workload.clients.think_time_ms.dist", "exponential"),
    ({"workload": {"clients": {"count": 4}}, "server": {"batching": {"policy": "static", "max_batch_size": 8}}},
     "server.batching.max_batch_size", "never fill"),
    ({"workload": {"clients": {"count": 4}}, "server": {"queue": {"max_queue_size": 1}}},
     "workload.clients.think_time_ms", "retry at the same instant"),
])
def test_bad_closed_loop_input(write_yaml, change, key, text):
    raw = scenario_dict(**change)
    proc = run_cli("check", write_yaml(raw))
    assert proc.returncode == 2, proc.stderr
    assert f": {key}: " in proc.stderr and text in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_plan_refuses_a_closed_loop_with_the_sweep_to_run(write_yaml, tmp_path):
    raw = scenario_dict(workload={"clients": {"count": 4}}, slo={"latency_p99_ms": 20})
    proc = run_cli("plan", write_yaml(raw), "--out", str(tmp_path / "p"))
    assert proc.returncode == 2 and ": workload.clients: " in proc.stderr and "--grid workload.clients.count" in proc.stderr
    assert not (tmp_path / "p").exists()


def naive_closed_timeouts(clients: int, servers: int, service_s: float, timeout_s: float, think_s, requests: int):
    """A closed loop of `clients` over `servers` FCFS servers of batch 1 and fixed service, whose requests leave
    after waiting timeout_s, written the plain way: one event per send, completion and deadline. `think_s[i]` is
    the think time after request i's cycle. Returns per request (arrival, dispatch, completion, timed out)."""
    events, seq = [], 0  # (time, order at the instant, sequence, kind, payload)
    def push(t, order, kind, x):
        nonlocal seq
        heapq.heappush(events, (t, order, seq, kind, x))
        seq += 1
    for c in range(clients):
        push(0.0, 1, "send", c)
    arrival, dispatch, completion, gone, client = [], [], [], [], []
    queue, idle = [], servers

    def start(t):
        nonlocal idle
        while idle and queue:
            i = queue.pop(0)
            idle -= 1
            dispatch[i] = t
            completion[i] = t + service_s
            push(t + service_s, 0, "done", i)
    while events:
        t, _, _, kind, x = heapq.heappop(events)
        if kind == "send":
            if len(arrival) >= requests:
                continue
            i = len(arrival)
            arrival.append(t), dispatch.append(math.nan), completion.append(math.nan), gone.append(False)
            client.append(x)
            queue.append(i)
            push(t + timeout_s, 3, "deadline", i)
            start(t)
        elif kind == "done":
            idle += 1
            push(t + think_s[x], 1, "send", client[x])
            start(t)
        elif x in queue:  # its deadline, still waiting: the client gives up now
            queue.remove(x)
            gone[x] = True
            push(t + think_s[x], 1, "send", client[x])
    return np.array(arrival), np.array(dispatch), np.array(completion), np.array(gone)


@pytest.mark.parametrize("replicas", [1, 3])
def test_queue_timeouts_match_a_naive_closed_loop_request_for_request(replicas):
    # batch 1, fixed 2 ms service, 5.5 ms timeout: the clients outnumber what the servers answer in time, so about
    # half the cycles end in a give-up, which the client hears of at its deadline and thinks from
    n, service_ms, timeout_ms = 8 * replicas, 2.0, 5.5
    res = sim.run(closed(n, {"dist": "exponential", "mean_ms": 2}, requests=6000,
                         cost={"kind": "affine", "base_ms": service_ms, "per_item_ms": 0.0},
                         server={"replicas": replicas, "batching": {"policy": "none"},
                                 "queue": {"timeout_ms": timeout_ms}}))
    df = res.requests.sort_values("request_id")
    a, d, c, gone = naive_closed_timeouts(n, replicas, service_ms / 1000, timeout_ms / 1000,
                                          df["think_s"].to_numpy(), len(df))
    assert 0.2 < gone.mean() < 0.8
    np.testing.assert_allclose(df["arrival_s"], a, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(df["timed_out"].to_numpy(), gone)
    np.testing.assert_allclose(df["dispatch_s"], d, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(df["completion_s"], c, rtol=1e-9, atol=1e-12)
    assert res.summary["timed_out"]["count"] == int(gone[df["arrival_s"].to_numpy() >= 0].sum())


def _next_send_gap(df, timeout_s: float) -> np.ndarray:
    """Returns, per request but each client's last, its client's next arrival minus when its cycle ended plus its
    think time (the cycle ends at the completion, or at arrival + timeout_s for a request that timed out)."""
    gaps = []
    for _, g in df.sort_values("arrival_s").groupby("client"):
        end = np.where(g["timed_out"], g["arrival_s"] + timeout_s, g["completion_s"])
        gaps.append(g["arrival_s"].to_numpy()[1:] - (end + g["think_s"].to_numpy())[:-1])
    return np.concatenate(gaps)


@pytest.mark.parametrize("server", [
    {"replicas": 3, "router": {"policy": "join_shortest_queue"}},
    {"replicas": 2, "router": {"policy": "round_robin"}, "instances_per_gpu": 2},
    {"replicas": 3},
    {"replicas": 2, "autoscaler": {"policy": "schedule", "schedule": [[0, 1], [0.5, 2]], "interval_s": 0.1}},
    {"replicas": 2, "router": {"policy": "power_of_two"},
     "autoscaler": {"policy": "schedule", "schedule": [[0, 2], [0.5, 1]], "interval_s": 0.1}},
], ids=["jsq", "instances", "shared", "shared-autoscaled", "p2c-autoscaled"])
def test_queue_timeouts_end_cycles_at_the_deadline_on_every_path(server):
    timeout_ms = 4.0
    srv = {"batching": {"policy": "dynamic", "max_batch_size": 4, "max_queue_delay_ms": 1},
           "queue": {"timeout_ms": timeout_ms}, **server}
    res = sim.run(sim.validate(scenario_dict(
        requests=8000, cost_model=AFFINE, server=srv, outputs={"records": True, "plots": False},
        workload={"clients": {"count": 40, "think_time_ms": {"dist": "exponential", "mean_ms": 3}},
                  "classes": [{"name": "hi", "share": 0.3, "priority": 1}, {"name": "lo", "share": 0.7, "priority": 2}]})))
    df = res.requests
    served = ~df["timed_out"]
    assert df["timed_out"].sum() > 200 and served.sum() > 1000
    # no served request waited past the timeout; every give-up ends its cycle at its deadline, exactly
    assert (df.loc[served, "queue_wait_s"] <= timeout_ms / 1000 + 1e-12).all()
    assert (np.diff(df.sort_values("request_id")["arrival_s"].to_numpy()) >= 0).all()  # no send into the past
    assert np.abs(_next_send_gap(df, timeout_ms / 1000)).max() < 1e-9
    assert res.summary["closed_loop"]["law_rel_error"] < 0.01


def test_queue_timeout_delay_keeps_every_client_waiting():
    # timeout_action delay: a late request waits behind the others and is answered; no cycle ends in a give-up
    res = sim.run(closed(24, {"dist": "exponential", "mean_ms": 2}, requests=6000,
                         server={"replicas": 2, "batching": {"policy": "none"},
                                 "queue": {"timeout_ms": 3, "timeout_action": "delay"}},
                         cost={"kind": "affine", "base_ms": 2.0, "per_item_ms": 0.0}))
    df = res.requests
    assert df["delayed"].sum() > 500 and not df["timed_out"].any()
    assert np.abs(_next_send_gap(df, 0.003)).max() < 1e-9
