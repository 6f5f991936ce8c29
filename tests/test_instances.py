"""Several model instances per GPU (server.instances_per_gpu) sharing one queue, with contention: exact timelines
of processor sharing, M/M/1 when the GPU's throughput is shared, M/M/2 without contention, one instance per GPU
equal to the shared-queue engine request for request, capacity, bad input."""
import numpy as np
import pytest

import sim
from sim.batching import DynamicBatching, NoBatching, StaticBatching
from sim.cost import AffineCost
from sim.engine import simulate_shared
from sim.instances import simulate_instances
from sim.theory import mmc_mean_wait_s

from .conftest import replicated, run_cli, scenario_dict, within_ci

ONE_MS = AffineCost(base_ms=1.0, per_item_ms=0.0)


def test_overlapping_steps_share_the_gpu_exactly():
    rule = NoBatching().rule(1)
    # two at once: each runs at half speed and both end at 2 ms; the third, queued, then runs alone
    log = simulate_instances([(rule, ONE_MS)], 2, [1.0, 2.0], np.array([0.0, 0.0, 0.0005]))
    assert log.dispatch_s.tolist() == [0.0, 0.0, 0.002] and log.completion_s.tolist() == [0.002, 0.002, 0.003]
    # the second starts when the first is half done: 0.5 ms left at half speed ends it at 1.5 ms; the second
    # does 0.5 ms of work by then and finishes alone at 2 ms
    log = simulate_instances([(rule, ONE_MS)], 2, [1.0, 2.0], np.array([0.0, 0.0005]))
    assert np.allclose(log.completion_s, [0.0015, 0.002], rtol=0, atol=1e-15)
    # a milder slowdown: 1.5x while two run
    log = simulate_instances([(rule, ONE_MS)], 2, [1.0, 1.5], np.array([0.0, 0.0]))
    assert np.allclose(log.completion_s, [0.0015, 0.0015], rtol=0, atol=1e-15)


@pytest.mark.parametrize("slowdown", [[1.0, 2.0], [1.0, 1.3, 1.9], [1.0, 1.0, 1.0]])
def test_every_step_gets_exactly_its_work(slowdown):
    # processor sharing: while k steps run each advances at 1 / s(k), so a step's work is the integral of that
    # rate over its wall time; checked for every step from the log alone
    k = len(slowdown)
    cost = AffineCost(base_ms=1.0, per_item_ms=0.3, max_batch_size=8)
    rule = DynamicBatching(max_batch_size=8, max_queue_delay_ms=0.4).rule(8)
    a = np.cumsum(np.random.default_rng(7).exponential(1 / 1800, 6000))
    log = simulate_instances([(rule, cost)] * 2, k, slowdown, a)
    table = cost.step_table_s(8)
    for g in range(2):
        on = log.replica == g
        d, c, size = log.dispatch_s[on], log.completion_s[on], log.size[on]
        times = np.unique(np.concatenate([d, c]))
        # concurrency on each segment between consecutive start/end instants
        running = np.searchsorted(np.sort(d), times[:-1], side="right") - np.searchsorted(np.sort(c), times[:-1], side="right")
        rate = np.where(running > 0, 1 / np.asarray(slowdown)[np.clip(running, 1, k) - 1], 0.0)
        done = np.concatenate([[0.0], np.cumsum(rate * np.diff(times))])
        work = np.interp(c, times, done) - np.interp(d, times, done)
        assert running.max() <= k
        assert np.allclose(work, table[size], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("policy", [NoBatching(), DynamicBatching(max_batch_size=8, max_queue_delay_ms=1),
                                    StaticBatching(max_batch_size=4, max_queue_delay_ms=3),
                                    DynamicBatching(max_batch_size=8, preferred_batch_sizes=[2, 4])])
def test_one_instance_per_gpu_is_the_shared_queue_engine(policy):
    cost = AffineCost(base_ms=2.0, per_item_ms=0.5, max_batch_size=16)
    rule = policy.rule(16)
    a = np.cumsum(np.random.default_rng(3).exponential(1 / 900, 8000))
    x, y = simulate_instances([(rule, cost)] * 3, 1, [1.0], a), simulate_shared([(rule, cost)] * 3, a)
    for key in ("size", "dispatch_s", "completion_s", "replica"):
        assert np.array_equal(getattr(x, key), getattr(y, key)), key


def run_mm(contention, seed, rate_rps=700.0):
    return sim.run(sim.validate(scenario_dict(
        requests=40000, seed=seed, warmup_s=1.0, workload={"arrival": {"process": "poisson", "rate_rps": rate_rps}},
        cost_model={"kind": "affine", "base_ms": 1.0, "per_item_ms": 0.0, "noise": {"dist": "exponential"}},
        server={"batching": {"policy": "none"}, "instances_per_gpu": 2, "instance_contention": contention},
        outputs={"records": False, "plots": False}))).summary


def test_shared_throughput_is_mm1_and_no_contention_is_mm2():
    lam, s = 700.0, 0.001
    for contention, exact in (([1.0, 2.0], 1 / (1 / s - lam)),  # work-conserving at rate 1: M/M/1's mean
                              ([1.0, 1.0], mmc_mean_wait_s(lam, s, 2) + s)):  # two independent servers: M/M/2
        got = np.array([run_mm(contention, seed)["latency_s"]["mean"] for seed in range(8)])
        half = 2.365 * got.std(ddof=1) / np.sqrt(got.size)
        assert abs(got.mean() - exact) <= 3 * half, (contention, got, exact)


def test_capacity_and_utilization_count_instances():
    s = run_mm([1.0, 1.6], 0)
    assert s["capacity_rps"] == pytest.approx(2 / 1.6 * 1000)
    assert 0 < s["utilization"] <= 1


@pytest.mark.parametrize("server,key,text", [
    ({"instances_per_gpu": 3, "instance_contention": [1, 2]}, "server.instance_contention", "give one for each"),
])
def test_bad_instance_input(write_yaml, server, key, text):
    raw = scenario_dict()
    raw["server"].update(server)
    proc = run_cli("check", write_yaml(raw))
    assert proc.returncode == 2 and f": {key}: " in proc.stderr and text in proc.stderr, proc.stderr


def test_utilization_is_the_time_the_gpu_runs_anything():
    from sim.metrics import _gpu_busy

    assert _gpu_busy(np.array([0.0, 1.0, 5.0, 5.5]), np.array([2.0, 3.0, 6.0, 5.7])) == pytest.approx(4.0)
    # one instance always busy under the default sharing keeps the whole GPU busy
    s = run_mm(None, 0, rate_rps=950.0)
    assert 0.9 < s["utilization"] <= 1.0


EXP = {"kind": "affine", "base_ms": 1.0, "per_item_ms": 0.0, "noise": {"dist": "exponential"}}


def test_instance_groups_behind_random_routing_are_independent_m_m_1_processor_sharing_queues():
    # two GPUs behind `random`: each sees Poisson at lambda / 2; two instances sharing a GPU's throughput serve
    # as one processor-sharing server, whose mean time in system is M/M/1's 1 / (mu - lambda / 2)
    lam, mu = 1400.0, 1000.0
    runs = replicated(lambda seed: scenario_dict(
        requests=40000, seed=seed, warmup_s=1.0, cost_model=EXP,
        workload={"arrival": {"process": "poisson", "rate_rps": lam}},
        server={"replicas": 2, "router": {"policy": "random"}, "instances_per_gpu": 2, "batching": {"policy": "none"}},
        outputs={"records": False, "plots": False}))
    within_ci([r["latency_s"]["mean"] for r in runs], 1 / (mu - lam / 2), "latency")


def test_a_queue_limit_on_instance_groups_blocks_as_m_m_1_k():
    # one GPU, two instances sharing its throughput: the number in system is a birth-death chain with death rate
    # mu whenever any request is served, so room for m waiting besides the two in service is M/M/1/K, K = 2 + m
    from sim.theory import mmck_blocking

    lam, m = 1100.0, 3
    runs = replicated(lambda seed: scenario_dict(
        requests=40000, seed=seed, warmup_s=1.0, cost_model=EXP,
        workload={"arrival": {"process": "poisson", "rate_rps": lam}},
        server={"replicas": 1, "instances_per_gpu": 2, "queue": {"max_queue_size": m},
                "batching": {"policy": "none"}}, outputs={"records": False, "plots": False}))
    within_ci([r["rejected"]["fraction"] for r in runs], mmck_blocking(lam, 0.001, 1, 2 + m), "blocking")


def test_instance_groups_with_priorities_and_closed_loop_clients_run():
    classes = [{"name": "gold", "share": 0.3, "priority": 1}, {"name": "bulk", "share": 0.7, "priority": 2}]
    s = sim.run(sim.validate(scenario_dict(
        requests=20000, warmup_s=0.5, cost_model={"kind": "affine", "base_ms": 1.0, "per_item_ms": 0.5},
        workload={"arrival": {"process": "poisson", "rate_rps": 2400}, "classes": classes},
        server={"replicas": 2, "router": {"policy": "join_shortest_queue"}, "instances_per_gpu": 2,
                "batching": {"policy": "dynamic", "max_batch_size": 4, "max_queue_delay_ms": 0.5}}))).summary
    assert s["classes"]["gold"]["queue_wait_s"]["mean"] < s["classes"]["bulk"]["queue_wait_s"]["mean"]
    closed = sim.run(sim.validate(scenario_dict(
        requests=20000, warmup_s=0.5, cost_model={"kind": "affine", "base_ms": 1.0, "per_item_ms": 0.5},
        workload={"arrival": None, "clients": {"count": 6, "think_time_ms": 1}},
        server={"replicas": 1, "instances_per_gpu": 2, "batching": {"policy": "none"}}))).summary
    assert abs(closed["closed_loop"]["law_rel_error"]) < 0.02 and closed["stable"]


@pytest.mark.parametrize("policy,noise", [(NoBatching(), None), (DynamicBatching(max_batch_size=8, max_queue_delay_ms=1), 0.2),
                                          (DynamicBatching(max_batch_size=8, preferred_batch_sizes=[2, 4]), None)])
def test_the_instance_pool_is_the_fast_instance_engine_request_for_request(policy, noise):
    # limits, priorities, routers and closed loops run on the pool (sim.replica.instance_pool); without them the
    # fast engine (sim.instances) runs: the two must agree
    from sim.fleet.counts import Counts
    from sim.fleet.fleet import Fleet
    from sim.replica.instance_pool import InstancePool

    cost = AffineCost(base_ms=2.0, per_item_ms=0.5, max_batch_size=16,
                      **({"noise": {"cv": noise}} if noise else {}))
    rule = policy.rule(16)
    a = np.cumsum(np.random.default_rng(5).exponential(1 / 1500, 8000))
    rng = (lambda: np.random.default_rng(9)) if noise else (lambda: None)
    fast = simulate_instances([(rule, cost)] * 2, 3, [1.0, 1.4, 2.0], a, noise_rng=rng())
    pool = InstancePool([(rule, cost)] * 2, 3, [1.0, 1.4, 2.0], Counts(1), [0] * a.size, 1, rng())
    Fleet([pool], lambda sid, t: 0).run(a.tolist())
    assert np.array_equal(np.frombuffer(pool.sizes, np.int32), fast.size)
    assert np.array_equal(np.frombuffer(pool.who, np.int32), fast.replica)
    np.testing.assert_allclose(np.frombuffer(pool.completion, np.float64), fast.completion_s, rtol=1e-12, atol=0)
