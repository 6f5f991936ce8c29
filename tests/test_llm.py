"""LLM serving: hand-checkable timelines, KV limits, preemption, conservation, continuous vs static."""
import numpy as np
import pytest

import sim
from sim.batching import ContinuousBatching, LlmStaticBatching
from sim.cost import LlmCost
from sim.llm_engine import simulate_continuous as _continuous
from sim.llm_engine import simulate_static

from .conftest import ROOT

# step = 10 ms + 0.1 ms per prefill token + 1 ms per decoding sequence (no context terms: hand-checkable)
COST = LlmCost(base_ms=10, prefill_token_ms=0.1, decode_seq_ms=1)


def simulate_continuous(*args, **kw):
    """Runs continuous batching both ways: runs of decode steps as one event (the engine's default) must give
    every request the same times as one event per step; returns the per-step log for step-level checks."""
    per_step = _continuous(*args, coalesce=False, **kw)
    runs = _continuous(*args, **kw)
    for key in ("first_token_s", "finish_s"):
        np.testing.assert_allclose(getattr(runs, key), getattr(per_step, key), rtol=0, atol=1e-9, equal_nan=True)
    for key in ("preemptions", "recomputed_tokens", "refused"):
        assert np.array_equal(getattr(runs, key), getattr(per_step, key)), key
    assert runs.steps.sum() == per_step.step_s.size and (per_step.steps == 1).all()
    for key in ("step_decode_tokens", "step_decode_slots", "step_prefill_tokens"):
        assert getattr(runs, key).sum() == getattr(per_step, key).sum(), key
    assert runs.step_s.sum() == pytest.approx(per_step.step_s.sum(), rel=1e-12, abs=1e-12)
    kv_s = (runs.step_kv_used * runs.step_s).sum(), (per_step.step_kv_used * per_step.step_s).sum()
    assert kv_s[0] == pytest.approx(kv_s[1], rel=1e-9, abs=1e-9)  # time-weighted KV use
    assert runs.step_kv_peak.max(initial=0) == per_step.step_kv_used.max(initial=0)
    # a run stores its gaps' mean (they differ by the cost of n context tokens a step): same total, same spread
    assert runs.itl_weight.sum() == per_step.itl_weight.sum()
    assert (runs.itl_s * runs.itl_weight).sum() == pytest.approx((per_step.itl_s * per_step.itl_weight).sum(), rel=1e-9)
    dh = cost_of_context(args[1], runs) if len(args) > 1 else 0.0
    np.testing.assert_allclose(np.sort(np.repeat(runs.itl_s, runs.itl_weight)),
                               np.sort(np.repeat(per_step.itl_s, per_step.itl_weight)), rtol=0, atol=1e-9 + dh)
    return per_step


def cost_of_context(cost, log) -> float:
    """Returns the most a run's mean gap can differ from one of its steps: (steps - 1) / 2 context steps."""
    n = int(log.step_running.max(initial=0))
    return cost.decode_context_ms / 1000 * n * float(log.steps.max(initial=1)) / 2


def cont(**kw):
    args = dict(max_num_seqs=8, max_num_batched_tokens=512, block_size=16, kv_cache_tokens=100_000)
    args.update(kw)
    return ContinuousBatching(**args)


def ms(x):
    return np.round(np.asarray(x) * 1000, 9).tolist()


def test_one_request_alone():
    log = simulate_continuous(cont(), COST, [0.0], [100], [5])
    assert ms(log.first_token_s) == [20.0]           # TTFT = one prefill step: 10 + 100 * 0.1
    assert ms(log.finish_s) == [64.0]                # + (5 - 1) decode steps of 10 + 1 ms
    assert log.step_decode_tokens.tolist() == [0, 1, 1, 1, 1]


def test_identical_requests_arriving_together_share_every_step():
    log = simulate_continuous(cont(), COST, [0.0, 0.0, 0.0], [100, 100, 100], [3, 3, 3])
    assert ms(log.first_token_s) == [40.0] * 3       # one prefill step of 300 tokens
    assert ms(log.finish_s) == [66.0] * 3            # two decode steps of 10 + 3 ms


def test_chunked_prefill_spreads_a_long_prompt_and_decode_goes_first():
    log = simulate_continuous(cont(max_num_batched_tokens=64), COST, [0.0, 0.0], [10, 100], [4, 2])
    # step 1: 10 + 54 tokens (A whole, B's first 54); step 2: A decodes, B's last 46; step 3: both decode
    assert log.step_prefill_tokens.tolist()[:2] == [64, 46]
    assert log.step_decode_tokens.tolist()[:3] == [0, 1, 2]
    assert ms(log.first_token_s) == [16.4, 16.4 + 15.6]
    without = simulate_continuous(cont(max_num_batched_tokens=128, chunked_prefill=False), COST, [0.0, 0.0], [100, 100], [2, 2])
    assert without.step_prefill_tokens.tolist()[:2] == [100, 100]  # a prompt never splits: one per step


def test_kv_limit_makes_a_request_wait_for_blocks():
    log = simulate_continuous(cont(kv_cache_tokens=160), COST, [0.0, 0.0], [100, 100], [5, 5])
    assert ms(log.finish_s) == [64.0, 128.0]  # the second is admitted only when the first frees its 7 blocks
    assert log.step_kv_used.max() <= 160 and log.preemptions.sum() == 0


def test_preemption_recomputes_and_conserves_tokens():
    log = simulate_continuous(cont(kv_cache_tokens=192), COST, [0.0, 0.0], [64, 64], [100, 100])
    assert log.finished.all()
    assert log.preemptions.tolist() == [0, 1]                  # the most recently admitted sequence yields
    assert log.recomputed_tokens[1] > 64                       # its prompt and the tokens it had generated
    assert log.step_kv_used.max() <= 192
    # every output token exactly once: one from each (re)prefill, the rest from decode steps
    assert log.step_decode_tokens.sum() + 2 + log.preemptions.sum() == log.output_tokens.sum()
    assert log.step_prefill_tokens.sum() == log.prompt_tokens.sum() + log.recomputed_tokens.sum()


def test_requests_larger_than_the_cache_are_refused():
    log = simulate_continuous(cont(kv_cache_tokens=160), COST, [0.0, 0.1], [64, 10], [100, 5])
    assert np.isnan(log.finish_s[0]) and np.isfinite(log.finish_s[1])


def test_static_pads_and_decodes_to_the_longest():
    log = simulate_static(LlmStaticBatching(max_batch_size=2, kv_cache_tokens=100_000), COST, [0.0, 0.0], [100, 50], [5, 2])
    assert ms(log.first_token_s) == [30.0, 30.0]              # 2 x 100 padded prompt tokens in one step
    assert ms(log.finish_s) == [78.0, 42.0]                   # decode steps of 10 + 2 ms (both slots)
    assert log.step_decode_slots.sum() == 8 and log.step_decode_tokens.sum() == 5  # 3 padded slot-steps


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_workloads_conserve_tokens_and_little(seed):
    rng = np.random.default_rng(seed)
    n = 3000
    arr = np.cumsum(rng.exponential(1 / 6.0, n))
    prompt = rng.integers(20, 800, n)
    out = rng.integers(1, 300, n)
    pol = cont(max_num_seqs=32, max_num_batched_tokens=1024, kv_cache_tokens=20_000)
    cost = LlmCost(base_ms=8, prefill_token_ms=0.02, prefill_attention_ms=1e-6, decode_seq_ms=0.2, decode_context_ms=1e-4)
    log = simulate_continuous(pol, cost, arr, prompt, out)
    assert log.finished.all()
    assert log.step_decode_tokens.sum() + n + log.preemptions.sum() == out.sum()
    assert log.step_prefill_tokens.sum() == prompt.sum() + log.recomputed_tokens.sum()
    assert (log.first_token_s >= arr).all() and (log.finish_s >= log.first_token_s).all()
    assert log.step_kv_used.max() <= 20_000 and log.step_running.max() <= 32
    steps_end = log.step_start_s + log.step_s
    assert (log.step_start_s[1:] >= steps_end[:-1] - 1e-12).all()  # one engine: steps never overlap
    from sim.llm_metrics import _LlmRep, littles_law
    assert littles_law(_LlmRep(log, 0.0))["rel_error"] < 0.02


def test_continuous_beats_static_on_throughput_because_static_pads():
    results = {}
    for pol in ("continuous", "static"):
        s = sim.load_scenario(ROOT / f"scenarios/llm-chat-{pol}.yaml", ["requests=1500", "warmup_s=10",
                                                                      "workload.arrival.rate_rps=20"])
        results[pol] = sim.run(s).summary
    c, st = results["continuous"], results["static"]
    # both saturated (20 rps is beyond either engine): throughput is each policy's capacity
    assert c["output_tokens_per_s"] > 1.5 * st["output_tokens_per_s"]
    assert st["decode_padding_fraction"] > 0.3  # static computes finished sequences' slots until the longest ends
    assert c["batch_size"]["mean"] > 1


def test_llm_scenarios_validate_cross_fields(write_yaml):
    from sim.errors import ScenarioError

    base = {"name": "x", "requests": 10, "workload": {"arrival": {"process": "poisson", "rate_rps": 1}},
            "cost_model": {"kind": "llm", "base_ms": 8, "prefill_token_ms": 0.02, "decode_seq_ms": 0.2},
            "server": {"batching": {"policy": "continuous"}}}
    with pytest.raises(ScenarioError) as info:
        sim.load_scenario(write_yaml(base))
    assert info.value.path == "workload.prompt_tokens"
    bad = dict(base, workload={"arrival": {"process": "poisson", "rate_rps": 1},
                               "prompt_tokens": {"dist": "normal", "value": 3}, "output_tokens": {"dist": "fixed", "value": 3}})
    with pytest.raises(ScenarioError) as info:
        sim.load_scenario(write_yaml(bad))
    assert info.value.path == "workload.prompt_tokens.dist" and "lognormal" in info.value.message
    mixed = dict(base, server={"batching": {"policy": "dynamic"}})
    with pytest.raises(ScenarioError) as info:
        sim.load_scenario(write_yaml(mixed))
    assert info.value.path == "server.batching.policy"


def test_token_distributions_have_their_moments():
    from sim.sizes import LognormalTokens, UniformTokens, sample_pair

    rng = np.random.default_rng(0)
    p, o = sample_pair(LognormalTokens(mean=500, cv=0.5), UniformTokens(low=10, high=110), 0.6, rng, 200_000)
    assert p.mean() == pytest.approx(500, rel=0.01) and p.std() / p.mean() == pytest.approx(0.5, rel=0.03)
    assert o.mean() == pytest.approx(60, rel=0.01) and o.min() == 10 and o.max() == 110
    rank = lambda x: np.argsort(np.argsort(x))
    assert np.corrcoef(rank(p), rank(o))[0, 1] == pytest.approx(6 / np.pi * np.arcsin(0.6 / 2), abs=0.01)  # Spearman of a Gaussian copula


def test_engine_matches_the_naive_per_sequence_model():
    from sim.llm_reference import naive_continuous

    cost = LlmCost(base_ms=8, prefill_token_ms=0.02, prefill_attention_ms=1e-6, decode_seq_ms=0.2, decode_context_ms=1e-4)
    preempted = 0
    for seed in range(60):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(3, 40))
        arr, p, o = np.sort(rng.uniform(0, 0.5, n)), rng.integers(1, 100, n), rng.integers(1, 100, n)
        pol = ContinuousBatching(max_num_seqs=int(rng.integers(1, 8)), max_num_batched_tokens=int(rng.choice([64, 256])),
                                 kv_cache_tokens=int(rng.integers(64, 400)), block_size=int(rng.choice([4, 16])),
                                 chunked_prefill=bool(rng.integers(0, 2)), chunk_size=int(rng.integers(8, 64)),
                                 order=str(rng.choice(["decode_first", "prefill_first"])))
        log = simulate_continuous(pol, cost, arr, p, o)
        first, finish, pre = naive_continuous(pol, cost, arr, p, o)
        assert (log.finished | log.refused).all(), f"seed {seed}: a request neither finished nor was refused"
        preempted += int(log.preemptions.sum())
        np.testing.assert_allclose(log.first_token_s, first, atol=1e-9, equal_nan=True, err_msg=f"seed {seed}")
        np.testing.assert_allclose(log.finish_s, finish, atol=1e-9, equal_nan=True, err_msg=f"seed {seed}")
        assert np.array_equal(log.preemptions, pre), seed
    assert preempted > 100  # the comparison exercised preemption, not only easy cases


def test_llm_fit_recovers_known_coefficients():
    from sim.llm_fit import COEFS, features, fit_llm

    truth = dict(zip(COEFS, (5.0, 0.02, 2e-6, 0.5, 0.1, 3e-4)))
    rng = np.random.default_rng(0)
    pts = []
    for phase, b, t, c in [("prefill", b, t, 0) for b in (1, 2, 4) for t in (256, 1024, 4096)] + \
                          [("decode", b, 1, c) for b in (1, 8, 32, 128) for c in (128, 1024, 4096)]:
        y = sum(truth[k] * x for k, x in zip(COEFS, features(phase, b, t, c)))
        pts.append({"phase": phase, "batch": b, "tokens": t, "context": c, "median_ms": y * (1 + 0.005 * rng.standard_normal())})
    fit = fit_llm(pts)
    for k, v in truth.items():
        assert fit["coefficients"][k] == pytest.approx(v, rel=0.15), k
    assert fit["max_error"] < 0.03 and fit["loo_error"] < 0.03


def test_llm_profile_and_roofline_drive_scenarios(write_yaml):
    path = ROOT / "profiles/cpu-gpt-llm-fp32.yaml"
    base = {"name": "x", "requests": 300, "workload": {"arrival": {"process": "poisson", "rate_rps": 5},
                                                       "prompt_tokens": {"dist": "uniform", "low": 16, "high": 256},
                                                       "output_tokens": {"dist": "uniform", "low": 4, "high": 64}},
            "server": {"batching": {"policy": "continuous", "max_num_seqs": 16, "max_num_batched_tokens": 512}}}
    s = sim.load_scenario(write_yaml(dict(base, cost_model={"kind": "llm", "profile": str(path)})))
    prof = sim.load_profile(path)
    assert prof.mode == "llm" and prof.llm_fit["loo_error"] < 0.15  # CPU: cache effects bend the linear model
    assert s.cost_model.base_ms > 0 and s.cost_model.decode_seq_ms >= 0
    assert sim.run(s).summary["requests"] == 300
    rl = sim.load_scenario(write_yaml(dict(base, cost_model={"kind": "llm_roofline", "gpu": "H100-SXM",
                                                             "model_stats_from": str(path)}), "rl.yaml")).cost_model
    m = prof.model.model_extra
    assert rl.layers == m["layers"] and rl.params == prof.model.params
    # 7B-class numbers by hand: weights 13.4 GB at 3350 GB/s x 0.8 = 5.0 ms per step; 2 x 6.7e9 FLOPs per token
    # at 989 TFLOP/s x 0.5 = 0.0271 ms
    big = sim.cost.LlmRooflineCost(gpu="H100-SXM", params=6.7e9, layers=32, hidden=4096, heads=32)
    assert big.base_ms == pytest.approx(6.7e9 * 2 / (3350e9 * 0.8) * 1000)
    assert big.prefill_token_ms == pytest.approx(2 * 6.7e9 / (989e12 * 0.5) * 1000)
    assert big.decode_context_ms == pytest.approx(2 * 32 * 4096 * 2 / (3350e9 * 0.8) * 1000 + 4 * 32 * 4096 / (989e12 * 0.5) * 1000)


def test_prefill_first_finishes_everything_when_admission_is_blocked():
    pol = cont(max_num_seqs=1, order="prefill_first")
    log = simulate_continuous(pol, COST, [0.0, 0.0], [100, 100], [5, 5])
    assert log.finished.all()
    assert ms(log.finish_s) == [64.0, 128.0]  # one at a time: the second waits for the slot


def test_preemption_without_chunked_prefill_recomputes_whole():
    pol = cont(kv_cache_tokens=192, chunked_prefill=False, max_num_batched_tokens=256)
    log = simulate_continuous(pol, COST, [0.0, 0.0], [64, 64], [100, 100])
    assert log.finished.all() and log.preemptions.sum() >= 1
    assert log.step_decode_tokens.sum() + 2 + log.preemptions.sum() == 200


def test_kv_blocks_follow_vllm_accounting():
    # 15-token prompt, 2 outputs: the decode step writes the KV of token 16 -> exactly one 16-token block
    log = simulate_continuous(cont(kv_cache_tokens=16), COST, [0.0], [15], [2])
    assert log.finished.all() and log.step_kv_used.max() == 16
    assert simulate_continuous(cont(kv_cache_tokens=16), COST, [0.0], [15], [3]).refused.all()


def test_itl_counts_every_gap_between_a_requests_tokens():
    # prefill_first: a second request's prefill-only step stalls the first one's decoding
    log = simulate_continuous(cont(order="prefill_first"), COST, [0.0, 0.025], [100, 100], [4, 2])
    gaps = np.repeat(log.itl_s, log.itl_weight)
    e2e, ttft = log.finish_s - log.arrival_s, log.first_token_s - log.arrival_s
    assert gaps.size == int((log.output_tokens - 1).sum())  # one gap per token after the first
    assert gaps.sum() == pytest.approx(float((e2e - ttft).sum()))  # gaps add up to each request's decode time
