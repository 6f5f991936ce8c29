"""Static (request-level) batching for an LLM: padded prefill, then decode every slot to the longest output."""
from __future__ import annotations

import math
from bisect import bisect_right
from collections import deque
from functools import partial

import numpy as np

from ..batching import LlmStaticBatching
from ..cost import LlmCost
from .llm_log import StepLog
from .queued import QueuedReplica


def batch_timeline(cost: LlmCost, d: float, prompt: np.ndarray, out: np.ndarray):
    """Returns (ends, h_pre, h_dec, real) of one static batch starting at d: the end of its padded prefill
    and of each decode step (s), their durations (s), and the requests still producing tokens per step."""
    k = prompt.size
    p_max, o_max = int(prompt.max()), int(out.max())
    h_pre = cost.iteration_s(k * p_max, k * p_max * (p_max + 1) / 2, 0, 0, 1)  # one padded batched forward
    j = np.arange(o_max - 1, dtype=float)
    h_dec = cost.iteration_s(0, 0, k, k * (p_max + 1 + j)) + np.zeros(j.size)  # every slot decodes, padded
    ends = d + h_pre + np.concatenate([[0.0], np.cumsum(h_dec)])
    real = (out[None, :] > (j[:, None] + 1)).sum(axis=1)
    return ends, h_pre, h_dec, real


def fitting_batch(policy: LlmStaticBatching, prompt: np.ndarray, out: np.ndarray, k: int) -> int:
    """Returns how many of the first k queued requests a batch takes: every slot reserves the batch's longest
    prompt plus longest output, so the batch is cut short where kv_cache_tokens would not hold it."""
    while k > 1 and k * (int(prompt[:k].max()) + int(out[:k].max())) > policy.kv_cache_tokens:
        k -= 1
    return k


class StaticRun:
    """Per-request results and step records of static batches, shared by the replicas of one fleet."""

    def __init__(self, arrival_s, prompt_tokens, output_tokens):
        self.arrival = np.asarray(arrival_s, float)
        self.prompt = np.asarray(prompt_tokens, np.int64)
        self.out = np.asarray(output_tokens, np.int64)
        n = self.arrival.size
        self.first = np.full(n, np.nan)
        self.finish = np.full(n, np.nan)
        self.refused = np.zeros(n, bool)
        self.replica = np.full(n, -1, np.int32)

    def run(self, policy, cost, steps: StepLog, rid: int, d: float, sids: np.ndarray):
        """Runs the batch `sids` from d on replica `rid`; returns (end time, step start times)."""
        ends, h_pre, h_dec, real = batch_timeline(cost, d, self.prompt[sids], self.out[sids])
        k = sids.size
        p_max, o_max = int(self.prompt[sids].max()), int(self.out[sids].max())
        self.first[sids] = ends[0]
        self.finish[sids] = ends[self.out[sids] - 1]
        self.replica[sids] = rid
        kv = k * (p_max + o_max)
        steps.add(d, h_pre, k * p_max, 0, 0, kv, k, 0)
        for s0, hd, r in zip(ends[:-1].tolist(), h_dec.tolist(), real.tolist()):
            steps.add(s0, hd, 0, r, k, kv, k, 0)
        return float(ends[-1]), np.concatenate([[d], ends[:-1]])


class LlmStaticReplica(QueuedReplica):
    """One static-batching LLM engine with its own queue behind a router."""

    kind = "llm_static"

    def __init__(self, index: int, policy: LlmStaticBatching, cost: LlmCost, run: StaticRun, out: list):
        super().__init__(index, policy.rule(policy.max_batch_size), out)
        self.policy, self.cost, self.run = policy, cost, run
        self.steps = StepLog(index)
        self.step_heads: list[tuple[int, int]] = []  # (step count so far, queue head after the batch) per batch
        self._busy_sum, self._busy_seen = 0.0, 0

    def busy_s(self, t: float) -> float:
        """Returns the busy seconds so far (each engine step counted when its batch starts; summed incrementally)."""
        dur = self.steps.cols["dur"]
        if len(dur) > self._busy_seen:
            self._busy_sum += sum(dur[self._busy_seen:])
            self._busy_seen = len(dur)
        return self._busy_sum

    def accept(self, sid: int, arrival_s: float, push) -> None:
        if self.run.prompt[sid] + self.run.out[sid] > self.policy.kv_cache_tokens:
            self.run.refused[sid] = True  # alone it does not fit the KV cache: refused on arrival
            return
        super().accept(sid, arrival_s, push)

    def run_batch(self, t: float, head: int, k: int) -> tuple[int, float]:
        sids = np.asarray(self.ids[head:head + k], np.int64)
        k = fitting_batch(self.policy, self.run.prompt[sids], self.run.out[sids], k)
        end, _ = self.run.run(self.policy, self.cost, self.steps, self.index, t, sids[:k])
        self.step_heads.append((len(self.steps.cols["start"]), head + k))
        return k, end

    @property
    def kv_use(self) -> float:
        """Returns the running batch's KV reservation as a fraction of the cache (0 when idle)."""
        if not self.inflight:
            return 0.0
        return float(self.steps.cols["kv"][-1]) / self.policy.kv_cache_tokens

    def outstanding_tokens(self, t=None) -> float:
        """Static batches have no token-level state a router could use: the outstanding request count."""
        return float(self.out.n[self.index])

    def fill_waiting(self) -> None:
        """Fills each recorded step's waiting count (requests queued here by its start, not yet in a batch)."""
        wait = self.steps.cols["wait"]
        start = self.steps.cols["start"]
        lo = 0
        for hi, head in self.step_heads:
            for i in range(lo, hi):
                wait[i] = bisect_right(self.arr, start[i]) - head
            lo = hi


class StaticSharedQueue:
    """Static-batching replicas [(policy, cost), ...] sharing one FCFS queue over every request (known ahead), on the
    kernel (sim.kernel, one handler per replica): a replica free at t claims the next batch (started when it is full
    or its oldest request's delay runs out). Any replica may take any queued request, so a request must fit every
    replica's KV cache alone, else it is refused on arrival.

    Under an autoscaler (`wait_for_arrivals`) only serving replicas (`active`) claim, and only once a request has
    arrived: a replica free before the next arrival joins the idle line (first free, first to claim) and the queue's
    own handler wakes that line at the arrival. A batch then starts when it would have started claimed ahead (the
    rule's start is at or after its first request's arrival) and on the replica that would have claimed it, so a
    constant schedule is the fixed pool request for request; an idle replica can be released at once. A released
    replica finishes the batch it claimed, then reports `on_stopped(replica, t)`."""

    def __init__(self, replicas: list, run: StaticRun):
        self.replicas, self.run = replicas, run
        self.rules = [policy.rule(policy.max_batch_size) for policy, _ in replicas]
        fits = np.ones(run.arrival.size, bool)
        for policy, _ in replicas:
            fits &= run.prompt + run.out <= policy.kv_cache_tokens
        run.refused[:] = ~fits
        self.queue = np.flatnonzero(fits)
        self.qa = run.arrival[self.queue]
        self.qa_list = self.qa.tolist()
        self.head = 0
        m = len(replicas)
        self.steps = [StepLog(i) for i in range(m)]
        self.active = [True] * m
        self.until = [0.0] * m       # when each replica's claimed batch ends (s)
        self.queued = [False] * m    # whether its next free event is in the kernel
        self.busy_total_s = 0.0      # seconds of the batches claimed so far
        self.on_stopped = None
        self.wait_for_arrivals = False  # autoscaled: a free replica claims only once a request has arrived
        self.idle: deque = deque()   # replicas free since before the next arrival, in the order they became free
        self.wake_at = None          # when the waker is due (None: not pushed)
        self.waker = m + 1           # the waker's handler index: after the replicas and the controller (index m)

    def free(self, i: int, t: float, kind: int, push) -> None:
        """Replica i is free at t: claims the next batch and schedules its end, unless released or nothing is left."""
        self.queued[i] = False
        if not self.active[i]:
            if self.on_stopped is not None:
                self.on_stopped(i, t)
            return
        if self.wait_for_arrivals and self.head < len(self.qa_list) and (self.idle or self.qa_list[self.head] > t):
            # nothing has arrived, or replicas free before this one wait for it: it joins the back of the idle line
            self.idle.append(i)
            self._wake(push)
            return
        self._claim(t, i, push)

    def wake(self, t: float, kind: int, push) -> None:
        """The next arrival is in: the idle line claims, first free first, while arrived requests remain."""
        if t != self.wake_at:
            return  # superseded
        self.wake_at = None
        idle, qa_list = self.idle, self.qa_list
        while idle and self.head < len(qa_list) and qa_list[self.head] <= t:
            self._claim(t, idle.popleft(), push)
        self._wake(push)

    def _wake(self, push) -> None:
        if self.idle and self.head < len(self.qa_list) and self.wake_at != self.qa_list[self.head]:
            self.wake_at = self.qa_list[self.head]
            push((self.wake_at, 0, self.waker))

    def _claim(self, t: float, i: int, push) -> None:
        qa_list, n, head = self.qa_list, len(self.qa_list), self.head
        if head >= n:
            return
        policy, cost = self.replicas[i]
        rule = self.rules[i]
        j = head + rule.smallest - 1
        d = rule.start_s(t, qa_list[head], qa_list[j] if j < n else math.inf)
        if d == math.inf:
            return  # a partial batch that never fills: this replica is done
        k = bisect_right(qa_list, d, head, min(head + rule.max_batch_size, n)) - head
        k = rule.take(k, d < qa_list[head] + rule.delay_s)
        run, sids = self.run, self.queue[head:head + k]
        sids = sids[:fitting_batch(policy, run.prompt[sids], run.out[sids], k)]
        self.head = head = head + sids.size
        steps = self.steps[i]
        before = len(steps.cols["start"])
        end, starts = run.run(policy, cost, steps, i, d, sids)
        waits = np.searchsorted(self.qa, starts, side="right") - head
        for off, w in enumerate(waits.tolist()):
            steps.cols["wait"][before + off] = w
        self.until[i] = end
        self.busy_total_s += end - d
        self.queued[i] = True
        push((end, 0, i))

    def stop(self, i: int) -> None:
        """Replica i takes no new batch (an idle one leaves the idle line)."""
        self.active[i] = False
        if i in self.idle:
            self.idle.remove(i)

    def serve(self, i: int, t: float, push) -> None:
        """Replica i takes batches again from t (an idle one claims at once; a busy one when its batch ends)."""
        self.active[i] = True
        if not self.queued[i] and i not in self.idle:
            self.queued[i] = True
            push((t, 0, i))

    def waiting(self, t: float) -> int:
        """Returns the requests that arrived by t and no batch has claimed yet."""
        return max(0, bisect_right(self.qa_list, t, self.head) - self.head)

    def over(self, t: float) -> bool:
        """Returns whether no batch runs after t and none ever starts again: every request claimed, or what is left
        a batch that no replica's rule ever starts (a static batch that never fills)."""
        if any(u > t for u in self.until):
            return False
        h, qa_list = self.head, self.qa_list
        n = len(qa_list)
        if h >= n:
            return True
        return all(r.start_s(t, qa_list[h], qa_list[h + r.smallest - 1] if h + r.smallest - 1 < n else math.inf)
                   == math.inf for r in self.rules)

    def kernel(self, controller=None):
        """Returns the kernel driving the replicas (then an autoscaler `controller`, kind 1, then the queue's own
        handler, which wakes the idle line at the next arrival)."""
        from ..kernel import Handler, Kernel

        handlers = [Handler(partial(self.free, i)) for i in range(len(self.replicas))]
        if controller is None:
            return Kernel(handlers)
        return Kernel(handlers + [controller, Handler(self.wake)])


def simulate_static_shared(replicas: list, run: StaticRun, autoscaler=None, server_replicas: int = 1):
    """Runs static-batching replicas [(policy, cost), ...] behind one shared FCFS queue (StaticSharedQueue); returns
    (each replica's StepLog, the autoscaler's controller, sim.fleet.scaling.FleetScaler, whose record holds the
    replicas' lives; None without an `autoscaler`)."""
    pool = StaticSharedQueue(replicas, run)
    if autoscaler is None:
        kernel = pool.kernel()
        for i in range(len(replicas)):
            kernel.push((0.0, 0, i))
        kernel.drain()
        return pool.steps, None
    from ..fleet.scaling import FleetScaler

    ctl = FleetScaler(autoscaler, replicas, server_replicas, static=pool)
    kernel = pool.kernel(ctl)
    ctl.start(kernel.push)
    kernel.drain()
    return pool.steps, ctl
