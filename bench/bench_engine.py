"""Simulation speed and memory of the batch-level engine vs a naive per-request SimPy model.

    python bench/bench_engine.py [--requests 2000000] [--naive-requests 200000]

Each measurement runs in a fresh child process so its peak RSS is its own. Memory per request is
(peak RSS - RSS after imports and a small warm-up run) / requests. Rates are simulated requests per
wall-clock second; the ratio against the naive model is measured in the same invocation.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

CASES = {
    # mean batch >= 8: a ResNet-ish step time (2 ms + 0.1 ms/item), dynamic batching at ~65% of capacity
    "heavy": {"rate_rps": 5000.0, "base_ms": 2.0, "per_item_ms": 0.1, "max_batch_size": 64, "delay_ms": 2.0},
    # mean batch near 1: same model, light traffic
    "light": {"rate_rps": 100.0, "base_ms": 2.0, "per_item_ms": 0.1, "max_batch_size": 64, "delay_ms": 0.0},
}


def scenario(case: str, requests: int):
    import sim

    c = CASES[case]
    return sim.validate({
        "name": f"bench-{case}", "seed": 1, "requests": requests,
        "workload": {"arrival": {"process": "poisson", "rate_rps": c["rate_rps"]}},
        "cost_model": {"kind": "affine", "base_ms": c["base_ms"], "per_item_ms": c["per_item_ms"],
                       "max_batch_size": c["max_batch_size"]},
        "server": {"batching": {"policy": "dynamic", "max_batch_size": c["max_batch_size"],
                                "max_queue_delay_ms": c["delay_ms"]}},
        "outputs": {"records": False, "plots": False},
    })


def _rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(kind: str, case: str, requests: int) -> dict:
    import numpy as np

    import sim
    from sim.reference import naive_simulate
    from sim.rng import component_rng

    sim.run(scenario(case, 2000))  # warm-up: imports, first-call costs
    base = _rss_bytes()
    s = scenario(case, requests)
    t0 = time.perf_counter()
    if kind == "engine":
        result = sim.run(s)
        wall = time.perf_counter() - t0
        t1 = time.perf_counter()
        frame_rows = len(result.requests)
        frame_s = time.perf_counter() - t1
        out = {"mean_batch": result.summary["batch_size"]["mean"],
               "mean_latency_ms": result.summary["latency_s"]["mean"] * 1000,
               "dataframe_s": frame_s, "rows": frame_rows}
    else:
        arrivals = s.workload.arrival.arrival_times_s(component_rng(s.seed, 0, "workload.arrival"), requests=requests)
        _, completion, size = naive_simulate(s.rule, s.cost_model, arrivals)
        wall = time.perf_counter() - t0
        out = {"mean_latency_ms": float(np.mean(completion - arrivals)) * 1000}
    peak = _rss_bytes()
    out.update({"requests": requests, "wall_s": wall, "rate_rps": requests / wall,
                "peak_extra_bytes_per_request": max(0, peak - base) / requests})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=2_000_000)
    ap.add_argument("--naive-requests", type=int, default=200_000)
    ap.add_argument("--child", nargs=3, metavar=("KIND", "CASE", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], int(args.child[2]))))
        return

    def spawn(kind, case, n):
        p = subprocess.run([sys.executable, __file__, "--child", kind, case, str(n)], capture_output=True, text=True,
                           check=True)
        return json.loads(p.stdout)

    print(f"machine: {platform.machine()} {platform.processor() or ''} python {platform.python_version()}")
    for case in CASES:
        eng = spawn("engine", case, args.requests)
        naive = spawn("naive", case, args.naive_requests)
        print(f"[{case}] mean batch {eng['mean_batch']:.2f}, mean latency {eng['mean_latency_ms']:.3f} ms "
              f"(naive model: {naive['mean_latency_ms']:.3f} ms on its first {args.naive_requests} requests)")
        print(f"  engine : {eng['requests']:>9} requests in {eng['wall_s']:.2f} s = {eng['rate_rps']:>12,.0f} req/s, "
              f"peak +{eng['peak_extra_bytes_per_request']:.0f} B/request "
              f"(+{eng['dataframe_s']:.2f} s to build the per-request DataFrame)")
        print(f"  naive  : {naive['requests']:>9} requests in {naive['wall_s']:.2f} s = {naive['rate_rps']:>12,.0f} req/s, "
              f"peak +{naive['peak_extra_bytes_per_request']:.0f} B/request")
        print(f"  speed-up vs naive SimPy (same run): {eng['rate_rps'] / naive['rate_rps']:.1f}x")


if __name__ == "__main__":
    main()
