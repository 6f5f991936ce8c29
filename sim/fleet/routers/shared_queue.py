"""shared_queue: no routing; every replica takes from one FCFS queue when it is free (the default).

For request-level replicas it is Triton's one model with several instances: the earliest-free instance
takes the next batch. It runs on the engine's fast path (sim.engine.simulate_shared)."""
from __future__ import annotations

from typing import Literal

from . import REGISTRY
from .base import Router


@REGISTRY.register
class SharedQueue(Router):
    policy: Literal["shared_queue"] = "shared_queue"
    reads_state = False
