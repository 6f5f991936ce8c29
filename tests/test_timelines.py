"""Exact event timelines on small hand-made arrival sequences (times in ms, step h(k) = 2 + k ms)."""
import numpy as np
import pytest

import sim
from sim import AffineCost, DynamicBatching, NoBatching, StaticBatching, simulate

COST = AffineCost(base_ms=2.0, per_item_ms=1.0, max_batch_size=8)
ARR_MS = [0.0, 1.0, 1.5, 10.0, 10.5, 20.0]


def timeline(policy, arrivals_ms=ARR_MS, replicas=1, cost=COST):
    log = simulate(policy.rule(cost.batch_limit()), cost, np.array(arrivals_ms) / 1000, replicas=replicas)
    return (log.size.tolist(), np.round(log.dispatch_s * 1000, 9).tolist(),
            np.round(log.completion_s * 1000, 9).tolist(), log.replica.tolist())


def test_no_batching_is_fcfs_single_server():
    sizes, start, end, _ = timeline(NoBatching())
    assert sizes == [1] * 6
    assert start == [0, 3, 6, 10, 13, 20]
    assert end == [3, 6, 9, 13, 16, 23]


def test_dynamic_waits_for_oldest_delay_then_takes_everything_waiting():
    sizes, start, end, _ = timeline(DynamicBatching(max_batch_size=4, max_queue_delay_ms=1))
    # t=0: oldest arrived 0, due at 1: the request arriving at 1 joins -> batch of 2 at 1 ms, ends at 5.
    # t=5: the request from 1.5 ms waited past its delay -> runs alone, 5..8.
    # t=8: next arrives 10, due 11; 10.5 joins -> 11..15; 20 alone at 21..24.
    assert sizes == [2, 1, 2, 1]
    assert start == [1, 5, 11, 21]
    assert end == [5, 8, 15, 24]


def test_dynamic_sends_as_soon_as_the_batch_is_full():
    sizes, start, _, _ = timeline(DynamicBatching(max_batch_size=2, max_queue_delay_ms=50))
    assert sizes[:2] == [2, 2]
    assert start[:2] == [1.0, 10.0]  # full at the 2nd arrival (1 ms), then at 10 ms (1.5 and 10)


def test_dynamic_zero_delay_takes_min_of_waiting_and_limit():
    sizes, start, _, _ = timeline(DynamicBatching(max_batch_size=8), arrivals_ms=[0, 0.5, 0.6, 0.7, 4, 4, 4])
    # batch of 1 at 0 (ends 3); at 3 three wait -> batch of 3 (ends 8); at 8 three wait -> batch of 3.
    assert sizes == [1, 3, 3]
    assert start == [0, 3, 8]


def test_static_waits_for_exactly_the_batch_size():
    sizes, start, end, _ = timeline(StaticBatching(max_batch_size=2))
    assert sizes == [2, 2, 2]
    assert start == [1, 10, 20]
    assert end == [5, 14, 24]


def test_static_leaves_a_partial_batch_unserved_without_a_timeout():
    log = simulate(StaticBatching(max_batch_size=4).rule(8), COST, np.array(ARR_MS) / 1000)
    assert log.size.tolist() == [4]
    assert log.served == 4


def test_static_with_timeout_flushes_partial_batches():
    sizes, start, end, _ = timeline(StaticBatching(max_batch_size=4, max_queue_delay_ms=5))
    # the oldest (0 ms) is due at 5 ms before a 4th request arrives: 0, 1, 1.5 go at 5 (ends 10);
    # 10 and 10.5 go when 10 is due (15, ends 19); 20 goes alone at 25.
    assert sizes == [3, 2, 1]
    assert start == [5, 15, 25]
    assert end == [10, 19, 28]


def test_preferred_batch_sizes_send_largest_preferred_available():
    arr = [0, 0, 0, 0, 0, 0, 0]  # seven at once
    sizes, start, _, _ = timeline(DynamicBatching(max_batch_size=8, max_queue_delay_ms=100,
                                                  preferred_batch_sizes=[2, 4]), arrivals_ms=arr)
    # at 0: seven wait -> largest preferred <= 7 is 4; then 3 wait -> 2; then 1 waits until its delay (100 ms)
    assert sizes == [4, 2, 1]
    assert start == [0, 6, 100]


def test_replicas_share_one_queue():
    sizes, start, end, who = timeline(NoBatching(), arrivals_ms=[0, 0, 0, 1], replicas=2)
    assert sizes == [1, 1, 1, 1]
    assert start == [0, 0, 3, 3]
    assert end == [3, 3, 6, 6]
    assert sorted(who[:2]) == [0, 1]


def test_request_columns_match_batches():
    s = sim.validate({"name": "t", "workload": {"arrival": {"process": "trace", "times_s": [x / 1000 for x in ARR_MS]}},
                      "cost_model": {"kind": "affine", "base_ms": 2, "per_item_ms": 1, "max_batch_size": 8},
                      "server": {"batching": {"policy": "dynamic", "max_batch_size": 4, "max_queue_delay_ms": 1}},
                      "outputs": {"plots": False}})
    df = sim.run(s).requests
    assert df["batch_id"].tolist() == [0, 0, 1, 2, 2, 3]
    assert np.allclose(df["latency_s"] * 1000, [5, 4, 6.5, 5, 4.5, 4])
    assert np.allclose(df["queue_wait_s"] * 1000, [1, 0, 3.5, 1, 0.5, 1])
    assert df["batch_size"].tolist() == [2, 2, 1, 2, 2, 1]


def test_noise_changes_step_times_and_is_reproducible():
    cost = AffineCost(base_ms=2, per_item_ms=1, max_batch_size=8, noise={"cv": 0.2})
    arr = np.arange(0, 1, 0.01)
    a = simulate(NoBatching().rule(8), cost, arr, noise_rng=np.random.default_rng(5))
    b = simulate(NoBatching().rule(8), cost, arr, noise_rng=np.random.default_rng(5))
    assert np.array_equal(a.step_s, b.step_s)
    assert a.step_s.std() > 0
    with pytest.raises(ValueError):
        simulate(NoBatching().rule(8), cost, arr)
