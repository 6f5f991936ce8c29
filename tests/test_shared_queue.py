"""One queue shared by several request-level replicas with priorities, a size limit, timeouts and closed-loop
clients (sim.replica.shared_pool): with none of them it is the shared-queue engine request for request; with one
replica it is the single replica's own queue request for request; against theory with exponential steps and
batch 1: Cobham's M/M/c non-preemptive priority waits, M/M/c/K blocking, the finite-source M/M/c//N chain."""
import numpy as np
import pytest

import sim
from sim.engine import simulate_shared
from sim.fleet.build import _pool_log, _shared_pool, run_batch_fleet
from sim.fleet.fleet import Fleet
from sim.fleet.routers import SharedQueue
from sim.rng import component_rng
from sim.runner import generate_workload
from sim.theory import finite_source_mmc, mmc_priority_waits_s, mmck_blocking

from .conftest import replicated, scenario_dict, within_ci

EXP = {"kind": "affine", "base_ms": 1.0, "per_item_ms": 0.0, "noise": {"dist": "exponential"}}
TWO = [{"name": "gold", "share": 0.3, "priority": 1}, {"name": "bronze", "share": 0.7, "priority": 2}]


def _pool_run(s, arrivals, level=None, levels=1, max_queue=None, timeout_s=None, delay=False):
    specs = [(g.batching.rule(g.cost_model.batch_limit()), g.cost_model) for g in s.fleet_groups
             for _ in range(g.replicas)]
    pool = _shared_pool(specs, s.seed, 0, max_queue, timeout_s, level or [0] * arrivals.size, levels, delay)
    Fleet([pool], lambda sid, a: 0).run(arrivals.tolist())
    return _pool_log(pool, arrivals)


@pytest.mark.parametrize("cost,batching", [
    ({"kind": "affine", "base_ms": 2.0, "per_item_ms": 0.25}, {"policy": "dynamic", "max_batch_size": 16,
                                                               "max_queue_delay_ms": 2}),
    ({"kind": "affine", "base_ms": 2.0, "per_item_ms": 0.25, "noise": {"cv": 0.2}},
     {"policy": "dynamic", "max_batch_size": 16, "max_queue_delay_ms": 2, "preferred_batch_sizes": [4, 8, 16]}),
    ({"kind": "affine", "base_ms": 2.0, "per_item_ms": 0.25}, {"policy": "static", "max_batch_size": 8,
                                                               "max_queue_delay_ms": 5}),
    (EXP, {"policy": "none"}),
])
def test_with_no_limit_the_pool_is_the_shared_queue_engine_request_for_request(cost, batching):
    s = sim.validate(scenario_dict(cost_model={**cost, "max_batch_size": 64}, requests=20000,
                                   workload={"arrival": {"process": "gamma", "rate_rps": 2000, "cv": 2}},
                                   server={"replicas": 3, "batching": batching}))
    a = generate_workload(s, 0).arrival_s
    ref = simulate_shared([(s.rule, s.cost_model)] * 3, a, noise_rng=component_rng(s.seed, 0, "cost_model.noise"))
    log = _pool_run(s, a)
    assert np.array_equal(ref.request_times("completion_s"), log.request_times("completion_s"))
    assert np.array_equal(ref.replica, log.replica) and np.array_equal(ref.size, log.size)


@pytest.mark.parametrize("queue,classes", [({"max_queue_size": 3}, None), ({"timeout_ms": 4.0}, None),
                                           ({"max_queue_size": 2}, TWO),
                                           ({"timeout_ms": 4.0, "timeout_action": "delay"}, TWO)])
def test_with_one_replica_the_pool_is_the_replica_s_own_queue_request_for_request(queue, classes):
    wl = {"arrival": {"process": "poisson", "rate_rps": 900}, **({"classes": classes} if classes else {})}
    s = sim.validate(scenario_dict(requests=8000, workload=wl, cost_model={"kind": "affine", "base_ms": 1.0,
                                                                           "per_item_ms": 0.5},
                                   server={"replicas": 1, "queue": queue,
                                           "batching": {"policy": "dynamic", "max_batch_size": 4,
                                                        "max_queue_delay_ms": 0.5}}))
    w = generate_workload(s, 0)
    timeout = queue.get("timeout_ms")
    delay = queue.get("timeout_action") == "delay"
    level = list(w.levels) if w.levels is not None else None
    levels = s.workload.priority_levels
    ref = run_batch_fleet(s.fleet_groups, SharedQueue(), w.arrival_s, s.seed, 0, queue.get("max_queue_size"),
                          timeout / 1000 if timeout else None, level, levels, delay=delay)
    if delay:
        level, levels = [2 * x for x in (level or [0] * w.arrival_s.size)], 2 * levels
    log = _pool_run(s, w.arrival_s, level, levels, queue.get("max_queue_size"), timeout / 1000 if timeout else None,
                    delay)
    assert np.array_equal(ref.request_times("completion_s"), log.request_times("completion_s"), equal_nan=True)
    assert np.array_equal(ref.rejected, log.rejected) and np.array_equal(ref.timed_out, log.timed_out)


def test_two_priorities_on_one_queue_of_three_replicas_match_cobham_for_m_m_c():
    lam, c = 2400.0, 3  # mean step 1 ms, load 0.8
    runs = replicated(lambda seed: scenario_dict(
        requests=60000, seed=seed, warmup_s=1.0, cost_model=EXP,
        workload={"arrival": {"process": "poisson", "rate_rps": lam}, "classes": TWO},
        server={"replicas": c, "batching": {"policy": "none"}}, outputs={"records": False, "plots": False}))
    exact = mmc_priority_waits_s([0.3 * lam, 0.7 * lam], 0.001, c)
    for name, w in zip(("gold", "bronze"), exact):
        within_ci([r["classes"][name]["queue_wait_s"]["mean"] for r in runs], w, name)


@pytest.mark.parametrize("rho,m", [(0.9, 2), (1.2, 4)])
def test_a_limit_on_one_queue_shared_by_three_replicas_blocks_as_m_m_c_k(rho, m):
    c = 3
    runs = replicated(lambda seed: scenario_dict(
        requests=40000, seed=seed, warmup_s=1.0, cost_model=EXP,
        workload={"arrival": {"process": "poisson", "rate_rps": rho * c * 1000}},
        server={"replicas": c, "batching": {"policy": "none"}, "queue": {"max_queue_size": m}},
        outputs={"records": False, "plots": False}))
    within_ci([r["rejected"]["fraction"] for r in runs], mmck_blocking(rho * c * 1000, 0.001, c, c + m), "blocking")


def test_closed_loop_clients_on_one_queue_of_three_replicas_match_the_finite_source_chain():
    n, c, z = 8, 3, 0.002
    runs = replicated(lambda seed: scenario_dict(
        requests=40000, seed=seed, warmup_s=0.5, cost_model=EXP,
        workload={"arrival": None, "clients": {"count": n, "think_time_ms": {"dist": "exponential", "mean_ms": 2.0}}},
        server={"replicas": c, "batching": {"policy": "none"}}, outputs={"records": False, "plots": False}))
    exact = finite_source_mmc(n, c, z, 0.001)
    within_ci([r["throughput_rps"] for r in runs], exact["throughput_rps"], "throughput")
    within_ci([r["closed_loop"]["response_time_s"] for r in runs], exact["response_s"], "response")


def test_no_served_request_waited_past_the_timeout_on_a_shared_queue():
    res = sim.run(sim.validate(scenario_dict(
        requests=30000, warmup_s=0.5, workload={"arrival": {"process": "poisson", "rate_rps": 3300}},
        cost_model={"kind": "affine", "base_ms": 2.0, "per_item_ms": 0.5},
        server={"replicas": 2, "queue": {"timeout_ms": 5.0},
                "batching": {"policy": "dynamic", "max_batch_size": 4, "max_queue_delay_ms": 0.5}},
        outputs={"records": True, "plots": False})))
    df, s = res.requests, res.summary
    served = df[df["dispatch_s"].notna()]
    assert (served["queue_wait_s"] <= 0.005 + 1e-12).all()
    assert s["timed_out"]["count"] > 0 and set(df["replica"].unique()) >= {0, 1}
