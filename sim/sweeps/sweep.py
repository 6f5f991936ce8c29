"""`servesim sweep`: run every combination of grid values as a point, stored as it finishes, resumable.

Points are validated before any runs (a bad grid names `--grid` and the key), deduplicated by their hash,
looked up in `DIR/points/` and only the missing ones are run; `sweep.parquet` lists them in grid order."""
from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import pandas as pd

from ..config import read_yaml_mapping
from ..errors import ScenarioError
from ..outdir import OutputDir
from ..scenario import set_override, validate
from .executor import progress, run_points
from .grid import Axis, expand, parse_axis
from .store import SUMMARY_VERSION, PointStore, scenario_hash
from .table import row

_POINT_FILE = re.compile(r"^\.?[0-9a-f]{64}(\.json|\.\d+\.tmp)$")


@dataclass
class Point:
    values: dict        # {grid key: value}
    scenario: object    # the validated Scenario
    digest: str


def resolve_points(path, axes: list[Axis], overrides: Iterable[str] = ()) -> list[Point]:
    """Returns the validated points of the grid (each combination applied to the scenario file with the
    `--set` overrides); raises ScenarioError naming the `--grid` flag and key of the first bad one, before
    anything runs."""
    raw = read_yaml_mapping(path, "scenario")
    flags = {a.key: a.flag for a in axes}
    return [make_point(path, raw, values, overrides, flags) for values in (expand(axes) if axes else [{}])]


def make_point(path, raw: dict, values: dict, overrides: Iterable[str] = (), flags: Optional[dict] = None,
               check: bool = True) -> Point:
    """Returns the point of `values` ({dotted key: value}) applied to the raw scenario after the overrides;
    errors name the flag that set the key (`flags`: key -> '--grid ...'). With `check`, the run is also
    preflighted (something will be measured)."""
    from ..runner import check_runnable

    src = str(path)
    r, origins = copy.deepcopy(raw), {}
    for assignment in overrides:
        origins[set_override(r, assignment)] = f"--set {assignment.strip()}"
    for key, value in values.items():
        set_override(r, f"{key}={json.dumps(value)}")
        origins[key] = (flags or {}).get(key, f"--grid {key}")
    scenario = validate(r, src, Path(path).parent, origins)
    if check:
        check_runnable(scenario, src)
    return Point(dict(values), scenario, scenario_hash(scenario))


def check_points_folder(folder: Path, flag: str = "--out") -> None:
    """Refuses a `points/` folder that holds anything but point files (a user's own folder of that name)."""
    if folder.exists() and (not folder.is_dir() or any(not _POINT_FILE.match(p.name) for p in folder.iterdir())):
        raise ScenarioError(flag, "", f"{folder} exists and holds files that are not sweep points; choose another "
                            "folder or move it")


def compute(points: list[Point], store: PointStore, workers=None, dask=None, what: str = "sweep",
            quiet: bool = False) -> dict:
    """Runs the points missing from `store` (once per distinct hash), saving each as it finishes; returns
    {hash: stored point} for every point."""
    done, todo = {}, {}
    for p in points:
        if p.digest in done or p.digest in todo:
            continue
        stored = store.load(p.digest)
        if stored is not None:
            done[p.digest] = stored
        else:
            todo[p.digest] = p
    bar = progress(len(done) + len(todo), len(done), what, quiet)
    for digest, summary, timing in run_points([(d, p.scenario) for d, p in todo.items()], workers, dask):
        store.save(digest, todo[digest].values, summary, timing)
        done[digest] = store.load(digest)
        bar(1)
    return done


def sweep(path, grids: list[str], out_dir, overrides: Iterable[str] = (), workers: Optional[int] = None,
          dask: Optional[str] = None, quiet: bool = False) -> pd.DataFrame:
    """Runs the sweep; writes DIR/points/*.json, DIR/sweep.parquet, DIR/timings.parquet and DIR/sweep.json;
    returns the sweep table (one row per point, in grid order)."""
    axes = [parse_axis(g) for g in grids]
    out = OutputDir(out_dir)
    names = ["sweep.parquet", "timings.parquet", "sweep.json", "report.html"]
    out.prepare(names)
    check_points_folder(out.path / "points")
    points = resolve_points(path, axes, overrides)
    stored = compute(points, PointStore(out.path / "points"), workers, dask, quiet=quiet)
    table = pd.DataFrame([row(p.values, stored[p.digest]["summary"], p.digest) for p in points])
    timings = pd.DataFrame([{**p.values, "point": p.digest, **stored[p.digest]["timing"]} for p in points])
    meta = {"format": "servesim-sweep", "version": SUMMARY_VERSION, "scenario": str(path),
            "grid": [{"key": a.key, "values": list(a.values)} for a in axes], "set": list(overrides),
            "points": len(points)}
    from .html import provenance, sweep_report

    first = points[0].scenario
    page = sweep_report(table, [a.key for a in axes], first.slo.model_dump(exclude_none=True) if first.slo else {},
                        first.model_dump(mode="json"), provenance(path, _profiles(first)))
    with out.staging() as tmp:
        table.to_parquet(tmp / "sweep.parquet", index=False)
        timings.to_parquet(tmp / "timings.parquet", index=False)
        (tmp / "sweep.json").write_text(json.dumps(meta, indent=2) + "\n")
        (tmp / "report.html").write_text(page)
        out.commit(tmp)
    return table


def _profiles(scenario) -> dict:
    """Returns the measured profiles a scenario's cost models read (for the report's provenance)."""
    found = []
    for g in scenario.fleet_groups:
        cm = g.cost_model
        for path in list(getattr(cm, "paths", None) or []) + [getattr(cm, "profile", None)]:
            if isinstance(path, str) and path not in found:
                found.append(path)
    return {"profiles": found} if found else {}
