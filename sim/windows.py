"""Time windows (`outputs.window_s`): the run cut into equal windows of arrival time, one row per window in
windows.parquet, so a day shows its p99 hour by hour.

A request belongs to the window of its arrival; `completed` and `throughput_rps` count completions in the
window, `utilization` the replicas' busy time in it, `queue_mean` the time-average number of requests waiting
for a batch in it (each request's wait is split over the windows it spans). Percentiles come with a 95%
interval from the window's 5 equal time slices (t on 4 degrees of freedom) where every slice holds enough
requests for that percentile (100 / (1 - q)). Records give exact percentiles; streaming runs take them from
per-window sketches (sim.sketch, within 0.25%), with slices kept only up to `MAX_SLICED` windows.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from .sketch import LogSketch
from .stats import _half_width, min_section_size

SLICES = 5
MAX_WINDOWS = 100_000      # records
MAX_STREAMING_WINDOWS = 2_000  # streaming: a sketch each (about 60 KB)
MAX_SLICED = 100  # streaming: windows that keep per-slice sketches for intervals
QS = (50, 90, 99)


def _spread(values: np.ndarray, lo_s: np.ndarray, hi_s: np.ndarray, width_s: float, n: int) -> np.ndarray:
    """Returns per window the length of each interval [lo, hi) that falls in it times its value, summed
    (intervals may span windows; whatever lies past the last window counts in it)."""
    lo_w = np.clip((lo_s // width_s).astype(np.int64), 0, n - 1)
    hi_w = np.clip((hi_s // width_s).astype(np.int64), 0, n - 1)
    same = lo_w == hi_w
    out = np.bincount(lo_w[same], weights=(hi_s - lo_s)[same] * values[same], minlength=n).astype(float)
    lo, hi, v, a, b = lo_s[~same], hi_s[~same], values[~same], lo_w[~same], hi_w[~same]
    if lo.size:
        out += np.bincount(a, weights=((a + 1) * width_s - lo) * v, minlength=n)   # the first window's part
        out += np.bincount(b, weights=(hi - b * width_s) * v, minlength=n)         # the last window's part
        between = np.zeros(n + 1)  # whole windows in between: a difference array
        np.add.at(between, a + 1, v * width_s)
        np.add.at(between, b, -v * width_s)
        out += np.cumsum(between)[:n]
    return out


class WindowStats:
    """Counts, sums and (streaming) sketches per window of one replication."""

    def __init__(self, window_s: float, horizon_s: float, replicas: int, slo_limit_s: Optional[float],
                 sketches: bool, open_ended: bool = False):
        self.width = window_s
        self.n = max(1, int(math.ceil(horizon_s / window_s)))
        self.open = open_ended  # the run's length is not known ahead: arrivals add windows
        self.active = None      # autoscaled: serving replica-seconds per window
        self.replicas = replicas
        self.slo = slo_limit_s
        n = self.n
        self.arrivals = np.zeros(n, np.int64)
        self.served = np.zeros(n, np.int64)
        self.turned_away = np.zeros(n, np.int64)
        self.completed = np.zeros(n, np.int64)
        self.busy = np.zeros(n)
        self.queue_area = np.zeros(n)
        self.latency_sum = np.zeros(n)
        self.hits = np.zeros(n, np.int64)
        self.sketches = [LogSketch() for _ in range(n)] if sketches else None
        self.sliced = sketches and n <= MAX_SLICED
        self.slices = [[LogSketch() for _ in range(SLICES)] for _ in range(n)] if self.sliced else None
        self.values: list = []  # records: (window, slice, latency) arrays, joined at the end

    def _w(self, t: np.ndarray, grow: bool = False) -> np.ndarray:
        """Returns each time's window; arrivals past the last window add windows when the run's length was not
        known ahead (`grow`); anything else past it (a drain after the last arrival) counts in the last one."""
        if grow and self.open and t.size and float(np.nanmax(t)) >= self.n * self.width:
            self._grow(int(float(np.nanmax(t)) // self.width) + 1)
        return np.clip((t // self.width).astype(np.int64), 0, self.n - 1)

    def _grow(self, n: int) -> None:
        """Adds windows up to `n` (a run whose length was not known ahead)."""
        if n > MAX_WINDOWS:
            raise ValueError(f"more than {MAX_WINDOWS} windows")
        extra = n - self.n
        for name in ("arrivals", "served", "turned_away", "completed", "busy", "queue_area", "latency_sum", "hits"):
            a = getattr(self, name)
            setattr(self, name, np.concatenate([a, np.zeros(extra, a.dtype)]))
        if self.sketches is not None:
            self.sketches += [LogSketch() for _ in range(extra)]
        if self.sliced:
            if n > MAX_SLICED:
                self.sliced, self.slices = False, None
            else:
                self.slices += [[LogSketch() for _ in range(SLICES)] for _ in range(extra)]
        self.n = n

    def add_requests(self, arrival: np.ndarray, latency: np.ndarray, dispatch: np.ndarray, turned: np.ndarray) -> None:
        """Adds requests: arrival times, latency (NaN: not served), dispatch (NaN: not served), turned away."""
        waited = np.isfinite(dispatch)
        w = self._w(arrival, grow=True)
        n = self.n
        self.arrivals += np.bincount(w, minlength=n)
        ok = np.isfinite(latency)
        self.served += np.bincount(w[ok], minlength=n)
        self.turned_away += np.bincount(w[turned], minlength=n)
        self.latency_sum += np.bincount(w[ok], weights=latency[ok], minlength=n)
        if self.slo is not None:
            hit = ok & (latency <= self.slo)
            self.hits += np.bincount(w[hit], minlength=n)
        self.queue_area += _spread(np.ones(int(waited.sum())), arrival[waited], dispatch[waited], self.width, n)
        sl = np.clip(((arrival - w * self.width) / self.width * SLICES).astype(np.int64), 0, SLICES - 1)
        if self.sketches is None:
            self.values.append((w[ok], sl[ok], latency[ok]))
            return
        for i in np.unique(w[ok]):
            mine = ok & (w == i)
            self.sketches[i].add(latency[mine])
            if self.sliced:
                for j in np.unique(sl[mine]):
                    self.slices[i][j].add(latency[mine & (sl == j)])

    def add_batches(self, size: np.ndarray, dispatch: np.ndarray, completion: np.ndarray) -> None:
        """Adds finished batches (their completions and busy time)."""
        wc = self._w(completion)
        self.completed += np.bincount(wc, weights=size, minlength=self.n).astype(np.int64)
        self.busy += _spread(np.ones(size.size), dispatch, completion, self.width, self.n)

    def add_active(self, lives: list) -> None:
        """Adds the serving time of autoscaled replicas ([replica, requested_s, serving_s, released_s])."""
        served = [(s, r) for _, _, s, r in lives if s == s and r > s]
        if served:
            start, end = np.array([s for s, _ in served]), np.array([r for _, r in served])
            self.active = _spread(np.ones(start.size), start, end, self.width, self.n)

    def add_busy(self, start: np.ndarray, end: np.ndarray) -> None:
        """Adds busy intervals that complete no request (LLM engine steps)."""
        self.busy += _spread(np.ones(start.size), start, end, self.width, self.n)

    def add_completions(self, t: np.ndarray) -> None:
        self.completed += np.bincount(self._w(t), minlength=self.n)

    def rows(self) -> list[dict]:
        """Returns one dict per window (the windows.parquet columns)."""
        exact = None
        if self.sketches is None and self.values:
            w = np.concatenate([v[0] for v in self.values])
            sl = np.concatenate([v[1] for v in self.values])
            lat = np.concatenate([v[2] for v in self.values])
            order = np.lexsort((sl, w))
            w, sl, lat = w[order], sl[order], lat[order]
            cuts = np.searchsorted(w, np.arange(self.n + 1))
            exact = (w, sl, lat, cuts)
        out = []
        for i in range(self.n):
            row = {"window": i, "start_s": i * self.width, "end_s": (i + 1) * self.width,
                   "arrivals": int(self.arrivals[i]), "served": int(self.served[i]),
                   "turned_away": int(self.turned_away[i]), "completed": int(self.completed[i]),
                   "throughput_rps": self.completed[i] / self.width,
                   "utilization": self.busy[i] / (self.replicas * self.width if self.active is None
                                                  else max(self.active[i], 1e-300)),
                   "replicas_active": self.replicas if self.active is None else self.active[i] / self.width,
                   "queue_mean": self.queue_area[i] / self.width,
                   "latency_mean_s": self.latency_sum[i] / self.served[i] if self.served[i] else math.nan,
                   "slo_attainment": (self.hits[i] / self.arrivals[i] if self.slo is not None and self.arrivals[i]
                                      else math.nan)}
            row.update(self._percentiles(i, exact))
            out.append(row)
        return out

    def _percentiles(self, i: int, exact) -> dict:
        out = {}
        if exact is not None:
            w, sl, lat, cuts = exact
            mine = lat[cuts[i]:cuts[i + 1]]
            mine_sl = sl[cuts[i]:cuts[i + 1]]
            parts = [mine[mine_sl == j] for j in range(SLICES)]

            def q_of(values, q):
                return float(np.percentile(values, q)) if values.size else math.nan
        else:
            mine = self.sketches[i] if self.sketches is not None else None
            parts = self.slices[i] if self.sliced else None

            def q_of(sk, q):
                return sk.quantile(q / 100) if sk is not None else math.nan
        for q in QS:
            point = q_of(mine, q) if mine is not None else math.nan
            out[f"latency_p{q}_s"] = point
            lo = hi = math.nan
            need = min_section_size(f"p{q}")
            if parts is not None and all((p.size if exact is not None else p.n) >= need for p in parts):
                half = _half_width([q_of(p, q) for p in parts])
                lo, hi = point - half, point + half
            out[f"latency_p{q}_lo_s"], out[f"latency_p{q}_hi_s"] = lo, hi
        return out
