"""Several model instances on each GPU (Triton's instance groups: `server.instances_per_gpu`), taking batches from
one queue, their steps slowing each other down while they overlap.

`InstancePool` is the shared-queue pool (sim.replica.shared_pool) whose servers are instances: the queue, its
limits, priorities and timeouts, and which instance takes the next batch are the pool's; only when a step ends
differs. Contention is processor sharing with a slowdown: while k steps run on a GPU each advances at 1 / s(k) of
its solo speed (`server.instance_contention` gives s(1..K); by default s(k) = k: the GPU's throughput is shared).
A step's remaining work is rescaled whenever a step starts or ends on its GPU, so completion times are exact; an
end computed before its GPU's concurrency changed carries an old version and is skipped. Behind the shared queue
one pool holds every GPU; behind a router each replica (one GPU) is a pool of its own.
"""
from __future__ import annotations

import heapq
import math
from array import array
from typing import Optional

import numpy as np

from ..instances import GpuShare
from .queued import DONE, Harvest
from .shared_pool import SharedQueuePool


class InstancePool(SharedQueuePool):
    """`instances` servers on each GPU of `specs` ((DispatchRule, CostModel) per GPU) behind one queue; its log's
    replica is the GPU (index + GPU number), its step_s each step's wall time under contention."""

    def __init__(self, specs: list, instances: int, slowdown: list, out, level: list, levels: int, noise_rng=None,
                 max_queue: Optional[int] = None, timeout_s: Optional[float] = None, delay: bool = False,
                 index: int = 0):
        super().__init__([spec for spec in specs for _ in range(instances)], out, level, levels, noise_rng, max_queue,
                         timeout_s, delay, index)
        self.instances = instances
        self.gpus = [GpuShare(slowdown) for _ in specs]
        self.version = 0
        self.steps = array("d")  # filled in as the steps end (wall time)
        self._busy_read = True   # its steps are indexed by batch while they run: harvest cuts them, nothing else

    def replica_of(self, rid: int) -> int:
        return self.index + rid // self.instances

    def holds_work(self) -> bool:
        return self.waiting > 0 or any(g.running for g in self.gpus)

    @property
    def unit(self) -> int:
        return self.instances

    def busy_s(self, t: float) -> float:
        """Returns the seconds up to t that the GPUs ran anything (a GPU is busy while any instance runs)."""
        return sum(g.busy + (t - g.t if g.running and t > g.t else 0.0) for g in self.gpus)

    def harvest(self) -> Harvest:
        """Returns the batches that have ended since the last call (a step's end is known only once it ends: the
        batches before the first one still running), the ids they took and those turned away, and forgets them."""
        comp = np.frombuffer(self.completion, np.float64)
        running = np.flatnonzero(np.isnan(comp))
        k = int(running[0]) if running.size else comp.size
        sizes = np.frombuffer(self.sizes, np.int32)
        m = int(sizes[:k].sum())
        new = self.served[self._served_out:]
        got = Harvest(sizes[:k].copy(), np.frombuffer(self.dispatch, np.float64)[:k].copy(), comp[:k].copy(),
                      np.asarray(new[:m], np.int64), self.rejected, self.timed_out,
                      np.frombuffer(self.who, np.int32)[:k].copy(), self.delayed)
        del comp, sizes, running  # views of the arrays cut below
        for name in ("sizes", "dispatch", "completion", "who", "steps"):
            setattr(self, name, getattr(self, name)[k:])
        for gpu in self.gpus:
            for step in gpu.running.values():
                step[2] -= k  # the batch index of each running step
        self.served, self._served_out = new[m:], 0
        self.rejected, self.timed_out, self.delayed = [], [], []
        self._forget_dispatched()
        return got

    def _begin(self, s, t, step, push) -> None:
        gpu = self.gpus[s.rid // self.instances]
        before = gpu.rate()
        gpu.advance(t)
        gpu.running[s.rid] = [step, 0, len(self.sizes) - 1]  # remaining work, version of its end, batch
        self.completion.append(math.nan)
        self.steps.append(math.nan)
        # a step alone, or joining at an unchanged rate, leaves the other ends where they are (and exact)
        self._reschedule(gpu, t, push, None if before and gpu.rate() != before else s.rid)

    def _reschedule(self, gpu: GpuShare, t: float, push, only=None) -> None:
        """Pushes fresh ends: for every running step when the GPU's rate changed, else for `only`."""
        r = gpu.rate()
        for rid, step in gpu.running.items():
            if only is None or rid == only:
                self.version += 1
                step[1] = self.version
                end = t + max(step[0], 0.0) / r
                heapq.heappush(self.ends, (end, self.version, rid))
                push((end, DONE, self.index))

    def _ended(self, t: float, push) -> Optional[int]:
        ends = self.ends
        while ends:
            end, version, rid = ends[0]
            step = self.gpus[rid // self.instances].running.get(rid)
            if step is None or step[1] != version:
                heapq.heappop(ends)  # superseded
                continue
            if end != t:
                return None  # this event's end moved later
            heapq.heappop(ends)
            gpu = self.gpus[rid // self.instances]
            before = gpu.rate()
            gpu.advance(t)
            del gpu.running[rid]
            batch = step[2]
            self.completion[batch] = t
            self.steps[batch] = t - self.dispatch[batch]
            if gpu.running and gpu.rate() != before:
                self._reschedule(gpu, t, push)
            return rid
        return None

