"""Arrival processes, registered by name (the YAML key `workload.arrival.process`)."""
from ..registry import Registry

REGISTRY = Registry("arrival process", "process")

from .base import ArrivalProcess  # noqa: E402
from .constant import ConstantArrivals  # noqa: E402
from .diurnal import DiurnalArrivals  # noqa: E402
from .gamma import GammaArrivals  # noqa: E402
from .mmpp import MmppArrivals  # noqa: E402
from .piecewise import PiecewiseArrivals  # noqa: E402
from .poisson import PoissonArrivals  # noqa: E402
from .trace import TraceArrivals  # noqa: E402

__all__ = ["REGISTRY", "ArrivalProcess", "ConstantArrivals", "DiurnalArrivals", "GammaArrivals", "MmppArrivals",
           "PiecewiseArrivals", "PoissonArrivals", "TraceArrivals"]
