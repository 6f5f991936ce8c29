"""Autoscaling behind a router (one controller, sim.fleet.controller, for every pool): a constant schedule is the
fixed fleet request for request, a switching schedule bills its integral plus each released replica's drain
(exactly, from the records), no request is ever routed to a replica that is not serving, a utilisation target
follows the load, and queue limits, priorities and stages compose with it."""
import numpy as np
import pytest

import sim

from .conftest import run_cli, scenario_dict
from .test_autoscaler import llm_scaled

COST = {"kind": "affine", "base_ms": 2.0, "per_item_ms": 0.25, "max_batch_size": 64}
BATCHING = {"policy": "dynamic", "max_batch_size": 32, "max_queue_delay_ms": 2}
SWITCHING = {"policy": "schedule", "schedule": [[0, 1], [100, 3], [200, 2]], "scale_down_delay_s": 10}


def batch(router, autoscaler=None, duration_s=300.0, rate_rps=2500.0, server=None, workload=None, **extra):
    srv = {"replicas": 3, "cost_per_hour": 2.0, "batching": BATCHING, "router": {"policy": router}, **(server or {})}
    if autoscaler is not None:
        srv["autoscaler"] = autoscaler
    raw = scenario_dict(duration_s=duration_s, requests=None, seed=9, cost_model=COST, server=srv,
                        workload={"arrival": {"process": "poisson", "rate_rps": rate_rps}, **(workload or {})},
                        outputs={"records": True, "plots": False, "window_s": 10.0}, **extra)
    return sim.run(sim.validate(raw))


def llm(router, autoscaler=None, **kw):
    s = llm_scaled(autoscaler, **kw)
    raw = s.model_dump(mode="json", exclude_none=True)
    raw["server"]["router"] = {"policy": router}
    return sim.run(sim.validate(raw))


@pytest.mark.parametrize("router", ["join_shortest_queue", "power_of_two", "round_robin"])
def test_a_constant_schedule_behind_a_router_is_the_fixed_fleet_request_for_request(router):
    a = batch(router, {"policy": "schedule", "schedule": [[0, 3]]}, duration_s=100.0).logs[0]
    b = batch(router, duration_s=100.0).logs[0]
    assert np.array_equal(a.request_times("completion_s"), b.request_times("completion_s"))
    assert np.array_equal(a.routed, b.routed)


@pytest.mark.parametrize("router", ["join_shortest_queue", "least_outstanding_tokens", "least_kv"])
def test_a_constant_schedule_behind_a_router_is_the_fixed_llm_fleet_request_for_request(router):
    a = llm(router, {"policy": "schedule", "schedule": [[0, 3]]}, duration_s=300.0).logs[0]
    b = llm(router, None, duration_s=300.0).logs[0]
    assert np.array_equal(a.first_token_s, b.first_token_s, equal_nan=True)
    assert np.array_equal(a.finish_s, b.finish_s, equal_nan=True)


_STATIC = {"policy": "llm_static", "max_batch_size": 8, "max_queue_delay_ms": 50, "kv_cache_tokens": 60000}


@pytest.mark.parametrize("router", ["join_shortest_queue", "round_robin"])
def test_static_llm_engines_behind_a_router_scale_and_a_constant_schedule_is_the_fixed_fleet(router):
    """llm_static replicas (queues of their own) behind a router: a constant schedule equals the fixed fleet request
    for request; a switching one serves every request only on replicas serving at its arrival and bills within a
    drain of its integral."""
    def run(autoscaler):
        s = llm_scaled(autoscaler, duration_s=300.0, rate_rps=3.0)
        raw = s.model_dump(mode="json", exclude_none=True)
        raw["server"].update({"router": {"policy": router}, "batching": _STATIC})
        return sim.run(sim.validate(raw))
    a, b = run({"policy": "schedule", "schedule": [[0, 3]]}).logs[0], run(None).logs[0]
    assert np.array_equal(a.finish_s, b.finish_s, equal_nan=True)
    res = run({"policy": "schedule", "schedule": [[0, 1], [100, 3], [200, 2]]})
    log = res.logs[0]
    _served_within_lives(log, log.arrival_s, log.finish_s, log.routed)
    released = [life for life in log.scaling["lives"] if life[3] < log.scaling["end_s"]]
    assert len(released) == 1
    rid, _, _, rel = released[0]
    drop = 200.0 + res.scenario.server.autoscaler.scale_down_delay_s
    mine = (log.routed == rid) & (log.arrival_s <= drop)
    assert rel == max(drop, float(log.finish_s[mine].max()))  # it drains what it was sent, then leaves
    integral = 100 * 1 + 100 * 3 + 100 * 2
    assert res.summary["replica_hours"] * 3600 == pytest.approx(integral + (rel - 200.0), rel=1e-12)


def test_static_llm_engines_behind_the_shared_queue_scale_and_a_constant_schedule_is_the_fixed_pool():
    """llm_static replicas behind one shared queue: a constant schedule equals the fixed pool request for request; a
    switching one claims batches only on serving replicas, releases an idle replica at the drop (a busy one when its
    claimed batch ends) and bills its integral plus that drain, exactly."""
    def run(autoscaler):
        s = llm_scaled(autoscaler, duration_s=300.0, rate_rps=3.0)
        raw = s.model_dump(mode="json", exclude_none=True)
        raw["server"]["batching"] = _STATIC
        return sim.run(sim.validate(raw))
    a, b = run({"policy": "schedule", "schedule": [[0, 3]]}).logs[0], run(None).logs[0]
    assert np.array_equal(a.finish_s, b.finish_s, equal_nan=True)
    assert np.array_equal(a.first_token_s, b.first_token_s, equal_nan=True)
    assert np.array_equal(a.replica, b.replica)
    res = run({"policy": "schedule", "schedule": [[0, 1], [100, 3], [200, 2]], "scale_down_delay_s": 10})
    log = res.logs[0]
    served = np.isfinite(log.finish_s)
    assert served.all() and not log.refused.any()
    # before 100 s one replica serves: every batch that finished before then ran on replica 0
    assert (log.replica[log.finish_s < 100.0] == 0).all()
    released = [life for life in log.scaling["lives"] if life[3] < log.scaling["end_s"]]
    assert len(released) == 1
    rid, _, serve, rel = released[0]
    assert serve == 100.0 and rid in (1, 2)
    assert rel == max(210.0, float(log.finish_s[log.replica == rid].max()))  # it finishes its batch, then leaves
    integral = 100 * 1 + 100 * 3 + 100 * 2
    assert res.summary["replica_hours"] * 3600 == pytest.approx(integral + (rel - 200.0), rel=1e-12)
    # a utilisation target runs over the same pool and stays within its bounds
    util = run({"policy": "target_utilization", "target": 0.5, "interval_s": 10, "min_replicas": 1,
                "max_replicas": 3})
    counts = util.windows["replicas_active"]
    assert 1 <= counts.min() and counts.max() <= 3 and np.isfinite(util.logs[0].finish_s).all()


def test_static_llm_shared_queue_autoscaled_idle_replicas_and_groups_equal_the_fixed_pool():
    """At a load where replicas sit idle (they wait in line for the next arrival instead of claiming ahead) and over
    groups of different speeds, a constant schedule is still the fixed pool request for request, replica for
    replica; and a metric policy ends when what is left is a static batch that never fills (no delay)."""
    slow = {"kind": "llm", "base_ms": 30.0, "prefill_token_ms": 0.06, "decode_seq_ms": 0.08, "decode_context_ms": 2e-5}

    def run(autoscaler, groups=False, batching=_STATIC, rate_rps=0.2, duration_s=1000.0):
        raw = llm_scaled(autoscaler, duration_s=duration_s, rate_rps=rate_rps).model_dump(mode="json",
                                                                                         exclude_none=True)
        raw["server"]["batching"] = batching
        if groups:
            raw["server"].pop("replicas")
            raw["server"]["groups"] = [{"name": "fast", "replicas": 2, "cost_per_hour": 6.88},
                                       {"name": "slow", "replicas": 1, "cost_model": slow, "cost_per_hour": 3.0}]
            for key in ("cost_per_hour", "gpus_per_replica"):
                raw["server"].pop(key, None)
        return sim.run(sim.validate(raw))
    for groups in (False, True):
        a = run({"policy": "schedule", "schedule": [[0, 3]]}, groups).logs[0]
        b = run(None, groups).logs[0]
        assert np.array_equal(a.finish_s, b.finish_s, equal_nan=True), groups
        assert np.array_equal(a.replica, b.replica), groups
        assert len(set(a.replica.tolist())) == 3  # every replica served: the line order mattered
    never_fills = {"policy": "llm_static", "max_batch_size": 8, "kv_cache_tokens": 60000}  # no delay: full batches
    res = run({"policy": "target_utilization", "target": 0.5, "interval_s": 10, "min_replicas": 1,
               "max_replicas": 3}, batching=never_fills, rate_rps=2.0, duration_s=94.0)
    log = res.logs[0]
    left = int(np.isnan(log.finish_s).sum())
    assert 0 < left < 8 and (np.isfinite(log.finish_s).sum() % 8 == 0)  # the partial batch never ran, and the run ended


def _served_within_lives(log, arrival, finish, routed):
    """Every request was routed to a replica that was serving at its arrival."""
    lives = np.asarray(log.scaling["lives"], float)
    ok = np.zeros(arrival.size, bool)
    for rid, _, serve, rel in lives:
        ok |= (routed == rid) & (arrival >= serve) & (arrival <= rel)
    assert ok.all(), f"{int((~ok).sum())} requests reached a replica that was not serving"
    # a release waits for the work the replica holds: no request finishes after its replica's life ended
    last = {}
    for rid, _, serve, rel in lives:
        last.setdefault(int(rid), []).append((serve, rel))
    for rid, spans in last.items():
        mine = (routed == rid) & np.isfinite(finish)
        for serve, rel in spans:
            inside = mine & (arrival >= serve) & (arrival <= rel)
            assert not inside.any() or finish[inside].max() <= rel + 1e-12 or rel == log.scaling["end_s"]


@pytest.mark.parametrize("router", ["join_shortest_queue", "power_of_two", "round_robin", "random"])
def test_a_switching_schedule_behind_a_router_bills_its_integral_plus_each_drain(router):
    res = batch(router, SWITCHING)
    log, s = res.logs[0], res.summary
    a, done = log.arrival_s, log.request_times("completion_s")
    _served_within_lives(log, a, done, log.routed)
    lives = log.scaling["lives"]
    released = [life for life in lives if life[3] < log.scaling["end_s"]]
    assert len(released) == 1
    rid, _, _, rel = released[0]
    # the drop wanted at 200 s takes effect at 210 s; the replica then serves what it holds, exactly until its
    # last batch routed there before 210 s completes
    mine = (log.routed == rid) & (a <= 210.0)
    assert rel == pytest.approx(max(210.0, float(done[mine].max())), rel=0, abs=0)
    integral = 100 * 1 + 100 * 3 + 100 * 2
    assert s["replica_hours"] * 3600 == pytest.approx(integral + (rel - 200.0), rel=1e-12)
    w = res.windows
    assert np.allclose(w.loc[(w["end_s"] <= 100), "replicas_active"], 1)
    assert np.allclose(w.loc[(w["start_s"] >= 110) & (w["end_s"] <= 200), "replicas_active"], 3)
    assert np.allclose(w.loc[(w["start_s"] >= 220), "replicas_active"], 2)


@pytest.mark.parametrize("router", ["join_shortest_queue", "least_outstanding_tokens", "round_robin"])
def test_llm_engines_behind_a_router_scale_on_a_schedule_and_finish_what_they_hold(router):
    res = llm(router, {"policy": "schedule", "schedule": [[0, 1], [200, 3], [400, 2]]})
    log, s = res.logs[0], res.summary
    routed = log.replica
    _served_within_lives(log, log.arrival_s, log.finish_s, routed)
    assert np.isfinite(log.finish_s).all()  # a released engine finishes what was routed to it
    integral = (200 * 1 + 200 * 3 + 200 * 2) / 3600
    assert integral <= s["replica_hours"] <= integral + 60 / 3600
    w = res.windows
    assert w.loc[w["end_s"] <= 200, "replicas_active"].max() == pytest.approx(1)
    # with queues of their own, the lone engine's backlog stays with it (round robin keeps adding to it), so the
    # fleet recovers later than behind one shared queue
    assert w.loc[w["end_s"] <= 200, "ttft_p99_s"].max() > 3 * w.loc[w["start_s"] >= 360, "ttft_p99_s"].max()


def test_a_utilization_target_behind_join_shortest_queue_follows_the_load():
    res = batch("join_shortest_queue", {"policy": "target_utilization", "target": 0.6, "min_replicas": 1,
                                        "max_replicas": 6, "interval_s": 20}, duration_s=900.0,
                workload={"arrival": {"process": "diurnal", "mean_rate_rps": 1500, "peak_to_trough": 5,
                                      "period_s": 900}}, server={"replicas": 6})
    w = res.windows
    busy, quiet = w["arrivals"] >= w["arrivals"].quantile(2 / 3), w["arrivals"] <= w["arrivals"].quantile(1 / 3)
    assert w.loc[busy, "replicas_active"].mean() > w.loc[quiet, "replicas_active"].mean() + 1
    s = res.summary
    assert s["autoscaler"]["peak_replicas"] > s["autoscaler"]["mean_replicas"] > 1
    assert s["cost_per_day"] < s["autoscaler"]["fixed_peak_cost_per_day"]
    assert s["stable"]


def test_queue_limits_priorities_and_stages_compose_with_autoscaling_behind_a_router():
    classes = [{"name": "gold", "share": 0.3, "priority": 1}, {"name": "bulk", "share": 0.7, "priority": 2}]
    res = batch("join_shortest_queue", {"policy": "schedule", "schedule": [[0, 1], [100, 3]]}, duration_s=200.0,
                rate_rps=5000.0, workload={"classes": classes},
                server={"queue": {"max_queue_size": 40},
                        "preprocess": {"workers": 8, "time_ms": {"dist": "exponential", "mean_ms": 1.0}}})
    s = res.summary
    df = res.requests
    # one replica cannot serve 5,000 rps: while it is alone its queue limit turns requests away, then none
    early, late = df["arrival_s"] < 95, df["arrival_s"] > 110
    assert df.loc[early, "rejected"].mean() > 0.1 and df.loc[late, "rejected"].mean() < 0.01
    assert s["classes"]["gold"]["latency_s"]["p99"] < s["classes"]["bulk"]["latency_s"]["p99"]
    assert "stages" in s and s["autoscaler"]["scale_ups"] == 2


def _pool(autoscaler, queue, classes=None, stages=None, duration_s=300.0, rate_rps=2500.0):
    server = {**({"queue": queue} if queue else {}), **(stages or {})}
    return batch("shared_queue", autoscaler, duration_s=duration_s, rate_rps=rate_rps, server=server,
                 workload={"classes": classes} if classes else None)


@pytest.mark.parametrize("queue", [{"max_queue_size": 6}, {"timeout_ms": 10.0}])
def test_a_constant_schedule_on_a_limited_shared_queue_is_the_fixed_pool_request_for_request(queue):
    a = _pool({"policy": "schedule", "schedule": [[0, 3]]}, queue, duration_s=100.0).logs[0]
    b = _pool(None, queue, duration_s=100.0).logs[0]
    assert np.array_equal(a.request_times("completion_s"), b.request_times("completion_s"), equal_nan=True)
    assert np.array_equal(a.rejected, b.rejected) and np.array_equal(a.timed_out, b.timed_out)


def test_a_switching_schedule_on_a_limited_shared_queue_bills_its_integral_and_limits_the_one_queue():
    res = _pool(SWITCHING, {"max_queue_size": 40}, rate_rps=5000.0)
    log, s = res.logs[0], res.summary
    df = res.requests
    # one replica cannot take 5,000 rps: while it is alone the one queue turns requests away, then hardly any
    early, late = df["arrival_s"] < 95, (df["arrival_s"] > 110) & (df["arrival_s"] < 195)
    assert df.loc[early, "rejected"].mean() > 0.2 and df.loc[late, "rejected"].mean() < 0.01
    released = [life for life in log.scaling["lives"] if life[3] < log.scaling["end_s"]]
    assert len(released) == 1
    rel = released[0][3]
    assert 210.0 <= rel < 210.05  # the drop wanted at 200 s takes effect at 210 s, after the batch running then
    assert s["replica_hours"] * 3600 == pytest.approx(100 * 1 + 100 * 3 + 100 * 2 + (rel - 200.0), rel=1e-12)
    # no batch ran on a replica outside its serving life (lives are billed, so clipped, to the end of the run)
    lives = np.asarray(log.scaling["lives"], float)
    end_s = log.scaling["end_s"]
    for rid, start, end in zip(log.replica, log.dispatch_s, log.completion_s):
        mine = lives[lives[:, 0] == rid]
        assert ((mine[:, 2] <= start) & ((end <= mine[:, 3] + 1e-12) | (mine[:, 3] == end_s))).any()


def test_priorities_and_stages_on_an_autoscaled_shared_queue():
    classes = [{"name": "gold", "share": 0.3, "priority": 1}, {"name": "bulk", "share": 0.7, "priority": 2}]
    res = _pool({"policy": "queue_length", "target": 20, "interval_s": 5, "max_replicas": 4}, None, classes,
                {"preprocess": {"workers": 8, "time_ms": 1.0}}, duration_s=120.0, rate_rps=6000.0)
    s = res.summary
    assert s["stable"] and s["autoscaler"]["peak_replicas"] >= 2 and "stages" in s
    assert s["classes"]["gold"]["queue_wait_s"]["mean"] < s["classes"]["bulk"]["queue_wait_s"]["mean"]


@pytest.mark.parametrize("extra", [{"server": {"queue": {"max_waiting": 3}}}, {"workload": {"client_timeout_ms": 2000}}])
def test_llm_queue_limits_and_client_timeouts_on_an_autoscaled_shared_queue(extra):
    def scenario(autoscaler):
        raw = llm_scaled(autoscaler).model_dump(mode="json", exclude_none=True)
        for key, value in extra.items():
            raw[key].update(value)
        return sim.run(sim.validate(raw))
    a, b = scenario({"policy": "schedule", "schedule": [[0, 3]]}).logs[0], scenario(None).logs[0]
    assert np.array_equal(a.finish_s, b.finish_s, equal_nan=True)
    assert np.array_equal(a.rejected, b.rejected) and np.array_equal(a.timed_out, b.timed_out)
    res = scenario({"policy": "schedule", "schedule": [[0, 1], [200, 3], [400, 2]]})
    log = res.logs[0]
    lost = log.rejected | log.timed_out
    alone, later = log.arrival_s < 200, log.arrival_s > 260
    assert lost[alone].mean() > 0.1 and lost[later].mean() < 0.02  # one engine turns away what three take
    assert (np.isfinite(log.finish_s) | lost | log.refused).all()  # nothing else is left unfinished


def _grouped(router, autoscaler, duration_s=300.0, rate_rps=2500.0):
    slow = {**COST, "base_ms": 4.0, "per_item_ms": 0.5}
    server = {"replicas": None, "router": {"policy": router}, "batching": BATCHING, "autoscaler": autoscaler,
              "groups": [{"name": "big", "replicas": 1, "cost_per_hour": 4.0},
                         {"name": "small", "replicas": 2, "cost_model": slow, "cost_per_hour": 1.0}]}
    raw = scenario_dict(duration_s=duration_s, requests=None, seed=9, cost_model=COST, server=server,
                        workload={"arrival": {"process": "poisson", "rate_rps": rate_rps}},
                        outputs={"records": True, "plots": False, "window_s": 10.0})
    raw["server"] = {k: v for k, v in raw["server"].items() if v is not None}
    return sim.run(sim.validate(raw))


@pytest.mark.parametrize("router", ["shared_queue", "join_shortest_queue", "round_robin"])
def test_an_autoscaler_over_groups_starts_replicas_in_group_order_and_bills_each_at_its_price(router):
    res = _grouped(router, {"policy": "schedule", "schedule": [[0, 1], [100, 3], [200, 2]]})
    log, s = res.logs[0], res.summary
    lives = sorted(log.scaling["lives"])
    assert [life[0] for life in lives] == [0, 1, 2]  # big first, then the small ones
    # replica 2 (the last small one) is released at 200 s and drains; billed: big 300 s, small 100 + 200 s
    rel = lives[2][3]
    assert 200.0 <= rel < 200.1
    expected = (300 * 4.0 + 200 * 1.0 + (rel - 100.0) * 1.0) / 3600
    assert s["autoscaler"]["cost"] == pytest.approx(expected, rel=1e-9)
    assert s["autoscaler"]["fixed_peak_cost_per_day"] == pytest.approx((4.0 + 1.0 + 1.0) * 24)
    df = res.requests
    assert set(df.loc[df["arrival_s"] < 99, "group"].dropna().unique()) == {"big"}


def test_an_autoscaler_over_groups_asks_for_no_more_than_the_groups_hold(write_yaml):
    raw = scenario_dict(server={"groups": [{"name": "a", "replicas": 2}], "batching": BATCHING,
                                "autoscaler": {"policy": "schedule", "schedule": [[0, 1], [10, 3]]}})
    proc = run_cli("check", write_yaml(raw))
    assert proc.returncode == 2 and ": server.autoscaler: " in proc.stderr and "give at most 2" in proc.stderr


def test_stages_alone_on_an_autoscaled_shared_queue_scale():
    res = _pool({"policy": "schedule", "schedule": [[0, 1], [60, 2]]}, None, None,
                {"preprocess": {"workers": 4, "time_ms": 0.5}}, duration_s=120.0, rate_rps=2000.0)
    s = res.summary
    assert s["autoscaler"]["scale_ups"] == 1 and "stages" in s
    assert set(res.requests.loc[res.requests["arrival_s"] < 59, "replica"].unique()) == {0}


def _clients(router, autoscaler, llm_engines=False):
    if llm_engines:
        raw = llm_scaled(autoscaler, duration_s=300.0).model_dump(mode="json", exclude_none=True)
        raw["workload"].pop("arrival")
        raw["workload"]["clients"] = {"count": 24, "think_time_ms": 2000}
        raw["server"]["router"] = {"policy": router}
        return sim.run(sim.validate(raw))
    srv = {"replicas": 3, "router": {"policy": router}, "batching": BATCHING}
    if autoscaler:
        srv["autoscaler"] = autoscaler
    return sim.run(sim.validate(scenario_dict(requests=20000, seed=2, cost_model=COST, server=srv,
                                              workload={"arrival": None, "clients": {"count": 30, "think_time_ms": 5}})))


@pytest.mark.parametrize("router,llm_engines", [("shared_queue", False), ("join_shortest_queue", False),
                                                ("round_robin", False), ("shared_queue", True),
                                                ("join_shortest_queue", True)])
def test_closed_loop_clients_behind_a_constant_schedule_are_the_fixed_fleet_request_for_request(router, llm_engines):
    a = _clients(router, {"policy": "schedule", "schedule": [[0, 3]]}, llm_engines).logs[0]
    b = _clients(router, None, llm_engines).logs[0]
    if llm_engines:
        assert np.array_equal(a.finish_s, b.finish_s, equal_nan=True)
    else:
        assert np.array_equal(a.request_times("completion_s"), b.request_times("completion_s"))


def test_closed_loop_clients_with_a_utilization_target_scale_and_keep_the_response_time_law():
    res = _clients("join_shortest_queue", {"policy": "target_utilization", "target": 0.5, "interval_s": 0.5})
    s = res.summary
    assert s["autoscaler"]["scale_ups"] >= 1 and s["autoscaler"]["decisions"] >= 5
    assert s["closed_loop"]["law_rel_error"] < 0.02  # every cycle still ends: nothing is lost to a release


@pytest.mark.parametrize("router", ["shared_queue", "join_shortest_queue", "round_robin"])
def test_instance_groups_autoscale_by_gpu_and_a_constant_schedule_is_the_fixed_fleet(router):
    inst = {"instances_per_gpu": 2, "instance_contention": [1.0, 1.5]}
    a = batch(router, {"policy": "schedule", "schedule": [[0, 3]]}, duration_s=100.0, server=inst).logs[0]
    b = batch(router, duration_s=100.0, server=inst).logs[0]
    assert np.allclose(a.request_times("completion_s"), b.request_times("completion_s"), rtol=1e-12, atol=0)
    res = batch(router, SWITCHING, server=inst)
    log, s = res.logs[0], res.summary
    lives = log.scaling["lives"]
    assert sorted(life[0] for life in lives) == [0, 1, 2]  # one life per GPU: its instances start and stop together
    released = [life for life in lives if life[3] < log.scaling["end_s"]]
    assert len(released) == 1 and 210.0 <= released[0][3] < 210.1
    assert s["replica_hours"] * 3600 == pytest.approx(600 + (released[0][3] - 200.0), rel=1e-12)
    # no batch ran on a GPU outside its serving life
    end_s = log.scaling["end_s"]
    lv = np.asarray(lives, float)
    for rid, start, end in zip(log.replica, log.dispatch_s, log.completion_s):
        mine = lv[lv[:, 0] == rid]
        assert ((mine[:, 2] <= start) & ((end <= mine[:, 3] + 1e-12) | (mine[:, 3] == end_s))).any()
