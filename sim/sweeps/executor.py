"""Where sweep points run: a local process pool (default: every core) or an existing Dask cluster.

A point is a pure function of its resolved scenario (`evaluate`), so the executor and its worker count change
when results arrive, never what they are."""
from __future__ import annotations

import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable, Iterable, Iterator, Optional


def evaluate(scenario) -> tuple[dict, dict]:
    """Runs one point; returns (summary as plain JSON types, timing: wall seconds, host, process)."""
    from ..runner import _jsonable, run

    t0 = time.perf_counter()
    summary = _jsonable(run(scenario).summary)
    return summary, {"wall_s": time.perf_counter() - t0, "host": platform.node(), "pid": os.getpid()}


def run_points(jobs: list[tuple[str, object]], workers: Optional[int] = None, dask: Optional[str] = None
               ) -> Iterator[tuple[str, dict, dict]]:
    """Runs (key, scenario) jobs; yields (key, summary, timing) as each finishes (any order)."""
    if not jobs:
        return
    if dask:
        yield from _dask(jobs, dask)
        return
    if workers is not None and workers < 1:
        from ..errors import ScenarioError
        raise ScenarioError("--workers", "", f"got {workers}: give 1 or more")
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    if workers == 1:
        for key, scenario in jobs:
            yield (key, *evaluate(scenario))
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(evaluate, scenario): key for key, scenario in jobs}
        for fut in as_completed(futures):
            yield (futures[fut], *fut.result())


def _dask(jobs, address: str):
    try:
        from distributed import Client, as_completed as dask_completed
    except ImportError:
        from ..errors import ScenarioError
        raise ScenarioError("--dask", address, "needs the distributed package: pip install 'dask[distributed]'") from None
    from ..errors import ScenarioError

    try:
        client = Client(address, timeout="20s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise ScenarioError("--dask", address, f"cannot reach a Dask scheduler there ({exc.__class__.__name__}: "
                            f"{exc}); start one (dask scheduler) or drop --dask to run locally") from None
    with client:
        futures = {client.submit(evaluate, scenario, pure=False): key for key, scenario in jobs}
        for fut in dask_completed(list(futures)):
            yield (futures[fut], *fut.result())


def progress(total: int, done: int, what: str, quiet: bool = False) -> Callable[[int], None]:
    """Returns update(n): a progress bar with an ETA on a terminal (tqdm), nothing otherwise or when quiet."""
    import sys

    if quiet or not sys.stderr.isatty():
        return lambda n=1: None
    try:
        from tqdm import tqdm
    except ImportError:
        return lambda n=1: None
    bar = tqdm(total=total, initial=done, desc=what, unit="point", file=sys.stderr, leave=True)

    def update(n: int = 1) -> None:
        bar.update(n)
        if bar.n >= total:
            bar.close()
    return update
