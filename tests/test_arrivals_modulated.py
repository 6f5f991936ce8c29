"""Bursty and time-varying arrivals against their closed forms: MMPP rate and index of dispersion,
diurnal and piecewise counts per window against the integral of the rate (chi-square at alpha = 0.001)."""
import numpy as np
import pytest
from scipy import stats

import sim
from sim.arrivals import DiurnalArrivals, MmppArrivals, PiecewiseArrivals
from sim.sweeps.rates import rate_key, value_for

from .conftest import run_cli, scenario_dict


def test_mmpp_long_run_rate_and_index_of_dispersion():
    m = MmppArrivals(rates_rps=[100, 500], mean_sojourn_s=[0.05, 0.05])
    assert m.rate_rps == pytest.approx(300) and m.idc() == pytest.approx(7.6667, rel=1e-4)
    n, est, windows = 0, [], []
    for seed in range(10):
        t = m.arrival_times_s(np.random.default_rng(seed), requests=200000)
        n += t.size
        est.append(t.size / t[-1])
        windows.append(np.bincount((t // 2.0).astype(int))[:-1])  # 2 s windows: 40x the state's memory
    sd = m.rate_rps * np.sqrt(m.idc() / n)  # relative sd of a rate estimate from n arrivals: sqrt(IDC / n)
    assert abs(np.mean(est) - m.rate_rps) < 4 * sd
    c = np.concatenate(windows)
    # the sample variance of ~6,000 windows has a relative sd of about 2%; finite windows bias it ~1.5% low
    assert c.var(ddof=1) / c.mean() == pytest.approx(m.idc(), rel=0.12)


def test_mmpp_with_a_generator_matrix_has_its_stationary_rate():
    q = [[-2.0, 1.5, 0.5], [1.0, -1.0, 0.0], [4.0, 0.0, -4.0]]
    m = MmppArrivals(rates_rps=[50, 400, 1000], generator=q)
    pi = m.stationary()
    assert np.allclose(pi @ np.asarray(q), 0, atol=1e-12) and pi.sum() == pytest.approx(1)
    t = np.concatenate([m.window(np.random.default_rng(s), 0.0, 400.0) for s in range(5)])
    assert t.size / 2000.0 == pytest.approx(m.rate_rps, rel=4 * np.sqrt(m.idc() / t.size))


@pytest.mark.parametrize("process", [
    DiurnalArrivals(mean_rate_rps=80, peak_to_trough=5, period_s=200, peak_at_s=30),
    PiecewiseArrivals(points=[[0, 10], [100, 200], [250, 20], [400, 120]]),
])
def test_time_varying_counts_per_window_follow_the_integral_of_the_rate(process):
    edges = np.linspace(0, 400, 41)
    t = process.arrival_times_s(np.random.default_rng(7), until_s=400.0)
    observed = np.histogram(t, edges)[0]
    expected = np.array([process.expected_count(a, b) for a, b in zip(edges[:-1], edges[1:])])
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < stats.chi2.ppf(0.999, df=len(expected)), chi2
    assert observed.max() > 2 * observed.min()  # the rate does vary


def test_rate_scaling_for_plans(write_yaml):
    for arrival, rate in (({"process": "mmpp", "rates_rps": [100, 500], "mean_sojourn_s": [1, 1]}, 300),
                          ({"process": "diurnal", "mean_rate_rps": 50, "peak_to_trough": 3, "period_s": 100}, 50),
                          ({"process": "piecewise", "points": [[0, 10], [10, 30]]}, 20)):
        p = write_yaml(scenario_dict(workload={"arrival": arrival}))
        s = sim.load_scenario(p)
        key = rate_key(s, "x")
        assert key[2] == pytest.approx(rate)
        import json
        doubled = sim.load_scenario(p, [f"{key[0]}={json.dumps(value_for(key, 2 * rate))}"])
        assert doubled.workload.arrival.rate_rps == pytest.approx(2 * rate)


@pytest.mark.parametrize("arrival,key,words", [
    ({"process": "diurnal", "mean_rate_rps": 10, "peak_to_trough": 0.5}, "workload.arrival.peak_to_trough",
     "greater than or equal to 1"),
    ({"process": "mmpp", "rates_rps": [1, 2], "mean_sojourn_s": [1, 0]}, "workload.arrival", "must be > 0"),
    ({"process": "mmpp", "rates_rps": [1, 2], "mean_sojourn_s": [1]}, "workload.arrival", "needs 2 values"),
    ({"process": "piecewise", "points": [[5, 1], [2, 3]]}, "workload.arrival.points", "must increase"),
])
def test_bad_modulated_arrivals_exit_2_with_the_key(arrival, key, words, write_yaml, tmp_path):
    proc = run_cli("run", write_yaml(scenario_dict(workload={"arrival": arrival})), "--out", tmp_path / "o")
    assert proc.returncode == 2 and f": {key}: " in proc.stderr and words in proc.stderr, proc.stderr


def test_an_mmpp_scenario_runs_and_is_burstier_than_poisson(write_yaml):
    base = scenario_dict(requests=40000, cost_model={"kind": "affine", "base_ms": 2.0, "per_item_ms": 0.25,
                                                      "max_batch_size": 32})
    bursty = sim.run(sim.load_scenario(write_yaml({**base, "workload": {"arrival": {
        "process": "mmpp", "rates_rps": [200, 1800], "mean_sojourn_s": [2.0, 0.25]}}}, "m.yaml"))).summary
    poisson = sim.run(sim.load_scenario(write_yaml({**base, "workload": {"arrival": {
        "process": "poisson", "rate_rps": round(bursty["offered_rps"], 3)}}}, "p.yaml"))).summary
    assert bursty["latency_s"]["p99"] > 1.5 * poisson["latency_s"]["p99"]
