"""`sim.sweep(...)` and `sim.plan(...)`: the commands as functions returning DataFrames."""
from __future__ import annotations

import tempfile
from typing import Iterable, Optional

import pandas as pd


def sweep(scenario, grid: Iterable[str], out_dir=None, overrides: Iterable[str] = (), workers: Optional[int] = None,
          dask: Optional[str] = None) -> pd.DataFrame:
    """Runs a sweep of the scenario file over `grid` (`--grid` strings); returns sweep.parquet's table.
    Points are stored in `out_dir` (resumable); without it, in a temporary folder removed afterwards."""
    from .sweep import sweep as run

    if out_dir is None:
        with tempfile.TemporaryDirectory() as tmp:
            return run(scenario, list(grid), f"{tmp}/sweep", overrides, workers, dask)
    return run(scenario, list(grid), out_dir, overrides, workers, dask)


def plan(scenario, grid: Iterable[str] = (), out_dir=None, overrides: Iterable[str] = (),
         workers: Optional[int] = None, dask: Optional[str] = None) -> pd.DataFrame:
    """Runs a plan; returns one row per configuration (grid values, max_rate_rps, min_rate_rps, costs),
    ranked, with the whole plan.json dict in `.attrs["plan"]`."""
    from .plan import plan as run

    def frame(result: dict) -> pd.DataFrame:
        df = pd.DataFrame([{**c["values"], **{k: v for k, v in c.items() if k not in ("values", "at_max_rate")}}
                           for c in result["configs"]])
        df.attrs["plan"] = result
        return df
    if out_dir is None:
        with tempfile.TemporaryDirectory() as tmp:
            return frame(run(scenario, list(grid), f"{tmp}/plan", overrides, workers, dask))
    return frame(run(scenario, list(grid), out_dir, overrides, workers, dask))
