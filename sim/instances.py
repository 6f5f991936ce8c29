"""Several model instances on one GPU (Triton's instance groups: `server.instances_per_gpu`), all taking
batches from one shared FCFS queue, their steps slowing each other down while they overlap.

Contention is processor sharing with a slowdown: while k steps run on a GPU each advances at 1 / s(k) of its
solo speed (`server.instance_contention` gives s(1..K); the default s(k) = k shares the GPU's throughput, so
two overlapping steps each take twice as long). A step's remaining work is rescaled whenever a step starts or
ends on its GPU, so completion times are exact. How an instance picks its batch is the shared queue's rule
(sim.engine.simulate_shared): when it is free it claims the next requests under its DispatchRule, looking at
the arrivals known ahead. One event per batch start and end; a step's end is rescheduled when its GPU's
concurrency changes (a stale end is not its step's last one pushed, and is skipped).
"""
from __future__ import annotations

import math
from array import array
from bisect import bisect_right
from functools import partial
from typing import Optional

import numpy as np

from .engine import BatchLog, step_samplers
from .kernel import Handler, Kernel

FREE, DONE, START = 0, 1, 2  # same-instant order: an instance frees, a step ends, a step starts


class GpuShare:
    """The steps running on one GPU: remaining solo work (and the time or version of each step's live end event),
    the last update, and the slowdown table."""

    def __init__(self, slowdown: list[float]):
        self.slowdown = slowdown  # s(k) for k = 1..K (index k - 1)
        self.running: dict = {}   # instance -> [remaining solo seconds, its live end event (time or version)]
        self.t = 0.0
        self.busy = 0.0           # seconds the GPU ran any step, up to t

    def rate(self, k: Optional[int] = None) -> float:
        k = len(self.running) if k is None else k
        return 1.0 / self.slowdown[k - 1] if k else 0.0

    def advance(self, t: float) -> None:
        """Counts the work done since the last change, at the rate of the steps that were running."""
        if self.running and t > self.t:
            done = (t - self.t) * self.rate()
            for step in self.running.values():
                step[0] -= done
            self.busy += t - self.t
        self.t = t


def simulate_instances(specs: list, instances: int, slowdown: list[float], arrival_s: np.ndarray,
                       noise_rng: Optional[np.random.Generator] = None) -> BatchLog:
    """Runs `instances` model instances on each GPU of `specs` ((DispatchRule, CostModel) per GPU), all sharing
    one FCFS queue, over sorted arrival times (seconds), on the kernel (sim.kernel, one handler per instance);
    returns the BatchLog (its `replica` is the GPU, its `step_s` each step's wall time under contention).

    Long on purpose: the hot path of instance groups behind an unlimited shared queue (local state in closures, as
    sim.engine.simulate_shared); the golden outputs pin it."""
    arr = np.ascontiguousarray(arrival_s, dtype=float).tolist()
    n = len(arr)
    gpus = [GpuShare(slowdown) for _ in specs]
    samplers = step_samplers(specs, noise_rng)
    n_inst = len(specs) * instances
    head = 0
    sizes, dispatch, completion, who = array("i"), array("d"), array("d"), array("i")
    pending: dict = {}  # instance -> (dispatch time, size, claim number, solo work) of its batch
    claims, claim = 0, array("q")
    inf = math.inf

    def reschedule(gpu: GpuShare, t: float, push, only=None) -> None:
        """Pushes fresh end events: for every running step when the rate changed, else for `only`; a step's live
        end is the last one pushed (an earlier one, computed before its GPU's concurrency changed, is stale)."""
        r = gpu.rate()
        for inst, step in gpu.running.items():
            if only is None or inst == only:
                step[1] = end = t + max(step[0], 0.0) / r
                push((end, DONE, inst))

    def on(inst: int, t: float, kind: int, push) -> None:
        nonlocal head, claims
        g = inst // instances
        rule = specs[g][0]
        if kind == FREE:
            # the shared queue's rule (sim.engine.simulate_shared), for this instance
            if head >= n:
                return
            first, j = arr[head], head + rule.smallest - 1
            due = first + rule.delay_s
            full = arr[j] if j < n else inf
            d = max(min(full, due), t)
            if d == inf:
                return
            k = bisect_right(arr, d, head, min(head + rule.max_batch_size, n)) - head
            if d < due and not rule.plain:
                k = rule._floor[k]
            head += k
            table, jitter = samplers[g]
            work = table[k]
            if jitter is not None:  # drawn in claim order, as the shared-queue engine draws them
                work *= jitter(k)
            pending[inst] = (d, k, claims, work)
            claims += 1
            push((d, START, inst))
        elif kind == START:
            gpu = gpus[g]
            before = gpu.rate()
            gpu.advance(t)
            gpu.running[inst] = [pending[inst][3], None]
            # a step alone, or joining at an unchanged rate, leaves the other ends where they are (and exact)
            reschedule(gpu, t, push, None if before and gpu.rate() != before else inst)
        else:  # DONE: skip ends computed before the GPU's concurrency last changed
            gpu = gpus[g]
            step = gpu.running.get(inst)
            if step is None or step[1] != t:
                return
            before = gpu.rate()
            gpu.advance(t)
            del gpu.running[inst]
            d, k, seq, _ = pending.pop(inst)
            claim.append(seq)
            sizes.append(k)
            dispatch.append(d)
            completion.append(t)
            who.append(g)
            if gpu.running and gpu.rate() != before:
                reschedule(gpu, t, push)
            push((t, FREE, inst))

    kernel = Kernel([Handler(partial(on, i)) for i in range(n_inst)], kinds=START + 1, arrival_kind=0)
    for inst in range(n_inst):
        kernel.push((0.0, FREE, inst))
    kernel.drain()
    size = np.frombuffer(sizes, dtype=np.int32).copy()
    d = np.frombuffer(dispatch, dtype=np.float64).copy()
    c = np.frombuffer(completion, dtype=np.float64).copy()
    # batches in the order they claimed requests, each taking the next `size` of them (BatchLog's contract)
    order = np.argsort(np.frombuffer(claim, dtype=np.int64), kind="stable")
    return BatchLog(arrival_s=np.asarray(arrival_s, float), size=size[order], dispatch_s=d[order], completion_s=c[order],
                    replica=np.frombuffer(who, dtype=np.int32).copy()[order], step_s=(c - d)[order])
