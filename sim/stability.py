"""Is the queue growing? A test of instability from the run itself, for every engine kind.

The number of requests in the system, N(t) = arrivals(t) - departures(t), is sampled at the edges of
`SECTIONS` equal time sections of the measured window [start, last arrival]. Its increments
d_i = N(t_i) - N(t_{i-1}) are the net inflow of each section. In a stable system N is stationary, so the
increments telescope: their sum N(end) - N(start) stays bounded while their spread does not shrink,
and the one-sided t statistic mean(d) / (sd(d) / sqrt(k)) sits near 0. In an unstable one N grows like
(lambda - mu) t and the statistic grows like (1 - mu / lambda) sqrt(arrivals). Near saturation a stable
queue wanders like a random walk over a short window, where the statistic is t-distributed with k - 1
degrees of freedom: THRESHOLD keeps that worst case near 0.4% and everything further from saturation far
lower (measured in tests/test_stability.py on M/D/1, bulk-service, static and bursty systems at 90-98%
load: no false alarm in thousands of runs).

Unlike "the second half was slower than the first", which fires in 10-30% of stable M/D/1 runs at
90-95% load because of the initial transient and slow excursions, this test needs the backlog to grow
steadily through the whole window.
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np

SECTIONS = 20
THRESHOLD = 3.0          # one-sided t; P(t_19 > 3.0) = 0.0037 for a random walk, less for any stable queue
MIN_ARRIVALS = 100       # fewer measured arrivals than this: no verdict


def net_inflow(arrival_s: np.ndarray, departure_s: np.ndarray, start_s: float, end_s: float,
               sections: int = SECTIONS) -> np.ndarray:
    """Returns the net inflow (arrivals - departures, requests) of each of `sections` equal time sections
    of [start_s, end_s]. `arrival_s` is sorted; `departure_s` holds NaN (or inf) for requests that never
    left, which therefore stay in the system."""
    edges = np.linspace(start_s, end_s, sections + 1)
    dep = np.sort(departure_s[np.isfinite(departure_s)])
    in_system = np.searchsorted(arrival_s, edges, side="right") - np.searchsorted(dep, edges, side="right")
    return np.diff(in_system).astype(float)


def growth_test(runs: Iterable[tuple[np.ndarray, np.ndarray, float]], sections: int = SECTIONS) -> dict:
    """Tests whether the number in system grew steadily over the measured window of each run.

    `runs` yields (sorted arrival_s, departure_s with NaN for never-departed, start_s) per replication;
    each window ends at that run's last arrival. Increments of all runs are pooled. Returns
    {"verdict": "growing" | "no trend" | "too few requests", "t": statistic or None, "threshold",
    "sections", "backlog_growth": mean N(end) - N(start) in requests, "net_inflow_rps": mean growth per
    second of window, "method"}.
    """
    incs, spans, measured = [], [], 0
    for arrival_s, departure_s, start_s in runs:
        if arrival_s.size == 0:
            continue
        end_s = float(arrival_s[-1])
        measured += int(np.count_nonzero(arrival_s >= start_s))
        if end_s <= start_s:
            continue
        incs.append(net_inflow(arrival_s, departure_s, start_s, end_s, sections))
        spans.append(end_s - start_s)
    return growth_verdict(incs, spans, measured, sections)


def growth_verdict(incs: list, spans: list, measured: int, sections: int = SECTIONS) -> dict:
    """Returns growth_test's dict from each run's net inflow per section (`incs`), its window length and the
    number of measured arrivals (streaming runs compute the increments from time histograms)."""
    growth = [float(d.sum()) for d in incs]
    rates = [g / span for g, span in zip(growth, spans)]
    out = {"method": f"net inflow (arrivals - departures) over {sections} time sections of the measured window, "
                     "one-sided t test", "sections": sections, "threshold": THRESHOLD, "t": None,
           "backlog_growth": float(np.mean(growth)) if growth else None,
           "net_inflow_rps": float(np.mean(rates)) if rates else None}
    if measured < MIN_ARRIVALS or not incs:
        out["verdict"] = "too few requests"
        return out
    d = np.concatenate(incs)
    sd = float(d.std(ddof=1))
    mean = float(d.mean())
    t = (math.inf if mean > 0 else 0.0) if sd == 0 else mean / (sd / math.sqrt(d.size))
    out["t"] = t
    out["verdict"] = "growing" if t > THRESHOLD else "no trend"
    return out


def describe_growth(test: dict) -> str:
    """Returns the loud warning text for a run whose backlog grew (verdict "growing")."""
    t = test["t"]
    return (f"UNSTABLE (measured in the run): the number of requests in the system grew by "
            f"{test['backlog_growth']:.4g} over the measured window ({test['net_inflow_rps']:.4g} rps more arrived "
            f"than left; t = {'inf' if math.isinf(t) else format(t, '.3g')} > {test['threshold']:g} over "
            f"{test['sections']} sections): the queue grows without bound, so latencies depend on the run length "
            "and mean nothing in steady state")
