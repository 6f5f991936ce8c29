"""Trace replays rescaled to a target mean rate (`rate_rps`) and looped (`loop: true`)."""
import numpy as np
import pytest

import sim
from sim.runner import generate_workload

from .conftest import ROOT, run_cli, scenario_dict

TRACE = str(ROOT / "scenarios/traces/azure_llm_2023_conv.csv")


def trace(**arrival):
    return sim.validate(scenario_dict(workload={"arrival": {"process": "trace", "path": TRACE, **arrival}},
                                      requests=None))


def test_rate_rps_time_scales_the_trace_to_that_mean_rate():
    natural = trace().workload.arrival
    scaled = trace(rate_rps=12.5).workload.arrival
    assert scaled.rate_rps == pytest.approx(12.5, rel=1e-9)
    ratio = natural.load()[1:] / scaled.load()[1:]  # the same shape, times stretched by one factor
    assert np.allclose(ratio, ratio[0])


def test_loop_replays_the_trace_back_to_back_at_its_own_rate():
    s = sim.validate(scenario_dict(requests=50000, workload={"arrival": {
        "process": "trace", "path": TRACE, "rate_rps": 40.0, "loop": True}}))
    t = generate_workload(s, 0).arrival_s
    n = s.workload.arrival.load().size
    assert t.size == 50000 and np.all(np.diff(t) >= 0) and n < 50000
    assert (2 * n - 1) / t[2 * n - 1] == pytest.approx(40.0, rel=1e-9)  # whole passes keep the trace's rate
    np.testing.assert_allclose(np.diff(t[n:2 * n]), np.diff(t[:n]), rtol=0, atol=1e-9)  # the second pass repeats the first


def test_trace_keys_are_checked(write_yaml):
    raw = scenario_dict(requests=10 ** 6, workload={"arrival": {"process": "trace", "path": TRACE}})
    proc = run_cli("check", write_yaml(raw))
    assert proc.returncode == 2 and "loop: true" in proc.stderr
    raw["workload"]["arrival"].update(speedup=2.0, rate_rps=5.0)
    proc = run_cli("check", write_yaml(raw))
    assert proc.returncode == 2 and "give either speedup or rate_rps" in proc.stderr
