"""Cost models, registered by name (the YAML key `cost_model.kind`)."""
from ..registry import Registry

REGISTRY = Registry("cost model", "kind")

from .affine import AffineCost  # noqa: E402
from .base import CostModel, LognormalNoise, StepNoise  # noqa: E402
from .llm import LlmCost  # noqa: E402
from .llm_roofline import LlmRooflineCost  # noqa: E402
from .profile import ProfileCost  # noqa: E402
from .roofline import GPUS, GpuSpec, RooflineCost  # noqa: E402
from .table import TableCost  # noqa: E402

__all__ = ["GPUS", "REGISTRY", "AffineCost", "CostModel", "GpuSpec", "LlmCost", "LlmRooflineCost", "LognormalNoise", "ProfileCost", "StepNoise",
           "RooflineCost", "TableCost"]
