"""Replicas: one model instance each, owning its queue and engine state, driven by a sim.fleet.Fleet.

Every replica kind offers the same small interface to the fleet's event loop:

    accept(sid, arrival_s, push)   a router sent request `sid` here at `arrival_s`
    on_event(t, kind, push)        run the replica's own event at time t (kind 0: a batch completes,
                                   kind 1: a batch or engine step starts); new events go through
                                   push((time, kind, index))
    outstanding                    fleet.out[index]: requests routed here and not yet done

and what routers read (LLM kinds): `outstanding_tokens()`, `kv_use`. Events are per batch or per
engine step, never per request.
"""
from .batch import BatchReplica
from .continuous import ContinuousReplica, LlmRequests
from .kv_cache import KvCache
from .llm_static import LlmStaticReplica

__all__ = ["BatchReplica", "ContinuousReplica", "KvCache", "LlmRequests", "LlmStaticReplica"]
