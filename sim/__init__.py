"""servesim: simulate batched model serving (latency, throughput, batch sizes) from profiled cost models.

Notebook use:
    import sim
    result = sim.run(sim.load_scenario("scenarios/vision-dynamic.yaml"))
    result.summary["latency_s"]["p99"], result.requests.head()
"""
from .arrivals import ConstantArrivals, GammaArrivals, PoissonArrivals, TraceArrivals
from .batching import DispatchRule, DynamicBatching, NoBatching, StaticBatching
from .cost import AffineCost, LognormalNoise, TableCost
from .engine import BatchLog, simulate
from .errors import ScenarioError
from .runner import Result, run, simulate_replication
from .scenario import Outputs, Scenario, Server, Slo, Workload, load_scenario, validate

__version__ = "0.1.0"

__all__ = [
    "AffineCost", "BatchLog", "ConstantArrivals", "DispatchRule", "DynamicBatching", "GammaArrivals",
    "LognormalNoise", "NoBatching", "Outputs", "PoissonArrivals", "Result", "Scenario", "ScenarioError",
    "Server", "Slo", "StaticBatching", "TableCost", "TraceArrivals", "Workload", "load_scenario", "run",
    "simulate", "simulate_replication", "validate",
]
