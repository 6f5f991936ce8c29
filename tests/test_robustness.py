"""Regression tests for the defects a new user hit (issue: trustworthy on any machine), one or more per defect."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import yaml

import sim
from sim.errors import ScenarioError
from sim.scenario import load_scenario

from .conftest import ROOT, run_cli, scenario_dict, servesim_cmd

LLM = {"name": "llm", "requests": 400, "workload": {"arrival": {"process": "poisson", "rate_rps": 2},
                                                    "prompt_tokens": {"dist": "uniform", "low": 100, "high": 200},
                                                    "output_tokens": {"dist": "uniform", "low": 10, "high": 40}},
       "cost_model": {"kind": "llm", "base_ms": 8, "prefill_token_ms": 0.02, "decode_seq_ms": 0.2},
       "server": {"batching": {"policy": "continuous", "max_num_seqs": 16, "max_num_batched_tokens": 512,
                               "kv_cache_tokens": 20000}}}


def error_for(raw, write_yaml, overrides=()):
    with pytest.raises(ScenarioError) as info:
        load_scenario(write_yaml(raw), overrides)
    return info.value


# ---- input that used to be accepted, or refused with the wrong words ----

def test_absurd_queue_delay_is_refused_and_blamed_on_the_flag(write_yaml):
    p = write_yaml(scenario_dict())
    err = error_for(scenario_dict(), write_yaml, ["server.batching.max_queue_delay_ms=1e308"])
    assert err.source == "--set server.batching.max_queue_delay_ms=1e308"
    assert err.path == "server.batching.max_queue_delay_ms" and "3600000" in err.message
    # a file's own error still names the file; a cross-field check names the --set that caused it
    err = error_for(scenario_dict(bogus=1), write_yaml)
    assert err.source == str(p)
    err = error_for(scenario_dict(), write_yaml, ["server.batching.max_batch_size=999"])
    assert err.source == "--set server.batching.max_batch_size=999" and "exceeds the cost model's limit" in err.message


def test_a_trace_spanning_no_time_has_no_offered_rate(write_yaml):
    for times in ([0.5], [0.2, 0.2, 0.2]):
        s = sim.run(load_scenario(write_yaml(scenario_dict(requests=None, workload={
            "arrival": {"process": "trace", "times_s": times}})))).summary
        assert s["offered_rps"] is None and s["offered_load"] is None
        assert s["stable"] is True and s["requests"] == len(times)
        assert any("span no time" in w for w in s["warnings"])
        assert not any("UNSTABLE" in w or "busy" in w for w in s["warnings"])
        assert "Infinity" not in json.dumps(s)


def test_llm_requests_that_can_never_fit_are_refused_by_check_and_run(write_yaml, tmp_path):
    p = write_yaml(LLM)
    for key, value, words in (("server.batching.kv_cache_tokens", 100, "the smallest needs 7 blocks"),
                              ("server.batching.kv_cache_tokens", 8, "below one block"),
                              ("warmup_s", 1e6, "after the last arrival")):
        for cmd in (["check", p], ["run", p, "--out", tmp_path / "o"]):
            proc = run_cli(*cmd, "--set", f"{key}={value}")
            assert proc.returncode == 2 and words in proc.stderr, (cmd, proc.stderr)
            assert proc.stderr.startswith(f"--set {key}={value}") or f"with --set {key}" in proc.stderr
            assert "Traceback" not in proc.stderr and not (tmp_path / "o").exists()
    static = dict(LLM, server={"batching": {"policy": "llm_static", "max_batch_size": 4, "kv_cache_tokens": 50}})
    with pytest.raises(ScenarioError, match=r"smallest needs 1[1-3]\d \(prompt \+ output\)"):
        sim.run(load_scenario(write_yaml(static, "st.yaml")))


def test_check_refuses_a_static_batch_that_never_fills(write_yaml):
    p = write_yaml(scenario_dict(requests=5, server={"batching": {"policy": "static", "max_batch_size": 8}}))
    proc = run_cli("check", p)
    assert proc.returncode == 2 and "server.batching.max_batch_size" in proc.stderr and "would ever be dispatched" in proc.stderr


def test_uniform_tokens_take_min_max_and_unknown_keys_list_the_allowed_ones(write_yaml):
    raw = json.loads(json.dumps(LLM))
    raw["workload"]["prompt_tokens"] = {"dist": "uniform", "min": 100, "max": 200}
    assert load_scenario(write_yaml(raw)).workload.prompt_tokens.high == 200
    raw["workload"]["prompt_tokens"] = {"dist": "uniform", "min": 100, "maxx": 200}
    msgs = str(error_for(raw, write_yaml))
    assert "allowed keys (for dist 'uniform'): low (or min), high (or max)" in msgs and "(none)" not in msgs
    raw["workload"]["prompt_tokens"] = {"dist": "uniform", "min": 100, "low": 120, "high": 200}
    assert "give low or min, not both" in str(error_for(raw, write_yaml))


def test_lognormal_mean_outside_its_bounds_is_refused(write_yaml):
    raw = json.loads(json.dumps(LLM))
    raw["workload"]["output_tokens"] = {"dist": "lognormal", "mean": 500, "cv": 1, "max": 100}
    err = error_for(raw, write_yaml)
    assert err.path == "workload.output_tokens" and "must lie within min..max" in err.message


def test_file_errors_name_file_lines_the_same_way(write_yaml, tmp_path):
    (tmp_path / "tok.csv").write_text("n\n5\n-1\n")
    (tmp_path / "tok.jsonl").write_text('{"n": 5}\n{"n": -1}\n')
    (tmp_path / "trace.csv").write_text("arrival_s\n0.1\n-1\n")
    raw = json.loads(json.dumps(LLM))
    for name, line in (("tok.csv", 3), ("tok.jsonl", 2)):
        raw["workload"]["prompt_tokens"] = {"dist": "empirical", "path": name, "column": "n"}
        err = error_for(raw, write_yaml)
        assert err.path == f"line {line}, column n" and err.message.startswith("-1 is not")  # not np.float64(-1.0)
    err = error_for(scenario_dict(workload={"arrival": {"process": "trace", "path": "trace.csv"}}), write_yaml)
    assert err.path == "line 3, column arrival_s" and "np." not in err.message


def test_duplicate_yaml_keys_are_refused_but_merge_keys_still_work(tmp_path):
    p = tmp_path / "d.yaml"
    p.write_text("name: a\nrequests: 10\nworkload: {arrival: {process: poisson, rate_rps: 1, rate_rps: 2}}\n")
    with pytest.raises(ScenarioError, match="'rate_rps' is given twice"):
        load_scenario(p)
    # a merge key (<<: *anchor) brings keys that the mapping may override: that is not a duplicate
    p.write_text("name: a\nrequests: 10\nbase: &b {process: poisson, rate_rps: 1}\n"
                 "workload: {arrival: {<<: *b, rate_rps: 3}}\ncost_model: {kind: affine, base_ms: 1, per_item_ms: 1}\n")
    from sim.config import load_yaml
    raw = load_yaml(p.read_text())
    assert raw["workload"]["arrival"] == {"process": "poisson", "rate_rps": 3}


def test_suspicious_inputs_warn_in_check_and_in_the_summary(write_yaml, tmp_path):
    falling = scenario_dict(cost_model={"kind": "table", "step_ms": {1: 5.0, 8: 3.0, 16: 6.0}},
                            server={"batching": {"policy": "dynamic", "max_batch_size": 16}})
    p = write_yaml(falling)
    proc = run_cli("check", p)
    assert proc.returncode == 0 and "step time falls from 5 ms at batch 1" in proc.stderr
    assert any("step time falls" in w for w in sim.run(load_scenario(p)).summary["warnings"])
    (tmp_path / "t.csv").write_text("arrival_s\n0.0\n0.3\n0.2\n0.5\n")
    s = sim.run(load_scenario(write_yaml(scenario_dict(requests=None, workload={
        "arrival": {"process": "trace", "path": "t.csv"}}), "t.yaml")))
    assert any("not in time order (first at line 4" in w for w in s.summary["warnings"])
    assert (np.diff(s.requests["arrival_s"]) >= 0).all()


# ---- output folders: checked first, never touching a user's files, nothing left behind ----

def test_bad_out_is_refused_before_simulating(tmp_path, monkeypatch, capsys):
    import sim.runner
    from sim.cli import main

    def never(*a, **k):
        raise AssertionError("simulated although --out was unusable")

    monkeypatch.setattr(sim.runner, "run", never)
    (tmp_path / "file").write_text("x")
    for out, words in (("", "empty path"), (str(tmp_path / "file" / "x"), "is a file, not a folder"),
                       ("/proc/servesim-test", "cannot write"), (str(tmp_path / "file"), "not a folder")):
        assert main(["run", str(ROOT / "scenarios/vision-dynamic.yaml"), "--out", out]) == 2
        assert words in capsys.readouterr().err


def test_user_files_in_out_are_never_deleted_or_overwritten(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "kv_cache.png").write_text("mine")          # a name only LLM runs write
    (out / "requests.parquet").write_text("mine too")  # a name this run will not write
    args = ("run", ROOT / "scenarios/vision-dynamic.yaml", "--out", out, "--set", "requests=3000")
    assert run_cli(*args, "--no-records").returncode == 0
    assert (out / "kv_cache.png").read_text() == "mine" and (out / "requests.parquet").read_text() == "mine too"
    assert run_cli(*args, "--no-records", "--no-plots").returncode == 0  # our own plots go, theirs stay
    assert not (out / "latency_cdf.png").exists() and (out / "kv_cache.png").read_text() == "mine"
    proc = run_cli(*args)  # would overwrite their requests.parquet: refused, nothing written
    assert proc.returncode == 2 and "requests.parquet, which servesim did not write" in proc.stderr
    assert (out / "requests.parquet").read_text() == "mine too"


def test_sigterm_while_writing_leaves_no_temporary_folder_and_stale_ones_are_removed(tmp_path):
    stale = tmp_path / ".o.servesim-999999999-abc"  # a killed run's folder: no such process
    stale.mkdir()
    (stale / "summary.json").write_text("{}")
    proc = subprocess.Popen(servesim_cmd() + ["run", str(ROOT / "scenarios/vision-dynamic.yaml"), "--out",
                                              str(tmp_path / "o"), "--set", "requests=3000000", "--no-plots"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    staging = []
    while time.monotonic() < deadline and proc.poll() is None:
        staging = [p for p in tmp_path.glob(f".o.servesim-{proc.pid}-*")]
        if staging:
            break
        time.sleep(0.02)
    assert staging and not stale.exists(), "the run never started writing, or left the stale folder"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "terminated" in err and "Traceback" not in err
    assert [p.name for p in tmp_path.iterdir()] == []  # no staging folder, no half-written output


# ---- numbers that used to be wrong ----

def test_partial_prefill_preemption_counts_only_the_lost_work():
    from sim.batching import ContinuousBatching
    from sim.cost import LlmCost
    from sim.llm_engine import simulate_continuous

    cost = LlmCost(base_ms=8, prefill_token_ms=0.02, decode_seq_ms=0.2)
    partial = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(3, 12))
        arr, p, o = np.sort(rng.uniform(0, 0.2, n)), rng.integers(20, 300, n), rng.integers(5, 80, n)
        pol = ContinuousBatching(max_num_seqs=8, max_num_batched_tokens=64, chunk_size=32, block_size=16,
                                 kv_cache_tokens=int(rng.integers(320, 640)))
        log = simulate_continuous(pol, cost, arr, p, o)
        # every prefill token is either the prompt's first computation or counted as recomputed
        assert log.step_prefill_tokens.sum() == p[~log.refused].sum() + log.recomputed_tokens.sum(), seed
        partial += int(((log.preemptions > 0) & (log.recomputed_tokens < p)).sum())
    assert partial > 0  # victims caught mid-prefill occurred (the old count added their whole prompt)


def test_rates_exclude_the_drain_after_the_last_arrival(write_yaml):
    # a static batch of 8 with an hour's timeout: the last partial batch leaves an hour after the traffic
    raw = scenario_dict(requests=2005, workload={"arrival": {"process": "poisson", "rate_rps": 200}},
                        server={"batching": {"policy": "static", "max_batch_size": 8, "max_queue_delay_ms": 3.6e6}})
    s = sim.run(load_scenario(write_yaml(raw))).summary
    assert s["throughput_rps"] == pytest.approx(200, rel=0.1)
    assert s["duration_s"] > 3600 and s["stable"]


def test_p99_gets_an_interval_from_fifty_thousand_requests(write_yaml):
    s = sim.run(load_scenario(ROOT / "scenarios/vision-dynamic.yaml", ["requests=100000"])).summary["latency_s"]
    lo, hi = s["ci95"]["p99"]
    assert lo < s["p99"] < hi and s["ci95_sections"]["p99"] == 9
    small = sim.run(load_scenario(ROOT / "scenarios/vision-dynamic.yaml", ["requests=20000"])).summary["latency_s"]
    assert small["ci95"]["p99"] is None and "lengthen the run" in small["ci95_missing"]["p99"]
