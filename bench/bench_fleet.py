"""Fleet benchmarks: the shared-queue fast path against a previous commit, a 16-replica JSQ fleet and an
8-replica LLM fleet, each timed as a whole `servesim run` command in a fresh process.

    python bench/bench_fleet.py [--baseline COMMIT] [--repeats 3] [--requests 2000000] [--llm-requests 1000000]

1. A/B: the shared-queue single-replica case of bench_engine.py ("heavy": mean batch about 20) run by this
   checkout and by `--baseline` (a git worktree made in a temporary folder), alternating A and B so drift
   hits both; medians and their ratio. Only a ratio measured in one invocation on one machine counts.
2. 16 replicas behind join_shortest_queue, dynamic batching with mean batch >= 8, `servesim run`
   (records and plots off): simulated requests per wall-clock second, peak RSS.
3. scenarios/llm-chat-fleet.yaml (8 continuous-batching replicas at about 4 rps each, prompt/output lengths
   of the Azure conversation trace's lognormal fits) with `--llm-requests`: wall time and peak RSS.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def heavy(requests: int) -> dict:
    return {"name": "bench-heavy", "seed": 1, "requests": requests,
            "workload": {"arrival": {"process": "poisson", "rate_rps": 5000.0}},
            "cost_model": {"kind": "affine", "base_ms": 2.0, "per_item_ms": 0.1, "max_batch_size": 64},
            "server": {"batching": {"policy": "dynamic", "max_batch_size": 64, "max_queue_delay_ms": 2.0}},
            "outputs": {"records": False, "plots": False}}


def jsq16(requests: int) -> dict:
    s = heavy(requests)
    s["name"] = "bench-jsq16"
    s["workload"]["arrival"]["rate_rps"] = 80000.0
    s["server"].update(replicas=16, router={"policy": "join_shortest_queue"})
    return s


def timed(cmd: list[str], env: dict) -> tuple[float, int, str]:
    """Runs cmd under /usr/bin/time; returns (wall s, peak RSS KiB, stdout)."""
    proc = subprocess.run(["/usr/bin/time", "-f", "TIME %e %M", *cmd], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr}")
    wall, rss = re.search(r"TIME ([\d.]+) (\d+)", proc.stderr).groups()
    return float(wall), int(rss), proc.stdout


def run_scenario(raw: dict, tmp: Path, pythonpath: str, extra=()) -> tuple[float, int, dict]:
    path = tmp / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = tmp / f"out-{raw['name']}"
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, PYTHONPATH=pythonpath)
    wall, rss, _ = timed([sys.executable, "-m", "sim", "run", str(path), "--out", str(out), "--quiet", *extra], env)
    summary = yaml.safe_load((out / "summary.json").read_text())
    return wall, rss, summary


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", default="6a0b191", help="commit to compare the shared-queue fast path with")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--requests", type=int, default=2_000_000)
    ap.add_argument("--llm-requests", type=int, default=1_000_000)
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    tmp = Path(tempfile.mkdtemp())
    base = tmp / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(base), args.baseline],
                   check=True, capture_output=True)
    try:
        times = {"this": [], "baseline": []}
        for _ in range(args.repeats):
            for label, path in (("this", str(ROOT)), ("baseline", str(base))):
                wall, _, s = run_scenario(heavy(args.requests), tmp, path)
                times[label].append(wall)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"1. shared queue, 1 replica, {args.requests:,} requests (mean batch {s['batch_size']['mean']:.1f}): "
              f"this {med['this']:.2f} s ({args.requests / med['this'] / 1e6:.2f}M req/s), baseline {args.baseline} "
              f"{med['baseline']:.2f} s ({args.requests / med['baseline'] / 1e6:.2f}M req/s); "
              f"this/baseline time {med['this'] / med['baseline']:.3f}  (runs: {times})")
        wall, rss, s = run_scenario(jsq16(args.requests), tmp, str(ROOT))
        print(f"2. 16 replicas, join_shortest_queue, {args.requests:,} requests (mean batch {s['batch_size']['mean']:.1f}): "
              f"{wall:.2f} s whole command, {args.requests / wall / 1e6:.2f}M simulated req/s, peak {rss / 1024:.0f} MiB")
        fleet = yaml.safe_load((ROOT / "scenarios/llm-chat-fleet.yaml").read_text())
        fleet.update(requests=args.llm_requests, outputs={"records": False, "plots": False})
        wall, rss, s = run_scenario(fleet, tmp, str(ROOT))
        print(f"3. 8-replica LLM fleet ({fleet['server']['router']['policy']}), {args.llm_requests:,} requests, "
              f"{s['batch_size']['steps']:,} engine steps: {wall:.1f} s whole command, peak {rss / 1024:.0f} MiB")
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
