"""Scaling a scenario's arrival rate, for plans: the key to set and its value for a wanted rate."""
from __future__ import annotations

import numpy as np

from ..errors import ScenarioError


def rate_key(scenario, source: str) -> tuple[str, float, float]:
    """Returns (dotted key, its value now, the rate it gives now in rps): `rate_rps` for generated arrivals;
    for a trace, `speedup` (times are divided by it, so the rate scales with it)."""
    arr = scenario.workload.arrival
    if arr is None:
        raise ScenarioError(source, "workload.clients", "closed-loop clients have no arrival rate to scale: sweep "
                            "workload.clients.count instead: servesim sweep SCENARIO --grid workload.clients.count=1,2,4,8 --out DIR")
    fields = type(arr).model_fields
    if "rate_rps" in fields:
        return "workload.arrival.rate_rps", float(arr.rate_rps), float(arr.rate_rps)
    if "mean_rate_rps" in fields:  # diurnal
        return "workload.arrival.mean_rate_rps", float(arr.mean_rate_rps), float(arr.rate_rps)
    if "rates_rps" in fields:  # mmpp: every state's rate scales
        return "workload.arrival.rates_rps", list(arr.rates_rps), float(arr.rate_rps)
    if "points" in fields:  # piecewise: every point's rate scales
        return "workload.arrival.points", [list(p) for p in arr.points], float(arr.rate_rps)
    if "speedup" in type(arr).model_fields:
        rate = arr.rate_rps
        if rate is None or not np.isfinite(rate) or rate <= 0:
            raise ScenarioError(source, "workload.arrival", "the trace spans no time: it has no rate to scale")
        return "workload.arrival.speedup", float(arr.speedup), float(rate)
    raise ScenarioError(source, "workload.arrival.process", f"{arr.process!r} arrivals cannot be rate-scaled")


def value_for(key_value_rate: tuple, rate_rps: float):
    """Returns the key's value that gives `rate_rps` (a number, or the scaled list of rates or points)."""
    key, value, rate = key_value_rate
    f = rate_rps / rate

    def short(x: float) -> float:
        return float(f"{x * f:.10g}")  # a short, exact-looking number in files and hashes
    if key.endswith(".points"):
        return [[t, short(r)] for t, r in value]
    if isinstance(value, list):
        return [short(r) for r in value]
    return short(value)


def capacity_estimate(scenario) -> float:
    """Returns the fleet's estimated saturated rate (rps): request-level exact (full batches), LLM from the
    sampled request sizes."""
    from ..kinds import engine_kind
    from ..runner import generate_workload

    if engine_kind(scenario).name != "llm":
        return float(scenario.capacity_rps())
    from types import SimpleNamespace

    from ..llm_metrics import capacity_rps

    wl = generate_workload(scenario, 0)
    probe = SimpleNamespace(prompt_tokens=wl.prompt_tokens, output_tokens=wl.output_tokens,
                            refused=np.zeros(wl.arrival_s.size, bool))
    return float(capacity_rps(scenario, [probe]))
