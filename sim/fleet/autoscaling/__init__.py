"""Autoscaler policies, registered by name (the YAML key `server.autoscaler.policy`): how many replicas a pool
wants. The controller that applies them (lifecycle, cold starts, the scale-down window) is sim.fleet.controller."""
from ...registry import Registry

REGISTRY = Registry("autoscaler policy", "policy")

from .base import AutoscalerPolicy  # noqa: E402
from .target_utilization import TargetUtilization  # noqa: E402
from .queue_length import QueueLength  # noqa: E402
from .schedule import Schedule  # noqa: E402

__all__ = ["REGISTRY", "AutoscalerPolicy", "QueueLength", "Schedule", "TargetUtilization"]
