"""Batching policies, registered by name (the YAML key `server.batching.policy`)."""
from ..registry import Registry

REGISTRY = Registry("batching policy", "policy")

from .base import BatchingPolicy, DispatchRule  # noqa: E402
from .continuous import ContinuousBatching  # noqa: E402
from .dynamic import DynamicBatching  # noqa: E402
from .llm_static import LlmStaticBatching  # noqa: E402
from .none import NoBatching  # noqa: E402
from .static import StaticBatching  # noqa: E402

__all__ = ["REGISTRY", "BatchingPolicy", "ContinuousBatching", "DispatchRule", "DynamicBatching", "LlmStaticBatching",
           "NoBatching", "StaticBatching"]
