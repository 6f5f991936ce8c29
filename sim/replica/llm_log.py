"""What an LLM fleet's run produced: per-request times and per-engine-step records (sim.llm_metrics reads it)."""
from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass
class LlmLog:
    """Per-request and per-step results of one LLM run (times in seconds, NaN when never reached)."""

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    preemptions: np.ndarray          # per request
    recomputed_tokens: np.ndarray    # per request: prefill tokens computed again after preemption
    step_start_s: np.ndarray
    step_s: np.ndarray
    step_prefill_tokens: np.ndarray
    step_decode_tokens: np.ndarray   # output tokens that requests received from this step's decode
    step_decode_slots: np.ndarray    # sequences the step computed a decode for (static: padding included)
    step_kv_used: np.ndarray         # KV tokens held (continuous: blocks * block_size; a run's time-weighted mean)
    step_running: np.ndarray
    step_waiting: np.ndarray
    kv_capacity_tokens: int          # the whole fleet's KV cache
    refused: np.ndarray              # per request: could never run (too large for the KV cache or step budget)
    itl_s: Optional[np.ndarray] = None       # distinct inter-token gaps (continuous batching) ...
    itl_weight: Optional[np.ndarray] = None  # ... and how many tokens waited each of them
    replica: Optional[np.ndarray] = None     # per request: the replica that served it (-1: none)
    step_replica: Optional[np.ndarray] = None  # per step: the replica that ran it
    replica_kv_tokens: Optional[np.ndarray] = None  # per replica: its KV cache capacity
    routed: Optional[np.ndarray] = None      # per request: the replica a router sent it to (None: shared queue)
    step_count: Optional[np.ndarray] = None  # per row: engine steps it stands for (a run of decode steps; else 1)
    step_kv_peak: Optional[np.ndarray] = None  # per row: the most KV tokens held during it
    rejected: Optional[np.ndarray] = None    # per request: turned away by a full waiting queue
    timed_out: Optional[np.ndarray] = None   # per request: its client gave up waiting for admission
    classes: Optional[np.ndarray] = None     # per request: its class (workload.classes)
    admitted_s: Optional[np.ndarray] = None  # per request: first admission, its prefill's start (continuous)
    clients: Optional[dict] = None           # closed loop: per request client, sent_s, think_s, cycle_end_s
    scaling: Optional[dict] = None           # autoscaler: replica lives, billing end (sim.fleet.scaling)
    step_stats: Optional[object] = None      # streaming: sim.replica.step_stats.StepStats (the step columns empty)

    @property
    def steps(self) -> np.ndarray:
        """Returns the number of engine steps each step row stands for."""
        return self.step_count if self.step_count is not None else np.ones(self.step_s.size, np.int64)

    @property
    def finished(self) -> np.ndarray:
        return np.isfinite(self.finish_s)

    def step_kv_fraction(self, peak: bool = False) -> np.ndarray:
        """Returns each step row's KV use (time-weighted mean, or with `peak` its largest) as a fraction of its
        own replica's cache."""
        kv = self.step_kv_peak if peak and self.step_kv_peak is not None else self.step_kv_used
        if self.step_replica is None or self.replica_kv_tokens is None:
            return kv / max(self.kv_capacity_tokens, 1)
        return kv / np.maximum(self.replica_kv_tokens[self.step_replica], 1)


class StepLog:
    """Per-step columns appended during the run (typed arrays, converted to numpy once at the end)."""

    # one row per engine step, or per run of identical decode steps (`n` steps; dec and slots are totals,
    # kv the time-weighted mean over the row and peak its largest value)
    NAMES = (("start", "d"), ("dur", "d"), ("prefill", "q"), ("dec", "q"), ("slots", "q"), ("kv", "d"),
             ("run", "q"), ("wait", "q"), ("rep", "i"), ("n", "i"), ("peak", "q"))

    def __init__(self, replica: int = 0):
        self.cols = {k: array(t) for k, t in self.NAMES}
        self.replica = replica

    def add(self, start, dur, prefill, dec, slots, kv, run, wait, steps=1):
        c = self.cols
        c["start"].append(start)
        c["dur"].append(dur)
        c["prefill"].append(prefill)
        c["dec"].append(dec)
        c["slots"].append(slots)
        c["kv"].append(kv)
        c["run"].append(run)
        c["wait"].append(wait)
        c["rep"].append(self.replica)
        c["n"].append(steps)
        c["peak"].append(int(kv))

    def take(self, keep_last: bool = False) -> dict:
        """Returns the rows so far as numpy columns and forgets them (streaming), all but the last with
        `keep_last` (a row still open: a run of decode steps whose end is not known yet)."""
        dtypes = {"d": np.float64, "q": np.int64, "i": np.int32}
        n = len(self.cols["start"]) - (1 if keep_last else 0)
        out = {k: np.frombuffer(v, dtype=dtypes[v.typecode])[:max(n, 0)].copy() for k, v in self.cols.items()}
        if n > 0:
            for v in self.cols.values():
                del v[:n]
        return out

    def arrays(self) -> dict:
        dtypes = {"d": np.float64, "q": np.int64, "i": np.int32}
        return {k: np.frombuffer(v, dtype=dtypes[v.typecode]).copy() for k, v in self.cols.items()}


def merge_steps(logs: list[StepLog]) -> dict:
    """Returns the step columns of several replicas, replica after replica (each in time order), copied
    once from the typed arrays."""
    dtypes = {"d": np.float64, "q": np.int64, "i": np.int32}
    return {k: np.concatenate([np.frombuffer(s.cols[k], dtype=dtypes[t]) for s in logs]) for k, t in StepLog.NAMES}
