"""Measure the same profile twice and check the medians agree within their reported 95% intervals.

    python bench/profile_repeatability.py [--model mlp] [--budget-s 3]

Runs `python -m profiler.profile` twice in fresh processes (CPU) and prints, per batch size, both
medians, their intervals, and whether the intervals overlap.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--budget-s", default="3")
    ap.add_argument("--batch-sizes", default="1,2,4,8,16,32,64")
    args = ap.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(2):
            out = Path(tmp) / f"run{i}.yaml"
            subprocess.run([sys.executable, "-m", "profiler.profile", "--model", args.model, "--batch-sizes", args.batch_sizes,
                            "--budget-s", args.budget_s, "--no-plot", "--no-peaks", "--quiet", "--seed", str(i),
                            "--out", str(out)], check=True)
            runs.append({p["batch_size"]: p for p in yaml.safe_load(out.read_text())["points"]})
    print(f"{args.model}: two profiles, fresh processes, budget {args.budget_s} s per batch size")
    print(f"{'batch':>5} {'median 1 ms':>12} {'95% CI 1':>20} {'median 2 ms':>12} {'95% CI 2':>20} {'diff %':>7} overlap")
    agree = 0
    for b in sorted(runs[0]):
        p, q = runs[0][b], runs[1][b]
        (a0, a1), (b0, b1) = p["median_ci95_ms"], q["median_ci95_ms"]
        overlap = a0 <= b1 and b0 <= a1
        agree += overlap
        print(f"{b:>5} {p['median_ms']:>12.4g} {f'[{a0:.4g}, {a1:.4g}]':>20} {q['median_ms']:>12.4g} "
              f"{f'[{b0:.4g}, {b1:.4g}]':>20} {100 * (q['median_ms'] / p['median_ms'] - 1):>+7.1f} {'yes' if overlap else 'NO'}")
    print(f"intervals overlap at {agree} of {len(runs[0])} batch sizes")


if __name__ == "__main__":
    main()
