"""Routers, registered by name (the YAML key `server.router.policy`): which replica an arriving request joins."""
from ...registry import Registry

REGISTRY = Registry("router", "policy")

from .base import Router  # noqa: E402
from .shared_queue import SharedQueue  # noqa: E402
from .round_robin import RoundRobin  # noqa: E402
from .random import RandomRouter  # noqa: E402
from .join_shortest_queue import JoinShortestQueue  # noqa: E402
from .power_of_two import PowerOfTwo  # noqa: E402
from .least_outstanding_tokens import LeastOutstandingTokens  # noqa: E402
from .least_kv import LeastKv  # noqa: E402

__all__ = ["REGISTRY", "JoinShortestQueue", "LeastKv", "LeastOutstandingTokens", "PowerOfTwo", "RandomRouter",
           "RoundRobin", "Router", "SharedQueue"]
