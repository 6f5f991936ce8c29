"""LLM step schedulers: how a continuous-batching engine step spends its token budget on decoding and on prefill
(`server.batching.order` names one). One module each, registered by name; pure Python, so the profiler's real serving
loop (profiler/llm_serve.py) plans its steps with the same classes on GPU hosts that have neither simpy nor pydantic.
A plugin module registers its own (docs/extending.md, "An LLM scheduler")."""
from __future__ import annotations

from .base import LlmScheduler

SCHEDULERS: dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: registers an LlmScheduler subclass under its `name`."""
    if not isinstance(getattr(cls, "name", None), str) or not cls.name:
        raise TypeError(f"{cls.__name__}.name must be a non-empty string to be registered")
    if cls.name in SCHEDULERS:
        raise ValueError(f"LLM scheduler {cls.name!r} is registered twice")
    SCHEDULERS[cls.name] = cls
    return cls


def names() -> list[str]:
    """The registered schedulers' names, sorted."""
    return sorted(SCHEDULERS)


def scheduler(name: str) -> LlmScheduler:
    """Returns a new scheduler registered as `name` (KeyError if none is)."""
    return SCHEDULERS[name]()


from . import decode_first, prefill_first  # noqa: E402,F401 (the built-in schedulers register themselves)

__all__ = ["LlmScheduler", "names", "register", "scheduler", "SCHEDULERS"]
