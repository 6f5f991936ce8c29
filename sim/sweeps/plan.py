"""`servesim plan`: for each configuration of a grid, the largest arrival rate that meets the SLO with 95%
confidence, and what the fleet costs there.

A rate meets the SLO when the run is stable and every target's 95% interval lies below it (`met`, not
`uncertain`). Each run is lengthened where needed so that every target has an interval (a p99 needs 50,000
measured requests from one run); a target still without one does not count as met.
Latency need not be monotone in the rate (a static batch with a timeout fills faster, and gets faster, as
load rises), so the search first scans a coarse grid of rates (fractions of the estimated capacity), then
bisects the last feasible -> infeasible boundary, and the first infeasible -> feasible one when low rates fail
(`min_rate_rps`). Every evaluated rate is a sweep point, stored as it finishes: a plan resumes too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Optional

import pandas as pd

from ..config import read_yaml_mapping
from ..errors import ScenarioError
from ..outdir import OutputDir
from .grid import expand, parse_axis
from .rates import capacity_estimate, rate_key, value_for
from .store import SUMMARY_VERSION, PointStore
from .sweep import check_points_folder, compute, make_point

FRACTIONS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0)
REL_TOLERANCE = 0.01   # bisection stops when the bracket is within 1% of its lower end
MAX_ROUNDS = 12
EXTEND_ROUNDS = 8      # x1.5 up (to 26x the estimate) at most ...
LOWEST_FRACTION = 1e-4  # ... and x1/4 down to this fraction of it (an SLO missed even there is missed unloaded)


def meets_slo(summary: dict) -> tuple[bool, str]:
    """Returns (feasible, reason): stable, and every SLO target met with its 95% interval below the target."""
    growing = (summary.get("stability") or {}).get("verdict") == "growing"
    # request-level capacity is exact, so its a-priori verdict stands; an LLM engine's is an estimate, and
    # there only the run's own growth test decides
    stable = not growing if "ttft_s" in summary else summary.get("stable")
    if not stable:
        return False, "unstable"
    slo = summary.get("slo") or {}
    for name, t in (slo.get("targets") or {}).items():
        stat, q = (name.split("_")[0] + "_s", name.split("_")[1]) if "_" in name else ("latency_s", name)
        ci = ((summary.get(stat) or {}).get("ci95") or {}).get(q)
        if t.get("verdict") == "n/a":
            continue
        if t.get("verdict") != "met":
            return False, f"{name} {t.get('verdict')}"
        if not ci or None in ci:
            return False, f"{name}: no confidence interval (lengthen the run)"
    return True, "meets the SLO"


def long_enough(scenario, rate_rps: float) -> dict:
    """Returns the run length ({"requests": n} or {"duration_s": s}) that gives every SLO target a 95%
    interval at this rate (a single run needs MIN_SECTIONS sections of 100 / (1 - q) requests for percentile
    q), when the scenario's own run is shorter; {} otherwise (and with several replications, whose spread
    gives the interval)."""
    from ..stats import MIN_SECTIONS, min_section_size

    targets = scenario.slo.model_dump(exclude_none=True) if scenario.slo is not None else {}
    if not targets:
        return {}
    # latency_p99_ms, ttft_p99_ms, latency_mean_ms -> p99, p99, mean; with several replications each one
    # is a section and needs the percentile's minimum on its own
    need = max(min_section_size(name.split("_")[1]) for name in targets)
    need *= MIN_SECTIONS if scenario.replications == 1 else 1
    requests = int(math.ceil(need * 1.05 + rate_rps * scenario.warmup_s * 1.1 + 100))
    from ..arrivals import TraceArrivals

    arr = scenario.workload.arrival
    size = arr.load().size if isinstance(arr, TraceArrivals) else None
    if size is not None:  # a trace replays what it holds: it cannot be lengthened
        requests = min(requests, size)
    if scenario.requests is not None:
        return {"requests": requests} if scenario.requests < requests else {}
    if size is not None:
        return {}
    if scenario.duration_s is not None:
        duration = scenario.warmup_s + requests / rate_rps
        return {"duration_s": float(f"{duration:.6g}")} if scenario.duration_s < duration else {}
    return {}


@dataclass
class Search:
    values: dict
    base: object                  # the configuration's scenario at its own rate
    key: tuple                    # (rate key, value now, rate now)
    capacity_rps: float
    results: dict = field(default_factory=dict)   # rate -> (feasible, reason, summary)
    max_bracket: Optional[list] = None            # [feasible rate, infeasible rate]
    min_bracket: Optional[list] = None            # [infeasible rate, feasible rate]

    def rates(self) -> list[float]:
        return sorted(self.results)

    def feasible(self, r: float) -> bool:
        return self.results[r][0]


def _brackets(s: Search) -> None:
    rates = s.rates()
    ok = [s.feasible(r) for r in rates]
    s.max_bracket = s.min_bracket = None
    if not any(ok):
        return
    last = max(i for i, f in enumerate(ok) if f)
    if last + 1 < len(rates):
        s.max_bracket = [rates[last], rates[last + 1]]
    first = min(i for i, f in enumerate(ok) if f)
    if first > 0:
        s.min_bracket = [rates[first - 1], rates[first]]


def _open(bracket: Optional[list]) -> bool:
    return bracket is not None and (bracket[1] - bracket[0]) > REL_TOLERANCE * bracket[0]


def plan(path, grids: list[str], out_dir, overrides: Iterable[str] = (), workers: Optional[int] = None,
         dask: Optional[str] = None, quiet: bool = False) -> dict:
    """Runs the plan; writes DIR/plan.json, DIR/plan.parquet and DIR/points/; returns the plan dict."""
    axes = [parse_axis(g) for g in grids]
    out = OutputDir(out_dir)
    out.prepare(["plan.json", "plan.parquet", "report.html"])
    check_points_folder(out.path / "points")
    raw = read_yaml_mapping(path, "scenario")
    flags = {a.key: a.flag for a in axes}
    searches = []
    for values in (expand(axes) if axes else [{}]):
        p = make_point(path, raw, values, overrides, flags)
        if p.scenario.slo is None or not p.scenario.slo.model_dump(exclude_none=True):
            raise ScenarioError(str(path), "slo", "plan needs latency targets: give slo (e.g. {latency_p99_ms: 50}, "
                                "or ttft_p99_ms / tpot_p99_ms for LLM scenarios)")
        searches.append(Search(values, p.scenario, rate_key(p.scenario, str(path)), capacity_estimate(p.scenario)))
    store = PointStore(out.path / "points")

    def evaluate(wanted: list[tuple[Search, float]]) -> None:
        points = []
        for s, rate in wanted:
            extra = {s.key[0]: value_for(s.key, rate), **long_enough(s.base, rate)}
            origin = {k: f"servesim plan (it sets {k} to scan rates and give every SLO target an interval)"
                      for k in extra}
            points.append((s, rate, make_point(path, raw, {**s.values, **extra}, overrides, {**flags, **origin},
                                               check=False)))
        done = compute([p for _, _, p in points], store, workers, dask, what="plan", quiet=quiet)
        for s, rate, p in points:
            summary = done[p.digest]["summary"]
            s.results[rate] = (*meets_slo(summary), summary)

    evaluate([(s, f * s.capacity_rps) for s in searches for f in FRACTIONS])
    # the capacity estimate only seeds the scan: go lower while nothing meets the SLO (a tight target is met
    # only at light load), higher while the highest rate still meets it (an estimate can be pessimistic)
    for _ in range(EXTEND_ROUNDS):
        wanted = []
        for s in searches:
            rates = s.rates()
            if not any(s.feasible(r) for r in rates):
                if rates[0] / 4 >= max(LOWEST_FRACTION * s.capacity_rps, 1e-5):
                    wanted.append((s, rates[0] / 4))
            elif s.feasible(rates[-1]):
                wanted.append((s, rates[-1] * 1.5))
        if not wanted:
            break
        evaluate(wanted)
    for _ in range(MAX_ROUNDS):
        wanted = []
        for s in searches:
            _brackets(s)
            for b in (s.max_bracket, s.min_bracket):
                if _open(b):
                    wanted.append((s, (b[0] + b[1]) / 2))
        if not wanted:
            break
        evaluate(wanted)
    result = _result(searches, path)
    target = getattr(searches[0].base, "plan", None)
    if target is not None and target.target_rate_rps is not None:
        result.update(_choose(searches, target.target_rate_rps, evaluate))
    frame = pd.DataFrame([{**c["values"], **{k: v for k, v in c.items() if k not in ("values", "at_max_rate")}}
                          for c in result["configs"]])
    import json

    from .html import plan_report, provenance
    from .sweep import _profiles

    base = searches[0].base
    page = plan_report(result, [a.key for a in axes], base.model_dump(mode="json"), provenance(path, _profiles(base)))
    with out.staging() as tmp:
        (tmp / "plan.json").write_text(json.dumps(result, indent=2) + "\n")
        frame.to_parquet(tmp / "plan.parquet", index=False)
        (tmp / "report.html").write_text(page)
        out.commit(tmp)
    return result


def _at(s: Search, rate: float) -> dict:
    summary = s.results[rate][2]
    keep = ("throughput_rps", "utilization", "fleet_cost_per_hour", "slo_attainment")
    out = {k: summary.get(k) for k in keep}
    for stat in ("latency_s", "ttft_s", "tpot_s", "e2e_s"):
        if isinstance(summary.get(stat), dict):
            out[stat] = {k: summary[stat].get(k) for k in ("mean", "p50", "p99")}
            out[stat]["ci95"] = {k: (summary[stat].get("ci95") or {}).get(k) for k in ("mean", "p50", "p99")}
    return out


def _config(s: Search) -> dict:
    _brackets(s)
    feasible = [r for r in s.rates() if s.feasible(r)]
    top = s.max_bracket[0] if s.max_bracket else (max(feasible) if feasible else None)
    low = s.min_bracket[1] if s.min_bracket else (min(feasible) if feasible else None)
    cost = s.results[s.rates()[0]][2].get("fleet_cost_per_hour")
    note = ""
    if top is None:
        reasons = sorted({s.results[r][1] for r in s.rates()})
        note = "no rate met the SLO: " + "; ".join(reasons)
    elif not s.max_bracket:
        note = f"feasible up to the highest rate scanned ({top:.4g} rps)"
    ranges = _ranges(s)
    if len(ranges) > 1:
        note = "the SLO is met in separate ranges: " + ", ".join(f"{a:.4g}-{b:.4g} rps" for a, b in ranges)
    tol = s.max_bracket and (s.max_bracket[1] - s.max_bracket[0])
    return {"values": s.values, "max_rate_rps": top, "min_rate_rps": low if (low is not None and s.min_bracket) else None,
            "rate_resolution_rps": tol or None, "capacity_estimate_rps": s.capacity_rps,
            "cost_per_hour": cost,
            "cost_per_million_requests": (cost / (top * 3600) * 1e6) if (cost is not None and top) else None,
            "evaluations": len(s.results), "note": note, "at_max_rate": _at(s, top) if top is not None else None}


def _ranges(s: Search) -> list[tuple[float, float]]:
    """Returns the runs of consecutive feasible scanned rates as (lowest, highest)."""
    out: list = []
    prev = False
    for r in s.rates():
        ok = s.feasible(r)
        if ok and not prev:
            out.append([r, r])
        elif ok:
            out[-1][1] = r
        prev = ok
    return [tuple(x) for x in out]


def _result(searches: list[Search], path) -> dict:
    configs = [_config(s) for s in searches]

    def rank(c):
        if c["max_rate_rps"] is None:
            return (2, 0.0)
        if c["cost_per_million_requests"] is not None:
            return (0, c["cost_per_million_requests"])
        return (1, -c["max_rate_rps"])
    configs.sort(key=rank)
    slo = searches[0].base.slo.model_dump(exclude_none=True)
    return {"format": "servesim-plan", "version": SUMMARY_VERSION, "scenario": str(path), "slo": slo,
            "rule": "a rate meets the SLO when the run is stable and each target's 95% interval lies below it",
            "rel_tolerance": REL_TOLERANCE, "configs": configs,
            "best": configs[0] if configs and configs[0]["max_rate_rps"] is not None else None}


def _choose(searches: list[Search], target_rps: float, evaluate) -> dict:
    """With plan.target_rate_rps: confirms each configuration at that rate; returns `target_rate_rps`, `best`
    (the cheapest per hour that meets the SLO there) and `why` (what the runner-up lacked)."""
    evaluate([(s, target_rps) for s in searches if target_rps not in s.results])
    ok = [s for s in searches if s.results[target_rps][0]]

    def cost(s):
        c = s.results[target_rps][2].get("fleet_cost_per_hour")
        return math.inf if c is None else c

    def tail_ms(s):  # the first SLO target's achieved value at the target rate: the tie-break among equal costs
        targets = (s.results[target_rps][2].get("slo") or {}).get("targets") or {}
        first = next(iter(targets.values()), {})
        return first.get("achieved_ms") if first.get("achieved_ms") is not None else math.inf
    ok.sort(key=lambda s: (cost(s), tail_ms(s)))
    if not ok:
        return {"target_rate_rps": target_rps, "best": None,
                "why": "no configuration meets the SLO at this rate: " + "; ".join(
                    f"{_label(s)}: {s.results[target_rps][1]}" for s in searches)}
    best = ok[0]
    cheaper = sorted((s for s in searches if s not in ok and cost(s) <= cost(best)), key=cost)
    lost = "; ".join(f"{_label(s)} (${cost(s):,.2f}/h) does not meet it ({s.results[target_rps][1]})"
                     for s in cheaper[:3])
    if len(ok) > 1:
        runner = ok[1]
        name = next(iter((best.results[target_rps][2].get("slo") or {}).get("targets") or {"tail": 0}))
        if not math.isfinite(cost(runner)):
            why = f"{_label(runner)} also meets it; its cost is unknown"
        elif cost(runner) > cost(best):
            why = f"{_label(runner)} also meets it but costs ${cost(runner):,.2f}/h against ${cost(best):,.2f}/h"
        else:
            why = (f"{_label(runner)} costs the same (${cost(best):,.2f}/h) but its {name} at {target_rps:g} rps is "
                   f"{tail_ms(runner):.4g} ms against {tail_ms(best):.4g} ms")
    else:
        why = "the only configuration that meets it"
    if lost:
        why += f"; at no more cost: {lost}"
    return {"target_rate_rps": target_rps, "best": {**_config(best), "cost_per_hour_at_target": cost(best)}, "why": why}


def _label(s: Search) -> str:
    return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in s.values.items()) or "the scenario"
