"""Fleets: replicas (sim.replica) behind a router (sim.fleet.routers), in groups with their own cost
model, batching and price."""
from .fleet import Fleet, ReplicaGroup

__all__ = ["Fleet", "ReplicaGroup"]
