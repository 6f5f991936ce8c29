"""Streaming benchmarks: a day of traffic in fixed memory, each run timed as a whole `servesim run` command in
its own process (peak RSS from the OS).

    python bench/bench_streaming.py [--sizes 10,30,86.4] [--records-check 10]

1. The vision model (2 ms + 0.25 ms per image, dynamic batching up to 32, 2 ms delay) at 1,000 rps Poisson,
   one replica, outputs.streaming: true, for each size in millions of requests (86.4M is a day): wall time,
   peak RSS, and the ratio of peak RSS to the smallest run's (flat memory: all near 1).
2. The same scenario at --records-check million requests with records (outputs.streaming: false, records
   off): the time and memory that streaming saves, measured in the same run of this script.
3. scenarios/llm-day-autoscaled.yaml whole (a day of LLM chat at 10 rps on an autoscaled fleet, 864k requests),
   records off and streamed (`outputs.streaming: true`: the engines' steps go to fixed-memory statistics): wall
   time and peak RSS of each, and their ratio.
4. scenarios/day-autoscaled.yaml (86.4M requests, a day at 1,000 rps on average, streamed) behind the shared queue
   (one autoscaled pool) and behind join_shortest_queue (4 replicas with queues of their own, autoscaled): wall
   time, peak RSS and their ratio (`--skip-day` leaves this out).
"""
from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

SCENARIO = {"name": "bench-streaming", "seed": 1, "warmup_s": 60,
            "workload": {"arrival": {"process": "poisson", "rate_rps": 1000.0}},
            "cost_model": {"kind": "affine", "base_ms": 2.0, "per_item_ms": 0.25, "max_batch_size": 64},
            "server": {"batching": {"policy": "dynamic", "max_batch_size": 32, "max_queue_delay_ms": 2.0}},
            "slo": {"latency_p99_ms": 10.0}, "outputs": {"streaming": True, "window_s": 3600}}


def timed_run(scenario_path: Path, out: Path) -> tuple[float, float]:
    """Returns (wall seconds, peak RSS in MB) of one `servesim run` of `scenario_path` in a fresh process."""
    code = ("import resource, sys, time; from sim.cli import main; t = time.perf_counter(); rc = main(['run', "
            f"{str(scenario_path)!r}, '--out', {str(out)!r}, '--quiet']); "
            "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(proc.stderr)
    wall, rss = map(float, proc.stdout.split()[-2:])
    return wall, rss


def run(folder: Path, millions: float, streaming: bool) -> tuple[float, float]:
    """Returns (wall seconds, peak RSS in MB) of the vision scenario at `millions` requests."""
    s = dict(SCENARIO, requests=int(millions * 1e6))
    s["outputs"] = {"streaming": True, "window_s": 3600} if streaming else {"streaming": False, "records": False,
                                                                              "plots": False}
    path = folder / f"s-{millions}-{streaming}.yaml"
    path.write_text(yaml.safe_dump(s))
    return timed_run(path, folder / f"o-{millions}-{streaming}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10,30,86.4", help="millions of requests, comma-separated")
    ap.add_argument("--records-check", type=float, default=10.0, help="millions of requests for the records run")
    ap.add_argument("--skip-day", action="store_true", help="leave out the two 86.4M-request autoscaled days")
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = []
        for m in [float(x) for x in args.sizes.split(",")]:
            wall, rss = run(folder, m, True)
            rows.append((m, wall, rss))
            print(f"streaming {m:g}M requests: {wall:.1f} s, peak RSS {rss:.0f} MB, {m * 1e6 / wall / 1e6:.2f}M req/s")
        base = rows[0][2]
        print("peak RSS relative to the smallest: " + ", ".join(f"{m:g}M {rss / base:.3f}" for m, _, rss in rows))
        wall_r, rss_r = run(folder, args.records_check, False)
        s_wall, s_rss = next(((w, r) for m, w, r in rows if m == args.records_check), run(folder, args.records_check, True))
        print(f"records {args.records_check:g}M requests (no records written): {wall_r:.1f} s, peak RSS {rss_r:.0f} MB; "
              f"streaming/records: time {s_wall / wall_r:.2f}, memory {s_rss / rss_r:.2f}")
        scenarios = Path(__file__).resolve().parent.parent / "scenarios"
        raw = yaml.safe_load((scenarios / "llm-day-autoscaled.yaml").read_text())
        wall, rss = timed_run(scenarios / "llm-day-autoscaled.yaml", folder / "llm-day")
        print(f"LLM day on an autoscaled fleet (864k requests), records off: {wall:.1f} s, peak RSS {rss:.0f} MB")
        raw["outputs"] = {"streaming": True, "window_s": 3600}
        path = folder / "llm-day-streamed.yaml"
        path.write_text(yaml.safe_dump(raw))
        s_wall, s_rss = timed_run(path, folder / "llm-day-streamed")
        print(f"LLM day streamed: {s_wall:.1f} s, peak RSS {s_rss:.0f} MB; streamed/records: time {s_wall / wall:.2f}, "
              f"memory {s_rss / rss:.2f}")
        if not args.skip_day:
            day = yaml.safe_load((scenarios / "day-autoscaled.yaml").read_text())
            d_wall, d_rss = timed_run(scenarios / "day-autoscaled.yaml", folder / "day-shared")
            print(f"day-autoscaled (86.4M requests) behind the shared queue: {d_wall:.1f} s, peak RSS {d_rss:.0f} MB")
            day["server"]["router"] = {"policy": "join_shortest_queue"}
            path = folder / "day-jsq.yaml"
            path.write_text(yaml.safe_dump(day))
            j_wall, j_rss = timed_run(path, folder / "day-jsq")
            print(f"the same day behind join_shortest_queue: {j_wall:.1f} s, peak RSS {j_rss:.0f} MB; "
                  f"{86.4e6 / j_wall / 1e6:.2f}M req/s; jsq/shared: time {j_wall / d_wall:.2f}")


if __name__ == "__main__":
    main()
