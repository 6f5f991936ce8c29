"""The single-core rewrite (issue 17) against the commit before it: every path the rewrite touched, each a whole
`servesim run` in a fresh process, this checkout and `--baseline` (a git worktree) alternating so drift hits both;
medians and their ratio. Then the combinations the rewrite made possible, which the baseline refuses.

    python bench/bench_core.py [--baseline 6c8844c] [--repeats 3] [--scale 1.0]

Only a ratio measured in one invocation on one machine counts (bench/README.md).
"""
from __future__ import annotations

import argparse
import copy
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from bench_fleet import ROOT, run_scenario

COST = {"kind": "affine", "base_ms": 2.0, "per_item_ms": 0.1, "max_batch_size": 64}
DYNAMIC = {"policy": "dynamic", "max_batch_size": 64, "max_queue_delay_ms": 2.0}


def _raw(name, requests, rate, server, cost=COST, **top):
    return {"name": name, "seed": 1, "requests": requests, "workload": {"arrival": {"process": "poisson",
                                                                                    "rate_rps": rate}},
            "cost_model": cost, "server": server, "outputs": {"records": False, "plots": False}, **top}


def ab_cases(scale: float) -> list[tuple[str, dict]]:
    """The paths the rewrite touched (and two it did not, as controls), at mean batch >= 8 or exactly 1."""
    n = int(2_000_000 * scale)
    llm = {"name": "llm-shared-autoscaled", "seed": 2, "requests": int(100_000 * scale),
           "workload": {"arrival": {"process": "poisson", "rate_rps": 24},
                        "prompt_tokens": {"dist": "lognormal", "mean": 1000, "cv": 1.0, "min": 8, "max": 8000},
                        "output_tokens": {"dist": "lognormal", "mean": 240, "cv": 0.8, "min": 1, "max": 2000}},
           "cost_model": {"kind": "llm", "base_ms": 12.0, "prefill_token_ms": 0.06, "prefill_attention_ms": 4e-6,
                          "decode_seq_ms": 0.08, "decode_context_ms": 2e-5},
           "server": {"replicas": 8, "batching": {"policy": "continuous", "max_num_seqs": 128,
                                                  "max_num_batched_tokens": 4096, "kv_cache_tokens": 400000},
                      "autoscaler": {"policy": "target_utilization", "target": 0.6, "interval_s": 30,
                                     "min_replicas": 2}},
           "outputs": {"records": False, "plots": False}}
    return [
        ("shared queue, 1 replica, mean batch ~20 (kernel handler per replica since 928d23e)",
         _raw("shared1", n, 5000.0, {"batching": DYNAMIC})),
        ("shared queue, 1 replica, batch ~1 (kernel handler per replica)",
         _raw("shared1-b1", n, 100.0, {"batching": {"policy": "dynamic", "max_batch_size": 64, "max_queue_delay_ms": 0.0}})),
        ("16 replicas, join_shortest_queue, mean batch ~20 (control: untouched)",
         _raw("jsq16", n, 80000.0, {"replicas": 16, "router": {"policy": "join_shortest_queue"}, "batching": DYNAMIC})),
        ("8 replicas, power_of_two (Fleet.run), mean batch >= 8",
         _raw("p2c8", n, 40000.0, {"replicas": 8, "router": {"policy": "power_of_two"}, "batching": DYNAMIC})),
        ("4 replicas, round_robin + queue limit (Fleet.run, replica DONE), batch 1",
         _raw("rr-limit", n, 1800.0, {"replicas": 4, "router": {"policy": "round_robin"}, "queue": {"max_queue_size": 8},
                                       "batching": {"policy": "none"}},
              cost={"kind": "affine", "base_ms": 2.0, "per_item_ms": 0.0})),
        ("autoscaled shared queue (controller), mean batch ~20",
         _raw("shared-autoscaled", n, 10000.0, {"replicas": 4, "batching": DYNAMIC, "autoscaler": {
             "policy": "target_utilization", "target": 0.6, "interval_s": 10}})),
        ("8 LLM engines behind the shared queue, autoscaled (FleetScaler)", llm),
        ("instance groups: 2 GPUs x 2 instances, shared queue, mean batch >= 8",
         _raw("instances", n, 12000.0, {"replicas": 2, "instances_per_gpu": 2, "instance_contention": [1.0, 1.4],
                                        "batching": {"policy": "dynamic", "max_batch_size": 32,
                                                     "max_queue_delay_ms": 2.0}})),
        ("instance groups: 2 GPUs x 2 instances, batch 1",
         _raw("instances-b1", n, 1500.0, {"replicas": 2, "instances_per_gpu": 2, "batching": {"policy": "none"}},
              cost={"kind": "affine", "base_ms": 1.0, "per_item_ms": 0.0})),
    ]


def new_cases(scale: float) -> list[tuple[str, dict]]:
    """Combinations the baseline refuses."""
    n = int(2_000_000 * scale)
    jsq = _raw("jsq4-autoscaled", n, 20000.0, {"replicas": 6, "router": {"policy": "join_shortest_queue"},
                                                "batching": DYNAMIC, "autoscaler": {
                                                    "policy": "target_utilization", "target": 0.6, "interval_s": 10}})
    mmc = _raw("shared-priorities", n, 2400.0, {"replicas": 3, "batching": {"policy": "none"}},
               cost={"kind": "affine", "base_ms": 1.0, "per_item_ms": 0.0, "noise": {"dist": "exponential"}})
    mmc["workload"]["classes"] = [{"name": "gold", "share": 0.3, "priority": 1},
                                  {"name": "bronze", "share": 0.7, "priority": 2}]
    inst = _raw("instances-jsq-limit", n, 12000.0, {"replicas": 2, "instances_per_gpu": 2,
                                                     "router": {"policy": "join_shortest_queue"},
                                                     "queue": {"max_queue_size": 64},
                                                     "batching": {"policy": "dynamic", "max_batch_size": 32,
                                                                  "max_queue_delay_ms": 2.0}})
    return [("join_shortest_queue, autoscaled (up to 6), mean batch >= 8", jsq),
            ("instance groups (2 x 2) behind join_shortest_queue with a queue limit", inst),
            ("two priorities on one queue of 3 replicas, batch 1 (M/M/3)", mmc)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", default="6c8844c", help="the commit before the single core")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies every request count")
    ap.add_argument("--only", default="", help="run only the cases whose label contains this")
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")
    tmp = Path(tempfile.mkdtemp())
    base = tmp / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(base), args.baseline],
                   check=True, capture_output=True)
    try:
        print("| path | requests | mean batch | this (s) | baseline (s) | this / baseline |")
        print("|---|---|---|---|---|---|")
        for label, raw in [c for c in ab_cases(args.scale) if args.only in c[0]]:
            times = {"this": [], "base": []}
            for _ in range(args.repeats):
                for who, path in (("this", str(ROOT)), ("base", str(base))):
                    wall, _, s = run_scenario(copy.deepcopy(raw), tmp, path)
                    times[who].append(wall)
            med = {k: statistics.median(v) for k, v in times.items()}
            print(f"| {label} | {raw['requests']:,} | {s['batch_size']['mean']:.1f} | {med['this']:.2f} | "
                  f"{med['base']:.2f} | {med['this'] / med['base']:.3f} |", flush=True)
        print()
        print("| new combination | requests | mean batch | wall (s) | simulated req/s | peak RSS (MiB) |")
        print("|---|---|---|---|---|---|")
        for label, raw in [c for c in new_cases(args.scale) if args.only in c[0]]:
            wall, rss, s = run_scenario(copy.deepcopy(raw), tmp, str(ROOT))
            print(f"| {label} | {raw['requests']:,} | {s['batch_size']['mean']:.1f} | {wall:.2f} | "
                  f"{raw['requests'] / wall:,.0f} | {rss / 1024:.0f} |", flush=True)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
