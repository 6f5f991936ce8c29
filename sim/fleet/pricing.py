"""What a replica costs per hour: the scenario's cost_per_hour, else GPUs x the GPU's on-demand price."""
from __future__ import annotations

from typing import Optional


def cost_model_gpu(cost_model) -> Optional[str]:
    """Returns the GPU a cost model describes: a roofline's `gpu`, or the device its profile was measured
    on (torch's device name); None when it names none (a hand-written table, a CPU profile)."""
    gpu = getattr(cost_model, "gpu", None)
    if gpu is not None:
        return gpu if isinstance(gpu, str) else gpu.name
    if hasattr(cost_model, "load") and hasattr(cost_model, "paths"):  # a measured profile
        prof = cost_model.load()[0]
        return None if prof.device.kind == "cpu" else prof.device.name
    path = getattr(cost_model, "profile", None)
    if isinstance(path, str):  # an LLM cost model fitted from a profile
        from ..profiles import load_profile

        prof = load_profile(path)
        return None if prof.device.kind == "cpu" else prof.device.name
    return None


def replica_price(cost_model, gpus_per_replica: int, cost_per_hour: Optional[float]) -> tuple[Optional[float], str]:
    """Returns (USD per replica-hour or None, a note saying where it came from or why it is unknown)."""
    if cost_per_hour is not None:
        return float(cost_per_hour), "cost_per_hour given"
    from ..prices import PRICES_AS_OF, price_per_gpu_hour

    gpu = cost_model_gpu(cost_model) if cost_model is not None else None
    entry = price_per_gpu_hour(gpu) if gpu else None
    if entry is None:
        what = f"GPU {gpu!r} is not in the price table" if gpu else "the cost model names no GPU"
        return None, (f"no price: {what}; give server.cost_per_hour (or each group's cost_per_hour) in USD per "
                      "replica-hour for fleet_cost_per_hour and cost_per_million_requests")
    return (gpus_per_replica * entry.usd_per_gpu_hour,
            f"{gpus_per_replica} x {entry.gpu} at ${entry.usd_per_gpu_hour:g}/GPU-hour ({entry.source}; "
            f"price table of {PRICES_AS_OF})")
