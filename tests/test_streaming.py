"""Streaming runs (outputs.streaming): the same summary as records within the sketch's stated accuracy (counts,
means and rates equal), the sketch against exact percentiles, memory that does not hold per-request records,
switching to streaming with a notice, bad input."""
import json
import math

import numpy as np
import pytest

import sim
from sim.sketch import ACCURACY, LogSketch, merged

from .conftest import run_cli, scenario_dict


def both(outputs=None, **changes):
    base = scenario_dict(**changes)
    extra = outputs or {}
    rec = sim.run(sim.validate({**base, "outputs": {"streaming": False, "records": False, "plots": False, **extra}}))
    st = sim.run(sim.validate({**base, "outputs": {"streaming": True, **extra}}))
    rec, st = rec.summary, st.summary
    return rec, st


@pytest.mark.parametrize("changes", [
    dict(requests=2_000_000, warmup_s=5.0, workload={"arrival": {"process": "poisson", "rate_rps": 1000}},
         cost_model={"kind": "affine", "base_ms": 2.0, "per_item_ms": 0.25, "max_batch_size": 64},
         server={"batching": {"policy": "dynamic", "max_batch_size": 32, "max_queue_delay_ms": 2}},
         slo={"latency_p99_ms": 6.5}),
    dict(duration_s=400.0, requests=None, replications=2, workload={"arrival": {"process": "diurnal", "mean_rate_rps": 2500,
                                                                 "peak_to_trough": 3, "period_s": 400}},
         cost_model={"kind": "affine", "base_ms": 2.0, "per_item_ms": 0.25, "noise": {"cv": 0.2}},
         server={"groups": [{"name": "a", "replicas": 2}, {"name": "b", "replicas": 1,
                                                          "batching": {"policy": "static", "max_batch_size": 8,
                                                                       "max_queue_delay_ms": 5}}],
                 "batching": {"policy": "dynamic", "max_batch_size": 16, "max_queue_delay_ms": 1}}),
])
def test_streaming_equals_records_within_the_sketch_accuracy(changes):
    rec, st = both(**changes)
    assert_stream_matches(rec, st)


def assert_stream_matches(rec: dict, st: dict) -> None:
    """Counts exact, means and rates to 1e-9, percentiles within the sketch accuracy, per replica too."""
    for key in ("requests", "requests_generated", "unserved", "batch_size", "slo_attainment"):
        assert st.get(key) == rec.get(key), key
    for key in ("throughput_rps", "utilization", "duration_s", "measured_window_s"):
        assert st[key] == pytest.approx(rec[key], rel=1e-9), key
    for metric in ("latency_s", "queue_wait_s"):
        assert st[metric]["mean"] == pytest.approx(rec[metric]["mean"], rel=1e-9)
        assert st[metric]["max"] == rec[metric]["max"]
        for q in ("p50", "p90", "p95", "p99"):
            assert st[metric][q] == pytest.approx(rec[metric][q], rel=2 * ACCURACY, abs=1e-12), (metric, q)
            assert (st[metric]["ci95"][q] is None) == (rec[metric]["ci95"][q] is None)
    assert st["littles_law"]["L"] == pytest.approx(rec["littles_law"]["L"], rel=1e-6)
    assert st["stable"] == rec["stable"] and st["stability"]["verdict"] == rec["stability"]["verdict"]
    assert len(st["replicas"]) == len(rec["replicas"])
    for a, b in zip(st["replicas"], rec["replicas"]):
        assert a["requests"] == b["requests"] and a["throughput_rps"] == pytest.approx(b["throughput_rps"], rel=1e-9)
        assert a["utilization"] == pytest.approx(b["utilization"], rel=1e-9)
        assert a["latency_s"]["p99"] == pytest.approx(b["latency_s"]["p99"], rel=2 * ACCURACY)
    assert st.get("fleet_cost_per_hour") == pytest.approx(rec.get("fleet_cost_per_hour"), rel=1e-12)
    assert set(st) - set(rec) == {"streaming"} and set(rec) - set(st) == set()


_FLEET = dict(duration_s=240.0, requests=None, warmup_s=10.0,
              workload={"arrival": {"process": "diurnal", "mean_rate_rps": 1500, "peak_to_trough": 4,
                                    "period_s": 240, "peak_at_s": 120}},
              cost_model={"kind": "affine", "base_ms": 1.0, "per_item_ms": 1.0, "max_batch_size": 16,
                          "noise": {"cv": 0.1}},
              slo={"latency_p99_ms": 50})
_SCALER = {"policy": "target_utilization", "target": 0.8, "min_replicas": 1, "max_replicas": 5, "interval_s": 15,
           "scale_up_delay_s": 20, "scale_down_delay_s": 30}
_GROUPS = [{"name": "a", "replicas": 3, "cost_per_hour": 4.0},
           {"name": "b", "replicas": 2, "cost_per_hour": 2.0,
            "batching": {"policy": "dynamic", "max_batch_size": 8, "max_queue_delay_ms": 1}}]


@pytest.mark.parametrize("router", ["join_shortest_queue", "power_of_two", "round_robin", "random",
                                    "least_outstanding_tokens"])
@pytest.mark.parametrize("scaled", [False, True])
def test_streaming_behind_every_router_equals_records(router, scaled):
    """Replicas with queues of their own behind each router, fixed or autoscaled, two groups: the streamed summary
    is the records' within the sketch accuracy, and the autoscaler's lives, ups, downs and bill are the same."""
    server = {"router": {"policy": router}, "groups": _GROUPS,
              "batching": {"policy": "dynamic", "max_batch_size": 16, "max_queue_delay_ms": 2}}
    if scaled:
        server["autoscaler"] = _SCALER
    rec, st = both(server=server, outputs={"window_s": 30.0}, **_FLEET)
    assert_stream_matches(rec, st)
    if scaled:
        assert st["autoscaler"] == rec["autoscaler"]
        assert rec["autoscaler"]["scale_ups"] > 0 and rec["autoscaler"]["scale_downs"] > 0
    assert st["windows"]["windows"] == rec["windows"]["windows"]


_DELAY = {"timeout_ms": 8.0, "timeout_action": "delay"}


@pytest.mark.parametrize("router,queue", [("shared_queue", {"max_queue_size": 6}),
                                          ("shared_queue", {"timeout_ms": 8.0}),
                                          ("join_shortest_queue", {"max_queue_size": 6}),
                                          ("join_shortest_queue", _DELAY), ("round_robin", {"timeout_ms": 8.0}),
                                          ("round_robin", _DELAY)])
def test_streaming_with_queue_limits_equals_records(router, queue):
    """A size limit or a timeout (reject or delay) on each replica's queue, or on the one shared queue, overloaded at
    the peak: the streamed rejected, timed-out and delayed counts equal the records', the rest as elsewhere."""
    server = {"router": {"policy": router}, "replicas": 3, "queue": queue,
              "batching": {"policy": "dynamic", "max_batch_size": 8, "max_queue_delay_ms": 2}}
    rec, st = both(server=server, outputs={"window_s": 30.0}, **{**_FLEET, "workload": {"arrival": {
        "process": "diurnal", "mean_rate_rps": 2000, "peak_to_trough": 4, "period_s": 240, "peak_at_s": 120}}})
    assert_stream_matches(rec, st)
    for key in ("rejected", "timed_out", "delayed"):
        assert st[key] == rec[key], key
    turned = rec["rejected"]["count"] + rec["timed_out"]["count"] + rec["delayed"]["count"]
    assert turned > 100
    assert st.get("load_definition") == rec.get("load_definition") and "load_definition" in st


@pytest.mark.parametrize("router,extra", [("shared_queue", "fixed"), ("shared_queue", "autoscaled"),
                                          ("shared_queue", "limited"), ("join_shortest_queue", "autoscaled"),
                                          ("join_shortest_queue", "limited"), ("round_robin", "fixed")])
def test_streaming_instance_groups_equals_records(router, extra):
    """Two or three instances on each GPU (steps slow down as they share it): streamed, the GPUs' busy time is the
    union of their instances' steps as records compute it, and the rest equals records as elsewhere."""
    server = {"router": {"policy": router}, "replicas": 3, "instances_per_gpu": 3 if router == "shared_queue" else 2,
              "batching": {"policy": "dynamic", "max_batch_size": 8, "max_queue_delay_ms": 2}}
    if extra == "autoscaled":
        server["autoscaler"] = {**_SCALER, "max_replicas": 3}
    if extra == "limited":
        server["queue"] = {"max_queue_size": 4}
    rec, st = both(server=server, outputs={"window_s": 30.0}, **{**_FLEET, "duration_s": 150.0})
    assert_stream_matches(rec, st)
    assert st["rejected"] == rec["rejected"]
    if extra == "autoscaled":
        assert st["autoscaler"] == rec["autoscaler"]


_CLASSES = [{"name": "interactive", "share": 0.3, "priority": 1, "slo": {"latency_p99_ms": 12}},
            {"name": "bulk", "share": 0.7, "priority": 2}]


@pytest.mark.parametrize("router,replicas,queue", [("shared_queue", 1, {"max_queue_size": 16}),
                                                   ("shared_queue", 3, {}), ("join_shortest_queue", 3, {}),
                                                   ("round_robin", 2, {"timeout_ms": 20.0, "timeout_action": "delay"})])
def test_streaming_request_classes_equals_records(router, replicas, queue):
    """Two priority classes, one with an SLO of its own: streamed, every class's section (requests, turned away,
    rates, latency and wait with intervals, SLO attainment) equals the records' within the sketch accuracy."""
    server = {"router": {"policy": router}, "replicas": replicas, "queue": queue,
              "batching": {"policy": "dynamic", "max_batch_size": 8, "max_queue_delay_ms": 2}}
    rate = 900 * replicas
    rec, st = both(server=server, **{**_FLEET, "workload": {"classes": _CLASSES, "arrival": {
        "process": "diurnal", "mean_rate_rps": rate, "peak_to_trough": 4, "period_s": 240, "peak_at_s": 120}}})
    assert_stream_matches(rec, st)
    assert set(st["classes"]) == {"interactive", "bulk"}
    for name, want in rec["classes"].items():
        got = st["classes"][name]
        for key in ("share", "priority", "requests", "rejected", "timed_out", "unserved", "slo_attainment"):
            assert got.get(key) == want.get(key), (name, key)
        for key in ("offered_rps", "throughput_rps"):
            assert got[key] == pytest.approx(want[key], rel=1e-9), (name, key)
        for metric in ("latency_s", "queue_wait_s"):
            assert got[metric]["mean"] == pytest.approx(want[metric]["mean"], rel=1e-9)
            for q in ("p50", "p99"):
                assert got[metric][q] == pytest.approx(want[metric][q], rel=2 * ACCURACY, abs=1e-12), (name, metric)
        assert (got.get("slo") is None) == (want.get("slo") is None)
    assert rec["classes"]["interactive"]["latency_s"]["p99"] < rec["classes"]["bulk"]["latency_s"]["p99"]


def test_streaming_an_autoscaled_shared_queue_over_groups_equals_records():
    server = {"groups": _GROUPS, "autoscaler": _SCALER,
              "batching": {"policy": "dynamic", "max_batch_size": 16, "max_queue_delay_ms": 2}}
    rec, st = both(server=server, **_FLEET)
    assert_stream_matches(rec, st)
    assert st["autoscaler"] == rec["autoscaler"] and rec["autoscaler"]["scale_ups"] > 0


def _flat(x, path=""):
    if isinstance(x, dict):
        for k, v in x.items():
            yield from _flat(v, f"{path}.{k}")
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from _flat(v, f"{path}[{i}]")
    else:
        yield path, x


_LLM = dict(duration_s=300.0, requests=None, warmup_s=20.0,
            workload={"arrival": {"process": "diurnal", "mean_rate_rps": 6, "peak_to_trough": 4, "period_s": 300,
                                  "peak_at_s": 150},
                      "prompt_tokens": {"dist": "lognormal", "mean": 600, "cv": 1.0, "min": 8, "max": 4000},
                      "output_tokens": {"dist": "lognormal", "mean": 120, "cv": 0.8, "min": 1, "max": 600}},
            cost_model={"kind": "llm", "base_ms": 12.0, "prefill_token_ms": 0.06, "prefill_attention_ms": 0.000004,
                        "decode_seq_ms": 0.08, "decode_context_ms": 0.00002},
            slo={"ttft_p99_ms": 2000, "tpot_p99_ms": 60})
_CONTINUOUS = {"policy": "continuous", "max_num_seqs": 16, "max_num_batched_tokens": 2048, "chunked_prefill": True,
               "kv_cache_tokens": 30000, "block_size": 16}


@pytest.mark.parametrize("case", ["shared-autoscaled", "jsq-autoscaled", "round-robin-classes", "least-kv-limit",
                                  "static-shared", "static-jsq"])
def test_an_llm_stream_equals_its_records(case):
    """An LLM fleet streamed (its engine steps handed over block by block and forgotten) gives the records'
    summary: every value equal to 1e-9 but the inter-token latency's percentiles, within the sketch accuracy."""
    server = {"replicas": 3, "cost_per_hour": 4.0, "batching": _CONTINUOUS}
    workload = dict(_LLM["workload"])
    server["router"] = {"policy": {"shared": "shared_queue", "jsq": "join_shortest_queue", "round": "round_robin",
                                   "least": "least_kv", "static": "shared_queue"}[case.split("-")[0]]}
    if case.endswith("autoscaled"):
        server["autoscaler"] = {"policy": "target_utilization", "target": 0.5, "min_replicas": 1, "max_replicas": 5,
                                "interval_s": 15, "scale_up_delay_s": 20, "scale_down_delay_s": 30}
    if case.endswith("classes"):
        workload["classes"] = [{"name": "chat", "share": 0.7, "priority": 1}, {"name": "batch", "share": 0.3,
                                                                                "priority": 2}]
    if case.endswith("limit"):
        server["queue"] = {"max_waiting": 8}
    if case.startswith("static"):
        server["batching"] = {"policy": "llm_static", "max_batch_size": 8, "max_queue_delay_ms": 50,
                              "kv_cache_tokens": 60000}
        server["router"] = {"policy": "shared_queue" if case == "static-shared" else "join_shortest_queue"}
    metrics = [{"metric": "latency_histogram", "edges_ms": [500, 1000, 2000, 5000, 10000]}]
    rec, st = both(server=server, outputs={"window_s": 60.0, "metrics": metrics}, **{**_LLM, "workload": workload})
    assert sum(rec["metrics"]["latency_histogram"]["counts"]) == rec["requests"]
    flat_rec, flat_st = dict(_flat(rec)), dict(_flat(st))
    assert set(flat_st) - set(flat_rec) == {".streaming.relative_accuracy", ".streaming.percentiles"}
    assert set(flat_rec) <= set(flat_st)
    for key, want in flat_rec.items():
        got = flat_st[key]
        if key.startswith(".itl_s.p"):
            assert got == pytest.approx(want, rel=2 * ACCURACY), key
        elif isinstance(want, float) and not isinstance(want, bool):
            assert got == pytest.approx(want, rel=1e-9, abs=1e-12, nan_ok=True), key
        else:
            assert got == want, key
    if case.endswith("autoscaled"):
        assert rec["autoscaler"]["scale_ups"] > 0


def test_an_llm_stream_keeps_no_step_rows():
    """The engines hand their step rows over and forget them: the log holds none, the StepStats counted them."""
    from sim.fleet.build import run_llm_fleet
    from sim.replica.step_stats import StepStats

    s = sim.validate(scenario_dict(server={"replicas": 2, "router": {"policy": "join_shortest_queue"},
                                           "batching": _CONTINUOUS}, outputs={"streaming": True},
                                   **{k: v for k, v in _LLM.items() if k != "slo"}))
    wl = sim.runner.generate_workload(s, 0)
    steps = StepStats(s.warmup_s, float(wl.arrival_s[-1]), np.ones(2), exact=False)
    log = run_llm_fleet(s.fleet_groups, s.server.router, wl.arrival_s, wl.prompt_tokens, wl.output_tokens, s.seed, 0,
                        steps=steps)
    assert log.step_s.size == 0 and log.itl_s.size == 0 and log.step_stats is steps
    assert steps.steps > 1000 and steps.itl_sketch.n > 0 and 0 < steps.busy_s


def test_an_llm_stream_frees_what_finished_requests_held(monkeypatch):
    """After each hand-over the requests that are done keep only list slots of shared constants, their values the log
    reads in numpy columns (the same log as records), and an engine's admission order holds only what runs."""
    from sim.fleet.build import run_llm_fleet
    from sim.replica.continuous import ContinuousReplica
    from sim.replica.llm_requests import LlmRequests
    from sim.replica.step_stats import StepStats
    from sim.runner import generate_workload

    seen, pruned = [], []
    pack, prune = LlmRequests.pack_done, ContinuousReplica._prune_admitted

    def packing(self, arrived):
        seen.append(self)
        return pack(self, arrived)

    def pruning(self):
        prune(self)
        pruned.append(len(self.admitted))
    monkeypatch.setattr(LlmRequests, "pack_done", packing)
    monkeypatch.setattr(ContinuousReplica, "_prune_admitted", pruning)
    s = sim.validate(scenario_dict(server={"replicas": 2, "router": {"policy": "join_shortest_queue"},
                                           "batching": _CONTINUOUS}, outputs={"streaming": True},
                                   **{**{k: v for k, v in _LLM.items() if k != "slo"}, "duration_s": 2400.0}))
    wl = generate_workload(s, 0)
    args = (s.fleet_groups, s.server.router, wl.arrival_s, wl.prompt_tokens, wl.output_tokens, s.seed, 0)
    streamed = run_llm_fleet(*args, steps=StepStats(s.warmup_s, float(wl.arrival_s[-1]), np.ones(2), exact=False))
    reqs = seen[-1]
    assert len(seen) >= 3 and reqs.packed.all()
    for name in reqs.KEPT + reqs.DROPPED:  # one shared object per column: nothing per request is left
        assert len({id(v) for v in getattr(reqs, name)}) == 1, name
    monkeypatch.setattr(LlmRequests, "pack_done", pack)
    records = run_llm_fleet(*args)
    for key in ("arrival_s", "prompt_tokens", "output_tokens", "first_token_s", "finish_s", "recomputed_tokens",
                "admitted_s", "timed_out", "refused"):
        assert np.array_equal(getattr(streamed, key), getattr(records, key), equal_nan=True), key
    limit = _CONTINUOUS["max_num_seqs"]
    assert pruned and max(pruned) <= limit  # what runs on one engine: at most max_num_seqs sequences


@pytest.mark.parametrize("server", [{"router": {"policy": "join_shortest_queue"}},
                                    {"router": {"policy": "round_robin"}}, {"queue": {"max_queue_size": 50}},
                                    {"router": {"policy": "round_robin"}, "instances_per_gpu": 2}])
def test_a_streamed_replica_keeps_nothing_it_handed_over(monkeypatch, server):
    """After each hand-over a replica holds no batch, step or request id it handed over (a fixed fleet's steps
    included, which nothing reads), only what is in flight, so memory does not grow with the run."""
    from sim.replica.instance_pool import InstancePool
    from sim.replica.queued import QueuedReplica

    held = []
    for cls in (QueuedReplica, InstancePool):
        def spy(self, _harvest=cls.harvest):
            got = _harvest(self)
            held.append(len(self.steps) + len(self.served) + len(self.arr) + len(self.sizes))
            return got
        monkeypatch.setattr(cls, "harvest", spy)
    srv = {"replicas": 3, "batching": {"policy": "dynamic", "max_batch_size": 8, "max_queue_delay_ms": 2}, **server}
    sim.run(sim.validate(scenario_dict(duration_s=60.0, requests=None, warmup_s=1.0, server=srv,
                                       workload={"arrival": {"process": "poisson", "rate_rps": 3000}},
                                       outputs={"streaming": True})))
    assert len(held) >= 4 and max(held) <= 64  # 180,000 arrivals: three hand-overs and the last; in flight only


def test_a_streamed_run_warns_as_records_do():
    """A trace whose arrivals span no time, and an overloaded fleet: the streamed warnings are the records' (the
    growth test's t statistic apart, taken from time histograms)."""
    def warnings(st, **changes):
        d = scenario_dict(server={"replicas": 2, "router": {"policy": "join_shortest_queue"}},
                          outputs={"streaming": True} if st else {"streaming": False, "records": False, "plots": False},
                          **changes)
        return sim.run(sim.validate(d)).summary["warnings"]
    burst = dict(requests=None, workload={"arrival": {"process": "trace", "times_s": [0.0, 0.0, 0.0]}})
    assert warnings(True, **burst) == warnings(False, **burst) and "span no time" in warnings(True, **burst)[0]
    over = dict(requests=100_000, workload={"arrival": {"process": "poisson", "rate_rps": 50_000}})
    rec, st = warnings(False, **over), warnings(True, **over)
    assert len(rec) == len(st) == 2 and rec[1] == st[1] and rec[1].startswith("UNSTABLE: offered load")
    assert rec[0].split("(")[0] == st[0].split("(")[0] and rec[0].endswith(st[0].split(":")[-1])


def test_a_routed_stream_holds_only_the_requests_in_flight():
    """ArrivalOrder hands rows to the sink in arrival order and keeps none that finished (memory bounded by the
    requests in flight, not by the run)."""
    from sim.fleet.streamed import ArrivalOrder
    from sim.replica.queued import Harvest

    class Sink:
        def __init__(self):
            self.arrivals, self.never, self.turned = [], [], []

        def take_batches(self, *a):
            pass

        def take_requests(self, arrival, dispatch, completion, replica, delayed=None):
            self.arrivals += arrival.tolist()

        def take_turned(self, arrival, timed_out, replica=None):
            self.turned += list(zip(arrival.tolist(), timed_out.tolist(), replica.tolist()))

        def finish(self, never):
            self.never += never.tolist()

    sink = Sink()
    order = ArrivalOrder(sink)
    blocks = order.tap([np.arange(4.0), np.arange(4.0, 8.0)])
    next(blocks)
    # a later request finishes first: nothing leaves until request 0 has
    order.add(Harvest(np.array([1], np.int32), np.array([1.0]), np.array([2.0]), np.array([2]), [], []), 0)
    order.flush()
    assert sink.arrivals == [] and order.base == 0
    order.add(Harvest(np.array([2], np.int32), np.array([1.0]), np.array([2.0]), np.array([0, 1]), [], [3]), 1)
    order.flush()
    assert sink.arrivals == [0.0, 1.0, 2.0] and order.base == 4 and order.state.size == 0
    assert sink.turned == [(3.0, True, 1)]  # timed out at replica 1
    next(blocks)
    order.add(Harvest(np.array([1], np.int32), np.array([9.0]), np.array([9.5]), np.array([6]), [], []), 0)
    order.finish()
    assert sink.arrivals == [0.0, 1.0, 2.0, 6.0] and sink.never == [4.0, 5.0, 7.0]


def test_sketch_quantiles_are_within_the_stated_accuracy():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.lognormal(-6, 2, 300_000), np.zeros(5000), rng.uniform(1e-9, 1e-7, 100)])
    parts = np.array_split(values, 7)
    sketches = []
    for p in parts:
        s = LogSketch()
        s.add(p)
        sketches.append(s)
    s = merged(sketches)
    assert s.n == values.size and s.zeros == 5000 and s.mean == pytest.approx(values.mean(), rel=1e-12)
    for q in np.linspace(0.0, 1.0, 81):
        # numpy's default percentile interpolates between the order statistics around rank q (n - 1); the sketch
        # holds each within ACCURACY, so their interpolation too
        assert s.quantile(q) == pytest.approx(np.percentile(values, q * 100), rel=ACCURACY * 1.0001, abs=1e-12)
    bimodal = np.concatenate([np.full(99_000, 0.01), np.full(1000, 1.0)])
    b = LogSketch()
    b.add(bimodal)
    assert b.quantile(0.99) == pytest.approx(np.percentile(bimodal, 99), rel=ACCURACY)


def test_a_long_run_streams_by_itself_with_a_notice(tmp_path, write_yaml):
    raw = scenario_dict(requests=25_000_000, workload={"arrival": {"process": "poisson", "rate_rps": 20000}},
                        cost_model={"kind": "affine", "base_ms": 0.5, "per_item_ms": 0.01, "max_batch_size": 256},
                        server={"batching": {"policy": "dynamic", "max_batch_size": 128, "max_queue_delay_ms": 1}})
    s = sim.validate(raw)
    assert s.streaming
    proc = run_cli("check", write_yaml(raw))
    assert proc.returncode == 0
    raw["outputs"] = {"streaming": False}
    assert not sim.validate(raw).streaming


@pytest.mark.parametrize("changes,key,text", [
    ({"outputs": {"metrics": [{"metric": "nope"}]}}, "outputs.metrics.0.metric", "latency_histogram"),
    ({"outputs": {"metrics": [{"metric": "latency_histogram", "edges_ms": [5, 2]}]}}, "outputs.metrics.0.edges_ms",
     "ascending"),
    ({"outputs": {"streaming": True}, "server": {"preprocess": {"workers": 2, "time_ms": {"dist": "fixed",
                                                                                               "value_ms": 1}}}},
     "outputs.streaming", "server stages"),
    ({"outputs": {"streaming": True, "records": True}}, "outputs.records", "keeps no per-request records"),
    ({"requests": 150_000_000, "outputs": {"streaming": False}}, "requests", "outputs.streaming: true"),
])
def test_bad_streaming_input(write_yaml, changes, key, text):
    proc = run_cli("check", write_yaml(scenario_dict(**changes)))
    assert proc.returncode == 2 and f": {key}: " in proc.stderr and text in proc.stderr, proc.stderr


def test_a_streaming_run_writes_its_summary_only(tmp_path, write_yaml):
    p = write_yaml(scenario_dict(requests=50000, outputs={"streaming": True}))
    proc = run_cli("run", p, "--out", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    names = sorted(f.name for f in (tmp_path / "o").iterdir() if not f.name.startswith("."))
    assert names == ["scenario.json", "summary.json"]
    s = json.loads((tmp_path / "o/summary.json").read_text())
    assert s["streaming"]["relative_accuracy"] == ACCURACY and s["requests"] == 50000


@pytest.mark.parametrize("rate_rps,requests", [(1330.0, 4000), (2000.0, 30000), (900.0, 30000)])
def test_short_runs_agree_on_stability_and_intervals(rate_rps, requests):
    rec, st = both(requests=requests, seed=0, workload={"arrival": {"process": "poisson", "rate_rps": rate_rps}},
                   cost_model={"kind": "affine", "base_ms": 2.0, "per_item_ms": 0.25, "max_batch_size": 8},
                   server={"batching": {"policy": "static", "max_batch_size": 4, "max_queue_delay_ms": 3}})
    assert st["stability"]["verdict"] == rec["stability"]["verdict"]
    assert st["stability"]["t"] == pytest.approx(rec["stability"]["t"], rel=0.05, abs=0.2)
    for q in ("mean", "p50", "p90"):
        a, b = st["latency_s"]["ci95"][q], rec["latency_s"]["ci95"][q]
        assert (a is None) == (b is None)
        if a is not None:  # sections cut at slightly different requests: widths alike, not equal
            assert (a[1] - a[0]) == pytest.approx(b[1] - b[0], rel=0.6)
