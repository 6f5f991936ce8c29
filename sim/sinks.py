"""Where finished batches go in a streaming run (`outputs.streaming`): fixed-memory statistics instead of
per-request records, so a day of traffic fits in a few hundred megabytes.

`StreamingSink.take` receives, block by block in claim order, the batches a shared-queue engine finished and
the requests they took (sim.engine.simulate_shared with `chunks`). It keeps:
- latency and queue-wait sketches (sim.sketch) per CI section: contiguous runs of measured requests in
  arrival order, merged pairwise as the run grows so there are always 32 to 64 of them, and grouped into 5 to
  10 sections at the end as sim.stats.with_ci does;
- exact counts, sums (means, Little's law), batch sizes, busy time and completions per replica, SLO hits;
- per-replica latency sketches, and time histograms of arrivals and departures for the growth test.
A batch whose completion may lie past the end of the measured window (the last arrival, known only at the
end) waits in `pending` until the end is known, so rates and busy time are exact.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from .sketch import LogSketch

FINE_MAX = 64  # CI sections kept while running (merged pairwise beyond this)


class TimeHistogram:
    """Weighted counts of times in equal bins over [0, width x bins); the bin width doubles (bins merged
    pairwise) whenever a time falls beyond, so memory stays fixed whatever the run's length."""

    def __init__(self, width_s: float = 1.0, bins: int = 4096):
        self.width = width_s
        self.counts = np.zeros(bins, np.float64)

    def add(self, times_s: np.ndarray, weights: Optional[np.ndarray] = None) -> None:
        if times_s.size == 0:
            return
        top = float(times_s.max())
        while top >= self.width * self.counts.size:
            self.counts = self.counts.reshape(-1, 2).sum(axis=1)
            self.counts = np.concatenate([self.counts, np.zeros(self.counts.size)])
            self.width *= 2
        idx = np.clip((times_s / self.width).astype(np.int64), 0, self.counts.size - 1)
        self.counts += np.bincount(idx, weights=weights, minlength=self.counts.size)

    def cumulative(self, edges_s: np.ndarray) -> np.ndarray:
        """Returns the weight at or before each edge, linear within a bin."""
        cum = np.concatenate([[0.0], np.cumsum(self.counts)])
        grid = np.arange(cum.size) * self.width
        return np.interp(edges_s, grid, cum)


class _Section:
    __slots__ = ("latency", "wait", "n", "hits")

    def __init__(self):
        self.latency, self.wait, self.n, self.hits = LogSketch(), LogSketch(), 0, 0

    def merge(self, other: "_Section") -> "_Section":
        self.latency.merge(other.latency)
        self.wait.merge(other.wait)
        self.n += other.n
        self.hits += other.hits
        return self


class StreamingSink:
    """Fixed-memory statistics of one replication (see the module docstring). `slo_limit_s`: the latency the
    SLO attainment counts against (None: no SLO)."""

    def __init__(self, replicas: int, warmup_s: float, max_batch: int, slo_limit_s: Optional[float] = None,
                 first_section: int = 64, last_arrival_s: Optional[float] = None):
        self.replicas, self.warmup_s = replicas, warmup_s
        self.slo_limit_s = slo_limit_s
        self.sections: list[_Section] = [_Section()]
        self.section_size = first_section
        self.per_replica = [LogSketch() for _ in range(replicas)]
        self.served_per_replica = np.zeros(replicas, np.int64)
        self.batch_sizes = np.zeros(max_batch + 1, np.int64)
        # the last arrival, when a first pass over the arrival stream found it: every batch is then resolved as
        # it comes (nothing pending), and the growth test's histograms get bins of 1/4096 of the run
        self.known_end = last_arrival_s
        width = max(last_arrival_s, 1e-9) / 4096 if last_arrival_s is not None else 1.0
        self.arrivals = TimeHistogram(width)
        self.departures = TimeHistogram(width)
        self.generated = 0       # every arrival
        self.admitted = 0        # arrivals that entered the system (not turned away by a queue limit)
        self.measured = 0        # served requests that arrived at or after warmup_s
        self.after_warmup = 0    # arrivals at or after warmup_s
        self.first_arrival = math.inf
        self.last_arrival = -math.inf
        self.sum_arrival_after = 0.0  # sum of max(a, warmup) over every arrival (Little's law)
        self.pending: list = []  # (completion, dispatch, size, replica) of batches that may end past the window
        # instance groups: a GPU is busy while any of its instances runs, so busy time is the union of its steps
        # (batches come in dispatch order per GPU); `covered` is where each GPU's union has reached
        self.union_busy = False
        self.covered = np.full(replicas, -math.inf)
        self.completed = np.zeros(replicas, np.int64)  # of batches known to end inside the window ...
        self.busy = np.zeros(replicas)                  # ... and their busy seconds after its start
        self.left_sum = 0.0    # sum of size x max(completion, start) over those batches (Little's law)
        self.left_n = 0
        self.unserved_measured = 0
        self.rejected = self.timed_out = self.delayed = 0  # measured requests turned away, or delayed (queue limits)
        self.turned_per_replica = np.zeros(replicas, np.int64)  # measured turned away, by the replica routed to
        self.horizon_s = 0.0
        self._closed: Optional[dict] = None
        self.windows = None  # sim.windows.WindowStats when outputs.window_s is set
        self.metric_states: list = []  # outputs.metrics: one accumulator per sink metric (sim.sink_metrics)
        self.completed_requests = 0  # a class's sink: its requests finishing inside the run's measured window
        self.classes: Optional[list] = None  # workload.classes: one sink per class (requests only)
        self.scaling = None  # autoscaled: sim.fleet.scaling's record of replica lives

    # ---- fed by the engine ----
    def take(self, arrival_s: np.ndarray, size: np.ndarray, dispatch_s: np.ndarray, completion_s: np.ndarray,
             replica: np.ndarray, step_s: np.ndarray, safe_s: float = -math.inf) -> None:
        """Adds finished batches (claim order) and the requests they took (arrival order, contiguous: a shared
        queue's batches take requests in arrival order). `safe_s`: an arrival time already generated (the window
        ends at the last arrival, so no later)."""
        if size.size:
            per_req_batch = np.repeat(np.arange(size.size), size)
            self.take_requests(arrival_s, dispatch_s[per_req_batch], completion_s[per_req_batch],
                               replica[per_req_batch])
        else:
            self._arrivals(arrival_s)
        self.take_batches(size, dispatch_s, completion_s, replica, safe_s)

    def take_requests(self, arrival_s: np.ndarray, dispatch_s: np.ndarray, completion_s: np.ndarray,
                      replica: np.ndarray, delayed: Optional[np.ndarray] = None) -> None:
        """Adds served requests in arrival order (each with its batch's dispatch and completion time and its
        replica; `delayed`: those a timeout sent behind the others): the CI sections are contiguous runs of them.
        Behind a router, sim.fleet.streamed puts them back in arrival order."""
        self._arrivals(arrival_s)
        if arrival_s.size == 0:
            return
        if delayed is not None:
            self.delayed += int((delayed & (arrival_s >= self.warmup_s)).sum())
        latency = completion_s - arrival_s
        wait = dispatch_s - arrival_s
        m = arrival_s >= self.warmup_s
        self._measured(latency[m], wait[m], replica[m])
        if self.metric_states:
            from .sink_metrics import RequestBlock, feed

            feed(self.metric_states, RequestBlock(arrival_s[m], latency[m], wait[m], replica[m]))
        if self.windows is not None:
            self.windows.add_requests(arrival_s, latency, dispatch_s, np.zeros(arrival_s.size, bool))
        self.departures.add(completion_s)
        self.horizon_s = max(self.horizon_s, float(completion_s.max()))

    def take_turned(self, arrival_s: np.ndarray, timed_out: np.ndarray, replica: Optional[np.ndarray] = None) -> None:
        """Adds requests turned away by a full queue (or, where `timed_out`, dropped by its timeout): they arrived
        but never entered the system (no latency; misses for the SLO). `replica`: where a router sent them."""
        if arrival_s.size == 0:
            return
        self._arrivals(arrival_s, admitted=False)
        m = arrival_s >= self.warmup_s
        self.timed_out += int((timed_out & m).sum())
        self.rejected += int((~timed_out & m).sum())
        if replica is not None:
            self.turned_per_replica += np.bincount(replica[m], minlength=self.replicas)
        if self.windows is not None:
            nan = np.full(arrival_s.size, np.nan)
            self.windows.add_requests(arrival_s, nan, nan, np.ones(arrival_s.size, bool))

    def take_batches(self, size: np.ndarray, dispatch_s: np.ndarray, completion_s: np.ndarray, replica: np.ndarray,
                     safe_s: float = -math.inf) -> None:
        """Adds started batches (any order): batch sizes, and busy time and completions inside the window."""
        if size.size == 0:
            return
        if self.windows is not None:
            self.windows.add_batches(size.astype(float), dispatch_s, completion_s)
        keep = dispatch_s >= self.warmup_s
        self.batch_sizes += np.bincount(size[keep], minlength=self.batch_sizes.size)
        # busy time and completions need the window's end (the last arrival): a batch ending after an arrival
        # already generated waits until it is known
        self.pending.append((completion_s, dispatch_s, size, replica))
        if self.known_end is not None:
            self._resolve_known()
        else:
            self._resolve(safe_s)

    def _resolve_known(self) -> None:
        """Counts every pending batch now that the window's end is known (clipped to it)."""
        start, end = self._start(), self.known_end
        if not end > start:
            return  # no flowing window: resolved at the end (window())
        for c, d, size, rep in self.pending:
            inside = (c >= start) & (c <= end)
            self.completed += np.bincount(rep[inside], weights=size[inside], minlength=self.replicas).astype(np.int64)
            self.busy += self._busy(rep, np.clip(d, start, end), np.clip(c, start, end))
            self.left_sum += float((size * np.clip(c, start, end)).sum())
            self.left_n += int(size.sum())
        self.pending = []

    def _busy(self, rep: np.ndarray, d: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Returns the busy seconds per replica of batches [d, c) (clipped to the window): their sum, or with
        instance groups the length their union adds to each GPU's."""
        if not self.union_busy:
            return np.bincount(rep, weights=c - d, minlength=self.replicas)
        out = np.zeros(self.replicas)
        for g in np.unique(rep):
            mine = rep == g
            dg, cg = d[mine], c[mine]
            reach = np.maximum.accumulate(np.concatenate([[self.covered[g]], cg]))
            out[g] = float(np.clip(cg - np.maximum(dg, reach[:-1]), 0.0, None).sum())
            self.covered[g] = reach[-1]
        return out

    def _start(self) -> float:
        return self.warmup_s if self.warmup_s > 0 else (self.first_arrival if self.generated else 0.0)

    def _resolve(self, safe_s: float) -> None:
        """Counts the pending batches that end by `safe_s` (inside the window's right edge)."""
        start, keep = self._start(), []
        for c, d, size, rep in self.pending:
            ok = c <= safe_s
            if not ok.all():
                keep.append((c[~ok], d[~ok], size[~ok], rep[~ok]))
            c, d, size, rep = c[ok], d[ok], size[ok], rep[ok]
            inside = c >= start
            self.completed += np.bincount(rep[inside], weights=size[inside], minlength=self.replicas).astype(np.int64)
            self.busy += self._busy(rep, np.maximum(d, start), np.maximum(c, start))
            self.left_sum += float((size * np.maximum(c, start)).sum())
            self.left_n += int(size.sum())
        self.pending = keep

    def finish(self, never_taken_s: np.ndarray) -> None:
        """Ends the run: `never_taken_s` are arrivals no batch took (a static batch that never filled)."""
        self._arrivals(never_taken_s)
        self.unserved_measured = int((never_taken_s >= self.warmup_s).sum())
        if self.windows is not None and never_taken_s.size:
            nan = np.full(never_taken_s.size, np.nan)
            self.windows.add_requests(never_taken_s, nan, nan, np.zeros(never_taken_s.size, bool))

    def _arrivals(self, a: np.ndarray, admitted: bool = True) -> None:
        """Counts arrivals (sorted); only admitted ones enter the system (Little's law, the growth test)."""
        if a.size == 0:
            return
        self.first_arrival = min(self.first_arrival, float(a[0]))
        self.generated += int(a.size)
        self.last_arrival = max(self.last_arrival, float(a[-1]))
        self.horizon_s = max(self.horizon_s, float(a[-1]))
        if admitted:
            self.admitted += int(a.size)
            self.after_warmup += int((a >= self.warmup_s).sum())
            self.sum_arrival_after += float(np.maximum(a, self.warmup_s).sum())
            self.arrivals.add(a)

    def _measured(self, latency: np.ndarray, wait: np.ndarray, who: np.ndarray) -> None:
        """Feeds measured requests, in arrival order, into the CI sections (each `section_size` long)."""
        self.measured += int(latency.size)
        self.served_per_replica += np.bincount(who, minlength=self.replicas)
        for r in np.unique(who):
            self.per_replica[r].add(latency[who == r])
        i = 0
        while i < latency.size:
            sec = self.sections[-1]
            room = self.section_size - sec.n
            j = min(latency.size, i + room)
            sec.latency.add(latency[i:j])
            sec.wait.add(wait[i:j])
            sec.n += j - i
            if self.slo_limit_s is not None:
                sec.hits += int((latency[i:j] <= self.slo_limit_s).sum())
            i = j
            if sec.n == self.section_size:
                self.sections.append(_Section())
                if len(self.sections) > FINE_MAX:
                    self._coarsen()

    def _coarsen(self) -> None:
        """Merges sections pairwise (the last, open one stays as it is) and doubles the section size."""
        full, open_ = self.sections[:-1], self.sections[-1]
        self.sections = [full[i].merge(full[i + 1]) for i in range(0, len(full) - 1, 2)]
        if len(full) % 2:
            self.sections.append(full[-1])  # cannot happen with FINE_MAX even; kept for safety
        self.sections.append(open_)
        self.section_size *= 2

    # ---- read by the summary ----
    def window(self) -> dict:
        """Returns the measured window's start, end and span, per replica the completions and busy seconds
        inside it, and the departures' area term of Little's law (exact: the last arrival is now known)."""
        if self._closed is not None:
            return self._closed
        start = self._start()
        end = self.last_arrival
        if not end > start:  # one request, or all at one instant: rates run to the last completion
            end = max(self.horizon_s, start)
        t1 = self.last_arrival
        completed, busy = self.completed.copy(), self.busy.copy()
        left_sum, left_n = self.left_sum, self.left_n
        for c, d, size, rep in self.pending:
            inside = (c >= start) & (c <= end)
            completed += np.bincount(rep[inside], weights=size[inside], minlength=self.replicas).astype(np.int64)
            busy += self._busy(rep, np.clip(d, start, end), np.clip(c, start, end))
            left_sum += float((size * np.clip(c, start, t1)).sum())
            left_n += int(size.sum())
        self._closed = {"start_s": start, "end_s": end, "span_s": max(end - start, 1e-300), "completed": completed,
                        "busy_s": busy, "out_area": left_n * t1 - left_sum}
        return self._closed

    def sections_for(self, need: int, k_max: int, k_min: int) -> Optional[list[_Section]]:
        """Returns the CI sections grouped into k = min(k_max, measured // need) contiguous groups of about
        equal numbers of requests (boundaries on the fine sections), or None when k < k_min."""
        secs = [s for s in self.sections if s.n]
        k = min(k_max, self.measured // need, len(secs))
        if k < k_min:
            return None
        cum = np.cumsum([s.n for s in secs])
        cuts = [0] + [int(np.argmin(np.abs(cum - self.measured * i / k))) + 1 for i in range(1, k)] + [len(secs)]
        out = []
        for i in range(k):
            if cuts[i + 1] <= cuts[i]:
                return None  # too few fine sections to cut into k groups
            g = _Section()
            for s in secs[cuts[i]:cuts[i + 1]]:
                g.merge(s)
            out.append(g)
        return out

    def overall(self) -> _Section:
        """Returns every measured request as one section."""
        g = _Section()
        for s in self.sections:
            g.merge(s)
        return g
