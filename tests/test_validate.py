"""`servesim validate`: the real serving loops against the prediction, independent of this machine's speed.

Accuracy is asserted only with models whose step time is controlled (profiler/models.py `sleep`, the LLM
SleepEngine): they wait a known time per step, so measured and predicted must agree whatever the CPU, and
even with both cores busy. Real models (a tiny MLP, the GPT-shaped decoder) are run end to end with
--reprofile for what the pipeline writes, not for how fast this machine is: their accuracy on real
hardware is measured in bench/ and by the GPU calibration kit, never asserted here.
"""
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from .conftest import ROOT, run_cli

pytest.importorskip("torch")

# one torch thread: on a busy CPU, torch's thread barriers wait for descheduled threads (steps 100x slower)
QUICK = ["--no-peaks", "--no-plot", "--quiet", "--warmup", "2", "--min-samples", "6", "--threads", "1"]
# steps of 10-40 ms, so that a loaded machine's late wake-ups (a few ms) stay a small part of each
SLEEP_LLM = {"base_ms": 10, "prefill_token_ms": 0.02, "prefill_seq_ms": 1.0, "decode_seq_ms": 0.5,
             "decode_context_ms": 0.002}


def profile(tmp_path: Path, name: str, *args: str) -> Path:
    from profiler.profile import main

    out = tmp_path / name
    assert main([*args, *QUICK, "--out", str(out)]) == 0
    return out


def sleep_scenario(tmp_path: Path, prof: Path, warmup_s: float = 0.3, **batching) -> Path:
    raw = {"name": "sleep", "seed": 1, "requests": 1200, "warmup_s": warmup_s,
           "workload": {"arrival": {"process": "poisson", "rate_rps": 500}}, "cost_model": {"profile": prof.name},
           "server": {"batching": batching or {"policy": "dynamic", "max_batch_size": 16, "max_queue_delay_ms": 2}}}
    p = tmp_path / "scenario.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


class WakeUps:
    """How late this machine wakes a sleeping thread (ms), sampled every 2 ms while the block runs: the real loop
    sleeps a few times in each request's path (its release, the batch's delay, each step), so a loaded machine's
    late wake-ups add about that much to every measured latency, and nothing to the simulated one."""

    def __init__(self, nap_s: float = 0.002):
        self.nap_s, self.late_ms, self._stop = nap_s, [], threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            t0 = time.perf_counter()
            time.sleep(self.nap_s)
            self.late_ms.append((time.perf_counter() - t0 - self.nap_s) * 1000)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def quantile(self, q: float) -> float:
        return float(np.quantile(self.late_ms, q)) if self.late_ms else 0.0


def test_validate_agrees_with_the_prediction_for_a_model_of_known_step_time(tmp_path):
    prof = profile(tmp_path, "sleep.yaml", "--model", "sleep", "--model-arg", "base_ms=4", "--model-arg",
                   "per_item_ms=0.5", "--batch-sizes", "1,2,4,8,16", "--budget-s", "0.3")
    out = tmp_path / "val"
    with WakeUps() as late:
        proc = run_cli("validate", sleep_scenario(tmp_path, prof), "--out", out, "--loads", "0.5,0.8")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "validation.json").read_text())
    for row in report["loads"]:
        err, pred = row["error_pct"], row["predicted"]
        # the loop and the simulator share the dispatch rule and the step time: only the clock differs. On an
        # idle machine they agree within 3% (bench/README.md); each bound is that agreement plus room for three
        # late wake-ups in a request's path, as measured on this machine during the run (a loaded 2-core VM wakes
        # a thread milliseconds late: seen there, p50 -11% and p99 -23% on an idle 0.1 ms)
        def room(metric: str, q: float) -> float:  # capped: a machine too late to bound still fails the test
            return min(60.0, 100 * 3 * late.quantile(q) / pred[metric])
        assert abs(err["throughput_rps"]) < 5, row
        assert abs(err["p50_latency_ms"]) < 20 + room("p50_latency_ms", 0.5), (row, late.quantile(0.5))
        assert abs(err["mean_latency_ms"]) < 20 + room("mean_latency_ms", 0.5), (row, late.quantile(0.5))
        assert abs(err["p99_latency_ms"]) < 50 + room("p99_latency_ms", 0.99), (row, late.quantile(0.99))
        # late steps let more requests gather: the batch grows with the lateness against the 4 ms base step
        assert abs(err["mean_batch"]) < 15 + min(30.0, 100 * late.quantile(0.5) / 4.0), (row, late.quantile(0.5))
        assert row["measured"]["requests"] == row["predicted"]["requests"] > 800  # warm-up excluded
        assert row["backlog"] == {"measured": "no trend", "predicted": "no trend"}
    assert report["calibration"]["overhead_ms"] > 0 and not report["reprofiled"]
    for name in ("validation.csv", "latency_cdf.png", "trace-load0.5.csv", "measured-load0.8.parquet"):
        assert (out / name).exists(), name


def test_validate_refuses_a_profile_from_another_machine_unless_reprofiled(tmp_path):
    prof = profile(tmp_path, "sleep.yaml", "--model", "sleep", "--model-arg", "base_ms=2", "--model-arg",
                   "per_item_ms=0.2", "--batch-sizes", "1,2,4", "--budget-s", "0.1")
    data = yaml.safe_load(prof.read_text())
    data["device"]["name"] = data["device"]["cpu"] = "Some Other CPU"
    data["device"]["torch"] = "1.0.0"
    prof.write_text(yaml.safe_dump(data, sort_keys=False))
    scen = sleep_scenario(tmp_path, prof, policy="dynamic", max_batch_size=4, max_queue_delay_ms=1)
    proc = run_cli("validate", scen, "--out", tmp_path / "v", "--loads", "0.5", "--requests", "300")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"{prof}: device: was measured on another machine")
    assert "'Some Other CPU'" in proc.stderr and "torch 1.0.0" in proc.stderr and "--reprofile" in proc.stderr
    assert not (tmp_path / "v").exists()
    proc = run_cli("validate", scen, "--out", tmp_path / "v", "--loads", "0.5", "--requests", "300", "--reprofile")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "v/validation.json").read_text())
    assert report["reprofiled"] and report["step_time_drift_vs_shipped_profile"] is None  # no drift across machines
    assert (tmp_path / "v/fresh-profile.yaml").exists()


def test_validate_runs_a_real_model_end_to_end_with_reprofile(tmp_path):
    prof = profile(tmp_path, "mlp.yaml", "--model", "mlp", "--model-arg", "in_features=32", "--model-arg", "hidden=64",
                   "--model-arg", "layers=2", "--model-arg", "out_features=8", "--batch-sizes", "1,2,4,8",
                   "--budget-s", "0.05")
    scen = sleep_scenario(tmp_path, prof, warmup_s=0.0, policy="dynamic", max_batch_size=8, max_queue_delay_ms=1)
    out = tmp_path / "val"
    # an impossible bound: the run must finish, write everything, and then exit 3 naming the worst metric
    proc = run_cli("validate", scen, "--out", out, "--loads", "0.3", "--requests", "600", "--reprofile",
                   "--max-error-pct", "0.001")
    assert proc.returncode == 3, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "exceeds --max-error-pct 0.001" in proc.stderr
    report = json.loads((out / "validation.json").read_text())
    row = report["loads"][0]
    assert row["measured"]["requests"] == row["predicted"]["requests"] == 600
    assert all(np.isfinite(v) for v in row["error_pct"].values())
    assert report["reprofiled"] and (out / "fresh-profile.yaml").exists()


def llm_scenario(tmp_path: Path, prof: Path, requests: int = 120) -> Path:
    raw = {"name": "llm", "seed": 3, "requests": requests, "warmup_s": 1,
           "workload": {"arrival": {"process": "poisson", "rate_rps": 5},
                        "prompt_tokens": {"dist": "uniform", "low": 32, "high": 256},
                        "output_tokens": {"dist": "uniform", "low": 4, "high": 48}},
           "cost_model": {"kind": "llm", "profile": str(prof)},
           "server": {"batching": {"policy": "continuous", "max_num_seqs": 8, "max_num_batched_tokens": 256,
                                   "kv_cache_tokens": 100000, "block_size": 16}}}
    p = tmp_path / "llm.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def test_validate_llm_agrees_with_the_prediction_for_an_engine_of_known_step_time(tmp_path):
    from profiler.llm import SleepEngine
    from sim.llm_fit import COEFS, features

    args = [x for k, v in SLEEP_LLM.items() for x in ("--model-arg", f"{k}={v}")]
    with WakeUps() as late_profile:
        prof = profile(tmp_path, "llm-sleep.yaml", "--model", "sleep", "--llm", *args, "--max-batch", "8",
                       "--max-prompt", "256", "--max-context", "512", "--budget-s", "0.1")
    data = yaml.safe_load(prof.read_text())
    fit = data["llm_fit"]["coefficients"]
    known = SleepEngine(**SLEEP_LLM).coef
    # the fitted cost model reproduces the engine's known step time at every grid point it measured, within 20% plus
    # what a late wake-up adds to the shortest step (10 ms) on this machine now (capped)
    rel = 0.2 + min(0.3, late_profile.quantile(0.5) / SLEEP_LLM["base_ms"])
    for p in data["llm_points"]:
        x = features(p["phase"], p["batch"], p["tokens"], p["context"])
        assert sum(fit[c] * v for c, v in zip(COEFS, x)) == pytest.approx(
            sum(known[c] * v for c, v in zip(COEFS, x)), rel=rel), (p, late_profile.quantile(0.5))
    out = tmp_path / "v"
    with WakeUps() as late:
        proc = run_cli("validate", llm_scenario(tmp_path, prof), "--out", out, "--loads", "0.5")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    row = json.loads((out / "validation.json").read_text())["loads"][0]
    err, pred = row["error_pct"], row["predicted"]
    # each step sleeps once (late by one wake-up: TPOT and, token by token, E2E); TTFT waits for the release, the step
    # and the delivery: three. Allowances capped, as in the request-level test above
    step_room = min(40.0, 100 * late.quantile(0.5) / pred["tpot_p50_ms"])
    ttft_room = min(60.0, 100 * 3 * late.quantile(0.5) / pred["ttft_p50_ms"])
    assert abs(err["output_tokens_per_s"]) < 5 and abs(err["throughput_rps"]) < 5, row
    assert abs(err["tpot_p50_ms"]) < 15 + step_room and abs(err["e2e_mean_ms"]) < 15 + step_room, (row, step_room)
    assert abs(err["ttft_p50_ms"]) < 40 + ttft_room, (row, ttft_room)
    assert row["measured"]["requests"] == row["predicted"]["requests"] > 80
    assert (out / "trace-load0.5.csv").read_text().startswith("arrival_s,prompt_tokens,output_tokens")


def test_validate_llm_reprofiles_the_real_decoder(tmp_path):
    prof = profile(tmp_path, "gpt.yaml", "--model", "gpt", "--llm", "--model-arg", "layers=2", "--model-arg", "hidden=64",
                   "--model-arg", "heads=4", "--model-arg", "vocab=500", "--max-batch", "4", "--max-prompt", "64",
                   "--max-context", "128", "--budget-s", "0.05")
    scen = llm_scenario(tmp_path, prof, requests=40)
    out = tmp_path / "vllm"
    proc = run_cli("validate", scen, "--device", "cpu", "--out", out, "--loads", "0.8", "--reprofile",
                   "--set", "server.batching.max_num_seqs=4", "--set", "workload.prompt_tokens.high=64",
                   "--set", "workload.output_tokens.high=16", "--set", "warmup_s=0")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "validation.json").read_text())
    row = report["loads"][0]
    assert report["reprofiled"] and (out / "fresh-profile.yaml").exists()
    fresh = yaml.safe_load((out / "fresh-profile.yaml").read_text())
    assert fresh["mode"] == "llm" and fresh["llm_points_count"] == len(fresh["llm_points"]) >= 6
    assert row["measured"]["requests"] == row["predicted"]["requests"] == 40
    assert all(np.isfinite(v) for v in row["error_pct"].values())


def test_validate_refuses_what_it_cannot_serve(tmp_path):
    proc = run_cli("validate", ROOT / "scenarios/vision-dynamic.yaml", "--out", tmp_path / "v")
    assert proc.returncode == 2 and "cost_model: validate needs a measured profile" in proc.stderr
    proc = run_cli("validate", ROOT / "scenarios/validate-mlp-cpu.yaml", "--device", "cuda", "--out", tmp_path / "v")
    assert proc.returncode == 2 and "device.kind" in proc.stderr
    proc = run_cli("validate", ROOT / "scenarios/validate-mlp-cpu.yaml", "--loads", "0.5,1.5", "--out", tmp_path / "v")
    assert proc.returncode == 2 and "--loads" in proc.stderr
    # arrivals without a rate (a single request) cannot be rescaled to a load: refused, not a crash
    proc = run_cli("validate", ROOT / "scenarios/validate-mlp-cpu.yaml", "--out", tmp_path / "v", "--set",
                   "workload.arrival={process: trace, times_s: [0.5]}", "--set", "requests=1")
    assert proc.returncode == 2 and "workload.arrival: the trace spans no time" in proc.stderr, proc.stderr
    assert not (tmp_path / "v").exists()


def test_trace_rescaling_changes_the_replayed_rate():
    from profiler.validate_common import _with_rate
    from sim.arrivals import TraceArrivals

    tr = TraceArrivals(times_s=[0.0, 1.0, 2.0, 3.0, 4.0])
    assert tr.rate_rps == pytest.approx(1.0)
    fast = _with_rate(tr, 10.0)
    assert fast.rate_rps == pytest.approx(10.0) and fast.load()[-1] == pytest.approx(0.4)


def test_serve_loop_static_batching_terminates_and_leaves_partial_batch_unserved():
    import torch

    from profiler.serve import serve_trace
    from sim import StaticBatching

    class Fake:
        def __init__(self):
            self.torch = torch
            self.run = lambda x: x * 2
            self.sync = lambda: None

    rec = serve_trace(Fake(), StaticBatching(max_batch_size=2).rule(8), np.array([0.0, 0.001, 0.002, 0.003, 0.004]),
                      [torch.zeros(1, 3)])
    assert rec.batch_size.tolist() == [2, 2, 2, 2, 0]
    assert np.isnan(rec.completion_s[4]) and np.isfinite(rec.completion_s[:4]).all()
    assert (rec.dispatch_s[:4] >= rec.arrival_s[:4]).all()


def test_serve_loop_flushes_the_last_partial_dynamic_batch_after_its_delay():
    # the loop used to stop once every request had arrived, leaving a last batch smaller than the preferred
    # size unserved even though its queue delay would have sent it
    import torch

    from profiler.serve import serve_trace
    from sim import DynamicBatching

    class Fake:
        torch = __import__("torch")
        run = staticmethod(lambda x: x)
        sync = staticmethod(lambda: None)

    # a long delay: the four simultaneous arrivals form the first batch even on a loaded machine
    rec = serve_trace(Fake(), DynamicBatching(max_batch_size=4, max_queue_delay_ms=50).rule(8),
                      np.array([0.0, 0.0, 0.0, 0.0, 0.001]), [torch.zeros(1, 3)])
    assert np.isfinite(rec.completion_s).all() and rec.batch_sizes.tolist() == [4, 1]
    assert rec.dispatch_s[4] >= rec.released_s[4] + 0.05 - 1e-3  # sent once its delay ran out
