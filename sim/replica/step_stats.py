"""What the LLM summary reads from engine step rows, accumulated block by block in fixed memory.

A records run hands over every row at once (`StepStats.of_log`), so its summary is what the rows give; a streaming
run (`outputs.streaming`) hands over rows as replicas finish them and forgets them, so a day of LLM traffic keeps
no step log (sim.fleet.streamed_llm). Every figure is a sum, a maximum or a count over rows and so exact either way,
except the inter-token latency percentiles, which a streaming run takes from a weighted sketch (sim.sketch,
within its relative accuracy) instead of the sorted gaps.

The measured window [start_s, end_s) is known before the run (it ends at the last arrival): rows starting in it
count for steps, decode slots and tokens; every row's busy time is clipped to it.
"""
from __future__ import annotations

import math
import numpy as np

from ..sketch import LogSketch
from ..stats import PERCENTILES


class StepStats:
    """Sums, maxima and counts of step rows (sim.replica.llm_log.StepLog columns) over the window [start_s, end_s)
    of a fleet of `replicas` engines with `kv_tokens` KV tokens each. `exact`: keep the inter-token gaps themselves
    (records) rather than a sketch of them (streaming). `windows`: a sim.windows.WindowStats to add busy time to."""

    def __init__(self, start_s: float, end_s: float, kv_tokens: np.ndarray, exact: bool = True, windows=None):
        self.start_s, self.end_s = start_s, end_s
        self.kv_tokens = np.maximum(np.asarray(kv_tokens, np.int64), 1)
        replicas = self.kv_tokens.size
        self.busy_per_replica = np.zeros(replicas)
        self.busy_s = 0.0
        self.kv_weighted = self.kv_weight = 0.0  # sum of KV fraction x busy seconds, and the busy seconds
        self.kv_peak = 0.0
        self.decode_slots = self.decode_tokens = 0
        self.decode_steps = self.steps = 0       # steps (in the window) that decoded something, and every step
        self.max_slots = 0                       # the most sequences one step decoded (any row)
        self.exact = exact
        self.itl_parts: list = []                # exact: (gaps, weights) blocks
        self.itl_sketch = LogSketch()
        self.windows = windows

    @classmethod
    def of_log(cls, log, start_s: float, end_s: float) -> "StepStats":
        """Returns the statistics of every step row of an LlmLog (a records run)."""
        kv = log.replica_kv_tokens if log.replica_kv_tokens is not None else np.array([log.kv_capacity_tokens])
        out = cls(start_s, end_s, kv)
        rep = log.step_replica if log.step_replica is not None else np.zeros(log.step_s.size, np.int32)
        out.add_rows(log.step_start_s, log.step_s, log.step_decode_tokens, log.step_decode_slots, log.steps,
                     log.step_kv_used, log.step_kv_peak if log.step_kv_peak is not None else log.step_kv_used, rep)
        if log.itl_s is not None:
            out.add_gaps(log.itl_s, log.itl_weight)
        else:
            out.add_static_gaps(log.step_start_s, log.step_s, log.step_decode_tokens)
        return out

    def add_rows(self, start_s, dur_s, dec, slots, steps, kv, peak, rep) -> None:
        """Adds a block of step rows: start and duration (s), decode tokens delivered, decode slots computed, engine
        steps each row stands for, KV tokens held (time-weighted mean, peak) and the replica that ran it."""
        if start_s.size == 0:
            return
        t0, t1 = self.start_s, self.end_s
        win = (start_s >= t0) & (start_s < t1)
        overlap = np.clip(np.minimum(start_s + dur_s, t1) - np.maximum(start_s, t0), 0.0, None)
        self.busy_s += float(overlap.sum())
        self.busy_per_replica += np.bincount(rep, weights=overlap, minlength=self.busy_per_replica.size)
        on = overlap > 0
        cap = self.kv_tokens[rep[on]]
        w = overlap[on]
        self.kv_weighted += float((kv[on] / cap * w).sum())
        self.kv_weight += float(w.sum())
        self.kv_peak = max(self.kv_peak, float((peak[on] / cap).max(initial=0.0)))
        self.decode_slots += int(slots[win].sum())
        self.decode_tokens += int(dec[win].sum())
        self.decode_steps += int(steps[(slots > 0) & win].sum())
        self.steps += int(steps[win].sum())
        self.max_slots = max(self.max_slots, int((slots // steps).max(initial=0)))
        if self.windows is not None:
            self.windows.add_busy(start_s, start_s + dur_s)

    def add_static_gaps(self, start_s, dur_s, dec) -> None:
        """Static batching: a decode step's duration is the gap, once per token it delivered (rows in the window)."""
        win = (start_s >= self.start_s) & (start_s < self.end_s)
        self.add_gaps(dur_s[win], dec[win])

    def add_gaps(self, gap_s: np.ndarray, weight: np.ndarray) -> None:
        """Adds inter-token gaps (s), each waited by `weight` tokens."""
        if self.exact:
            self.itl_parts.append((np.asarray(gap_s, float), np.asarray(weight)))
        else:
            self.itl_sketch.add(gap_s, weight)

    def itl(self) -> dict:
        """Returns the inter-token latency's mean, percentiles and max (s), weighted by tokens."""
        if not self.exact:
            sk = self.itl_sketch
            if sk.n == 0:
                return _empty()
            return {"mean": sk.mean, **{f"p{q}": sk.lower_quantile(q / 100) for q in PERCENTILES}, "max": sk.hi}
        if not self.itl_parts:
            return _empty()
        return weighted_stats(np.concatenate([v for v, _ in self.itl_parts]),
                              np.concatenate([w for _, w in self.itl_parts]))

    def kv_utilization(self) -> tuple[float, float]:
        """Returns the KV cache's use over busy time (time-weighted mean fraction of each replica's cache) and its
        peak fraction."""
        return (self.kv_weighted / self.kv_weight if self.kv_weight else math.nan), self.kv_peak


def _empty() -> dict:
    return {"mean": math.nan, **{f"p{q}": math.nan for q in PERCENTILES}, "max": math.nan}


def weighted_stats(values: np.ndarray, weights: np.ndarray) -> dict:
    """Returns the weighted mean, percentiles (the smallest value whose cumulative weight reaches q) and max."""
    if values.size == 0 or weights.sum() == 0:
        return _empty()
    order = np.argsort(values)
    v, w = values[order], weights[order].astype(float)
    cum = np.cumsum(w) / w.sum()
    out = {"mean": float((v * w).sum() / w.sum())}
    for q in PERCENTILES:
        out[f"p{q}"] = float(v[min(np.searchsorted(cum, q / 100), v.size - 1)])
    out["max"] = float(v[-1])
    return out

