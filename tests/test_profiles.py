"""Profiles: shipped ones fit within 5%, bad or mixed ones are refused, profile -> scenario -> run works."""
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

import sim
from sim.errors import ScenarioError
from sim.profile_format import VERSION, with_counts
from sim.profiles import load_profile, merge_profiles, refit

from .conftest import ROOT, run_cli, scenario_dict

SHIPPED = sorted(p for p in (ROOT / "profiles").glob("*.yaml") if "-llm-" not in p.name)  # batch profiles
LLM_PROFILE = ROOT / "profiles/cpu-gpt-llm-fp32.yaml"


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


def write_v2(path: Path, data: dict) -> Path:
    """Writes `data` the way the profiler does (profiler.profile.write_profile: counts before the lists)."""
    from profiler.profile import write_profile

    write_profile(path, data)
    return path


def test_a_profile_truncated_at_an_entry_boundary_is_refused(tmp_path):
    data = yaml.safe_load(make_profile(tmp_path / "v1.yaml", sizes=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)).read_text())
    full = write_v2(tmp_path / "full.yaml", data)
    text = full.read_text()
    assert text.index("points_count: 12") < text.index("\npoints:")  # written ahead of the list
    prof = load_profile(full)
    assert prof.version == VERSION == 2 and prof.points_count == 12 and len(prof.points) == 12
    # cut after the 2nd of 12 entries: still valid YAML holding 2 points
    third = text.index("- batch_size: 3\n")
    cut = tmp_path / "cut.yaml"
    cut.write_text(text[:third])
    assert len(yaml.safe_load(cut.read_text())["points"]) == 2
    with pytest.raises(ScenarioError) as info:
        load_profile(cut)
    assert info.value.path == "points_count" and info.value.source.endswith("cut.yaml")
    assert "truncated or edited: points_count says 12, the file holds 2" in info.value.message
    # cut before the list, and a version 2 file without its count
    for name, raw in (("before.yaml", text[:text.index("\npoints:")]),
                      ("nocount.yaml", text.replace("points_count: 12\n", ""))):
        (tmp_path / name).write_text(raw)
        with pytest.raises(ScenarioError) as info:
            load_profile(tmp_path / name)
        assert info.value.path == "points_count", (name, info.value)
    # through the CLI: exit 2, one line naming the file and the key
    proc = run_cli("fit", cut)
    assert proc.returncode == 2 and "cut.yaml: points_count: truncated" in proc.stderr and "Traceback" not in proc.stderr


def test_version_1_profiles_without_counts_still_load(tmp_path):
    prof = load_profile(make_profile(tmp_path / "v1.yaml"))  # make_profile writes version 1, no counts
    assert prof.version == 1 and prof.points_count is None and len(prof.points) == 6


def test_llm_profile_counts_are_written_and_checked(tmp_path):
    data = yaml.safe_load(LLM_PROFILE.read_text())
    data.pop("points_count")
    data.pop("llm_points_count")
    out = with_counts(data)
    keys = list(out)
    assert out["points_count"] == 0 and out["llm_points_count"] == len(data["llm_points"])
    assert keys.index("llm_points_count") < keys.index("points") < keys.index("llm_points")
    data["llm_points"] = data["llm_points"][:-1]
    data.update(version=2, points_count=0, llm_points_count=len(data["llm_points"]) + 1)
    (tmp_path / "llm.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ScenarioError) as info:
        load_profile(tmp_path / "llm.yaml")
    assert info.value.path == "llm_points_count" and f"the file holds {len(data['llm_points'])}" in info.value.message


def test_shipped_profiles_are_version_2_with_matching_counts():
    for path in [*SHIPPED, LLM_PROFILE]:
        prof = load_profile(path)
        assert prof.version == 2 and prof.points_count == len(prof.points), path.name
        if prof.mode == "llm":
            assert prof.llm_points_count == len(prof.llm_points) > 0


def test_fit_prints_the_rule_that_chose_the_family():
    proc = run_cli("fit", ROOT / "profiles/cpu-resnet50-fp32.yaml")
    assert proc.returncode == 0, proc.stderr
    line = next(l for l in proc.stdout.splitlines() if l.startswith("fit: "))
    assert line.startswith("fit: table: piecewise has the lowest leave-one-out error (5.09%) but misses a measured "
                           "point by 5.10% (> 5%); affine misses a measured point by 36.51%"), line
    assert "chosen by leave-one-out" not in proc.stdout


def test_fit_of_an_llm_profile_prints_table_coefficients_and_errors(tmp_path):
    from sim.llm_fit import COEFS, fit_llm

    prof = load_profile(LLM_PROFILE)
    fit = fit_llm([p.model_dump() for p in prof.llm_points])
    proc = run_cli("fit", LLM_PROFILE, "--plot", tmp_path / "llm.png")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = next(i for i, l in enumerate(lines) if "prompt/ctx" in l)
    assert lines[header].split() == ["phase", "batch", "prompt/ctx", "median", "ms", "fitted", "ms", "error", "%"]
    rows = lines[header + 1: header + 1 + len(prof.llm_points)]
    first = prof.llm_points[0]
    assert rows[0].split()[:3] == [first.phase, str(first.batch), str(first.tokens)]
    assert all(r.split()[0] in ("prefill", "decode") for r in rows)
    summary = lines[header + 1 + len(prof.llm_points)]
    assert all(f"{k}=" in summary for k in COEFS)
    assert f"worst {100 * fit['max_error']:.1f}%, leave-one-out {100 * fit['loo_error']:.1f}%" in summary
    assert (tmp_path / "llm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fit_plot_path_is_checked_before_any_work(tmp_path):
    prof = ROOT / "profiles/cpu-mlp-fp32.yaml"
    for plot, words in (("/proc/servesim-x.png", "cannot write in /proc"),
                        (tmp_path / "x.xyz", "the suffix .xyz is not a format matplotlib can write"),
                        (tmp_path / "noext", "without a suffix"),
                        (tmp_path / "missing/x.png", "does not exist"),
                        (tmp_path, "is a folder")):
        proc = run_cli("fit", prof, "--plot", plot)
        assert proc.returncode == 2 and proc.stderr.startswith("--plot: ") and words in proc.stderr, (plot, proc.stderr)
        assert proc.stdout == "" and "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    proc = run_cli("fit", prof, "--plot", tmp_path / "x.xyz")
    assert all(f".{s}" in proc.stderr for s in ("png", "pdf", "svg"))
    # a format matplotlib writes is written in that format (not a PNG under another name)
    proc = run_cli("fit", prof, "--plot", tmp_path / "fit.svg")
    assert proc.returncode == 0, proc.stderr
    assert b"<svg" in (tmp_path / "fit.svg").read_bytes()[:1000]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.svg"]  # no probe or temporary file left


def test_llm_and_batch_profiles_are_not_mixed_and_llm_profiles_pool(tmp_path):
    proc = run_cli("fit", ROOT / "profiles/cpu-mlp-fp32.yaml", LLM_PROFILE)
    assert proc.returncode == 2 and "mode: llm cannot be mixed" in proc.stderr
    one = load_profile(LLM_PROFILE)
    both = merge_profiles([one, one], [str(LLM_PROFILE)] * 2)
    assert len(both.llm_points) == 2 * len(one.llm_points) and both.llm_points_count == len(both.llm_points)
    with pytest.raises(ValueError, match="llm profile"):
        refit(one)
