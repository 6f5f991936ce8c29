"""`servesim validate` on the CPU: a short real-serving run against the prediction (loose bound: shared 2-core VM)."""
import json

import pytest

from .conftest import ROOT, run_cli


def test_validate_cpu_short_run_within_loose_bound(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "val"
    # an impossible bound: the run must finish, write everything, and then exit 3 naming the worst metric
    proc = run_cli("validate", ROOT / "scenarios/validate-mlp-cpu.yaml", "--device", "cpu", "--out", out,
                   "--loads", "0.5,0.8", "--requests", "1200", "--reprofile", "--max-error-pct", "0.001")
    assert proc.returncode == 3, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "exceeds --max-error-pct 0.001" in proc.stderr
    report = json.loads((out / "validation.json").read_text())
    # loose bounds for a noisy shared 2-core VM whose speed drifts by tens of percent within minutes (README:
    # CPU validation), checked at half load, where a slower machine still keeps up: throughput, and median
    # latency either as predicted or with the observed drift removed (post-hoc). At 80% a slowdown can
    # saturate the real server, so only finite numbers are required there.
    half = report["loads"][0]
    assert abs(half["error_pct"]["throughput_rps"]) < 10, half
    assert all(abs(v) < 1e6 for v in report["loads"][1]["error_pct"].values())
    assert min(abs(half["error_pct"]["p50_latency_ms"]), abs(half["post_hoc_error_pct"]["p50_latency_ms"])) < 60, half
    assert [r["load"] for r in report["loads"]] == [0.5, 0.8]
    for r in report["loads"]:
        assert r["measured"]["requests"] == r["predicted"]["requests"] > 600  # warm-up excluded
        assert r["measured"]["mean_batch"] > 1 and r["predicted"]["mean_batch"] > 1
    assert report["calibration"]["overhead_ms"] > 0 and report["reprofiled"]
    for name in ("validation.csv", "latency_cdf.png", "trace-load0.5.csv", "measured-load0.8.parquet", "fresh-profile.yaml"):
        assert (out / name).exists(), name
    assert "measured" in proc.stdout and "predicted" in proc.stdout


def test_validate_refuses_what_it_cannot_serve(tmp_path, write_yaml):
    pytest.importorskip("torch")
    proc = run_cli("validate", ROOT / "scenarios/vision-dynamic.yaml", "--out", tmp_path / "v")
    assert proc.returncode == 2 and "cost_model: validate needs a measured profile" in proc.stderr
    proc = run_cli("validate", ROOT / "scenarios/validate-mlp-cpu.yaml", "--device", "cuda", "--out", tmp_path / "v")
    assert proc.returncode == 2 and "device.kind" in proc.stderr
    proc = run_cli("validate", ROOT / "scenarios/validate-mlp-cpu.yaml", "--loads", "0.5,1.5", "--out", tmp_path / "v")
    assert proc.returncode == 2 and "--loads" in proc.stderr
    assert not (tmp_path / "v").exists()


def test_trace_rescaling_changes_the_replayed_rate():
    from profiler.validate import _with_rate
    from sim.arrivals import TraceArrivals

    tr = TraceArrivals(times_s=[0.0, 1.0, 2.0, 3.0, 4.0])
    assert tr.rate_rps == pytest.approx(1.0)
    fast = _with_rate(tr, 10.0)
    assert fast.rate_rps == pytest.approx(10.0) and fast.load()[-1] == pytest.approx(0.4)


def test_serve_loop_static_batching_terminates_and_leaves_partial_batch_unserved():
    torch = pytest.importorskip("torch")
    import numpy as np

    from profiler.serve import serve_trace
    from sim import StaticBatching

    class Fake:
        def __init__(self):
            self.torch = torch
            self.fn = lambda x: x * 2
            self.sync = lambda: None

    rec = serve_trace(Fake(), StaticBatching(max_batch_size=2).rule(8), np.array([0.0, 0.001, 0.002, 0.003, 0.004]),
                      [torch.zeros(1, 3)])
    assert rec.batch_size.tolist() == [2, 2, 2, 2, 0]
    assert np.isnan(rec.completion_s[4]) and np.isfinite(rec.completion_s[:4]).all()
    assert (rec.dispatch_s[:4] >= rec.arrival_s[:4]).all()


def test_validate_llm_cpu_short_run(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "vllm"
    proc = run_cli("validate", ROOT / "scenarios/validate-llm-cpu.yaml", "--device", "cpu", "--out", out,
                   "--loads", "0.5", "--requests", "60")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "validation.json").read_text())
    row = report["loads"][0]
    assert row["measured"]["requests"] == row["predicted"]["requests"] > 30
    assert abs(row["error_pct"]["output_tokens_per_s"]) < 10
    assert row["measured"]["ttft_p50_ms"] > 0 and row["predicted"]["tpot_p50_ms"] > 0
    assert (out / "trace-load0.5.csv").read_text().startswith("arrival_s,prompt_tokens,output_tokens")
