"""docs/extending.md's recipes run as written: each `# file:` block becomes a plugin module (SERVESIM_PLUGINS),
and what the recipe claims is checked in a fresh process (plugins register before the schema is built)."""
import os
import re
import subprocess
import sys
import textwrap

import pytest
import yaml

from .conftest import ROOT, scenario_dict

DOC = ROOT / "docs" / "extending.md"


def recipes() -> dict:
    """Returns {module name: source} of every `# file:` python block in docs/extending.md."""
    blocks = re.findall(r"```python\n# file: (\w+)\.py\n(.*?)```", DOC.read_text(), re.S)
    return {name: body for name, body in blocks}


@pytest.fixture
def plugins(tmp_path):
    for name, body in recipes().items():
        (tmp_path / f"{name}.py").write_text(body)
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}", SERVESIM_PLUGINS=",".join(recipes()))
    return tmp_path, env


def check(env, code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_document_has_the_six_recipes():
    assert set(recipes()) == {"fewest_routed", "power_of_two_batching", "prefill_capped", "uniform_gaps",
                              "step_scaling", "slow_share"}


def test_the_llm_scheduler_recipe_caps_prefill_in_the_simulator_and_the_real_loop(plugins):
    _, env = plugins
    pytest.importorskip("torch")  # the real serving loop (profiler/llm_serve.py)
    assert check(env, """
        import numpy as np, sim
        def run(order, prompt_mean):
            raw = {"name": "cap", "seed": 1, "requests": 600, "warmup_s": 0,
                   "workload": {"arrival": {"process": "poisson", "rate_rps": 3},
                                "prompt_tokens": {"dist": "lognormal", "mean": prompt_mean, "cv": 0.5, "min": 16,
                                                  "max": 8000},
                                "output_tokens": {"dist": "lognormal", "mean": 120, "cv": 0.5, "min": 2, "max": 1000}},
                   "cost_model": {"kind": "llm", "base_ms": 8.0, "prefill_token_ms": 0.05, "prefill_attention_ms": 2e-6,
                                  "decode_seq_ms": 0.05, "decode_context_ms": 1e-5},
                   "server": {"batching": {"policy": "continuous", "order": order, "max_num_seqs": 8,
                                           "max_num_batched_tokens": 2048}},
                   "outputs": {"plots": False}}
            return sim.run(sim.validate(raw))
        full, capped = run("decode_first", 2000).logs[0], run("prefill_capped", 2000).logs[0]
        assert full.step_prefill_tokens.max() > 1024 >= capped.step_prefill_tokens.max(), (
            full.step_prefill_tokens.max(), capped.step_prefill_tokens.max())
        # short prompts (8 sequences of at most ~120 tokens a step): the cap never binds, the runs are the same
        a, b = run("decode_first", 30).logs[0], run("prefill_capped", 30).logs[0]
        assert a.step_prefill_tokens.max() < 1024
        assert np.array_equal(a.finish_s, b.finish_s) and np.array_equal(a.first_token_s, b.first_token_s)
        # the real loop plans with the same scheduler: a burst of long prompts gets at most half the budget a step
        from profiler.llm_serve import _Plan
        from sim.llm_schedulers import scheduler
        from sim.batching import ContinuousBatching
        policy = ContinuousBatching(order="prefill_capped", max_num_seqs=8, max_num_batched_tokens=2048)
        plan = _Plan(policy, [1500] * 4)
        plan.waiting.extend(range(4))
        dec, (tokens, chunks) = scheduler("prefill_capped").plan(plan, policy.max_num_batched_tokens)
        assert dec == 0 and tokens == 1024 and chunks == [(0, 0, 1024)], (dec, tokens, chunks)
        print("OK")
    """).strip() == "OK"


def test_the_sink_metric_recipe_gives_the_request_tables_share_in_records_and_streaming(plugins):
    _, env = plugins
    assert check(env, """
        import numpy as np, sim
        from tests.conftest import scenario_dict
        raw = scenario_dict(requests=30000, warmup_s=1.0, workload={"arrival": {"process": "poisson", "rate_rps": 2400}},
                            server={"replicas": 3, "router": {"policy": "join_shortest_queue"},
                                    "batching": {"policy": "dynamic", "max_batch_size": 16, "max_queue_delay_ms": 2}})
        raw["outputs"] = {"metrics": [{"metric": "slow_share", "limit_ms": 8}], "plots": False}
        rec = sim.run(sim.validate(raw))
        t = rec.requests
        t = t[(t.arrival_s >= 1.0) & t.latency_s.notna()]
        share = float((t.latency_s > 0.008).mean())
        raw["outputs"] = {"metrics": [{"metric": "slow_share", "limit_ms": 8}], "streaming": True}
        st = sim.run(sim.validate(raw))
        a, b = rec.summary["metrics"]["slow_share"], st.summary["metrics"]["slow_share"]
        assert 0.01 < share < 0.99 and abs(a["share"] - share) < 1e-12 and a == b, (share, a, b)
        print("OK")
    """).strip() == "OK"


def test_the_router_recipe_equals_round_robin_request_for_request(plugins):
    _, env = plugins
    assert check(env, """
        import numpy as np, sim
        from tests.conftest import scenario_dict
        def run(router, autoscaled=False):
            server = {"replicas": 3, "router": {"policy": router},
                      "batching": {"policy": "dynamic", "max_batch_size": 8, "max_queue_delay_ms": 1}}
            if autoscaled:
                server["autoscaler"] = {"policy": "schedule", "schedule": [[0, 3]]}
            return sim.run(sim.validate(scenario_dict(requests=5000, server=server))).logs[0]
        a, b = run("fewest_routed"), run("round_robin")
        assert np.array_equal(a.request_times("completion_s"), b.request_times("completion_s"))
        assert np.array_equal(a.routed, b.routed)
        c = run("fewest_routed", autoscaled=True)
        assert np.array_equal(a.request_times("completion_s"), c.request_times("completion_s"))
        print("OK")
    """).strip() == "OK"


def test_the_batching_recipe_equals_dynamic_with_those_preferred_sizes(plugins):
    _, env = plugins
    assert check(env, """
        import numpy as np, sim
        from tests.conftest import scenario_dict
        def run(batching):
            raw = scenario_dict(requests=5000, workload={"arrival": {"process": "gamma", "rate_rps": 1500, "cv": 2}},
                                server={"replicas": 2, "batching": batching})
            return sim.run(sim.validate(raw)).logs[0]
        a = run({"policy": "power_of_two", "max_batch_size": 16, "max_queue_delay_ms": 2})
        b = run({"policy": "dynamic", "max_batch_size": 16, "max_queue_delay_ms": 2,
                 "preferred_batch_sizes": [1, 2, 4, 8, 16]})
        assert np.array_equal(a.request_times("completion_s"), b.request_times("completion_s"))
        print("OK")
    """).strip() == "OK"


def test_the_arrival_recipe_gives_its_rate_and_refuses_bad_bounds(plugins, tmp_path):
    _, env = plugins
    assert check(env, """
        import numpy as np, sim
        from tests.conftest import scenario_dict
        res = sim.run(sim.validate(scenario_dict(requests=20000, warmup_s=0,
                                                 workload={"arrival": {"process": "uniform_gaps", "low_ms": 1,
                                                                       "high_ms": 3}})))
        gaps = np.diff(res.logs[0].arrival_s)
        assert gaps.min() >= 0.001 - 1e-12 and gaps.max() <= 0.003 + 1e-12
        assert abs(res.summary["offered_rps"] - 500) < 1e-9
        assert abs(1 / gaps.mean() - 500) < 10
        print("OK")
    """).strip() == "OK"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(scenario_dict(workload={"arrival": {"process": "uniform_gaps", "low_ms": 3,
                                                                      "high_ms": 1}})))
    proc = subprocess.run(["servesim", "check", str(bad)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and ": workload.arrival: " in proc.stderr and "must exceed low_ms" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_autoscaler_recipe_follows_the_load_within_its_bounds(plugins):
    _, env = plugins
    assert check(env, """
        import numpy as np, sim
        from tests.conftest import scenario_dict
        raw = scenario_dict(requests=None, duration_s=600, warmup_s=0,
                            workload={"arrival": {"process": "piecewise",
                                                  "points": [[0, 500], [150, 9000], [300, 9000], [450, 500], [600, 500]]}},
                            cost_model={"kind": "affine", "base_ms": 2.0, "per_item_ms": 0.25, "max_batch_size": 64},
                            server={"replicas": 6, "router": {"policy": "join_shortest_queue"},
                                    "batching": {"policy": "dynamic", "max_batch_size": 32, "max_queue_delay_ms": 2},
                                    "autoscaler": {"policy": "step_scaling", "low": 0.3, "high": 0.7,
                                                   "interval_s": 10}},
                            outputs={"records": True, "plots": False, "window_s": 50})
        res = sim.run(sim.validate(raw))
        w = res.windows
        busy = w.loc[(w["start_s"] >= 200) & (w["end_s"] <= 350), "replicas_active"].mean()
        quiet = w.loc[w["start_s"] >= 500, "replicas_active"].mean()
        assert busy > quiet + 1, (busy, quiet)
        a = res.summary["autoscaler"]
        assert 1 <= a["mean_replicas"] and a["peak_replicas"] <= 6
        print("OK")
    """).strip() == "OK"


def test_a_plugin_that_cannot_be_imported_is_named(write_yaml):
    env = dict(os.environ, SERVESIM_PLUGINS="no_such_plugin_module")
    path = write_yaml(scenario_dict())
    proc = subprocess.run(["servesim", "check", str(path)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and "SERVESIM_PLUGINS" in proc.stderr and "no_such_plugin_module" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_plugin_router_that_declares_it_reads_tokens_gets_the_engines_counts(tmp_path):
    """Routers declare the state they read (`reads_tokens`): a plugin router reading outstanding_tokens routes as
    least_outstanding_tokens does, request for request (the engines keep the counts for it, whatever its name)."""
    (tmp_path / "fewest_tokens.py").write_text(textwrap.dedent("""
        from typing import Literal
        from sim.fleet.routers import REGISTRY, Router
        from sim.fleet.routers.base import Uniforms, argmin_random_tie

        @REGISTRY.register
        class FewestTokens(Router):
            policy: Literal["fewest_tokens"] = "fewest_tokens"
            reads_tokens = True

            def chooser(self, replicas, out, rng):
                u = Uniforms(rng)
                return lambda sid, a: argmin_random_tie([r.outstanding_tokens(a) for r in replicas], u)
    """))
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}", SERVESIM_PLUGINS="fewest_tokens")
    assert check(env, """
        import numpy as np, sim
        from tests.test_autoscaler import llm_scaled
        def run(router):
            raw = llm_scaled(None, duration_s=120.0).model_dump(mode="json", exclude_none=True)
            raw["server"]["router"] = {"policy": router}
            return sim.run(sim.validate(raw)).logs[0]
        a, b = run("fewest_tokens"), run("least_outstanding_tokens")
        assert np.array_equal(a.routed, b.routed) and np.array_equal(a.finish_s, b.finish_s, equal_nan=True)
        print("OK")
    """).strip() == "OK"
