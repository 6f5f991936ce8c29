"""Every shipped scenario loads and runs on a short horizon, and the story it tells holds."""
from pathlib import Path

import pytest

import sim

from .conftest import ROOT

SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))


def short(path: Path) -> sim.Scenario:
    s = sim.load_scenario(path)
    over = []
    if s.requests is not None:
        over.append(f"requests={min(s.requests, 6000)}")
    elif s.duration_s is not None:
        over.append(f"duration_s={min(s.duration_s, s.warmup_s + 20)}")
    else:
        over.append("requests=3000")
    return sim.load_scenario(path, over + ["outputs.plots=false"])


def test_there_are_examples():
    assert len(SCENARIOS) >= 3


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_example_runs(path, tmp_path):
    result = sim.run(short(path))
    s = result.summary
    assert s["requests"] > 0
    assert s["latency_s"]["p99"] >= s["latency_s"]["p50"] > 0
    result.write(tmp_path, plots=True)
    if result.scenario.streaming:  # statistics only: the windows are what it plots
        plot = "windows.png"
    else:
        plot = "llm_latency_cdf.png" if result.scenario.is_llm else "latency_cdf.png"
    assert (tmp_path / "summary.json").exists() and (tmp_path / plot).exists()


def test_vision_story_dynamic_beats_none_and_static_on_p99():
    p99 = {}
    for pol in ("none", "static", "dynamic"):
        s = sim.run(sim.load_scenario(ROOT / f"scenarios/vision-{pol}.yaml", ["requests=30000"])).summary
        p99[pol] = s["latency_s"]["p99"]
    assert p99["dynamic"] < p99["none"] and p99["dynamic"] < p99["static"]


def test_perf_analyzer_story_saturates_at_capacity():
    out = {}
    for n in (1, 8, 32, 64):
        s = sim.run(sim.load_scenario(ROOT / "scenarios/vision-perf-analyzer.yaml",
                                      [f"workload.clients.count={n}", "requests=5000", "outputs.plots=false"])).summary
        out[n] = s
    cap = 32 / 0.010
    assert out[1]["throughput_rps"] < out[8]["throughput_rps"] < out[32]["throughput_rps"]
    assert out[32]["throughput_rps"] == pytest.approx(cap, rel=0.03) and out[64]["throughput_rps"] == pytest.approx(cap, rel=0.03)
    # past saturation every extra client only queues: latency doubles from 32 to 64 clients
    assert out[64]["latency_s"]["p50"] == pytest.approx(2 * out[32]["latency_s"]["p50"], rel=1e-9)
    assert all(s["closed_loop"]["law_rel_error"] < 0.01 for s in out.values())


def test_priority_story_protects_the_interactive_class():
    over = ["duration_s=3600", "warmup_s=60", "workload.arrival.peak_at_s=1800", "outputs.plots=false"]
    path = ROOT / "scenarios/vision-priority-diurnal.yaml"
    prio = sim.run(sim.load_scenario(path, over)).summary["classes"]
    fifo = sim.run(sim.load_scenario(path, over + ["workload.classes.1.priority=1"])).summary["classes"]
    assert prio["interactive"]["latency_s"]["p99"] < fifo["interactive"]["latency_s"]["p99"]
    assert prio["interactive"]["rejected"]["count"] <= fifo["interactive"]["rejected"]["count"]
