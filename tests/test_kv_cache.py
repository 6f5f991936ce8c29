"""The KV block manager (sim/replica/kv_cache.py): what each call does to the counts, a refused allocation changes
nothing, and after a run with preemptions every engine has given every block back."""
import pytest

import sim
from sim.fleet.build import _per_replica
from sim.replica import ContinuousReplica, KvCache, LlmRequests
from sim.runner import generate_workload

from .conftest import scenario_dict


def test_allocation_growth_append_and_release():
    kv = KvCache(10, 16, [0, 0, 0])
    assert kv.cached_prefix(("a", "b")) == 0 and kv.evictable == 0
    assert kv.grow(0, 33) and kv.held[0] == 3 and kv.free == 7 and kv.used == 3
    assert kv.grow(0, 40) and kv.held[0] == 3  # 40 tokens still fit in 3 blocks
    assert kv.grow(0, 49) and kv.held[0] == 4
    assert kv.reserve(1, 64) and kv.held[1] == 4 and kv.free == 2
    assert not kv.grow(2, 48) and kv.held[2] == 0 and kv.free == 2  # refused: nothing changes
    kv.append([0, 1])
    assert kv.held[:2] == [5, 5] and kv.free == 0 and kv.use == pytest.approx(1.0)
    assert kv.used_tokens == 160 == kv.capacity_tokens
    kv.release(0)
    assert kv.held[0] == 0 and kv.free == 5


def test_every_block_comes_back_after_a_run_with_preemptions():
    raw = scenario_dict(requests=300, warmup_s=0, seed=4,
                        workload={"arrival": {"process": "poisson", "rate_rps": 6},
                                  "prompt_tokens": {"dist": "lognormal", "mean": 600, "cv": 1.0, "min": 8, "max": 3000},
                                  "output_tokens": {"dist": "lognormal", "mean": 150, "cv": 0.8, "min": 1, "max": 800}},
                        cost_model={"kind": "llm", "base_ms": 12.0, "prefill_token_ms": 0.06, "decode_seq_ms": 0.08,
                                    "decode_context_ms": 0.00002},
                        server={"replicas": 2, "batching": {"policy": "continuous", "max_num_seqs": 32,
                                                            "max_num_batched_tokens": 2048, "kv_cache_tokens": 6000}})
    s = sim.validate(raw)
    w = generate_workload(s, 0)
    from collections import deque

    from sim.fleet.counts import Counts
    from sim.fleet.fleet import run_shared_llm

    reqs = LlmRequests(w.arrival_s, w.prompt_tokens, w.output_tokens)
    shared = deque()
    per = _per_replica(s.fleet_groups)
    engines = [ContinuousReplica(i, g.batching, g.cost_model, reqs, Counts(len(per)), waiting=shared)
               for i, g in enumerate(per)]
    run_shared_llm(engines, shared, reqs, w.arrival_s.tolist())
    assert sum(reqs.preempt) > 0  # the small cache forced preemptions
    for e in engines:
        assert e.kv.free == e.kv.blocks and e.kv.used == 0
    assert all(b == 0 for b in reqs.blocks)
