"""servesim: simulate batched model serving (latency, throughput, batch sizes) from profiled cost models.

Notebook use:
    import sim
    result = sim.run(sim.load_scenario("scenarios/vision-dynamic.yaml"))
    result.summary["latency_s"]["p99"], result.requests.head()

Names are imported lazily, so numpy-only modules such as `sim.fitting` load on machines without
simpy or pydantic (the profiler uses them on GPU hosts).
"""
from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "ConstantArrivals": "arrivals", "GammaArrivals": "arrivals", "PoissonArrivals": "arrivals",
    "TraceArrivals": "arrivals", "MmppArrivals": "arrivals", "DiurnalArrivals": "arrivals",
    "PiecewiseArrivals": "arrivals",
    "DispatchRule": "batching", "DynamicBatching": "batching", "NoBatching": "batching", "StaticBatching": "batching",
    "AffineCost": "cost", "LognormalNoise": "cost", "TableCost": "cost", "ProfileCost": "cost", "RooflineCost": "cost",
    "BatchLog": "engine", "simulate": "engine",
    "ScenarioError": "errors",
    "Result": "runner", "run": "runner", "simulate_replication": "runner",
    "Outputs": "scenario", "Scenario": "scenario", "Server": "scenario", "Slo": "scenario", "Workload": "scenario",
    "load_scenario": "scenario", "validate": "scenario",
    "load_profile": "profiles", "Profile": "profiles",
    "Group": "scenario", "StepNoise": "cost",
    "SharedQueue": "fleet.routers", "RoundRobin": "fleet.routers", "RandomRouter": "fleet.routers",
    "JoinShortestQueue": "fleet.routers", "PowerOfTwo": "fleet.routers", "LeastOutstandingTokens": "fleet.routers",
    "LeastKv": "fleet.routers",
    "sweep": "sweeps.api", "plan": "sweeps.api",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sim' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
