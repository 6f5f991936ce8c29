"""The composition matrix (issue 17) over {engine kind} x {shared queue, each router} x {records, streaming} x
{fixed, autoscaled} x {one group, groups} x {classes, clients, queue limits, timeouts, stages, instance groups,
windows} x {run, sweep, plan}.

`refusals(cell)` is the documented list of what is refused (docs/design.md, "What is refused"): modelling limits
and what is not built yet. Every pair of values that some allowed cell can hold appears in at least one cell of a
pairwise covering array of allowed cells, and each of those runs (a sane summary). Every pair that no allowed cell
can hold is tried once and must be refused with a message naming a documented reason. LLM plans are preflighted
(their p99 targets need 50,000 requests a point); request-level plans run."""
import copy
import itertools
import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

import sim
from sim.errors import ScenarioError

ROOT = Path(__file__).resolve().parent.parent

FACTORS = {
    "kind": ["batch", "continuous", "llm_static"],
    "router": ["shared_queue", "round_robin", "random", "join_shortest_queue", "power_of_two",
               "least_outstanding_tokens", "least_kv"],
    "output": ["records", "streaming"],
    "scaling": ["fixed", "autoscaled"],
    "groups": ["one", "groups"],
    "feature": ["none", "classes", "clients", "queue_limits", "timeouts", "stages", "instances", "windows"],
    "command": ["run", "sweep", "plan"],
}
LLM_COST = {"kind": "llm", "base_ms": 12.0, "prefill_token_ms": 0.06, "decode_seq_ms": 0.08,
            "decode_context_ms": 0.00002}
TOKENS = {"prompt_tokens": {"dist": "lognormal", "mean": 400, "cv": 1.0, "min": 8, "max": 3000},
          "output_tokens": {"dist": "lognormal", "mean": 60, "cv": 0.8, "min": 1, "max": 500}}
CLASSES = [{"name": "gold", "share": 0.3, "priority": 1}, {"name": "bulk", "share": 0.7, "priority": 2}]


# the documented refusals (phrases of their messages, listed in docs/design.md)
KV_ONLY = "reads the KV cache of LLM replicas"
OWNS_GPU = "an LLM engine owns its GPU"
LLM_STAGES = "LLM engines' tokenization and streaming are not simulated yet"
CLIENT_TIMEOUT = "applies to continuous batching (LLM clients waiting for admission)"
MAX_WAITING = "applies to continuous batching (sequences waiting for admission)"
STATIC_FCFS = "llm_static batches first come, first served"
STATIC_CLIENTS = "closed-loop LLM clients drive continuous batching"
PLAN_CLIENTS = "closed-loop clients have no arrival rate to scale"
STREAMING = "streaming runs support request-level batching (open-loop arrivals"
AUTOSCALER = "autoscaling is simulated for replicas of one kind"


def refusals(cell: dict) -> list[str]:
    """Returns the documented reasons a cell is refused (empty: it must run)."""
    llm, static, f = cell["kind"] != "batch", cell["kind"] == "llm_static", cell["feature"]
    out = []
    if cell["router"] == "least_kv" and not llm:
        out.append(KV_ONLY)
    if llm and f == "instances":
        out.append(OWNS_GPU)
    if llm and f == "stages":
        out.append(LLM_STAGES)
    if static:
        out += {"timeouts": [CLIENT_TIMEOUT], "queue_limits": [MAX_WAITING], "classes": [STATIC_FCFS],
                "clients": [STATIC_CLIENTS]}.get(f, [])
    if cell["command"] == "plan" and f == "clients":
        out.append(PLAN_CLIENTS)
    if cell["output"] == "streaming" and (f == "clients" if llm else f in ("clients", "stages")):
        out.append(STREAMING)
    return out


def _pairs(row: dict) -> set:
    return {((p, row[p]), (q, row[q])) for p, q in itertools.combinations(list(FACTORS), 2)}


def covering_array(factors: dict, allowed, seed: int = 0, candidates: int = 60) -> tuple[list[dict], set]:
    """Returns (rows, impossible): allowed rows (one value per factor) covering every pair of values of two
    factors that some allowed row holds (greedy, AETG-like: of `candidates` random rows holding an uncovered
    pair, the allowed one covering the most uncovered pairs), and the pairs no allowed row holds."""
    names = list(factors)
    every = [dict(zip(names, vals)) for vals in itertools.product(*factors.values())]
    possible = set().union(*(_pairs(r) for r in every if allowed(r)))
    todo = set(possible)
    rng = np.random.default_rng(seed)
    rows = []
    while todo:
        (a, x), (b, y) = min(todo)
        best, gain = None, -1
        for _ in range(candidates):
            row = {n: factors[n][rng.integers(len(factors[n]))] for n in names}
            row[a], row[b] = x, y
            if not allowed(row):
                continue
            g = len(_pairs(row) & todo)
            if g > gain:
                best, gain = row, g
        if best is None:  # random rows missed the few allowed ones: take one from the full list
            best = next(r for r in every if allowed(r) and r[a] == x and r[b] == y)
        rows.append(best)
        todo -= _pairs(best)
    impossible = {p for a, b in itertools.combinations(names, 2) for p in
                  (((a, x), (b, y)) for x in factors[a] for y in factors[b])} - possible
    return rows, impossible


def refused_cell(pair, factors: dict) -> dict:
    """Returns a cell holding `pair` with as few other reasons to refuse it as there are."""
    names = list(factors)
    (a, x), (b, y) = pair
    every = [dict(zip(names, vals)) for vals in itertools.product(*factors.values())]
    holding = [r for r in every if r[a] == x and r[b] == y]
    return min(holding, key=lambda r: (len(refusals(r)), [factors[n].index(r[n]) for n in names]))


def scenario_of(cell: dict) -> dict:
    """Returns the raw scenario of one cell, small enough to run in about a second."""
    llm = cell["kind"] != "batch"
    if llm:
        batching = ({"policy": "continuous", "max_num_seqs": 16, "max_num_batched_tokens": 2048,
                     "kv_cache_tokens": 40000} if cell["kind"] == "continuous" else
                    {"policy": "llm_static", "max_batch_size": 8, "max_queue_delay_ms": 50, "kv_cache_tokens": 40000})
        raw = {"name": "cell", "seed": 1, "requests": 150, "warmup_s": 1.0,
               "workload": {"arrival": {"process": "poisson", "rate_rps": 3.0}, **TOKENS}, "cost_model": LLM_COST,
               "server": {"replicas": 3, "batching": batching}, "slo": {"ttft_p99_ms": 5000, "tpot_p99_ms": 200}}
        span = 50.0
    else:
        raw = {"name": "cell", "seed": 1, "requests": 1500, "warmup_s": 0.05,
               "workload": {"arrival": {"process": "poisson", "rate_rps": 1000}},
               "cost_model": {"kind": "affine", "base_ms": 2.0, "per_item_ms": 0.5, "max_batch_size": 32},
               "server": {"replicas": 3, "batching": {"policy": "dynamic", "max_batch_size": 8,
                                                      "max_queue_delay_ms": 1}},
               "slo": {"latency_p50_ms": 20}}
        span = 1.5
    srv, wl = raw["server"], raw["workload"]
    raw["outputs"] = {"records": False, "plots": False, "streaming": True} if cell["output"] == "streaming" else \
        {"records": True, "plots": False}
    srv["router"] = {"policy": cell["router"]}
    if cell["scaling"] == "autoscaled":
        srv["autoscaler"] = {"policy": "schedule", "schedule": [[0, 2], [span / 2, 3]]}
    if cell["groups"] == "groups":
        del srv["replicas"]
        slow = copy.deepcopy(raw["cost_model"])
        slow["base_ms"] *= 1.5
        srv["groups"] = [{"name": "a", "replicas": 2}, {"name": "b", "replicas": 1, "cost_model": slow}]
    f = cell["feature"]
    if f == "classes":
        wl["classes"] = CLASSES
    elif f == "clients":
        del wl["arrival"]
        wl["clients"] = {"count": 8, "think_time_ms": 500} if llm else {"count": 12, "think_time_ms": 1}
    elif f == "queue_limits":
        srv["queue"] = {"max_waiting": 4} if llm else {"max_queue_size": 4}
    elif f == "timeouts":
        if llm:
            wl["client_timeout_ms"] = 5000
        else:
            srv["queue"] = {"timeout_ms": 20}
    elif f == "stages":
        srv["preprocess"] = {"workers": 2, "time_ms": 0.3}
    elif f == "instances":
        srv["instances_per_gpu"] = 2
    elif f == "windows":
        raw["outputs"]["window_s"] = span / 3
    return raw


def documented_refusals() -> list[str]:
    """Returns the phrases of docs/design.md's "What is refused" list (each `...` in its bullets)."""
    text = (ROOT / "docs" / "design.md").read_text()
    section = text.split("## What is refused", 1)[1].split("\n## ", 1)[0]
    return [p for line in section.splitlines() if line.lstrip().startswith("-") for p in re.findall(r"`([^`]+)`", line)
            if len(p) > 12]


def _sane(summary: dict, llm: bool) -> None:
    assert summary["requests"] > 0
    main = summary["e2e_s" if llm else "latency_s"]
    assert math.isfinite(main["p50"]) and main["p50"] > 0
    assert 0 < summary["throughput_rps"] < math.inf


def run_cell(cell: dict, tmp_path: Path) -> str:
    """Runs one cell; returns "ran" or the refusal's message."""
    raw = scenario_of(cell)
    llm = cell["kind"] != "batch"
    path = tmp_path / "cell.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    try:
        if cell["command"] == "run":
            _sane(sim.run(sim.load_scenario(path)).summary, llm)
        elif cell["command"] == "sweep":
            table = sim.sweep(path, ["seed=1,2"], tmp_path / "sweep", workers=1)
            assert len(table) == 2 and (table["requests"] > 0).all()
        elif llm:  # the plan's own preflight: every point validated and checked, a rate to scale
            from sim.sweeps.rates import capacity_estimate, rate_key
            from sim.sweeps.sweep import make_point

            point = make_point(path, raw, {})
            rate_key(point.scenario, str(path))
            assert capacity_estimate(point.scenario) > 0
        else:
            table = sim.plan(path, [], tmp_path / "plan", workers=1)
            assert len(table) == 1 and table["max_rate_rps"].iloc[0] > 0
        return "ran"
    except ScenarioError as err:
        return str(err)


CELLS, IMPOSSIBLE = covering_array(FACTORS, lambda row: not refusals(row))
REFUSED = [dict(zip(FACTORS, c)) for c in sorted({tuple(refused_cell(p, FACTORS).values()) for p in IMPOSSIBLE})]


def _id(cell: dict) -> str:
    return "-".join(str(v) for v in cell.values())


def test_every_pair_is_covered_by_a_running_cell_or_tried_as_a_refused_one():
    running = set().union(*(_pairs(c) for c in CELLS))
    refused = set().union(*(_pairs(c) for c in REFUSED))
    for a, b in itertools.combinations(list(FACTORS), 2):
        for pair in (((a, x), (b, y)) for x in FACTORS[a] for y in FACTORS[b]):
            assert pair in running or (pair in IMPOSSIBLE and pair in refused), pair


def test_every_documented_reason_is_in_the_design_document():
    phrases = documented_refusals()
    for reason in (KV_ONLY, OWNS_GPU, LLM_STAGES, CLIENT_TIMEOUT, MAX_WAITING, STATIC_FCFS, STATIC_CLIENTS,
                   PLAN_CLIENTS, STREAMING, AUTOSCALER):
        assert reason in phrases, reason


@pytest.mark.parametrize("cell", CELLS, ids=_id)
def test_each_allowed_cell_runs(cell, tmp_path):
    outcome = run_cell(cell, tmp_path)
    assert outcome == "ran", f"{cell} was refused: {outcome}"


@pytest.mark.parametrize("cell", REFUSED, ids=_id)
def test_each_refused_pair_is_refused_with_a_documented_reason(cell, tmp_path):
    outcome = run_cell(cell, tmp_path)
    expected = refusals(cell)
    assert outcome != "ran", f"{cell} ran; the documented list says {expected}"
    assert any(p in outcome for p in expected), f"{cell}: {outcome} (expected one of {expected})"


MIXED_LLM = "continuous and llm_static replicas cannot share a fleet"


@pytest.mark.parametrize("scaling", ["fixed", "autoscaled"])
def test_continuous_and_llm_static_groups_are_refused_with_the_documented_reason(scaling, tmp_path):
    assert MIXED_LLM in documented_refusals()
    raw = scenario_of({"kind": "continuous", "output": "records", "router": "shared_queue", "scaling": scaling,
                       "groups": "groups", "feature": "none", "command": "run"})
    raw["server"]["groups"][1]["batching"] = {"policy": "llm_static", "max_batch_size": 8, "max_queue_delay_ms": 50,
                                              "kv_cache_tokens": 40000}
    assert MIXED_LLM in run_cell_raw(raw, tmp_path)


def run_cell_raw(raw: dict, tmp_path: Path) -> str:
    """Runs a raw scenario; returns "ran" or the refusal's message."""
    path = tmp_path / "mixed.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    try:
        sim.run(sim.load_scenario(path))
    except ScenarioError as err:
        return str(err)
    return "ran"
