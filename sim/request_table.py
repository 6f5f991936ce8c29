"""The per-request table of request-level runs (requests.parquet) and the queue-length series its plot draws."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .engine import BatchLog


def request_frame(logs: list[BatchLog], groups=None, class_names=None) -> pd.DataFrame:
    """Returns one row per request of every replication (unserved requests have NaN dispatch/completion)."""
    frames = [pd.DataFrame(request_columns(log, rep, groups, class_names)) for rep, log in enumerate(logs)]
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def request_columns(log: BatchLog, replication: int = 0, groups=None, class_names=None) -> dict[str, np.ndarray]:
    """Returns per-request numpy columns: times in seconds, batch id and size, replica (the one it was
    routed to, or behind a shared queue the one that served it; -1: never served) and its group."""
    n = log.arrival_s.size
    batch = log.request_batch()
    ok = batch >= 0
    b = batch[ok]
    dispatch = np.full(n, np.nan)
    completion = np.full(n, np.nan)
    size = np.zeros(n, dtype=np.int32)
    dispatch[ok] = log.dispatch_s[b]
    completion[ok] = log.completion_s[b]
    size[ok] = log.size[b]
    if log.routed is not None:
        replica = log.routed.astype(np.int32, copy=True)
    else:
        replica = np.full(n, -1, dtype=np.int32)
        replica[ok] = log.replica[b]
    cols = {
        "replication": np.full(n, replication, dtype=np.int32),
        "request_id": np.arange(n, dtype=np.int64),
        "arrival_s": log.arrival_s,
        "dispatch_s": dispatch,
        "completion_s": completion,
        "queue_wait_s": dispatch - log.arrival_s,
        "latency_s": completion - log.arrival_s,
        "batch_id": batch,
        "batch_size": size,
        "replica": replica,
    }
    if groups is not None:
        cols["group"] = group_column(groups, replica)
    st = log.stages
    if st is not None:  # sim.stages: the client's send and answer around the batcher's arrival and completion
        cols["sent_s"] = st["sent_s"]
        cols["preprocess_s"] = log.arrival_s - st["sent_s"]
        cols["answered_s"] = st["answered_s"]
        cols["postprocess_s"] = st["answered_s"] - completion
        cols["latency_s"] = st["answered_s"] - st["sent_s"]
    if class_names is not None and log.classes is not None:
        cols["class"] = pd.Categorical.from_codes(log.classes.astype(np.int64), categories=class_names)
    if log.rejected is not None:
        cols["rejected"] = log.rejected
        cols["timed_out"] = log.timed_out
        cols["delayed"] = log.delayed if log.delayed is not None else np.zeros(n, bool)
    if log.clients is not None:
        cols["client"] = log.clients["client"]
        cols["think_s"] = log.clients["think_s"]
    return cols


def group_column(groups, replica: np.ndarray) -> pd.Categorical:
    """Returns each request's group name from its replica index (-1: none) as a categorical column."""
    names = [g.name for g in groups]
    of = np.repeat(np.arange(len(groups)), [g.replicas for g in groups])
    codes = np.where(replica >= 0, of[np.clip(replica, 0, None)], -1)
    return pd.Categorical.from_codes(codes, categories=names)


def queue_length_series(log: BatchLog, points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Returns (times_s, waiting) sampled on a regular grid: requests arrived but not yet dispatched."""
    a = log.arrival_s
    if a.size == 0:
        return np.zeros(1), np.zeros(1)
    t_end = float(log.completion_s.max()) if log.size.size else float(a[-1])
    grid = np.linspace(0.0, t_end, points)
    arrived = np.searchsorted(a, grid, side="right")
    order = np.argsort(log.dispatch_s, kind="stable")
    cum = np.concatenate([[0], np.cumsum(log.size[order], dtype=np.int64)])
    dispatched = cum[np.searchsorted(log.dispatch_s[order], grid, side="right")]
    return grid, arrived - dispatched
