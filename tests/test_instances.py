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

from .conftest import run_cli, scenario_dict

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
    ({"instances_per_gpu": 2, "router": {"policy": "round_robin"}, "replicas": 2}, "server.instances_per_gpu",
     "router other than shared_queue"),
    ({"instances_per_gpu": 2, "queue": {"max_queue_size": 3}}, "server.instances_per_gpu", "queue limits"),
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
