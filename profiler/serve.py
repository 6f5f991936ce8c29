"""A real batching server in one process: the measured half of `servesim validate`.

An arrival thread releases requests at their trace times on the real clock into a queue; the serving
loop forms batches with the simulator's own dispatch rule (sim.batching.DispatchRule: start when a
preferred/full batch waits or the oldest request's delay has run out, then `rule.take` requests), assembles the input tensor from per-request inputs, runs the torch model and
synchronises. Every request's arrival, dispatch, completion and batch size is recorded on the real clock,
and so are the server's own overheads (input assembly, and the gap between one batch finishing and the
next starting when requests were already waiting).
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass

import numpy as np


@dataclass
class ServeRecord:
    """Per-request times in seconds from the start of the run, plus per-batch overheads."""

    arrival_s: np.ndarray        # intended (trace) arrival
    released_s: np.ndarray       # when the arrival thread actually enqueued it
    dispatch_s: np.ndarray       # when its batch was formed
    completion_s: np.ndarray     # when its batch's outputs were ready (after synchronize)
    batch_size: np.ndarray
    batch_sizes: np.ndarray       # per batch, in dispatch order: requests in it
    batch_assembly_s: np.ndarray  # per batch: building the input tensor
    batch_compute_s: np.ndarray   # per batch: model call to synchronize
    batch_gap_s: np.ndarray       # per batch: previous completion -> this dispatch, when requests were waiting


class Feeder:
    """An arrival thread: releases request ids into `queue` at t0 + arrival_s[i] on the real clock and
    records when each was actually released (seconds from t0)."""

    def __init__(self, arrival_s):
        self.queue: "queue.SimpleQueue[int]" = queue.SimpleQueue()
        self.released = np.zeros(len(arrival_s))
        self.t0 = time.perf_counter() + 0.05  # let both threads get going before the first arrival
        self.thread = threading.Thread(target=self._run, args=(list(arrival_s),), daemon=True)
        self.thread.start()

    def _run(self, arrival_s):
        clock = time.perf_counter
        for i, a in enumerate(arrival_s):
            wait = self.t0 + a - clock()
            if wait > 0:
                time.sleep(wait)  # no spinning: a spinning thread would hold the GIL the server loop needs
            self.released[i] = clock() - self.t0
            self.queue.put(i)

    def drain(self, into: list) -> None:
        """Appends every request released so far to `into`, without blocking."""
        try:
            while True:
                into.append(self.queue.get_nowait())
        except queue.Empty:
            pass

    def is_alive(self) -> bool:
        return self.thread.is_alive()

    def join(self) -> None:
        self.thread.join()


def serve_trace(runner, rule, arrival_s: np.ndarray, item_pool) -> ServeRecord:
    """Serves the open-loop trace `arrival_s` (seconds, sorted) for real with `runner` (profiler.profile.Runner:
    each batch goes through runner.run, which replays a CUDA graph where the profile captured one).

    `item_pool` is a list of per-request input tensors (already on the device); request i uses
    item_pool[i % len(item_pool)]. Returns a ServeRecord.
    """
    torch = runner.torch
    n = len(arrival_s)
    dispatch = np.full(n, np.nan)    # NaN: never served (a static batch that could not fill)
    completion = np.full(n, np.nan)
    size = np.zeros(n, dtype=np.int32)
    assembly, compute, gaps, sizes = [], [], [], []
    smallest = rule.smallest
    delay = rule.delay_s
    clock = time.perf_counter
    feeder = Feeder(arrival_s)
    q, released, t0 = feeder.queue, feeder.released, feeder.t0
    waiting: list[int] = []
    served = 0
    last_end = None
    with torch.inference_mode():
        while served < n:
            feeder.drain(waiting)
            if not waiting:
                waiting.append(q.get())
                continue
            now = clock() - t0
            due = released[waiting[0]] + delay
            if len(waiting) < smallest and now < due:
                if due == float("inf") and not feeder.is_alive() and q.empty():
                    break  # every request has arrived and a static batch can never fill: the rest stay unserved
                try:
                    waiting.append(q.get(timeout=min(due - now, 0.05)))  # recheck at least every 50 ms
                except queue.Empty:
                    pass
                continue
            k = rule.take(len(waiting), now < due)
            batch, waiting = waiting[:k], waiting[k:]
            t_dispatch = clock()
            if last_end is not None and released[batch[0]] <= last_end - t0:
                gaps.append(t_dispatch - last_end)  # work was waiting while the server was between batches
            x = torch.cat([item_pool[i % len(item_pool)] for i in batch])
            t_start = clock()
            runner.run(x)
            runner.sync()
            t_end = clock()
            sizes.append(k)
            assembly.append(t_start - t_dispatch)
            compute.append(t_end - t_start)
            idx = np.asarray(batch)
            dispatch[idx] = t_dispatch - t0
            completion[idx] = t_end - t0
            size[idx] = k
            served += k
            last_end = t_end
    feeder.join()
    return ServeRecord(np.asarray(arrival_s, float), released, dispatch, completion, size, np.asarray(sizes, int),
                       np.asarray(assembly), np.asarray(compute), np.asarray(gaps))
