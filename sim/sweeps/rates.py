"""Scaling a scenario's arrival rate, for plans: the key to set and its value for a wanted rate."""
from __future__ import annotations

import numpy as np

from ..errors import ScenarioError


def rate_key(scenario, source: str) -> tuple[str, float, float]:
    """Returns (dotted key, its value now, the rate it gives now in rps): `rate_rps` for generated arrivals;
    for a trace, `speedup` (times are divided by it, so the rate scales with it)."""
    arr = scenario.workload.arrival
    if "rate_rps" in type(arr).model_fields:
        return "workload.arrival.rate_rps", float(arr.rate_rps), float(arr.rate_rps)
    if "speedup" in type(arr).model_fields:
        rate = arr.rate_rps
        if rate is None or not np.isfinite(rate) or rate <= 0:
            raise ScenarioError(source, "workload.arrival", "the trace spans no time: it has no rate to scale")
        return "workload.arrival.speedup", float(arr.speedup), float(rate)
    raise ScenarioError(source, "workload.arrival.process", f"{arr.process!r} arrivals cannot be rate-scaled")


def value_for(key_value_rate: tuple[str, float, float], rate_rps: float) -> float:
    """Returns the key's value that gives `rate_rps`."""
    key, value, rate = key_value_rate
    out = value * rate_rps / rate
    return float(f"{out:.10g}")  # a short, exact-looking number in files and hashes


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
