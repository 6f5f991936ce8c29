"""Measurement discipline: warm-ups kept apart, shuffled interleaved rounds, stop on a tight median CI.

Pure Python + numpy; the device-specific part is the `step(b) -> ms` callable the caller passes in
(CUDA events on a GPU, perf_counter around a synchronize on the CPU).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

Z95 = 1.959964
RATIO_QUANTILES = tuple(range(0, 101, 5))
# warm-up goes on past Settings.warmup while consecutive runs still differ by more than this factor
SETTLED = 1.25
# ... for at most this many times Settings.warmup runs in all, and at most budget_s seconds per size
WARMUP_STRETCH = 4
# a sample above this multiple of its point's median is reported as a stray step
STRAY = 3.0


def median_ci(samples) -> tuple[float, float]:
    """Returns the distribution-free 95% interval of the median (order statistics), in the samples' unit."""
    x = np.sort(np.asarray(samples, dtype=float))
    n = x.size
    if n < 6:
        return math.nan, math.nan  # too few samples for a 95% interval (min..max covers only 1 - 2^(1-n))
    half = Z95 * math.sqrt(n) / 2
    lo = max(int(math.floor(n / 2 - half)), 1)
    hi = min(int(math.ceil(n / 2 + half)) + 1, n)
    return float(x[lo - 1]), float(x[hi - 1])


def ci_rel(samples) -> float:
    """Returns the median CI's half-width relative to the median."""
    lo, hi = median_ci(samples)
    return (hi - lo) / 2 / float(np.median(samples))


@dataclass
class Settings:
    warmup: int = 5                 # unmeasured runs per batch size before any timing (at least; see warm_up)
    min_samples: int = 10
    max_samples: int = 200
    target_ci_rel: float = 0.02     # stop once the median's 95% CI half-width is within 2%
    budget_s: float = 5.0           # ... or once this much measured time was spent on the point
    per_round: int = 3              # timed runs of one batch size per round
    seed: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class PointStats:
    batch_size: int
    samples_ms: list[float] = field(default_factory=list)
    stop_reason: str = ""
    warmup_runs: int = 0

    def summary(self) -> dict:
        """Returns the point as written to a profile (times in ms)."""
        x = np.asarray(self.samples_ms, dtype=float)
        med = float(np.median(x))
        lo, hi = median_ci(x)
        ci = None if math.isnan(lo) else [lo, hi]
        return {
            "batch_size": self.batch_size, "samples": int(x.size), "median_ms": med,
            "mean_ms": float(x.mean()), "std_ms": float(x.std(ddof=1)) if x.size > 1 else 0.0,
            "min_ms": float(x.min()), "p10_ms": float(np.percentile(x, 10)), "p90_ms": float(np.percentile(x, 90)),
            "p99_ms": float(np.percentile(x, 99)), "max_ms": float(x.max()),
            "median_ci95_ms": ci, "ci_rel": None if ci is None else (hi - lo) / 2 / med,
            "cv": float(x.std(ddof=1) / x.mean()) if x.size > 1 else 0.0,
            "ratio_quantiles": [float(v) for v in np.percentile(x / med, RATIO_QUANTILES)],
            "stop_reason": self.stop_reason, "warmup_runs": self.warmup_runs,
        }


def warm_up(step: Callable[[int], float], b: int, settings: Settings) -> int:
    """Runs step(b) untimed settings.warmup times, then on until two consecutive runs agree within SETTLED
    (at most WARMUP_STRETCH x warmup runs and budget_s seconds); returns the number of runs."""
    times = [step(b) for _ in range(settings.warmup)]
    # Lazy initialisation (kernel selection and autotuning, compilation, allocator growth, first-touch page
    # faults) can outlast a fixed count; timing while it settles puts a few slow first samples into the
    # point, which with a small budget dominate its median CI and coefficient of variation.
    while (len(times) >= 2 and len(times) < WARMUP_STRETCH * settings.warmup and sum(times) / 1000 < settings.budget_s
           and max(times[-2:]) > SETTLED * min(times[-2:])):
        times.append(step(b))
    return len(times)


def measure(step: Callable[[int], float], sizes: list[int], settings: Settings,
            progress: Callable[[str], None] = lambda s: None,
            label: Callable[[int], str] = lambda b: f"batch {b:>5}") -> dict[int, PointStats]:
    """Times step(b) for every batch size in shuffled, interleaved rounds; returns PointStats per size.

    Each size first runs untimed warm-up steps (see warm_up). Then, round after round, the unfinished sizes run
    `per_round` timed steps each in a fresh random order, so slow drift (clocks, thermals, other
    tenants) spreads over all sizes instead of biasing the last ones. A size finishes once it has
    min_samples and its median CI is within target, or its time budget or max_samples is spent.
    `label(b)` names a point in progress lines.
    """
    rng = np.random.default_rng(settings.seed)
    stats = {b: PointStats(b) for b in sizes}
    for b in sizes:
        stats[b].warmup_runs = warm_up(step, b, settings)
    spent = {b: 0.0 for b in sizes}
    todo = list(sizes)
    while todo:
        for b in rng.permutation(todo).tolist():
            for _ in range(settings.per_round):
                ms = step(b)
                stats[b].samples_ms.append(ms)
                spent[b] += ms / 1000
        still = []
        for b in todo:
            s = stats[b]
            n = len(s.samples_ms)
            if n >= settings.min_samples and ci_rel(s.samples_ms) <= settings.target_ci_rel:
                s.stop_reason = "ci"
            elif n >= settings.max_samples:
                s.stop_reason = "max_samples"
            elif spent[b] >= settings.budget_s and n >= min(settings.min_samples, 3):
                s.stop_reason = "budget"
            else:
                still.append(b)
                continue
            progress(f"  {label(b)}: {n} samples, median {np.median(s.samples_ms):.4g} ms ({s.stop_reason})")
        todo = still
    return stats


def budget_shortfall(points: list[tuple[str, PointStats]], settings: Settings) -> str | None:
    """Returns one warning naming the (label, stats) points whose time budget ran out before min_samples
    or a median CI within target_ci_rel (samples, CI half-width, and the --budget-s that would do), or None."""
    short = []
    for name, st in points:
        p = st.summary()
        if st.stop_reason == "budget" and (p["samples"] < settings.min_samples or p["ci_rel"] is None
                                           or p["ci_rel"] > settings.target_ci_rel):
            short.append((name, st, p))
    if not short:
        return None

    def needed_s(p: dict) -> float:
        # the median CI's half-width shrinks like 1/sqrt(samples)
        want = settings.min_samples if p["ci_rel"] is None else p["samples"] * (p["ci_rel"] / settings.target_ci_rel) ** 2
        return min(max(want, settings.min_samples, 6), settings.max_samples) * p["median_ms"] / 1000

    groups: dict[str, list[str]] = {}  # points that got the same are named together
    for name, _, p in short:
        ci = "too few for a 95% median CI" if p["ci_rel"] is None else f"median CI +-{p['ci_rel']:.0%}"
        groups.setdefault(f"{p['samples']} samples{{each}}, {ci}", []).append(name.strip())
    items = "; ".join(f"{', '.join(names)} ({desc.format(each=' each' if len(names) > 1 else '')})"
                      for desc, names in groups.items())
    # With few samples the CV is set by the one or two slowest steps: say where they came from.
    first, stalls = [], []
    for name, st, p in short:
        x = np.asarray(st.samples_ms, dtype=float)
        if x.size >= 2 and x.max() > STRAY * p["median_ms"]:
            (first if int(x.argmax()) == 0 else stalls).append(f"{name.strip()} {x.max() / p['median_ms']:.0f}x")
    notes = ""
    if first:
        notes += (f" The first timed step was the slowest ({', '.join(first)} the median): if that recurs, the "
                  "warm-up is too short (raise --warmup).")
    if stalls:
        notes += (f" Single steps stalled ({', '.join(stalls)} the median): typically another process taking a core "
                  "from one of torch's threads while the others wait; measure on an idle machine or with --threads "
                  "below the core count.")
    few = any(p["samples"] < settings.min_samples for _, _, p in short)
    return (f"--budget-s {settings.budget_s:g} is too small: {len(short)} of {len(points)} points ran out of time "
            f"before reaching a median 95% CI within +-{settings.target_ci_rel:.0%} with at least "
            f"{settings.min_samples} samples: {items}. Their medians and the fit are unreliable"
            + (", and a coefficient of variation from so few samples mostly measures one or two stray steps"
               if few else "") + f".{notes} Raise --budget-s to about "
            f"{_round_up(max(needed_s(p) for _, _, p in short)):g} s (or raise --target-ci).")


def _round_up(x: float) -> float:
    """Returns x rounded up to two significant digits (a suggested budget must not fall short)."""
    if x <= 0:
        return x
    step = 10.0 ** (math.floor(math.log10(x)) - 1)
    return round(math.ceil(x / step - 1e-9) * step, 12)


def find_max_batch(fits: Callable[[int], bool], cap: int) -> tuple[int, dict]:
    """Returns (largest batch size b <= cap with fits(b), search record): doubling, then bisection.

    fits(b) runs one step at batch b and returns False when it does not fit (out of memory, or over a
    step-time limit); it must free what it allocated either way.
    """
    tried: dict[int, bool] = {}

    def ok(b: int) -> bool:
        if b not in tried:
            tried[b] = bool(fits(b))
        return tried[b]

    if not ok(1):
        raise RuntimeError("batch size 1 does not fit")
    lo = 1
    while lo * 2 <= cap and ok(lo * 2):
        lo *= 2
    hi = min(lo * 2, cap + 1)  # hi: first size known (or assumed, past the cap) not to fit
    if hi == cap + 1 and cap > lo and ok(cap):
        lo = cap
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid
    failed = sorted(b for b, good in tried.items() if not good)
    return lo, {"method": "doubling then bisection", "cap": cap, "largest_fits": lo,
                "first_failure": failed[0] if failed else None, "tried": sorted(tried)}


def sleep_until(deadline: float) -> None:
    """Sleeps until the time.perf_counter() deadline, re-sleeping if woken early; never spins (a spinning
    thread would hold the GIL that a serving loop's other thread needs)."""
    import time

    while (left := deadline - time.perf_counter()) > 0:
        time.sleep(left)
