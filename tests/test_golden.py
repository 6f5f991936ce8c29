"""Equivalence: every scenario in scenarios/ (shortened) and configurations covering each path of the simulator
reproduce their recorded outputs (tests/golden: summary, request table, batch or step table, windows,
autoscaler lives) within 1e-9 relative. Recorded before the single simulation core (issue 17) so that the
rewrite is checked request for request; re-record with `python -m tests.golden.record --write NAME` only for
a change whose reason the commit states."""
import pytest

from .golden.cases import cases
from .golden.record import DATA, differences, run_case

CASES = cases()


def test_every_case_has_a_golden_and_every_golden_a_case():
    recorded = {p.stem for p in DATA.glob("*.json")}
    assert recorded == set(CASES)
    assert {p.stem for p in DATA.glob("*.npz")} == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_case_reproduces_its_golden(name):
    raw, base = CASES[name]
    summary, arrays = run_case(raw, base)
    diff = differences(name, summary, arrays)
    assert not diff, f"{name} differs from its golden:\n" + "\n".join(diff[:20])


def test_the_comparison_sees_a_changed_request():
    raw, base = CASES["batch-jsq"]
    summary, arrays = run_case(raw, base)
    arrays["req.completion_s"] = arrays["req.completion_s"].copy()
    arrays["req.completion_s"][7] *= 1 + 1e-8
    summary["latency_s"]["p99"] *= 1 + 1e-8
    diff = differences("batch-jsq", summary, arrays)
    assert any(d.startswith("req.completion_s") for d in diff)
    assert any(d.startswith("summary.latency_s.p99") for d in diff)
