"""The kernel's cost per event (sim.kernel.Kernel, on SimPy's Environment) against a plain heap of (t, kind, index)
tuples, the fleet's loop before the kernel: the same handlers (each event schedules its replica's next one, as a
batch start schedules its end) driven both ways in one process, alternating; medians of the rounds.

    python bench/bench_kernel.py [--events 2000000] [--handlers 16] [--rounds 5]

Only a ratio measured in one invocation counts (bench/README.md).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from functools import partial
from heapq import heappop, heappush
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.kernel import Kernel  # noqa: E402


class Ticker:
    """A handler whose every event schedules its next one, 1/rate s later, alternating kinds (start, end)."""

    def __init__(self, index: int, gap_s: float, budget: list):
        self.index, self.gap_s, self.budget = index, gap_s, budget

    def on_event(self, t: float, kind: int, push) -> None:
        if self.budget[0] > 0:
            self.budget[0] -= 1
            push((t + self.gap_s, 1 - kind, self.index))


def _handlers(n: int, events: int) -> list:
    budget = [events]
    return [Ticker(i, 1e-3 * (1 + i / n), budget) for i in range(n)]


def run_heap(n: int, events: int) -> float:
    """Seconds to run `events` events on a plain tuple heap."""
    hs = _handlers(n, events)
    heap: list = []
    push = partial(heappush, heap)
    for h in hs:
        push((0.0, 1, h.index))
    t0 = time.perf_counter()
    while heap:
        t, kind, rid = heappop(heap)
        hs[rid].on_event(t, kind, push)
    return time.perf_counter() - t0


def run_kernel(n: int, events: int) -> float:
    """Seconds to run `events` events on the kernel."""
    hs = _handlers(n, events)
    k = Kernel(hs)
    for h in hs:
        k.push((0.0, 1, h.index))
    t0 = time.perf_counter()
    k.drain()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--handlers", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    heap_s, kernel_s = [], []
    for _ in range(a.rounds):
        heap_s.append(run_heap(a.handlers, a.events))
        kernel_s.append(run_kernel(a.handlers, a.events))
    h, k = statistics.median(heap_s), statistics.median(kernel_s)
    print(f"# {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"{a.events:,} events over {a.handlers} handlers, medians of {a.rounds} alternating rounds")
    print(f"plain heap: {h / a.events * 1e9:.0f} ns/event   kernel: {k / a.events * 1e9:.0f} ns/event   "
          f"kernel / heap: {k / h:.2f}")


if __name__ == "__main__":
    main()
