"""least_kv: the LLM replica with the lowest KV-cache use (fraction of its blocks); ties uniformly at
random. LLM replicas only."""
from __future__ import annotations

from typing import Literal

from . import REGISTRY
from .base import Router, Uniforms, argmin_member, argmin_random_tie


@REGISTRY.register
class LeastKv(Router):
    policy: Literal["least_kv"] = "least_kv"
    llm_only = True
    reads_kv = True  # the fleet brings runs of decode steps up to the arrival (their KV blocks) first

    def chooser(self, replicas, out, rng):
        u = Uniforms(rng)
        return lambda sid, arrival_s: argmin_random_tie([r.kv_use for r in replicas], u)

    def pool_chooser(self, replicas, out, rng):
        u, members = Uniforms(rng), out.members
        return lambda sid, arrival_s: argmin_member(lambda i: replicas[i].kv_use, members, u)
