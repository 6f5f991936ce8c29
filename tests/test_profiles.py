"""Profiles: shipped ones fit within 5%, bad or mixed ones are refused, profile -> scenario -> run works."""
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

import sim
from sim.errors import ScenarioError
from sim.profiles import load_profile, refit

from .conftest import ROOT, run_cli, scenario_dict

SHIPPED = sorted(p for p in (ROOT / "profiles").glob("*.yaml") if "-llm-" not in p.name)  # batch profiles


def make_profile(path: Path, *, device="Test GPU", dtype="fp16", model="m", sizes=(1, 2, 4, 8, 16, 32),
                 step=lambda k: 2.0 + 0.25 * k, quantiles=None):
    pts = [{"batch_size": k, "samples": 20, "median_ms": float(step(k)), "p90_ms": float(step(k)) * 1.05,
            "p99_ms": float(step(k)) * 1.1, "std_ms": 0.01,
            "ratio_quantiles": quantiles or [0.95, 1.0, 1.2]} for k in sizes]
    data = {"format": "servesim-profile", "version": 1, "created_utc": "2026-11-26T00:00:00Z",
            "model": {"name": model, "params": 1000, "flops_per_item": 2e9, "flops_per_batch": 0.0,
                      "bytes_per_item": 1e6, "bytes_per_batch": 5e7},
            "device": {"kind": "cuda", "name": device}, "dtype": dtype, "settings": {},
            "max_batch_size": max(sizes), "points": pts}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_profiles_are_shipped():
    names = {p.stem for p in SHIPPED}
    assert {"cpu-mlp-fp32", "cpu-resnet50-fp32", "cpu-bert-base-fp32", "cpu-gpt-fp32"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_profile_fit_within_five_percent_of_every_median(path, write_yaml):
    # through the whole chain a scenario uses (load, merge, refit, choose, PCHIP/line evaluation, clamping)
    prof = load_profile(path)
    k, y = prof.table()
    s = sim.load_scenario(write_yaml(scenario_dict(cost_model={"profile": str(path)})))
    got_ms = np.asarray(s.cost_model.compute_s(k)) * 1000
    err = np.abs(got_ms / y - 1)
    assert err.max() <= 0.05, f"{path.name}: worst {err.max():.1%} at batch {k[err.argmax()]:.0f}"
    assert (np.diff(s.cost_model.step_table_s(int(k.max()))) > -0.5 * y.max() / 1000).all()
    assert prof.device.name and prof.model.params > 0 and prof.settings and prof.model.flops_per_item > 0
    assert all(p.samples >= 3 for p in prof.points)
    rep = refit(prof)
    assert rep.best.loo_error == rep.best.loo_error  # cross-validated (not NaN)


def test_fits_are_not_extrapolated_below_the_smallest_measured_batch(tmp_path, write_yaml):
    make_profile(tmp_path / "p.yaml", sizes=(8, 12, 16, 24, 32, 48, 64), step=lambda k: 0.2 * k ** 1.15)
    s = sim.load_scenario(write_yaml(scenario_dict(cost_model={"profile": "p.yaml"})))
    steps = s.cost_model.step_table_s(64)[1:]
    assert (steps > 0).all() and steps[0] == pytest.approx(steps[7])  # flat below batch 8


def test_profiles_with_other_threads_or_torch_are_not_merged(tmp_path, write_yaml):
    a = make_profile(tmp_path / "a.yaml", sizes=(1, 2))
    b = make_profile(tmp_path / "b.yaml", sizes=(4, 8))
    data = yaml.safe_load(b.read_text())
    data["device"]["cpu_threads"] = 32
    data["device"]["kind"] = "cpu"
    b.write_text(yaml.safe_dump(data))
    data = yaml.safe_load(a.read_text())
    data["device"]["cpu_threads"] = 2
    data["device"]["kind"] = "cpu"
    a.write_text(yaml.safe_dump(data))
    with pytest.raises(ScenarioError, match="32 threads"):
        sim.load_scenario(write_yaml(scenario_dict(cost_model={"profile": ["a.yaml", "b.yaml"]})))


def test_profile_round_trip_through_the_cli(tmp_path):
    make_profile(tmp_path / "gpu.yaml")
    raw = scenario_dict(requests=3000, cost_model={"profile": "gpu.yaml"},
                        server={"batching": {"policy": "dynamic", "max_batch_size": 16, "max_queue_delay_ms": 1}})
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    proc = run_cli("run", tmp_path / "s.yaml", "--out", tmp_path / "out", "--no-plots", cwd=tmp_path.parent)
    assert proc.returncode == 0, proc.stderr
    s = json.loads((tmp_path / "out/summary.json").read_text())
    assert s["capacity_rps"] == pytest.approx(16 / (2.0 + 0.25 * 16) * 1000, rel=1e-6)  # affine data -> affine fit


def test_profile_errors_name_file_and_key(tmp_path, write_yaml):
    good = make_profile(tmp_path / "good.yaml")
    data = yaml.safe_load(good.read_text())
    cases = {
        "neg.yaml": ("points.2.median_ms", lambda d: d["points"][2].update(median_ms=-1)),
        "newer.yaml": ("version", lambda d: d.update(version=99)),
        "fmt.yaml": ("format", lambda d: d.update(format="other")),
        "nopts.yaml": ("points", lambda d: d.update(points=[])),
    }
    for name, (path, mutate) in cases.items():
        d = json.loads(json.dumps(data))
        mutate(d)
        (tmp_path / name).write_text(yaml.safe_dump(d))
        with pytest.raises(ScenarioError) as info:
            load_profile(tmp_path / name)
        assert info.value.path == path and info.value.source.endswith(name), info.value
    (tmp_path / "garbage.yaml").write_text("::: [")
    with pytest.raises(ScenarioError, match="invalid YAML"):
        load_profile(tmp_path / "garbage.yaml")
    # through the CLI: exit 2, one message naming the profile
    raw = scenario_dict(cost_model={"profile": "neg.yaml"})
    proc = run_cli("run", write_yaml(raw), "--out", tmp_path / "o")
    assert proc.returncode == 2 and "neg.yaml: points.2.median_ms" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


def test_profiles_of_different_devices_or_dtypes_are_not_mixed(tmp_path, write_yaml):
    make_profile(tmp_path / "a.yaml", sizes=(1, 2, 4))
    make_profile(tmp_path / "b.yaml", sizes=(8, 16, 32))
    make_profile(tmp_path / "c.yaml", device="Other GPU", sizes=(8, 16))
    make_profile(tmp_path / "d.yaml", dtype="fp32", sizes=(8, 16))
    merged = sim.load_scenario(write_yaml(scenario_dict(cost_model={"profile": ["a.yaml", "b.yaml"]})))
    assert merged.cost_model.batch_limit() == 32
    for other, words in (("c.yaml", "Other GPU"), ("d.yaml", "fp32")):
        with pytest.raises(ScenarioError) as info:
            sim.load_scenario(write_yaml(scenario_dict(cost_model={"profile": ["a.yaml", other]})))
        assert info.value.source.endswith(other) and words in info.value.message and "cannot be mixed" in info.value.message


def test_batch_limit_beyond_measurements_is_refused(tmp_path, write_yaml):
    make_profile(tmp_path / "p.yaml")
    with pytest.raises(ScenarioError) as info:
        sim.load_scenario(write_yaml(scenario_dict(cost_model={"profile": "p.yaml", "max_batch_size": 64})))
    assert info.value.path == "cost_model.max_batch_size" and "allowed 1..32" in info.value.message


def test_measured_noise_replays_the_spread(tmp_path, write_yaml):
    make_profile(tmp_path / "p.yaml", quantiles=[0.9, 1.0, 1.3])  # piecewise-linear quantile function
    s = sim.load_scenario(write_yaml(scenario_dict(cost_model={"profile": "p.yaml", "measured_noise": True},
                                                   server={"batching": {"policy": "none"}})))
    f = s.cost_model.jitter(np.random.default_rng(0))
    draws = np.array([f(1) for _ in range(200_000)])
    assert draws.min() >= 0.9 and draws.max() <= 1.3
    assert draws.mean() == pytest.approx((0.9 + 1.0) / 4 + (1.0 + 1.3) / 4, rel=0.005)  # mean of the quantile fn
    assert np.median(draws) == pytest.approx(1.0, abs=0.005)


def test_roofline_matches_hand_computation_and_reads_model_stats(tmp_path, write_yaml):
    rl = sim.RooflineCost(gpu="H100-SXM", dtype="bf16", flops_per_item=2e9, bytes_per_batch=5e7, bytes_per_item=1e6,
                          compute_efficiency=0.5, memory_efficiency=0.8, overhead_ms=0.1, max_batch_size=512)
    compute = lambda k: 2e9 * k / (989e12 * 0.5)
    memory = lambda k: (5e7 + 1e6 * k) / (3350e9 * 0.8)
    for k in (1, 8, 64, 512):
        assert float(rl.step_s(k)) == pytest.approx(1e-4 + max(compute(k), memory(k)), rel=1e-12)
    assert float(rl.step_s(1)) == pytest.approx(1e-4 + memory(1))     # small batches: memory-bound, flat
    assert float(rl.step_s(512)) == pytest.approx(1e-4 + compute(512))  # large: compute-bound, linear
    make_profile(tmp_path / "p.yaml")
    s = sim.load_scenario(write_yaml(scenario_dict(cost_model={"kind": "roofline", "gpu": "H200",
                                                               "model_stats_from": "p.yaml"})))
    assert s.cost_model.flops_per_item == 2e9 and s.cost_model.bytes_per_batch == 5e7  # fp16 profile, bf16 roofline
    s32 = sim.load_scenario(write_yaml(scenario_dict(cost_model={"kind": "roofline", "gpu": "H200", "dtype": "fp32",
                                                                 "model_stats_from": "p.yaml"}), "s32.yaml"))
    assert s32.cost_model.bytes_per_batch == 1e8 and s32.cost_model.bytes_per_item == 2e6  # 4-byte weights
    with pytest.raises(ScenarioError) as info:
        sim.load_scenario(write_yaml(scenario_dict(cost_model={"kind": "roofline", "gpu": "H999", "flops_per_item": 1,
                                                               "bytes_per_batch": 1})))
    assert info.value.path == "cost_model" and "H100-SXM" in info.value.message
