"""join_shortest_queue: the replica with the fewest outstanding requests (queued plus running); ties
are broken uniformly at random from the router's stream.

It counts requests, not work: with deterministic step times and batch 1 it does worse than round_robin,
which then always picks the replica that frees first."""
from __future__ import annotations

from typing import Literal

from . import REGISTRY
from .base import Router, Uniforms


@REGISTRY.register
class JoinShortestQueue(Router):
    policy: Literal["join_shortest_queue"] = "join_shortest_queue"

    def counts(self, replicas: int, pool: bool = False):
        from ..counts import BucketCounts, PoolBucketCounts

        return PoolBucketCounts(replicas) if pool else BucketCounts(replicas)  # the least loaded replica in O(1)

    def chooser(self, replicas, out, rng):
        u = Uniforms(rng)
        least = out.least
        return lambda sid, arrival_s: least(u)

    def pool_chooser(self, replicas, out, rng):
        return JoinShortestQueue.chooser(self, replicas, out, rng)  # parked replicas are out of the buckets
