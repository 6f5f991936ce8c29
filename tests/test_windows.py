"""Time windows (outputs.window_s): windows add up to the whole run, follow a diurnal profile (chi-square on
the arrivals per window), agree between records and streaming, carry intervals, and come out as files."""
import json

import numpy as np
import pytest
from scipy import stats

import sim
from sim.arrivals import DiurnalArrivals

from .conftest import run_cli, scenario_dict

DIURNAL = {"process": "diurnal", "mean_rate_rps": 1500, "peak_to_trough": 4, "period_s": 600, "peak_at_s": 330}


def windowed(streaming=False, **changes):
    raw = scenario_dict(duration_s=600.0, requests=None, seed=5, workload={"arrival": DIURNAL},
                        cost_model={"kind": "affine", "base_ms": 2.0, "per_item_ms": 0.25, "max_batch_size": 64},
                        server={"batching": {"policy": "dynamic", "max_batch_size": 32, "max_queue_delay_ms": 2}},
                        slo={"latency_p99_ms": 8.0},
                        outputs={"window_s": 60.0, "streaming": streaming, "plots": False,
                                 **({} if streaming else {"records": True})}, **changes)
    return sim.run(sim.validate(raw))


@pytest.mark.parametrize("streaming", [False, True])
def test_windows_add_up_and_follow_the_daily_profile(streaming):
    res = windowed(streaming)
    w, s = res.windows, res.summary
    assert len(w) == 10 and (w["end_s"] - w["start_s"] == 60).all()
    assert w["arrivals"].sum() == s["requests_generated"] and w["turned_away"].sum() == 0
    # every completion lands in some window; the replicas' busy time over the windows is the whole busy time
    assert w["completed"].sum() == s["requests_generated"] - s["unserved"]
    if not streaming:
        log = res.logs[0]
        assert (w["utilization"] * 60).sum() == pytest.approx(float((log.completion_s - log.dispatch_s).sum()), rel=1e-9)
        df = res.requests
        assert w["latency_mean_s"].to_numpy() == pytest.approx(
            df.groupby(df["arrival_s"] // 60)["latency_s"].mean().to_numpy(), rel=1e-9)
    process = DiurnalArrivals(**{k: v for k, v in DIURNAL.items() if k != "process"})
    expected = np.array([process.expected_count(a, b) for a, b in zip(w["start_s"], w["end_s"])])
    chi2 = float(((w["arrivals"] - expected) ** 2 / expected).sum())
    assert chi2 < stats.chi2.ppf(0.999, df=len(expected)), chi2
    # the afternoon peak shows: the busiest window has the worst p99 and queue
    peak = int(w["arrivals"].idxmax())
    assert w["queue_mean"].idxmax() == peak and w["utilization"].idxmax() == peak
    assert s["windows"]["windows"] == 10 and s["windows"]["worst_p99_s"] == pytest.approx(w["latency_p99_s"].max())


def test_records_and_streaming_windows_agree():
    a, b = windowed(False).windows, windowed(True).windows
    for col in ("arrivals", "served", "completed"):
        assert (a[col] == b[col]).all(), col
    for col in ("throughput_rps", "utilization", "queue_mean", "latency_mean_s", "slo_attainment"):
        assert np.allclose(a[col], b[col], rtol=1e-9), col
    for q in (50, 90, 99):
        assert np.allclose(a[f"latency_p{q}_s"], b[f"latency_p{q}_s"], rtol=0.005)
    assert a["latency_p50_lo_s"].notna().all() and b["latency_p50_lo_s"].notna().all()


def test_windows_files_and_llm_windows(tmp_path, write_yaml):
    raw = scenario_dict(requests=3000, outputs={"window_s": 2.0})
    proc = run_cli("run", write_yaml(raw), "--out", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o/windows.parquet").exists() and (tmp_path / "o/windows.png").exists()
    assert json.loads((tmp_path / "o/summary.json").read_text())["windows"]["window_s"] == 2.0
    llm = sim.validate(scenario_dict(
        requests=400, outputs={"window_s": 20.0, "plots": False},
        workload={"arrival": {"process": "poisson", "rate_rps": 2}, "prompt_tokens": {"dist": "fixed", "value": 200},
                  "output_tokens": {"dist": "fixed", "value": 50}},
        cost_model={"kind": "llm", "base_ms": 10.0, "prefill_token_ms": 0.05, "decode_seq_ms": 0.05},
        server={"batching": {"policy": "continuous", "kv_cache_tokens": 20000}}, slo={"ttft_p99_ms": 200}))
    w = sim.run(llm).windows
    assert w["arrivals"].sum() == 400 and "ttft_p99_s" in w and w["utilization"].between(0, 1).all()
