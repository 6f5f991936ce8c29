"""The simulator against queueing theory, with confidence intervals from independent replications.

Each check asserts two things: the interval is tight enough to mean something (a few percent of the
theoretical value), and the theoretical value lies inside it, widened by 1.7x (about 3.4 standard
errors) so that a correct simulator fails by chance far less often than 1 in 1000 seeds.
"""
import math

import numpy as np
import pytest

import sim
from sim.theory import bulk_service_mean_latency_s, md1_mean_latency_s, mg1_mean_latency_s

from .conftest import scenario_dict

WIDEN = 1.7


def run(arrival, cost, batching, *, requests=30000, replications=8, warmup_s=1.0, replicas=1, seed=11):
    raw = scenario_dict(requests=requests, replications=replications, warmup_s=warmup_s, seed=seed,
                        workload={"arrival": arrival}, cost_model=cost,
                        server={"replicas": replicas, "batching": batching}, outputs={"records": False, "plots": False})
    return sim.run(sim.validate(raw)).summary


def assert_agrees(summary, key, theory, max_rel_width=0.03):
    stats = summary["latency_s"] if key in ("mean", "p50", "p90", "p95", "p99") else summary[key]
    value = stats[key] if isinstance(stats, dict) else stats
    lo, hi = summary["latency_s"]["ci95"][key]
    half = (hi - lo) / 2
    assert half < max_rel_width * theory, f"CI too wide to test anything: ±{half:.3g} vs theory {theory:.6g}"
    assert abs(value - theory) <= WIDEN * half, f"{key}: simulated {value:.6g} ± {half:.3g}, theory {theory:.6g}"


def assert_little(summary, tol=0.02):
    ll = summary["littles_law"]
    assert ll["rel_error"] < tol, ll


@pytest.mark.parametrize("rho", [0.3, 0.7, 0.9])
def test_md1_mean_latency(rho):
    d_s = 0.004
    lam = rho / d_s
    s = run({"process": "poisson", "rate_rps": lam}, {"kind": "affine", "base_ms": 4.0, "per_item_ms": 0.0},
            {"policy": "none"}, requests=40000 if rho < 0.9 else 80000)
    assert_agrees(s, "mean", md1_mean_latency_s(lam, d_s), max_rel_width=0.04)
    assert_little(s)
    assert s["stable"]
    assert s["utilization"] == pytest.approx(rho, rel=0.03)


def test_mg1_pollaczek_khinchine_with_lognormal_step_noise():
    mean_s, cv, lam = 0.004, 0.5, 175.0
    s = run({"process": "poisson", "rate_rps": lam},
            {"kind": "affine", "base_ms": 4.0, "per_item_ms": 0.0, "noise": {"cv": cv}}, {"policy": "none"})
    theory = mg1_mean_latency_s(lam, mean_s, mean_s ** 2 * (1 + cv ** 2))
    assert_agrees(s, "mean", theory)
    assert_little(s)


def test_md1_percentiles_match_exact_waiting_time_distribution():
    # M/D/1 waiting-time CDF (Erlang 1909 / Crommelin): P(Wq <= t) = (1-rho) sum_k (k lam D - lam t)^k/k! e^{-lam(kD - t)}
    d_s, lam = 0.004, 150.0
    rho = lam * d_s

    def cdf(t):
        total = 0.0
        for k in range(int(t / d_s) + 1):
            x = lam * (k * d_s - t)
            total += float(x) ** k / math.factorial(k) * math.exp(-x)
        return (1 - rho) * total

    def quantile(p):
        lo, hi = 0.0, 30 * d_s
        for _ in range(100):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
        return (lo + hi) / 2 + d_s

    s = run({"process": "poisson", "rate_rps": lam}, {"kind": "affine", "base_ms": 4.0, "per_item_ms": 0.0},
            {"policy": "none"}, requests=60000)
    for q in ("p90", "p99"):
        assert_agrees(s, q, quantile(int(q[1:]) / 100), max_rel_width=0.05)


@pytest.mark.parametrize("lam,b", [(1000.0, 16), (1400.0, 16), (1100.0, 8)])
def test_bulk_service_embedded_markov_chain(lam, b):
    a_ms, b_ms = 2.0, 0.5
    s = run({"process": "poisson", "rate_rps": lam},
            {"kind": "affine", "base_ms": a_ms, "per_item_ms": b_ms, "max_batch_size": 64},
            {"policy": "dynamic", "max_batch_size": b, "max_queue_delay_ms": 0})
    theory = bulk_service_mean_latency_s(lam, b, lambda k: (a_ms + b_ms * k) / 1000)
    assert_agrees(s, "mean", theory)
    assert_little(s)


def test_bulk_service_theory_reduces_to_md1_when_batch_is_one():
    assert bulk_service_mean_latency_s(150, 1, lambda k: 0.004) == pytest.approx(md1_mean_latency_s(150, 0.004), rel=1e-9)


def test_light_load_latency_is_queue_delay_plus_single_step():
    delay_ms, a_ms, b_ms = 5.0, 2.0, 0.5
    lam = 0.02  # P(another arrival within the window) ~ lam * 7.5 ms = 1.5e-4
    s = run({"process": "poisson", "rate_rps": lam},
            {"kind": "affine", "base_ms": a_ms, "per_item_ms": b_ms},
            {"policy": "dynamic", "max_batch_size": 16, "max_queue_delay_ms": delay_ms},
            requests=3000, replications=2, warmup_s=0.0)
    expected = (delay_ms + a_ms + b_ms) / 1000
    assert s["latency_s"]["mean"] == pytest.approx(expected, rel=1e-3)
    assert s["latency_s"]["p50"] == pytest.approx(expected, rel=1e-9)
    assert s["batch_size"]["mean"] == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("policy", [{"policy": "dynamic", "max_batch_size": 16, "max_queue_delay_ms": 2},
                                    {"policy": "static", "max_batch_size": 16}])
def test_heavy_load_throughput_is_capacity(policy):
    a_ms, b_ms, bsz = 2.0, 0.5, 16
    capacity = bsz / ((a_ms + b_ms * bsz) / 1000)  # 1600 rps
    s = run({"process": "poisson", "rate_rps": 3 * capacity},
            {"kind": "affine", "base_ms": a_ms, "per_item_ms": b_ms}, policy,
            requests=40000, replications=3, warmup_s=0.5)
    assert s["capacity_rps"] == pytest.approx(capacity)
    assert s["throughput_rps"] == pytest.approx(capacity, rel=0.01)
    assert s["stable"] is False
    assert any("UNSTABLE" in w for w in s["warnings"])
    assert s["batch_size"]["mean"] == pytest.approx(bsz, rel=0.01)
    assert s["utilization"] == pytest.approx(1.0, abs=0.01)


def test_replicas_share_queue_like_md_c():
    # Two replicas with batch size 1 at light-moderate load: throughput equals arrivals, utilisation rho/2.
    lam, d_s = 300.0, 0.004
    s = run({"process": "poisson", "rate_rps": lam}, {"kind": "affine", "base_ms": 4.0, "per_item_ms": 0.0},
            {"policy": "none"}, replicas=2, requests=30000, replications=4)
    assert s["utilization"] == pytest.approx(lam * d_s / 2, rel=0.03)
    assert s["throughput_rps"] == pytest.approx(lam, rel=0.03)
    # an M/D/2 waits less than an M/D/1 at the same per-server load, and more than pure service
    assert d_s < s["latency_s"]["mean"] < md1_mean_latency_s(lam / 2, d_s)
    assert_little(s)


def test_static_batching_with_constant_arrivals_is_exact():
    # gap g = 1 ms, B = 8, h(8) = 6 ms < 8 g: each batch starts at its 8th arrival; request i of a batch
    # waits (8 - 1 - i) g, so mean latency = 3.5 ms + 6 ms exactly.
    s = run({"process": "constant", "rate_rps": 1000.0}, {"kind": "affine", "base_ms": 2.0, "per_item_ms": 0.5},
            {"policy": "static", "max_batch_size": 8}, requests=8000, replications=1, warmup_s=0.0)
    assert s["latency_s"]["mean"] == pytest.approx(0.0095, rel=1e-9)
    assert s["latency_s"]["p50"] == pytest.approx(0.0095, rel=1e-9)
    assert s["unserved"] == 0


def test_arrival_processes_have_their_analytic_moments():
    rng = np.random.default_rng(0)
    for proc in (sim.PoissonArrivals(rate_rps=50), sim.GammaArrivals(rate_rps=50, cv=2.5),
                 sim.GammaArrivals(rate_rps=50, cv=0.3), sim.ConstantArrivals(rate_rps=50)):
        parts = np.array_split(proc.gaps_s(rng, 400_000), 20)
        for stat, theory in ((np.mean, proc.mean_gap_s), (np.var, proc.var_gap_s2)):
            est = np.array([stat(p) for p in parts])
            half = 2.09 * est.std(ddof=1) / np.sqrt(est.size)
            assert abs(est.mean() - theory) <= WIDEN * half + 1e-15, (proc, stat.__name__)


def test_single_run_batch_means_intervals_cover_theory():
    # The default (one replication) interval: over 30 seeds the 95% interval of the M/D/1 mean should
    # hold the exact value in most runs; batch means are known to under-cover a little with correlation.
    d_s, lam = 0.004, 175.0
    theory = md1_mean_latency_s(lam, d_s)
    covered = 0
    for seed in range(30):
        raw = scenario_dict(requests=40000, warmup_s=1.0, seed=seed, workload={"arrival": {"process": "poisson", "rate_rps": lam}},
                            cost_model={"kind": "affine", "base_ms": 4.0, "per_item_ms": 0.0},
                            server={"batching": {"policy": "none"}}, outputs={"records": False, "plots": False})
        lo, hi = sim.run(sim.validate(raw)).summary["latency_s"]["ci95"]["mean"]
        covered += lo <= theory <= hi
    assert covered >= 24, f"the single-run 95% interval held the exact mean in only {covered}/30 runs"
