"""The GPU calibration kit (profiler/calibrate.py, bench/gpu/calibrate.sh): its CPU dry run end to end, its
dependency installation from wheels, and its time budget, so it is known to work before a GPU is at hand."""
import json
import subprocess
import sys
import textwrap
import zipfile

import pytest

from profiler.calibrate import LOADS, MIN_REQUESTS, choose_requests, ensure_dependencies, serving_time_s

from .conftest import ROOT

KIT = ["bash", str(ROOT / "bench/gpu/calibrate.sh")]


def test_cpu_dry_run_writes_profiles_validations_and_the_report(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "calib"
    proc = subprocess.run(KIT + ["--device", "cpu", "--quick", "--out", str(out)], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "calibration.json").read_text())
    assert summary["skipped"] == [], summary["skipped"]
    assert {p["model"] for p in summary["profiles"]} == {"mlp", "resnet50", "gpt (LLM)"}
    names = [v["name"] for v in summary["validations"]]
    assert names == ["cpu-mlp-dynamic", "cpu-mlp-none", "cpu-resnet50-dynamic", "cpu-resnet50-none", "cpu-llm-continuous"]
    for v in summary["validations"]:
        assert [r["load"] for r in v["rows"]] == list(LOADS)
        report = json.loads((out / "validate" / v["name"] / "validation.json").read_text())
        assert report["reprofiled"] and (out / "validate" / v["name"] / "fresh-profile.yaml").exists()
    md = (out / "calibration.md").read_text()
    assert "Dry run" in md and "| load | p50 | p99 | throughput |" in md and "TTFT p50" in md
    assert (out / "profiles/cpu-gpt-llm-fp32.yaml").exists() and (out / "scenarios/cpu-llm-continuous.yaml").exists()


def test_a_tight_budget_skips_steps_and_says_so(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "calib"
    proc = subprocess.run(KIT + ["--device", "cpu", "--quick", "--out", str(out), "--budget-s", "5"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "calibration.json").read_text())
    assert summary["validations"] == [] and len(summary["skipped"]) >= 3
    assert all("skipped" in s and "s left" in s for s in summary["skipped"])
    assert "## Not done" in (out / "calibration.md").read_text()


def test_missing_packages_without_wheels_fail_fast(tmp_path):
    # a GPU host has torch but neither simpy nor pydantic: with no wheels given, one clear message, exit 2
    code = textwrap.dedent(f"""
        import sys
        sys.modules["pydantic"] = None
        sys.modules["simpy"] = None
        from profiler.calibrate import main
        sys.exit(main(["--device", "cpu", "--quick", "--out", {str(tmp_path / "c")!r}, "--wheels", {str(tmp_path)!r}]))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "simpy, pydantic" in proc.stderr and "fetch-wheels.sh" in proc.stderr and "Traceback" not in proc.stderr


def test_wheels_of_missing_modules_are_unpacked_and_importable(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "kit_fake_mod-1.0-py3-none-any.whl", "w") as z:
        z.writestr("kit_fake_mod/__init__.py", "ANSWER = 42\n")
        z.writestr("kit_fake_mod-1.0.dist-info/METADATA", "Name: kit_fake_mod\nVersion: 1.0\n")
    notes = ensure_dependencies(wheels, tmp_path / "deps", carried={"kit_fake_mod": "kit_fake_mod"}, present=())
    import kit_fake_mod

    assert kit_fake_mod.ANSWER == 42 and "kit_fake_mod-1.0-py3-none-any.whl" in notes[0]
    assert ensure_dependencies(wheels, tmp_path / "deps", carried={"kit_fake_mod": "kit_fake_mod"}, present=()) == []
    with pytest.raises(Exception, match="cannot bring"):
        ensure_dependencies(wheels, tmp_path / "deps", carried={}, present=("no_such_module_anywhere",))


def test_request_counts_keep_the_p99_off_the_last_samples_and_fit_the_time():
    # at 100 rps of capacity each request costs 1/20 + 1/50 + 1/80 s of serving over the three loads
    assert serving_time_s(100.0, 1) == pytest.approx(1 / 20 + 1 / 50 + 1 / 80)
    assert choose_requests(100.0, 10.0, MIN_REQUESTS, 2000) == MIN_REQUESTS  # floor: a meaningful p99
    assert choose_requests(10_000.0, 60.0, MIN_REQUESTS, 2000) == 2000       # ceiling
    n = choose_requests(1000.0, 10.0, MIN_REQUESTS, 2000)
    assert MIN_REQUESTS < n < 2000 and serving_time_s(1000.0, n) <= 10.0
    assert MIN_REQUESTS * 0.01 > 3  # the p99 of MIN_REQUESTS has more than three samples above it
