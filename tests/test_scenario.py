"""Scenario validation: every bad input gets one message naming the file, the key path and what is allowed."""
import pytest

import sim
from sim.errors import ScenarioError
from sim.scenario import DEFAULT_REQUESTS, load_scenario

from .conftest import scenario_dict


def error_for(raw, write_yaml, overrides=()):
    with pytest.raises(ScenarioError) as info:
        load_scenario(write_yaml(raw), overrides)
    return info.value


def test_valid_scenario_loads_with_documented_defaults(write_yaml):
    raw = scenario_dict()
    del raw["requests"], raw["seed"], raw["server"]
    s = load_scenario(write_yaml(raw))
    assert s.seed == 0 and s.warmup_s == 0 and s.replications == 1
    assert s.horizon() == {"requests": DEFAULT_REQUESTS}
    assert s.server.replicas == 1 and s.server.batching.policy == "dynamic"
    assert s.rule.max_batch_size == 32 and s.rule.delay_s == 0  # dynamic defaults: model limit, no delay
    assert s.outputs.records and s.outputs.plots and s.slo is None


@pytest.mark.parametrize("change,path,words", [
    ({"bogus": 1}, "bogus", "allowed keys"),
    ({"requests": -5}, "requests", "greater than or equal to 1"),
    ({"requests": "many"}, "requests", "valid integer"),
    ({"workload": {"arrival": {"process": "poisson", "rate_rps": -1}}}, "workload.arrival.rate_rps", "greater than or equal to 0.000001"),
    ({"workload": {"arrival": {"process": "poisson", "rate_rps": float("inf")}}}, "workload.arrival.rate_rps", "finite"),
    ({"requests": 10 ** 9, "replications": 3}, "requests", "beyond one run's limit"),
    ({"requests": 20, "replications": 2, "workload": {"arrival": {"process": "trace", "times_s": [0.0, 1.0]}}}, "requests", "exceeds the 2 requests"),
    ({"workload": {"arrival": {"process": "poison", "rate_rps": 1}}}, "workload.arrival.process", "poisson"),
    ({"workload": {"arrival": {"rate_rps": 1}}}, "workload.arrival.process", "allowed"),
    ({"workload": {"arrival": {"process": "gamma", "rate_rps": 1, "cv": 0}}}, "workload.arrival.cv", "greater than 0"),
    ({"workload": {"arrival": {"process": "poisson", "rate_rps": 1, "cv": 2}}}, "workload.arrival.cv", "allowed keys (for process 'poisson'): rate_rps"),
    ({"cost_model": {"kind": "affine", "base_ms": 0, "per_item_ms": 0}}, "cost_model", "must be > 0"),
    ({"cost_model": {"kind": "table", "step_ms": {0: 1.0}}}, "cost_model.step_ms", "in 1..1000000"),
    ({"cost_model": {"kind": "affine", "base_ms": 1, "per_item_ms": 1, "noise": {"cv": -1}}}, "cost_model.noise.cv", "greater than 0"),
    ({"server": {"batching": {"policy": "dynamic", "max_batch_size": 64}}}, "server.batching.max_batch_size", "allowed 1..32"),
    ({"server": {"batching": {"policy": "dynamic", "max_batch_size": 8, "preferred_batch_sizes": [4, 16]}}},
     "server.batching.preferred_batch_sizes", "allowed 1..8"),
    ({"server": {"batching": {"policy": "none", "max_batch_size": 8}}}, "server.batching.max_batch_size", "policy 'none'"),
    ({"server": {"replicas": 0}}, "server.replicas", "greater than or equal to 1"),
    ({"server": {"batching": {"policy": "dynamic", "max_queue_delay_ms": -1}}}, "server.batching.max_queue_delay_ms", "greater than or equal to 0"),
    ({"slo": {"latency_p99_ms": 0}}, "slo.latency_p99_ms", "greater than 0"),
    ({"slo": {"latency_p42_ms": 3}}, "slo.latency_p42_ms", "allowed keys"),
    ({"duration_s": 10}, "requests", "not both"),
    ({"outputs": {"records": "yes"}}, "outputs.records", "valid boolean"),
    ({"server": 3}, "server", "mapping"),
])
def test_bad_fields_name_the_key_path(write_yaml, change, path, words):
    err = error_for(scenario_dict(**change), write_yaml)
    assert err.path == path
    assert words in err.message
    assert err.source.endswith("s.yaml")
    assert err.format().startswith(err.source)


def test_yaml_1_2_floats_are_numbers(write_yaml):
    s = load_scenario(write_yaml("name: t\nrequests: 100\nworkload: {arrival: {process: poisson, rate_rps: 2e3}}\n"
                                 "cost_model: {kind: affine, base_ms: 2.5e-1, per_item_ms: 1e-2}\n"),
                      ["workload.arrival.rate_rps=1e3"])
    assert s.workload.arrival.rate_rps == 1000.0 and s.cost_model.base_ms == 0.25


def test_replicating_a_deterministic_trace_is_refused(write_yaml):
    raw = scenario_dict(requests=None, replications=3, workload={"arrival": {"process": "trace", "times_s": [0.0, 0.5, 1.0]}})
    del raw["requests"]
    err = error_for(raw, write_yaml)
    assert err.path == "replications" and "identical" in err.message


def test_missing_required_keys(write_yaml):
    raw = scenario_dict()
    del raw["cost_model"]
    err = error_for(raw, write_yaml)
    assert err.path == "cost_model" and "missing" in err.message


def test_warmup_beyond_duration(write_yaml):
    raw = scenario_dict(duration_s=5, warmup_s=5)
    del raw["requests"]
    assert error_for(raw, write_yaml).path == "warmup_s"


@pytest.mark.parametrize("text,words", [
    ("name: [unclosed", "invalid YAML: line"),
    ("- a\n- b\n", "top level of a scenario must be a mapping"),
    ("", "required key is missing"),
])
def test_unparsable_files(write_yaml, text, words):
    err = error_for(text, write_yaml)
    assert words in err.format()


def test_missing_file():
    with pytest.raises(ScenarioError, match="scenario file not found"):
        load_scenario("does/not/exist.yaml")


def test_overrides_are_validated_like_the_file(write_yaml):
    p = write_yaml(scenario_dict())
    s = load_scenario(p, ["server.batching.max_batch_size=16", "workload.arrival.rate_rps=50", "slo.latency_p99_ms=20"])
    assert s.server.batching.max_batch_size == 16
    assert s.workload.arrival.rate_rps == 50.0
    assert s.slo.latency_p99_ms == 20
    with pytest.raises(ScenarioError) as info:
        load_scenario(p, ["server.batching.max_batch_size=64"])
    assert info.value.path == "server.batching.max_batch_size"
    with pytest.raises(ScenarioError) as info:
        load_scenario(p, ["server.batching.max_batch_size"])
    assert info.value.source == "--set"
    with pytest.raises(ScenarioError) as info:
        load_scenario(p, ["name.x=1"])
    assert info.value.source == "--set" and info.value.path == "name"


def test_trace_files_are_checked_at_load_time(write_yaml, tmp_path):
    (tmp_path / "ok.csv").write_text("arrival_s\n0.5\n0.1\n1.0\n")
    (tmp_path / "bad.csv").write_text("arrival_s\n0.5\nsoon\n")
    (tmp_path / "nocol.csv").write_text("when\n1\n")
    (tmp_path / "azure.csv").write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                                        "2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:50.9951690,396,109\n")
    ok = load_scenario(write_yaml(scenario_dict(requests=3, workload={"arrival": {"process": "trace", "path": "ok.csv"}})))
    assert ok.workload.arrival.load().tolist() == pytest.approx([0, 0.4, 0.9])
    az = load_scenario(write_yaml(scenario_dict(requests=2, workload={"arrival": {"process": "trace", "path": "azure.csv",
                                                                                    "speedup": 2}})))
    assert az.workload.arrival.load().tolist() == pytest.approx([0, (50.9951690 - 46.6805900) / 2])
    for name, words in (("bad.csv", "line 3, column arrival_s"), ("nocol.csv", "expected one of"), ("none.csv", "not found")):
        err = error_for(scenario_dict(workload={"arrival": {"process": "trace", "path": name}}), write_yaml)
        assert err.source.endswith(name) and words in err.format()
    err = error_for(scenario_dict(workload={"arrival": {"process": "trace"}}), write_yaml)
    assert err.path == "workload.arrival" and "exactly one" in err.message


def test_python_api_takes_objects():
    s = sim.Scenario(name="api", requests=500, workload=sim.Workload(arrival=sim.PoissonArrivals(rate_rps=100)),
                     cost_model=sim.AffineCost(base_ms=1, per_item_ms=0.1, max_batch_size=16),
                     server=sim.Server(batching=sim.DynamicBatching(max_batch_size=8, max_queue_delay_ms=1)))
    r = sim.run(s)
    assert r.summary["requests"] == 500
    assert len(r.requests) == 500
    bad = s.model_copy(update={"server": sim.Server(batching=sim.DynamicBatching(max_batch_size=64))})
    with pytest.raises(ScenarioError, match="server.batching.max_batch_size"):
        sim.run(bad)


def test_table_cost_model_interpolates_monotonically():
    c = sim.TableCost(step_ms={1: 2.0, 4: 2.2, 16: 4.0, 64: 14.0})
    k = list(range(1, 65))
    t = c.step_s(k)
    assert t[0] == pytest.approx(0.002) and t[-1] == pytest.approx(0.014) and t[15] == pytest.approx(0.004)
    assert (t[1:] >= t[:-1]).all()
    assert c.batch_limit() == 64
