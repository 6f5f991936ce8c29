"""Entry point of `servesim validate` (registered in pyproject.toml under `servesim.commands`, so the
simulator's CLI finds it without importing the profiler package: sim never imports torch or profiler)."""
from __future__ import annotations


def run_validation(args) -> int:
    """Runs the validation the CLI arguments describe with the real serving loop of the scenario's engine
    kind; returns the exit code (0, or 3 past the error bound). Bad flags raise ScenarioError (exit 2)."""
    from sim.errors import ScenarioError

    from .profile import UsageError

    try:
        return _run(args)
    except UsageError as exc:
        raise ScenarioError("servesim validate", "", str(exc)) from None


def _run(args) -> int:
    from sim.errors import ScenarioError
    from sim.kinds import engine_kind

    from .validate_common import load_for_validation

    scenario = load_for_validation(args)
    if scenario.total_replicas != 1:
        key = "server.groups" if scenario.server.groups else "server.replicas"
        raise ScenarioError(args.scenario, key, "validate serves one model instance; allowed: 1 replica")
    if engine_kind(scenario).name == "llm":
        from .validate_llm import validate_llm
        return validate_llm(args, scenario)
    from .validate import validate_batch
    return validate_batch(args, scenario)
