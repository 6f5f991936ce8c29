"""Autoscaling (server.autoscaler): a constant schedule is the fixed fleet request for request, a schedule with
no delays matches fixed fleets away from its switches and bills exactly its integral, cold starts show as a
latency spike sized by the delay, utilisation targets follow the load, bad input."""
import numpy as np
import pytest

import sim
from sim.engine import simulate_shared
from sim.fleet.scaling import simulate_autoscaled
from sim.runner import generate_workload

from .conftest import run_cli, scenario_dict

COST = {"kind": "affine", "base_ms": 2.0, "per_item_ms": 0.25, "max_batch_size": 64}
BATCHING = {"policy": "dynamic", "max_batch_size": 32, "max_queue_delay_ms": 2}


def scaled(autoscaler, arrival=None, duration_s=900.0, **extra):
    raw = scenario_dict(duration_s=duration_s, requests=None, seed=9,
                        workload={"arrival": arrival or {"process": "poisson", "rate_rps": 2500}}, cost_model=COST,
                        server={"replicas": 3, "cost_per_hour": 2.0, "batching": BATCHING, "autoscaler": autoscaler},
                        outputs={"records": True, "plots": False, "window_s": 10.0}, **extra)
    return sim.run(sim.validate(raw))


def fixed_latency(replicas, arrivals):
    s = sim.validate(scenario_dict(cost_model=COST, server={"replicas": replicas, "batching": BATCHING}))
    log = simulate_shared([(s.rule, s.cost_model)] * replicas, arrivals)
    return log.request_times("completion_s") - arrivals


def test_a_constant_schedule_is_the_fixed_fleet_request_for_request():
    res = scaled({"policy": "schedule", "schedule": [[0, 3]]})
    log = res.logs[0]
    assert np.array_equal(log.request_times("completion_s") - log.arrival_s, fixed_latency(3, log.arrival_s))


def test_a_schedule_matches_fixed_fleets_between_switches_and_bills_its_integral():
    res = scaled({"policy": "schedule", "schedule": [[0, 1], [300, 3], [600, 2]]})
    log, s = res.logs[0], res.summary
    a = log.arrival_s
    lat = log.request_times("completion_s") - a
    for lo, hi, n in ((0, 295, 1), (310, 595, 3), (610, 900, 2)):
        ref = fixed_latency(n, a)
        sel = (a >= lo) & (a < hi)
        assert np.allclose(lat[sel], ref[sel], rtol=0, atol=1e-12), (lo, hi, n)
    assert s["replica_hours"] == pytest.approx((300 * 1 + 300 * 3 + 300 * 2) / 3600, rel=1e-12)
    assert s["autoscaler"]["cost"] == pytest.approx(2.0 * s["replica_hours"])
    w = res.windows
    assert np.allclose(w["replicas_active"], np.repeat([1, 3, 2], 30))
    # a cold start is billed from the request; a delayed release bills until it happens
    late = scaled({"policy": "schedule", "schedule": [[0, 1], [300, 3], [600, 2]], "scale_up_delay_s": 30,
                   "scale_down_delay_s": 60}).summary
    assert late["replica_hours"] == pytest.approx((300 * 1 + 300 * 3 + 300 * 2 + 60) / 3600, rel=1e-12)


def test_a_cold_start_shows_as_a_spike_sized_by_the_delay():
    step = {"process": "piecewise", "points": [[0, 200], [299.9, 200], [300, 4500], [600, 4500]]}
    worst = []
    for delay in (0.0, 20.0, 60.0):
        res = scaled({"policy": "target_utilization", "target": 0.9, "min_replicas": 1, "max_replicas": 4,
                      "interval_s": 5, "scale_up_delay_s": delay}, arrival=step, duration_s=600.0)
        w = res.windows
        worst.append(float(w.loc[w["start_s"] >= 300, "latency_p99_s"].max()))
        before = w.loc[w["end_s"] <= 290, "latency_p99_s"].max()
    assert worst[0] < worst[1] < worst[2]
    assert worst[2] > 10 * before  # the queue built up for a minute at 4,500 rps against one replica's 3,200


def test_a_utilization_target_follows_a_daily_profile():
    res = scaled({"policy": "target_utilization", "target": 0.6, "min_replicas": 1, "max_replicas": 6,
                  "interval_s": 30},
                 arrival={"process": "diurnal", "mean_rate_rps": 3000, "peak_to_trough": 5, "period_s": 1800},
                 duration_s=1800.0)
    w = res.windows
    busy, quiet = w["arrivals"] >= w["arrivals"].quantile(2 / 3), w["arrivals"] <= w["arrivals"].quantile(1 / 3)
    assert w.loc[busy, "replicas_active"].mean() > w.loc[quiet, "replicas_active"].mean() + 1
    assert np.corrcoef(w["arrivals"].rank(), w["replicas_active"].rank())[0, 1] > 0.6
    s = res.summary
    assert s["autoscaler"]["peak_replicas"] > s["autoscaler"]["mean_replicas"] > 1
    assert s["cost_per_day"] < s["autoscaler"]["fixed_peak_cost_per_day"]


@pytest.mark.parametrize("autoscaler,key,text", [
    ({"policy": "target_utilization"}, "server.autoscaler", "needs a target"),
    ({"policy": "target_utilization", "target": 1.5}, "server.autoscaler", "lies in (0, 1]"),
    ({"policy": "queue_length", "target": 5, "min_replicas": 4, "max_replicas": 2}, "server.autoscaler", "below min"),
    ({"policy": "schedule", "schedule": [[10, 1]]}, "server.autoscaler", "must start at 0"),
    ({"policy": "schedule", "schedule": [[0, 1], [5, 2], [5, 3]]}, "server.autoscaler", "increase"),
    ({"policy": "bogus"}, "server.autoscaler.policy", "target_utilization"),
])
def test_bad_autoscaler_input(write_yaml, autoscaler, key, text):
    raw = scenario_dict(server={"replicas": 2, "batching": BATCHING, "autoscaler": autoscaler})
    proc = run_cli("check", write_yaml(raw))
    assert proc.returncode == 2 and f": {key}: " in proc.stderr and text in proc.stderr, proc.stderr


def test_autoscaling_behind_a_router_is_no_longer_refused(write_yaml):
    raw = scenario_dict(server={"replicas": 2, "router": {"policy": "round_robin"}, "batching": BATCHING,
                                "autoscaler": {"policy": "schedule", "schedule": [[0, 1]]}})
    proc = run_cli("check", write_yaml(raw))
    assert proc.returncode == 0, proc.stderr


def llm_scaled(autoscaler, replicas=3, rate_rps=9.0, duration_s=600.0):
    return sim.validate(scenario_dict(
        duration_s=duration_s, requests=None, seed=2, warmup_s=0,
        workload={"arrival": {"process": "poisson", "rate_rps": rate_rps},
                  "prompt_tokens": {"dist": "lognormal", "mean": 600, "cv": 1.0, "min": 8, "max": 4000},
                  "output_tokens": {"dist": "lognormal", "mean": 150, "cv": 0.8, "min": 1, "max": 1200}},
        cost_model={"kind": "llm", "base_ms": 12.0, "prefill_token_ms": 0.06, "decode_seq_ms": 0.08,
                    "decode_context_ms": 0.00002},
        server={"replicas": replicas, "cost_per_hour": 6.88, "autoscaler": autoscaler,
                "batching": {"policy": "continuous", "max_num_seqs": 16, "max_num_batched_tokens": 2048,
                             "kv_cache_tokens": 40000}},
        outputs={"records": True, "plots": False, "window_s": 60.0}))


def test_llm_constant_schedule_is_the_fixed_fleet_and_a_schedule_bills_its_integral():
    fixed = sim.validate({**llm_scaled(None).model_dump(mode="json", exclude_none=True)})
    a = sim.run(llm_scaled({"policy": "schedule", "schedule": [[0, 3]]})).logs[0]
    b = sim.run(fixed).logs[0]
    assert np.array_equal(a.first_token_s, b.first_token_s, equal_nan=True)
    assert np.array_equal(a.finish_s, b.finish_s, equal_nan=True)
    res = sim.run(llm_scaled({"policy": "schedule", "schedule": [[0, 1], [200, 3], [400, 2]]}))
    # a released engine finishes the sequences it holds, billed until then
    integral = (200 * 1 + 200 * 3 + 200 * 2) / 3600
    assert integral <= res.summary["replica_hours"] <= integral + 60 / 3600
    w = res.windows
    assert w.loc[w["end_s"] <= 200, "replicas_active"].max() == pytest.approx(1)
    # one replica cannot keep up with 9 rps: the first third waits far longer for its first token
    assert w.loc[w["end_s"] <= 200, "ttft_p99_s"].max() > 3 * w.loc[w["start_s"] >= 260, "ttft_p99_s"].max()


def test_llm_queue_length_scales_with_the_waiting_requests():
    res = sim.run(llm_scaled({"policy": "queue_length", "target": 2, "min_replicas": 1, "max_replicas": 4,
                              "interval_s": 10, "scale_up_delay_s": 20}, replicas=4, rate_rps=12.0))
    s = res.summary
    assert s["autoscaler"]["peak_replicas"] >= 2 and s["autoscaler"]["scale_ups"] >= 1
    assert s["replica_hours"] <= 4 * 600 / 3600 + 1e-9
    df = res.requests
    assert df["finish_s"].notna().all()  # a released replica finishes what it holds; nothing is lost


def _release_times(log) -> list:
    """Returns the release instant of every life that ended before the billing end."""
    sc = log.scaling
    return sorted(rel for _, _, _, rel in sc["lives"] if rel < sc["end_s"])


def test_a_scale_down_window_releases_at_the_same_instant_for_request_level_and_llm_pools():
    # one controller (sim.fleet.controller) for every pool: a scheduled drop waits scale_down_delay_s, then the
    # replicas it releases finish what they hold (an idle one leaves at once)
    schedule = {"policy": "schedule", "schedule": [[0, 4], [100, 2]], "scale_down_delay_s": 30}
    batch = scaled(schedule, arrival={"process": "poisson", "rate_rps": 50}, duration_s=200.0)
    llm = sim.run(llm_scaled(schedule, replicas=4, rate_rps=0.05, duration_s=200.0))
    for res in (batch, llm):
        released = _release_times(res.logs[0])
        assert len(released) == 2 and all(130 <= t < 130.5 for t in released), released
        assert res.summary["autoscaler"]["scale_downs"] == 2 and res.summary["autoscaler"]["scale_ups"] == 0
        assert res.summary["replica_hours"] == pytest.approx((200 * 2 + 130 * 2) / 3600, abs=1 / 3600)
    # the schedule rising again within the window cancels the drop
    again = scaled({**schedule, "schedule": [[0, 4], [100, 2], [120, 4]]}, arrival={"process": "poisson",
                                                                                    "rate_rps": 50}, duration_s=200.0)
    assert _release_times(again.logs[0]) == [] and again.summary["autoscaler"]["scale_downs"] == 0


def test_initial_replicas_are_not_counted_as_scale_ups():
    res = scaled({"policy": "schedule", "schedule": [[0, 2], [300, 3]]}, duration_s=600.0)
    assert res.summary["autoscaler"]["scale_ups"] == 1
    llm = sim.run(llm_scaled({"policy": "schedule", "schedule": [[0, 2], [300, 3]]}))
    assert llm.summary["autoscaler"]["scale_ups"] == 1
