"""`servesim validate` on the CPU: a short real-serving run against the prediction (loose bound: shared 2-core VM)."""
import json

import pytest

from .conftest import ROOT, run_cli


def test_validate_cpu_short_run_within_loose_bound(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "val"
    proc = run_cli("validate", ROOT / "scenarios/validate-mlp-cpu.yaml", "--device", "cpu", "--out", out,
                   "--loads", "0.5,0.8", "--requests", "1200", "--reprofile", "--max-error-pct", "50")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "validation.json").read_text())
    assert [r["load"] for r in report["loads"]] == [0.5, 0.8]
    for r in report["loads"]:
        assert r["measured"]["requests"] == r["predicted"]["requests"] > 600  # warm-up excluded
        assert abs(r["error_pct"]["throughput_rps"]) < 5  # both served every request of the same trace
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
