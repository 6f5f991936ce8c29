"""One numpy Generator per stochastic component, all derived from the scenario seed.

Streams are keyed by (replication, component name) rather than by spawn order, so adding a component
to the model shifts no other stream and the same seed gives the same results bit for bit.
"""
from __future__ import annotations

import zlib

import numpy as np


def component_rng(seed: int, replication: int, component: str) -> np.random.Generator:
    """Returns the Generator for `component` in replication `replication` of a run seeded with `seed`."""
    key = zlib.crc32(component.encode("utf-8"))
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy=seed, spawn_key=(replication, key))))
