"""Sweeps and plans: grids, resumable point storage, the plan's rate search against queueing theory."""
import json
import os
import signal
import subprocess
import time

import pandas as pd
import pytest

from sim.sweeps.plan import plan
from sim.sweeps.sweep import sweep
from sim.theory import bulk_service_mean_latency_s, md1_latency_quantile_s

from .conftest import ROOT, run_cli, scenario_dict, servesim_cmd


def md1(write_yaml, slo, requests=200000, **server):
    raw = scenario_dict(requests=requests, warmup_s=1, seed=3,
                        workload={"arrival": {"process": "poisson", "rate_rps": 100}},
                        cost_model={"kind": "affine", "base_ms": 1.0, "per_item_ms": 0.0},
                        server={"batching": {"policy": "none"}, **server}, slo=slo,
                        outputs={"records": False, "plots": False})
    return write_yaml(raw, "md1.yaml")


def exact_rate(meets) -> float:
    lo, hi = 1.0, 999.9
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if meets(mid) else (lo, mid)
    return lo


@pytest.mark.parametrize("q,target_ms", [(0.99, 10.0), (0.5, 2.0)])
def test_plan_md1_finds_the_exact_rate_within_tolerance(q, target_ms, write_yaml, tmp_path):
    # the feasible rate is conservative (the interval's upper end must be below the target): 0.90-1.01 x exact
    exact = exact_rate(lambda r: md1_latency_quantile_s(r, 0.001, q) <= target_ms / 1000)
    key = f"latency_p{int(q * 100)}_ms"
    result = plan(md1(write_yaml, {key: target_ms}), [], tmp_path / "p")
    got = result["configs"][0]["max_rate_rps"]
    assert 0.90 * exact <= got <= 1.01 * exact, (got, exact)
    assert result["configs"][0]["rate_resolution_rps"] <= 0.011 * got  # the bisection's tolerance: 1%


def test_plan_bulk_service_mean_target_matches_the_embedded_chain(write_yaml, tmp_path):
    # dynamic batching with no delay is the bulk-service queue: h(k) = 2 + 0.5 k ms, serve up to 8
    step = lambda k: (2.0 + 0.5 * k) / 1000  # noqa: E731
    lo, hi = 10.0, 8 / step(8) * 0.999
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if bulk_service_mean_latency_s(mid, 8, step) <= 0.005 else (lo, mid)
    raw = scenario_dict(requests=200000, warmup_s=1, workload={"arrival": {"process": "poisson", "rate_rps": 100}},
                        cost_model={"kind": "affine", "base_ms": 2.0, "per_item_ms": 0.5, "max_batch_size": 8},
                        server={"batching": {"policy": "dynamic", "max_batch_size": 8}},
                        slo={"latency_mean_ms": 5.0}, outputs={"records": False, "plots": False})
    got = plan(write_yaml(raw), [], tmp_path / "p")["configs"][0]["max_rate_rps"]
    assert 0.95 * lo <= got <= 1.01 * lo, (got, lo)


def test_static_batching_with_a_timeout_has_a_feasible_band(write_yaml, tmp_path):
    # a batch of 32 or the oldest request's 100 ms: slow at low load (waits out the timeout), fast once
    # batches fill in well under 50 ms, unstable near capacity (32 / 10 ms = 3200 rps)
    raw = scenario_dict(requests=100000, warmup_s=1, workload={"arrival": {"process": "poisson", "rate_rps": 100}},
                        cost_model={"kind": "affine", "base_ms": 2.0, "per_item_ms": 0.25, "max_batch_size": 32},
                        server={"batching": {"policy": "static", "max_batch_size": 32, "max_queue_delay_ms": 100}},
                        slo={"latency_p99_ms": 50.0}, outputs={"records": False, "plots": False})
    c = plan(write_yaml(raw), [], tmp_path / "p")["configs"][0]
    assert c["min_rate_rps"] is not None and 700 < c["min_rate_rps"] < 1200, c
    assert 2000 < c["max_rate_rps"] < 3200, c


def test_more_replicas_never_lower_the_rate_and_the_cheaper_gpu_wins_only_when_it_meets_the_slo(write_yaml, tmp_path):
    result = plan(md1(write_yaml, {"latency_p99_ms": 10.0}, requests=100000), ["server.replicas=1,2,3"], tmp_path / "r")
    rates = {c["values"]["server.replicas"]: c["max_rate_rps"] for c in result["configs"]}
    assert rates[1] <= rates[2] <= rates[3] and rates[3] > 2 * rates[1], rates
    roofline = {"kind": "roofline", "gpu": "H100-SXM", "flops_per_item": 4e9, "bytes_per_batch": 5e8}
    for target, winner in ((200.0, "L4"), (1500.0, "H100-SXM")):
        raw = scenario_dict(requests=60000, warmup_s=0.5, workload={"arrival": {"process": "poisson", "rate_rps": 100}},
                            cost_model=roofline, server={"batching": {"policy": "none"}},
                            slo={"latency_p99_ms": 20.0}, plan={"target_rate_rps": target},
                            outputs={"records": False, "plots": False})
        out = plan(write_yaml(raw, f"g{target:g}.yaml"), ["cost_model.gpu=H100-SXM,L4"], tmp_path / f"g{target:g}")
        assert out["best"]["values"]["cost_model.gpu"] == winner, out["why"]
        assert out["why"]


def sweep_cmd(path, out, *extra):
    return servesim_cmd() + ["sweep", str(path), "--grid", "server.batching.max_batch_size=1,2,4,8,16,32",
                             "--grid", "workload.arrival.rate_rps=300,600", "--out", str(out), "--workers", "1", *extra]


def test_a_killed_sweep_resumes_without_recomputing_and_matches_an_uninterrupted_one(write_yaml, tmp_path):
    p = write_yaml(scenario_dict(requests=150000, cost_model={"kind": "affine", "base_ms": 2.0, "per_item_ms": 0.25,
                                                               "max_batch_size": 32},
                                 outputs={"records": False, "plots": False}))
    full = subprocess.run(sweep_cmd(p, tmp_path / "full", "--quiet"), capture_output=True, text=True)
    assert full.returncode == 0, full.stderr
    proc = subprocess.Popen(sweep_cmd(p, tmp_path / "cut", "--quiet"), start_new_session=True)
    points = tmp_path / "cut" / "points"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(points.glob("*.json"))) < 4:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in points.glob("*.json")}
    assert 4 <= len(kept) < 12 and not (tmp_path / "cut" / "sweep.parquet").exists()
    again = subprocess.run(sweep_cmd(p, tmp_path / "cut", "--quiet"), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    for name, (mtime, data) in kept.items():  # stored points were read, not recomputed or rewritten
        f = points / name
        assert f.stat().st_mtime_ns == mtime and f.read_bytes() == data
    assert (tmp_path / "cut/sweep.parquet").read_bytes() == (tmp_path / "full/sweep.parquet").read_bytes()
    df = pd.read_parquet(tmp_path / "full/sweep.parquet")
    assert len(df) == 12 and list(df.columns[:2]) == ["server.batching.max_batch_size", "workload.arrival.rate_rps"]
    assert not any("wall" in c or "host" in c for c in df.columns)
    timings = pd.read_parquet(tmp_path / "full/timings.parquet")
    assert (timings["wall_s"] > 0).all()


def test_the_worker_count_does_not_change_the_sweep(write_yaml, tmp_path):
    p = write_yaml(scenario_dict(requests=20000, cost_model={"kind": "affine", "base_ms": 2.0, "per_item_ms": 0.25,
                                                              "max_batch_size": 32, "noise": {"cv": 0.3}}))
    grid = ["server.batching.max_batch_size=1..32:6:log", "server.replicas=1,2"]
    one = sweep(p, grid, tmp_path / "one", workers=1)
    two = sweep(p, grid, tmp_path / "two", workers=2)
    pd.testing.assert_frame_equal(one, two)
    assert (tmp_path / "one/sweep.parquet").read_bytes() == (tmp_path / "two/sweep.parquet").read_bytes()
    assert sorted(one["server.batching.max_batch_size"].unique()) == [1, 2, 4, 8, 16, 32]


@pytest.mark.parametrize("grid,words", [
    ("server.batching.max_batch_sizes=1,8", "unknown key 'max_batch_sizes'"),
    ("server.batching.max_batch_size=a,b", "input should be a valid integer"),
    ("server.batching.max_batch_size=5..1:3", "empty range"),
    ("server.batching.max_batch_size=1,500", "exceeds the cost model's limit"),
    ("server.batching.max_batch_size", "expected KEY=V1,V2"),
])
def test_bad_grids_exit_2_naming_the_flag_and_key_before_any_point_runs(grid, words, write_yaml, tmp_path):
    p = write_yaml(scenario_dict())
    proc = run_cli("sweep", p, "--grid", grid, "--out", tmp_path / "o")
    assert proc.returncode == 2 and proc.stderr.startswith(f"--grid {grid}") and words in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "o").exists()


def test_a_point_of_another_version_is_refused(write_yaml, tmp_path):
    p = write_yaml(scenario_dict(requests=2000))
    sweep(p, ["server.batching.max_batch_size=1,8"], tmp_path / "o")
    f = next((tmp_path / "o/points").glob("*.json"))
    point = json.loads(f.read_text())
    point["summary"]["version"] = 1
    f.write_text(json.dumps(point))
    proc = run_cli("sweep", p, "--grid", "server.batching.max_batch_size=1,8", "--out", tmp_path / "o")
    assert proc.returncode == 2 and "another servesim version" in proc.stderr


def test_summary_is_versioned_with_the_scenario_hash(write_yaml, tmp_path):
    proc = run_cli("run", write_yaml(scenario_dict()), "--out", tmp_path / "o", "--no-plots")
    s = json.loads((tmp_path / "o/summary.json").read_text())
    from sim.sweeps.store import SUMMARY_VERSION

    assert proc.returncode == 0 and s["format"] == "servesim-summary" and s["version"] == SUMMARY_VERSION >= 3
    assert len(s["scenario_hash"]) == 64


def test_a_dask_cluster_gives_the_process_pools_sweep(write_yaml, tmp_path):
    distributed = pytest.importorskip("distributed")
    p = write_yaml(scenario_dict(requests=20000, cost_model={"kind": "affine", "base_ms": 2.0, "per_item_ms": 0.25,
                                                              "max_batch_size": 32, "noise": {"cv": 0.3}}))
    grid = ["server.batching.max_batch_size=1,4,16", "server.replicas=1,2"]
    pool = sweep(p, grid, tmp_path / "pool", workers=2)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        proc = run_cli("sweep", p, *sum((["--grid", g] for g in grid), []), "--out", tmp_path / "dask",
                       "--dask", cluster.scheduler_address, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "dask/sweep.parquet").read_bytes() == (tmp_path / "pool/sweep.parquet").read_bytes()
    hosts = pd.read_parquet(tmp_path / "dask/timings.parquet")["pid"]
    assert len(pool) == 6 and hosts.nunique() >= 1


def test_compare_prints_runs_side_by_side_and_overlays_their_cdfs(write_yaml, tmp_path):
    p = write_yaml(scenario_dict(requests=3000))
    for name, b in (("b1", 1), ("b8", 8)):
        proc = run_cli("run", p, "--out", tmp_path / name, "--set", f"server.batching.max_batch_size={b}", "--no-plots")
        assert proc.returncode == 0, proc.stderr
    proc = run_cli("compare", tmp_path / "b1", tmp_path / "b8", "--plot", tmp_path / "cdf.png")
    assert proc.returncode == 0, proc.stderr
    head, *rows = proc.stdout.splitlines()
    assert head.split() == ["b1", "b8"] and any(r.split()[:2] == ["latency", "p99"] for r in rows)
    assert (tmp_path / "cdf.png").stat().st_size > 5000
    bad = run_cli("compare", tmp_path / "b1", tmp_path / "nothing")
    assert bad.returncode == 2 and "no summary.json here" in bad.stderr
    bad = run_cli("compare", tmp_path / "b1", "--plot", tmp_path / "x.nope")
    assert bad.returncode == 2 and bad.stderr.startswith("--plot")


def test_plan_needs_an_slo_and_scales_a_trace_by_its_speedup(write_yaml, tmp_path):
    proc = run_cli("plan", write_yaml(scenario_dict()), "--out", tmp_path / "o")
    assert proc.returncode == 2 and ": slo: plan needs latency targets" in proc.stderr
    import sim
    from sim.sweeps.rates import rate_key, value_for

    s = sim.load_scenario(ROOT / "scenarios/embeddings-trace-replay.yaml")
    key = rate_key(s, "x")
    assert key[0] == "workload.arrival.speedup"
    twice = sim.load_scenario(ROOT / "scenarios/embeddings-trace-replay.yaml", [f"{key[0]}={value_for(key, 2 * key[2])}"])
    assert twice.workload.arrival.rate_rps == pytest.approx(2 * key[2], rel=1e-6)


def test_plan_goes_below_the_coarse_scan_for_a_tight_target(write_yaml, tmp_path):
    # p99 <= 1.2 ms on a 1 ms step leaves 0.2 ms of waiting at the 99th percentile: only light load meets it
    exact = exact_rate(lambda r: md1_latency_quantile_s(r, 0.001, 0.99) <= 0.0012)
    got = plan(md1(write_yaml, {"latency_p99_ms": 1.2}, requests=60000), [], tmp_path / "p")["configs"][0]
    assert got["max_rate_rps"] is not None and 0.8 * exact <= got["max_rate_rps"] <= 1.05 * exact, (got, exact)


def test_plan_lengthens_each_replication_and_keeps_grid_columns(write_yaml, tmp_path):
    result = plan(md1(write_yaml, {"latency_p99_ms": 10.0}, requests=5000), [], tmp_path / "p",
                  overrides=["replications=3"])
    assert 0.85 * 773.5 <= result["configs"][0]["max_rate_rps"] <= 1.01 * 773.5
    p = write_yaml(scenario_dict(warmup_s=2))
    df = sweep(p, ["requests=3000,6000"], tmp_path / "s")
    assert df["requests"].tolist() == [3000, 6000] and (df["requests (measured)"] < df["requests"]).all()


def test_empty_slo_and_what_the_hash_ignores(write_yaml, tmp_path):
    proc = run_cli("plan", write_yaml(scenario_dict(slo={})), "--out", tmp_path / "o")
    assert proc.returncode == 2 and "plan needs latency targets" in proc.stderr
    import sim
    from sim.sweeps.store import scenario_hash

    p = write_yaml(scenario_dict())
    base = scenario_hash(sim.load_scenario(p))
    assert scenario_hash(sim.load_scenario(p, ["outputs.records=false", "plan.target_rate_rps=5"])) == base
    assert scenario_hash(sim.load_scenario(p, ["seed=4"])) != base
