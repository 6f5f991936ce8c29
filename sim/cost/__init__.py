"""Cost models, registered by name (the YAML key `cost_model.kind`)."""
from ..registry import Registry

REGISTRY = Registry("cost model", "kind")

from .affine import AffineCost  # noqa: E402
from .base import CostModel, LognormalNoise  # noqa: E402
from .table import TableCost, pchip  # noqa: E402

__all__ = ["REGISTRY", "AffineCost", "CostModel", "LognormalNoise", "TableCost", "pchip"]
