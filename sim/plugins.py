"""Plugins: modules that register routers, batching policies, arrival processes, cost models or autoscaler
policies of their own (docs/extending.md). They are imported before the scenario schema is built, from the
comma-separated module names in the environment variable SERVESIM_PLUGINS and from the `servesim.plugins` entry
point group of installed packages."""
from __future__ import annotations

import os
from importlib import import_module
from importlib.metadata import entry_points

from .errors import ScenarioError

_loaded: list[str] = []


def load() -> list[str]:
    """Imports every plugin module once; returns their names. Raises ScenarioError naming SERVESIM_PLUGINS (or
    the entry point) when one cannot be imported."""
    if _loaded:
        return _loaded
    names = [(n.strip(), "SERVESIM_PLUGINS") for n in os.environ.get("SERVESIM_PLUGINS", "").split(",") if n.strip()]
    names += [(ep.value, f"entry point servesim.plugins:{ep.name}") for ep in entry_points(group="servesim.plugins")]
    for name, origin in names:
        try:
            import_module(name)
        except Exception as exc:  # a plugin's own error: say which plugin, not a traceback
            _loaded.clear()  # a later import tries again (and fails again) rather than run without it
            raise ScenarioError(origin, "", f"cannot import plugin module {name!r}: {type(exc).__name__}: {exc}") from None
        _loaded.append(name)
    return _loaded
