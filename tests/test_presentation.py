"""The terminal table (sim/report.py), the plot helpers (sim/plots.py) and the static LLM engine's waiting count."""
from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest

from sim.batching import LlmStaticBatching
from sim.cli import main
from sim.cost import LlmCost
from sim.llm_engine import simulate_static
from sim.plots import cdf_axis, peaks
from sim.report import KEYS, fmt_duration_ms, fmt_sig, format_llm_summary, format_summary, layout, time_unit


def stats(scale_s: float, ci: bool = True) -> dict:
    vals = {"mean": 1.0, "p50": 0.9, "p90": 1.6, "p95": 1.8, "p99": 2.0}
    out = {k: v * scale_s for k, v in vals.items()}
    out["max"] = 2.1 * scale_s
    if ci:
        out["ci95"] = {"mean": [0.6 * scale_s, 1.4 * scale_s], "p50": [0.5 * scale_s, 1.3 * scale_s],
                       "p90": None, "p95": None, "p99": None}
    return out


REQUEST_SUMMARY = {
    "scenario": "vision", "seed": 1, "replications": 1, "requests": 1000, "duration_s": 10.0,
    "offered_rps": 100.0, "capacity_rps": 300.0, "offered_load": 1 / 3, "stable": True, "throughput_rps": 99.5,
    "latency_s": stats(0.004), "queue_wait_s": stats(0.001), "utilization": 0.4,
    "batch_size": {"mean": 1.8, "p50": 2.0, "max": 8, "batches": 500},
    "confidence": {"level": 0.95, "method": "batch means"}, "warnings": ["be careful"],
    "slo": {"targets": {"p99": {"target_ms": 50.0, "achieved_ms": 8.0, "met": True, "verdict": "met"}},
            "met": True, "attainment_target": "p99"},
    "slo_attainment": 1.0,
}

LLM_SUMMARY = {
    "scenario": "llm-chat-static", "seed": 2, "replications": 1, "requests": 3926, "duration_s": 3013.7,
    "offered_rps": 4.0, "capacity_rps": 1.7, "offered_load": 2.36, "stable": False, "throughput_rps": 1.31,
    "output_tokens_per_s": 313.6, "goodput_rps": 0.0, "utilization": 0.997,
    # the static-batching example: TTFT and E2E around 1e6 ms, TPOT around 17 ms
    "ttft_s": stats(1028.56), "tpot_s": stats(0.0174), "itl_s": stats(0.0174, ci=False), "e2e_s": stats(1032.7),
    "batch_size": {"mean": 31.9, "max": 32, "steps": 101884}, "decode_padding_fraction": 0.708,
    "kv_cache": {"capacity_tokens": 400000, "mean_utilization": 0.449, "max_utilization": 0.741},
    "preemptions": 0, "recomputed_prefill_tokens": 0,
    "confidence": {"level": 0.95, "method": "batch means"}, "warnings": [],
    "slo": {"targets": {"ttft_p99": {"target_ms": 2000.0, "achieved_ms": 1981187.1, "met": False, "verdict": "missed"},
                        "tpot_p99": {"target_ms": 60.0, "achieved_ms": 19.8, "met": True, "verdict": "met"}},
            "met": False, "attainment_target": "ttft+tpot"},
    "slo_attainment": 0.0,
}


def table_lines(text: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split() == list(KEYS))
    end = next(i for i, line in enumerate(lines) if "confidence half-width" in line)
    return lines[start:end]


# --- number formatting and unit choice ------------------------------------------------------------------------

@pytest.mark.parametrize("value, sig, text", [
    (1981187.1, 4, "1981000"), (1028.56, 4, "1029"), (0.0173879, 4, "0.01739"), (5.0, 4, "5"), (9.9996, 4, "10"),
    (424.25, 2, "420"), (0.00017, 2, "0.00017"), (0.0, 4, "0"), (-3.14159, 3, "-3.14"), (None, 4, "-"),
    (float("nan"), 4, "-"), (float("inf"), 4, "inf"),
])
def test_fmt_sig_uses_plain_notation(value, sig, text):
    assert fmt_sig(value, sig) == text


def test_time_unit_switches_to_seconds_at_ten_thousand_ms():
    assert time_unit(9999.0) == ("ms", 1.0)
    assert time_unit(10_000.0) == ("s", 1000.0)
    assert time_unit(None) == ("ms", 1.0)
    assert fmt_duration_ms(1981187.1) == "1981 s" and fmt_duration_ms(19.8) == "19.8 ms" and fmt_duration_ms(None) == "-"


def test_layout_keeps_two_spaces_between_columns_whatever_the_width():
    rows = [["(ms)", "mean", "p50"], ["E2E latency", "1.029e+06 ±4.2e+05", "1.043e+06 ±4.2e+05"], ["x", "1", "2"]]
    lines = layout(rows)
    for line, row in zip(lines, rows):
        assert re.split(r"\s{2,}", line.strip()) == row
    # right-aligned after the label: every column ends at the same position in every row
    ends = {tuple(m.end() for m in re.finditer(r"\S+(?: \S+)*", line))[1:] for line in lines}
    assert len(ends) == 1


# --- the tables -------------------------------------------------------------------------------------------------

def test_llm_table_with_large_values_is_in_seconds_with_separate_columns():
    text = format_llm_summary(LLM_SUMMARY)
    lines = table_lines(text)
    assert lines[0].split() == list(KEYS)
    for line in lines[1:]:
        cells = re.split(r"\s{2,}", line.strip())
        assert len(cells) == 1 + len(KEYS), line  # before the fix: '1.029e+06 ±4.2e+051.043e+06' ran together
    assert not re.search(r"\de[+-]\d", "\n".join(lines))
    ttft = re.split(r"\s{2,}", lines[1].strip())
    assert ttft == ["TTFT (s)", "1029 ±410", "925.7 ±410", "1646", "1851", "2057"]
    assert re.split(r"\s{2,}", lines[2].strip())[0] == "TPOT (ms)"  # each row in its own unit
    assert "± is the 95% confidence half-width" in text
    assert "SLO ttft_p99 <= 2000 ms: MISSED (1981 s)" in text and "SLO tpot_p99 <= 60 ms: MET (19.8 ms)" in text


def test_small_values_stay_in_milliseconds():
    lines = table_lines(format_summary(REQUEST_SUMMARY))
    assert lines[0].split() == list(KEYS)
    assert re.split(r"\s{2,}", lines[1].strip()) == ["latency (ms)", "4 ±1.6", "3.6 ±1.6", "6.4", "7.2", "8"]


@pytest.mark.parametrize("base", [REQUEST_SUMMARY, LLM_SUMMARY], ids=["request", "llm"])
def test_batching_line_comes_from_the_summary_unless_given(base):
    s = dict(base, batching="dynamic, max_batch_size 32, max_queue_delay_ms 2, 1 replica(s)")
    assert "  batching     dynamic, max_batch_size 32, max_queue_delay_ms 2, 1 replica(s)" in format_summary(s)
    assert "  batching     given" in format_summary(s, "given") and "dynamic" not in format_summary(s, "given")
    assert "batching" not in format_summary(base)


def _set(d: dict, path: str, value) -> dict:
    d = copy.deepcopy(d)
    *parents, last = path.split(".")
    node = d
    for p in parents:
        node = node[p]
    node[last] = value
    return d


REQUEST_NULLS = ["latency_s", "latency_s.p99", "latency_s.ci95", "latency_s.ci95.mean", "queue_wait_s", "batch_size",
                 "batch_size.max", "slo", "slo.targets", "slo.targets.p99", "slo.targets.p99.achieved_ms",
                 "slo.targets.p99.target_ms", "slo.targets.p99.verdict", "stable", "offered_load", "seed",
                 "confidence", "confidence.level", "warnings", "duration_s", "slo_attainment"]
LLM_NULLS = ["ttft_s", "ttft_s.p99", "e2e_s.ci95", "itl_s", "batch_size", "batch_size.max", "kv_cache",
             "kv_cache.capacity_tokens", "kv_cache.mean_utilization", "slo.targets.ttft_p99.achieved_ms",
             "slo.targets.tpot_p99", "decode_padding_fraction", "preemptions", "output_tokens_per_s", "stable",
             "goodput_rps", "warnings"]


@pytest.mark.parametrize("path", REQUEST_NULLS)
def test_request_summary_with_a_null_prints_a_dash(path):
    text = format_summary(_set(REQUEST_SUMMARY, path, None))
    assert "-" in text and "None" not in text and "nan" not in text


@pytest.mark.parametrize("path", LLM_NULLS)
def test_llm_summary_with_a_null_prints_a_dash(path):
    text = format_summary(_set(LLM_SUMMARY, path, None))
    assert "-" in text and "None" not in text and "nan" not in text


def test_null_percentile_row_is_all_dashes_and_keeps_its_columns():
    lines = table_lines(format_summary(_set(REQUEST_SUMMARY, "latency_s", None)))
    assert re.split(r"\s{2,}", lines[1].strip()) == ["latency (ms)"] + ["-"] * len(KEYS)
    lines = table_lines(format_summary(_set(REQUEST_SUMMARY, "latency_s.p99", None)))
    assert re.split(r"\s{2,}", lines[1].strip())[-1] == "-"


def _all_null(x):
    if isinstance(x, dict):
        return {k: _all_null(v) for k, v in x.items()}
    return None


@pytest.mark.parametrize("base", [REQUEST_SUMMARY, LLM_SUMMARY], ids=["request", "llm"])
def test_every_value_null_still_formats(base):
    text = format_summary(_all_null(base))
    assert "None" not in text and "servesim: -" in text


def test_report_command_prints_dashes_for_a_null_latency(tmp_path, capsys):
    (tmp_path / "summary.json").write_text(json.dumps(_set(dict(REQUEST_SUMMARY, batching="none, 1 replica(s)"),
                                                           "latency_s", None)))
    assert main(["report", str(tmp_path)]) == 0  # before the fix: internal error, exit 1
    out = capsys.readouterr().out
    assert "batching     none, 1 replica(s)" in out
    assert re.split(r"\s{2,}", table_lines(out)[1].strip()) == ["latency (ms)"] + ["-"] * len(KEYS)


# --- plot helpers -----------------------------------------------------------------------------------------------

def test_cdf_axis_follows_the_data_and_annotates_a_far_slo():
    lat_ms = np.linspace(4.0, 6.0, 1001)
    axis = cdf_axis(lat_ms, [("SLO p99", 500.0)])
    assert axis.lo_ms == 0 and not axis.log and axis.unit == "ms"
    assert axis.hi_ms == pytest.approx(np.quantile(lat_ms, 0.999) * 1.1)  # not stretched to 500 ms
    assert axis.above == [("SLO p99", 500.0)] and axis.inside == []


def test_cdf_axis_widens_for_a_nearby_slo():
    axis = cdf_axis(np.linspace(4.0, 6.0, 1001), [("SLO p99", 10.0)])
    assert axis.inside == [("SLO p99", 10.0)] and axis.above == []
    assert 10.0 < axis.hi_ms < 12.0


def test_cdf_axis_uses_log_scale_for_more_than_two_decades():
    wide = np.geomspace(1.0, 5000.0, 2000)
    axis = cdf_axis(wide)
    assert axis.log and 0 < axis.lo_ms < 1.0
    assert not cdf_axis(np.geomspace(1.0, 50.0, 2000)).log


def test_cdf_axis_switches_to_seconds_for_long_latencies():
    axis = cdf_axis(np.linspace(5_000.0, 20_000.0, 1000), [("SLO p99", 2000.0)])
    assert (axis.unit, axis.div_ms) == ("s", 1000.0) and axis.label("TTFT") == "TTFT (s)"
    assert axis.inside == [("SLO p99", 2000.0)]


def test_cdf_axis_puts_edge_notes_below_the_curve():
    # most requests near the right end: the note must sit below the fraction already reached at 75% of the axis
    x = np.concatenate([np.linspace(1.0, 2.0, 300), np.linspace(19.0, 20.0, 700)])
    axis = cdf_axis(x, [("SLO p99", 500.0)])
    assert axis.note_y <= np.mean(x <= 0.75 * axis.hi_ms) - 0.1 + 1e-12


def test_cdf_axis_without_data():
    axis = cdf_axis(np.array([]), [("SLO p99", 50.0)])
    assert axis.hi_ms > 50 and axis.inside == [("SLO p99", 50.0)]
    assert cdf_axis(np.zeros(10)).hi_ms > 0


def test_peaks_keeps_short_spikes():
    t = np.arange(1000.0)
    y = np.zeros(1000, np.int64)
    y[503] = 40
    tt, yy = peaks(t, y, points=100)
    assert tt.size <= 100 and yy.max() == 40
    assert peaks(t, y, points=5000)[1] is y or np.array_equal(peaks(t, y, points=5000)[1], y)


def test_plain_tick_labels_have_no_offset_or_multiplier():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sim.plots import _plain

    fig, ax = plt.subplots()
    ax.plot([1_000_000.0, 1_000_000.5], [1e9, 1e9 + 1])
    _plain(ax)
    fig.canvas.draw()
    for axis in (ax.xaxis, ax.yaxis):
        assert axis.get_major_formatter().get_offset() == ""
        labels = [t.get_text() for t in axis.get_ticklabels()]
        assert labels and not any("e" in t for t in labels)
    plt.close(fig)


# --- static LLM engine: waiting requests --------------------------------------------------------------------------

def test_static_engine_records_the_waiting_queue():
    # every step takes 10 ms; 4-token prompts and 3 output tokens: one prefill and two decode steps per batch.
    # With max_queue_delay_ms 0 a batch leaves as soon as the engine is free:
    #   batch {0} at 0 ms, steps at 0, 10, 20 ms: arrived 1, 2, 4 (at 0, 5, 12, 13), one taken -> waiting 0, 1, 3
    #   batch {1, 2} at 30 ms, steps at 30, 40, 50: 4 arrived, 3 taken                   -> waiting 1, 1, 1
    #   batch {3} at 60 ms, steps at 60, 70, 80: 4 arrived, 4 taken                        -> waiting 0, 0, 0
    #   batch {4} at its arrival, 100 ms, steps at 100, 110, 120                           -> waiting 0, 0, 0
    cost = LlmCost(base_ms=10, prefill_token_ms=0, decode_seq_ms=0)
    policy = LlmStaticBatching(max_batch_size=2, max_queue_delay_ms=0, kv_cache_tokens=100_000)
    arrivals = [0.000, 0.005, 0.012, 0.013, 0.100]
    log = simulate_static(policy, cost, arrivals, [4] * 5, [3] * 5)
    assert np.round(log.step_start_s * 1000).astype(int).tolist() == [0, 10, 20, 30, 40, 50, 60, 70, 80, 100, 110, 120]
    assert log.step_running.tolist() == [1, 1, 1, 2, 2, 2, 1, 1, 1, 1, 1, 1]
    assert log.step_waiting.tolist() == [0, 1, 3, 1, 1, 1, 0, 0, 0, 0, 0, 0]


def test_static_engine_does_not_count_refused_requests_as_waiting():
    # request 1 alone exceeds the 20-token KV cache: refused on arrival (as vLLM refuses), so it never waits
    cost = LlmCost(base_ms=10, prefill_token_ms=0, decode_seq_ms=0)
    policy = LlmStaticBatching(max_batch_size=1, max_queue_delay_ms=0, kv_cache_tokens=20)
    log = simulate_static(policy, cost, [0.0, 0.001, 0.002], [4, 30, 4], [2, 2, 2])
    assert log.refused.tolist() == [False, True, False]
    # batch {0}: steps at 0 (1 arrived) and 10 ms (3 arrived, only 2 waiting); batch {2} at 20 ms: nobody waits
    assert log.step_waiting.tolist() == [0, 1, 0, 0]
