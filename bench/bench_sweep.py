"""Sweep benchmarks: a 100-point sweep of 1M-request points on the local process pool, and the speed-up of
2 Dask workers over 1 on a smaller sweep, each timed as a whole `servesim sweep` command.

    python bench/bench_sweep.py [--requests 1000000] [--dask-points 20]

1. `servesim sweep` of the vision model (2 ms + 0.25 ms per image, dynamic batching, 2 ms delay) over
   max_batch_size 1..64 (10 values, log) x rate 100..1000 rps (10 values): 100 points of --requests each,
   every core of this machine.
2. The first --dask-points points of the same grid on a distributed.LocalCluster with 1 worker, then with 2
   (one thread each), into fresh folders: wall time of each and their ratio.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

SCENARIO = {"name": "bench-sweep", "seed": 1, "requests": 1_000_000,
            "workload": {"arrival": {"process": "poisson", "rate_rps": 500.0}},
            "cost_model": {"kind": "affine", "base_ms": 2.0, "per_item_ms": 0.25, "max_batch_size": 64},
            "server": {"batching": {"policy": "dynamic", "max_batch_size": 64, "max_queue_delay_ms": 2.0}},
            "slo": {"latency_p99_ms": 50.0}, "outputs": {"records": False, "plots": False}}
GRID = ["server.batching.max_batch_size=1..64:10:log", "workload.arrival.rate_rps=100..1000:10"]


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--dask-points", type=int, default=20)
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    tmp = Path(tempfile.mkdtemp())
    try:
        path = tmp / "s.yaml"
        path.write_text(yaml.safe_dump({**SCENARIO, "requests": args.requests}))
        exe = shutil.which("servesim")
        wall = timed([exe, "sweep", str(path), *sum((["--grid", g] for g in GRID), []), "--out", str(tmp / "pool"),
                      "--quiet"])
        print(f"1. 100 points x {args.requests:,} requests, local pool ({os.cpu_count()} workers): {wall:.1f} s "
              f"({100 * args.requests / wall / 1e6:.2f}M simulated requests/s)")
        from distributed import LocalCluster

        small = ["server.batching.max_batch_size=1..64:10:log",
                 f"workload.arrival.rate_rps=100..1000:{max(1, args.dask_points // 10)}"]
        times = {}
        for n in (1, 2):
            with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
                times[n] = timed([exe, "sweep", str(path), *sum((["--grid", g] for g in small), []),
                                  "--out", str(tmp / f"dask{n}"), "--dask", cluster.scheduler_address, "--quiet"])
        same = (tmp / "dask1/sweep.parquet").read_bytes() == (tmp / "dask2/sweep.parquet").read_bytes()
        print(f"2. {args.dask_points} points on Dask: 1 worker {times[1]:.1f} s, 2 workers {times[2]:.1f} s, "
              f"speed-up {times[1] / times[2]:.2f}x; identical sweep.parquet: {same}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
