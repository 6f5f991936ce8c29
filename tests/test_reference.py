"""The fast engine against an independent, naive per-request SimPy model of the same system."""
import numpy as np
import pytest

from sim import AffineCost, DynamicBatching, NoBatching, StaticBatching, simulate
from sim.metrics import request_columns
from sim.reference import naive_simulate


@pytest.mark.parametrize("policy,replicas", [
    (NoBatching(), 1),
    (DynamicBatching(max_batch_size=8, max_queue_delay_ms=0), 1),
    (DynamicBatching(max_batch_size=16, max_queue_delay_ms=3), 1),
    (DynamicBatching(max_batch_size=16, max_queue_delay_ms=3, preferred_batch_sizes=[4, 8]), 1),
    (StaticBatching(max_batch_size=8, max_queue_delay_ms=5), 1),
    (StaticBatching(max_batch_size=8), 1),
    (DynamicBatching(max_batch_size=8, max_queue_delay_ms=2), 3),
])
@pytest.mark.parametrize("rate_rps", [300.0, 2500.0])
def test_engine_matches_naive_model_request_for_request(policy, replicas, rate_rps):
    cost = AffineCost(base_ms=2.0, per_item_ms=0.4, max_batch_size=32)
    arrivals = np.cumsum(np.random.default_rng(int(rate_rps) + replicas).exponential(1 / rate_rps, 3000))
    rule = policy.rule(cost.batch_limit())
    cols = request_columns(simulate(rule, cost, arrivals, replicas=replicas))
    dispatch, completion, size = naive_simulate(rule, cost, arrivals, replicas=replicas)
    np.testing.assert_allclose(cols["dispatch_s"], dispatch, rtol=0, atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(cols["completion_s"], completion, rtol=0, atol=1e-9, equal_nan=True)
    assert np.array_equal(cols["batch_size"], size)
