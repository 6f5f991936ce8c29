"""Regressions found by reviewing the single core (issue 17): each reproduced first, then fixed."""
import numpy as np
import pytest

import sim
from sim.fleet.build import run_llm_fleet
from sim.runner import generate_workload

from .conftest import scenario_dict
from .test_autoscaler import llm_scaled


@pytest.mark.parametrize("router", ["shared_queue", "round_robin", "join_shortest_queue"])
def test_a_batch_that_never_fills_does_not_keep_a_metric_autoscaler_deciding_forever(router):
    # static batches of 8 and 1,003 requests: 3 can never be served; the fixed fleet ends and so must this
    srv = {"replicas": 2, "router": {"policy": router}, "batching": {"policy": "static", "max_batch_size": 8},
           "autoscaler": {"policy": "target_utilization", "target": 0.5, "max_replicas": 3, "interval_s": 1}}
    s = sim.run(sim.validate(scenario_dict(requests=1003, warmup_s=0, server=srv))).summary
    assert s["unserved"] == 3 and s["autoscaler"]["decisions"] < 20


def test_an_llm_engine_kept_while_in_a_run_of_decode_steps_admits_as_one_event_per_step_would():
    s = llm_scaled({"policy": "queue_length", "target": 2, "interval_s": 0.5, "max_replicas": 3}, replicas=3,
                   rate_rps=12.0, duration_s=200.0)
    w = generate_workload(s, 0)
    logs = [run_llm_fleet(s.fleet_groups, s.server.router, w.arrival_s, w.prompt_tokens, w.output_tokens, s.seed, 0,
                          coalesce=c, autoscaler=s.server.autoscaler, server_replicas=s.scaling_replicas,
                          end_s=s.duration_s) for c in (True, False)]
    assert np.array_equal(logs[0].finish_s, logs[1].finish_s, equal_nan=True)
    assert np.array_equal(logs[0].first_token_s, logs[1].first_token_s, equal_nan=True)


def _tiny(server, requests=6, rate_rps=50, base_ms=100.0):
    return sim.simulate_replication(sim.validate(scenario_dict(
        requests=requests, seed=1, workload={"arrival": {"process": "constant", "rate_rps": rate_rps}},
        cost_model={"kind": "affine", "base_ms": base_ms, "per_item_ms": 0.0, "max_batch_size": 8}, server=server,
        outputs={"records": True, "plots": False})), 0)


def test_a_server_started_on_a_shared_queue_does_not_serve_requests_past_their_timeout():
    log = _tiny({"replicas": 2, "batching": {"policy": "none"}, "queue": {"timeout_ms": 30},
                 "autoscaler": {"policy": "schedule", "schedule": [[0, 1], [0.075, 2]]}})
    wait = log.request_times("dispatch_s") - log.arrival_s
    assert np.nanmax(wait) <= 0.030 + 1e-12 and log.timed_out[1]


def test_a_server_stopped_with_a_start_pending_leaves_no_stale_start_to_another_server():
    log = _tiny({"groups": [{"name": "static", "replicas": 1, "batching": {"policy": "static", "max_batch_size": 4}},
                            {"name": "dyn", "replicas": 1,
                             "batching": {"policy": "dynamic", "max_batch_size": 4, "max_queue_delay_ms": 5}}],
                 "autoscaler": {"policy": "schedule", "schedule": [[0, 2], [0.052, 1]]}},
                requests=12, rate_rps=100, base_ms=2.5)
    assert (log.size[log.replica == 0] == 4).all()  # the static server runs only full batches


def test_a_static_server_at_the_head_of_a_shared_queue_lets_the_others_serve():
    log = sim.simulate_replication(sim.validate(scenario_dict(
        requests=203, seed=1, workload={"arrival": {"process": "poisson", "rate_rps": 20}},
        server={"queue": {"max_queue_size": 10 ** 9}, "groups": [
            {"name": "s", "replicas": 1, "batching": {"policy": "static", "max_batch_size": 4}},
            {"name": "d", "replicas": 1, "batching": {"policy": "dynamic", "max_batch_size": 4, "max_queue_delay_ms": 0}}]},
        outputs={"records": True, "plots": False})), 0)
    assert np.isfinite(log.request_times("completion_s")).all()


def test_a_policy_whose_decision_times_repeat_never_decides_in_the_past():
    from sim.fleet.controller import PoolHooks, ScalingController

    class Hooks(PoolHooks):
        def busy(self, rid, t):
            return False

        def serve(self, rid, t):
            pass

        def observe(self, t, serving):
            return 0.5, 0

    class Policy:
        reads = frozenset({"utilization"})
        scale_up_delay_s = scale_down_delay_s = 0.0

        def decision_times(self):
            return [0.5, 1.0, 1.0, 0.7, 2.0]

        def initial(self, replicas):
            return 1

        def desired(self, t, active, utilization, waiting, replicas):
            return 1
    c = ScalingController(Policy(), 2, Hooks(), 2)
    c.start(0.0)
    seen = []
    while c.next_time() < float("inf"):
        t = c.next_time()
        seen.append(t)
        c.fire(t)
    assert seen == [0.5, 1.0, 2.0] and c.decisions == 3


def test_a_plugin_that_failed_to_import_fails_again(monkeypatch):
    from sim import plugins
    from sim.errors import ScenarioError

    monkeypatch.setattr(plugins, "_loaded", [])
    monkeypatch.setenv("SERVESIM_PLUGINS", "json,no_such_plugin_module_here")
    for _ in range(2):
        with pytest.raises(ScenarioError, match="no_such_plugin_module_here"):
            plugins.load()


def test_a_router_without_a_pool_chooser_is_refused_behind_an_autoscaler(monkeypatch):
    from sim.checks import check
    from sim.errors import ScenarioError
    from sim.fleet.routers import PowerOfTwo, Router

    s = sim.validate(scenario_dict(server={"replicas": 2, "router": {"policy": "power_of_two"},
                                           "autoscaler": {"policy": "schedule", "schedule": [[0, 1]]}}))
    monkeypatch.setattr(PowerOfTwo, "pool_chooser", Router.pool_chooser)
    with pytest.raises(ScenarioError, match="no pool_chooser"):
        check(s)
