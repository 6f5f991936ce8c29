"""A continuous-batching (iteration-level) LLM replica, scheduled as vLLM does.

One event per engine step, never per token. Decoding sequences are not visited one by one each step: a
sequence's length is `base + d` at decode step d, so the total context is `sum(base) + n * d`;
finishes and KV-block boundaries are heaps keyed by decode-step index. Per-step Python work is O(1)
amortised plus O(log n) per finish, block boundary, admission or preemption.

KV accounting follows vLLM: a decode step writes the KV of the sequence's latest token, so a sequence
of L tokens (prompt + generated) needs ceil(L / block_size) blocks during the step that produces token L+1.
"""
from __future__ import annotations

import heapq
import math
from array import array
from collections import deque
from typing import Optional

import numpy as np

from ..batching import ContinuousBatching
from ..cost import LlmCost
from .decode_runs import DecodeRuns
from .kv_cache import KvCache
from .llm_log import StepLog
from .llm_requests import DECODING, FINISHED, PREFILLING, WAITING, LlmRequests
from .token_counts import TokenCounts
from .queued import START, TIMEOUT

__all__ = ["ContinuousReplica", "LlmRequests", "WAITING", "PREFILLING", "DECODING", "FINISHED"]


class ContinuousReplica(DecodeRuns, TokenCounts):
    """One vLLM-like engine: FCFS admission under max_num_seqs, a token budget and the KV cache;
    last-in-first-out preemption with recompute when a decode needs a block and none is free.

    `waiting` is its own deque, or the fleet's shared one (shared_queue). With `track_tokens`, it keeps
    the aggregates a token-aware router reads (outstanding_tokens): `mean_output` estimates the remaining
    output of a sequence (floored at 0), `oracle` uses the true lengths instead."""

    kind = "continuous"

    def __init__(self, index: int, policy: ContinuousBatching, cost: LlmCost, reqs: LlmRequests, out: list,
                 waiting: Optional[deque] = None, track_tokens: bool = False, mean_output: float = 0.0,
                 oracle: bool = False):
        self.index = index
        self.policy = policy
        self.step_cost = cost.step_function()
        self.r = reqs
        self.out = out
        self.fits = bytearray(np.asarray(policy.fits(reqs.prompt, reqs.out), bool))  # per request: fits its KV cache
        self.kv = KvCache(policy.kv_blocks, policy.block_size, reqs.blocks)  # the block manager
        self.waiting: deque = deque() if waiting is None else waiting
        # priorities or client timeouts: sim.replica.waiting.ClassWaiting; expire() drops those who gave up
        self.expiring = getattr(self.waiting, "timeout_s", None) is not None
        self.prefilling: list[int] = []
        self.admitted: list[int] = []  # admission order, for last-in-first-out preemption
        self.admitted_cap = 256        # its length at which finished entries are pruned
        self.dec_heap: list = []       # (decode step of the last token, epoch, sid)
        self.blk_heap: list = []       # (decode step needing a new block, epoch, sid)
        self.joiners: list = []        # (sid, epoch) that started decoding since the last decode step
        self.n_dec = 0
        self.sum_base = 0
        self.d = 0                     # decode steps completed
        self.prev_dec_end = math.nan
        self.preempted = False
        self.running_step = None       # (end, decoded tokens, prefills completing) of the step in flight
        # a run of identical decode steps advanced as one event (see _plan_run); `coalesce` off: one event per step
        self.coalesce = True
        self.max_waiting: Optional[int] = None  # server.queue.max_waiting; set by the fleet
        self.notify = None  # closed loop: notify(ids, t, answered) when requests finish (True) or are turned away
        self.accepting = True  # autoscaled: False while starting, released or draining (admits nothing new)
        self.on_idle = None    # autoscaled: called with t when a released replica has finished its last sequence
        self.in_run = False
        self.run_bounds: list = []
        self.run_h0 = self.run_dh = 0.0
        self.run_d0 = self.run_m = self.run_n = self.row_k = self.row = 0
        self.row_kv0 = 0
        self.now = 0.0
        self.peers = None  # behind a shared queue: every replica (a preempted request may resume elsewhere) ...
        self.push = None   # ... and the fleet's event push, to cut their runs when one is requeued
        self.steps = StepLog(index)
        self.itl_gap, self.itl_weight = array("d"), array("q")
        self.budget_max = policy.max_num_batched_tokens
        self.scheduler = policy.scheduler()
        self.chunk_max = policy.chunk if policy.chunked_prefill else policy.max_num_batched_tokens
        self._init_token_counts(track_tokens, oracle, mean_output)

    # ---- what routers read ----
    @property
    def kv_use(self) -> float:
        """Returns the fraction of KV blocks in use, 0..1."""
        return self.kv.use

    # ---- fleet interface ----
    def admit_arrival(self, sid: int) -> bool:
        """Queues a routed request; returns False (and marks it refused, as vLLM does) when it can never run."""
        r = self.r
        if not self.fits[sid]:
            r.refused[sid] = True
            if self.notify is not None:
                self.notify((sid,), r.arrival[sid], False)
            return False
        if self.expiring:
            self.waiting.expire(r.arrival[sid])
        if self.max_waiting is not None and len(self.waiting) >= self.max_waiting:
            r.rejected[sid] = True
            if self.notify is not None:
                self.notify((sid,), r.arrival[sid], False)
            return False
        self.waiting.append(sid)
        r.replica[sid] = self.index
        self.out.inc(self.index)
        if self.track:
            self.pend_prefill += r.prompt[sid]
            self.rem_fixed += self._est(sid)
        return True

    def expired(self, sid: int) -> None:
        """Takes a request whose client gave up while it waited here out of the counts routers read."""
        self.out.dec(self.index)
        if self.track:
            self.pend_prefill -= self.r.prompt[sid]
            self.rem_fixed -= self._est(sid)

    def arm_timeout(self, push) -> None:
        """With client timeouts and deadline events (a closed loop, or a shared queue): schedules this replica's TIMEOUT
        event at the earliest deadline of its waiting queue (behind a shared queue, replica 0 keeps the shared
        queue's), unless one is pending."""
        w = self.waiting
        if w.timer is None:
            d = w.next_deadline()
            if d != math.inf:
                w.timer = d
                push((d, TIMEOUT, self.index))

    def accept(self, sid: int, arrival_s: float, push) -> None:
        if not self.admit_arrival(sid):
            return
        if self.expiring and self.waiting.deadline_events:
            self.arm_timeout(push)
        if self.running_step is None:
            push((arrival_s, START, self.index))  # idle: a step starts at this arrival
        elif self.in_run:
            self.cut(arrival_s, push)  # the next step must see the new request

    def sync(self, t: float) -> None:
        """Brings a run of decode steps up to the step in flight at t, so routers read the state as of the
        latest step start before t (splitting a run changes no result)."""
        if not self.in_run:
            return
        i = self._step_at(t)
        if i > self.row_k:
            self._close_row(i)
            self._open_row(i)

    def cut(self, t: float, push) -> None:
        """Ends the run with the step in flight at t (a request arrived: the next step admits it)."""
        self.sync(t)
        if self.row_k + 1 < self.run_m:
            self.run_m = self.row_k + 1
            end = self._s(self.run_m)
            self.running_step = (end,) + self.running_step[1:]
            push((end, START, self.index))  # the old end's event is now stale (on_event skips it)

    def on_event(self, t: float, kind: int, push) -> None:
        """Ends the step in flight at t (if any) and starts the next one; goes idle when there is nothing to do.
        A TIMEOUT event drops the waiting requests whose client gives up at t and arms the next deadline."""
        if kind == TIMEOUT:
            w = self.waiting
            head = w[0] if len(w) else None
            w.timer = None
            w.expire(t, deadline=True)
            self.arm_timeout(push)
            if self.peers is not None and len(w) and w[0] != head:
                # behind a shared queue the head gave up: an idle engine it blocked (it did not fit there) may admit
                # the next one now, not at the next arrival
                for peer in self.peers:
                    if peer.accepting and peer.running_step is None:
                        push((t, START, peer.index))
            return
        if self.running_step is not None:
            if self.running_step[0] != t:
                return  # a wake-up while a step runs: the step's end will start the next one
            self._finish_step(t)
        end = self._start_step(t)
        if end is not None:
            push((end, START, self.index))

    # ---- one engine step ----
    def _start_step(self, t: float) -> Optional[float]:
        self.now = t
        if self.expiring:
            self.waiting.expire(t)
        while True:
            if not self.prefilling and self.n_dec == 0 and (not self.waiting or not self.accepting):
                if self.on_idle is not None:
                    self.on_idle(self, t)
                return None
            d = self.d
            self.preempted = False
            # the step scheduler (sim.llm_schedulers) splits the budget through plan_decode and plan_prefill
            dec_tokens, (prefill_tokens, pairs, chunks, completed) = self.scheduler.plan(self, self.budget_max)
            if dec_tokens == 0 and prefill_tokens == 0:
                if self.prefilling:
                    self._preempt_one()  # the KV cache is full of half-done prefills: the newest yields
                    continue
                return None  # nothing can run: wait for the next arrival
            context = self.sum_base + self.n_dec * (d - 1) if dec_tokens else 0
            h = self.step_cost(prefill_tokens, pairs, dec_tokens, context, chunks)
            # a decode-only step that admitted nothing: none can be admitted until a sequence finishes (the
            # run's end) or a request arrives (which cuts the run); behind a shared queue another replica may
            # take the head, so a run there needs an empty queue
            if (self.coalesce and dec_tokens and not prefill_tokens and not self.prefilling and not self.preempted
                    and (not self.waiting or self.peers is None)):
                m = self._run_length(d)
                if m > 1:
                    return self._plan_run(t, h, context, m)
            self.steps.add(t, h, prefill_tokens, dec_tokens, dec_tokens, self.kv.used_tokens,
                           self.n_dec + len(self.prefilling), len(self.waiting))
            self.running_step = (t + h, dec_tokens, completed)
            return t + h

    def take_steps(self) -> tuple[dict, np.ndarray, np.ndarray]:
        """Returns the step rows finished since the last call (StepLog columns) and the inter-token gaps (s) with
        the tokens that waited each, and forgets them (a streaming run keeps no step log). A run's open row stays."""
        rows = self.steps.take(keep_last=self.in_run)
        if self.in_run:
            self.row = 0  # the open row is now the first
        gaps = np.frombuffer(self.itl_gap, np.float64).copy()
        weights = np.frombuffer(self.itl_weight, np.int64).copy()
        self.itl_gap, self.itl_weight = array("d"), array("q")
        return rows, gaps, weights

    def _decode_gaps(self, end: float, dec_tokens: int) -> None:
        """Records the inter-token gaps of a decode step ending at `end`: decoders that also decoded last
        step waited this step's gap; sequences that joined since then waited from their own last token."""
        r = self.r
        epoch, state, last_tok = r.epoch, r.state, r.last_tok
        fresh = 0
        for sid, ep in self.joiners:
            if ep == epoch[sid] and state[sid] == DECODING:
                self.itl_gap.append(end - last_tok[sid])
                self.itl_weight.append(1)
                fresh += 1
        self.joiners.clear()
        if dec_tokens > fresh:
            self.itl_gap.append(end - self.prev_dec_end)
            self.itl_weight.append(dec_tokens - fresh)
        self.prev_dec_end = end

    def _finish_step(self, end: float) -> None:
        _, dec_tokens, completed = self.running_step
        self.running_step = None
        finished: list = []  # closed loop: the clients answered at `end`
        r = self.r
        epoch, state, last_tok = r.epoch, r.state, r.last_tok
        if self.in_run:
            self._close_row(self.run_m)
            self.in_run = False
        elif dec_tokens:
            self._decode_gaps(end, dec_tokens)
            self.d += 1
        if dec_tokens:
            d = self.d - 1  # the decode step just completed
            heap = self.dec_heap
            while heap and heap[0][0] <= d:
                _, ep, sid = heapq.heappop(heap)
                if ep != epoch[sid] or state[sid] != DECODING:
                    continue
                self._release(sid)
                r.generated[sid] = r.out[sid]
                r.finish[sid] = end
                state[sid] = FINISHED
                self.out.dec(self.index)
                if self.notify is not None:
                    finished.append(sid)
        for sid in completed:
            self.prefilling.remove(sid)
            if self.track:
                self.rem_fixed -= self._est(sid)
            r.generated[sid] += 1  # prefill (or recompute) yields the next token
            if math.isnan(r.first[sid]):
                r.first[sid] = end
            elif not math.isnan(last_tok[sid]):
                self.itl_gap.append(end - last_tok[sid])  # a preempted sequence's stall until its next token
                self.itl_weight.append(1)
            if r.generated[sid] >= r.out[sid]:
                r.generated[sid] = r.out[sid]
                r.finish[sid] = end
                if self.notify is not None:
                    finished.append(sid)
                self.kv.release(sid)
                epoch[sid] += 1
                state[sid] = FINISHED
                self.out.dec(self.index)
            else:
                self._start_decoding(sid, self.d, end)
        if finished:
            self.notify(finished, end, True)

    def _start_decoding(self, sid: int, d_next: int, t_tok: float) -> None:
        r = self.r
        length = r.prompt[sid] + r.generated[sid]  # tokens whose KV the first decode step holds
        r.base[sid] = length + 1 - d_next
        r.join[sid] = d_next
        r.last_tok[sid] = t_tok
        self.sum_base += r.base[sid]
        self.n_dec += 1
        r.state[sid] = DECODING
        ep = r.epoch[sid]
        heapq.heappush(self.dec_heap, (d_next + r.out[sid] - r.generated[sid] - 1, ep, sid))
        heapq.heappush(self.blk_heap, (d_next + max(0, r.blocks[sid] * self.kv.block_size - length + 1), ep, sid))
        self.joiners.append((sid, ep))
        if self.track:
            self._count_decoder(sid)

    def _release(self, sid: int) -> None:
        """Frees a running sequence's blocks and takes it out of the decoding or prefilling set."""
        r = self.r
        self.kv.release(sid)
        if r.state[sid] == DECODING:
            if self.track:
                self._uncount(sid)
            self.n_dec -= 1
            self.sum_base -= r.base[sid]
            # tokens produced by the decode steps completed so far (steps < self.d)
            r.generated[sid] = min(r.out[sid], r.base[sid] + self.d - 1 - r.prompt[sid])
            if self.d > r.join[sid]:
                r.last_tok[sid] = self.prev_dec_end
        elif r.state[sid] == PREFILLING:
            self.prefilling.remove(sid)
        r.epoch[sid] += 1

    def _prune_admitted(self) -> None:
        """Drops from the admission order the requests no longer running here (finished, preempted, moved), which
        `_preempt_one` would skip: the list stays as long as what runs, not the run (amortised: it grows to twice
        its pruned length first)."""
        r, me = self.r, self.index
        state, replica = r.state, r.replica
        self.admitted = [sid for sid in self.admitted if replica[sid] == me and state[sid] in (PREFILLING, DECODING)]
        self.admitted_cap = 2 * len(self.admitted) + 256

    def _preempt_one(self) -> int:
        r = self.r
        while self.admitted:
            sid = self.admitted.pop()
            st = r.state[sid]
            if r.replica[sid] == self.index and st in (PREFILLING, DECODING):
                left_before = r.target[sid] - r.done[sid]
                self._release(sid)
                r.state[sid] = WAITING
                r.preempt[sid] += 1
                # the prefill work this preemption adds: what was computed and is thrown away (a half-done
                # prefill's done tokens; a decoder's whole prefill) plus the generated tokens to re-prefill
                new_target = r.prompt[sid] + r.generated[sid]
                r.recomputed[sid] += r.done[sid] + new_target - r.target[sid]
                if self.track:
                    self.pend_prefill += new_target - (left_before if st == PREFILLING else 0)
                    if st == DECODING:
                        self.rem_fixed += self._est(sid)
                r.target[sid] = new_target
                r.done[sid] = 0
                self.waiting.appendleft(sid)
                self.preempted = True
                if self.peers is not None:
                    self._share()
                return sid
        return -1

    def _share(self) -> None:
        """Behind a shared queue, its head changed at `now` (a requeued preemption, or an admission exposing the
        next request): idle replicas look again, and runs of decode steps end after the step in flight. A
        peer numbered below this one whose step starts exactly now has started it already (the fleet runs
        events of one instant in replica order), so its cut falls just after now."""
        t = self.now
        after = math.nextafter(t, math.inf)
        for peer in self.peers:
            if peer is self:
                continue
            if peer.running_step is None:
                self.push((t, START, peer.index))
            elif peer.in_run:
                peer.cut(after if peer.index < self.index else t, self.push)

    def plan_decode(self) -> int:
        """The step scheduler's decode primitive: allocates this step's KV blocks (preempting if needed); returns the
        number of decoding sequences (0 when none decodes)."""
        if not self.n_dec:
            return 0
        d = self.d
        r = self.r
        epoch, state, blocks, base = r.epoch, r.state, r.blocks, r.base
        needers = []
        heap = self.blk_heap
        while heap and heap[0][0] <= d:
            _, ep, sid = heapq.heappop(heap)
            if ep == epoch[sid] and state[sid] == DECODING:
                needers.append(sid)
        while self.kv.free < len(needers):
            victim = self._preempt_one()
            if victim < 0:
                break
            if victim in needers:
                needers.remove(victim)
        self.kv.append(needers)
        bs = self.kv.block_size
        for sid in needers:
            length = base[sid] + d - 1
            heapq.heappush(heap, (d + max(1, blocks[sid] * bs - length + 1), epoch[sid], sid))
        return self.n_dec

    def plan_prefill(self, budget: int):
        """The step scheduler's prefill primitive: continues chunked prefills, then admits waiting requests first come,
        first served, within `budget` tokens; returns (prefill tokens, attention pairs, chunks, sequences whose
        prefill completes this step)."""
        r, kv = self.r, self.kv
        target, done, blocks = r.target, r.done, r.blocks
        bs, chunk_max = kv.block_size, self.chunk_max
        tokens, pairs, chunks, completed = 0, 0.0, 0, []
        for sid in list(self.prefilling):
            if budget <= 0:
                break
            c = min(target[sid] - done[sid], budget, chunk_max)
            if not kv.grow(sid, done[sid] + c):  # the chunk that the free blocks hold
                c = max(0, (blocks[sid] + kv.free) * bs - done[sid])
                if c <= 0:
                    continue
                kv.grow(sid, done[sid] + c)
            pairs += c * (done[sid] + (c + 1) / 2)
            done[sid] += c
            tokens += c
            chunks += 1
            budget -= c
            if done[sid] == target[sid]:
                completed.append(sid)
        waiting, fits = self.waiting, self.fits
        max_seqs, chunked = self.policy.max_num_seqs, self.policy.chunked_prefill
        head = waiting[0] if waiting else None
        # vLLM admits nothing in a step that had to preempt
        while (waiting and budget > 0 and self.n_dec + len(self.prefilling) < max_seqs and not self.preempted
               and self.accepting):
            sid = waiting[0]
            if not fits[sid]:
                break  # behind a shared queue: a request this replica can never hold waits for another
            need = target[sid] or r.prompt[sid]
            # tokens already computed (vLLM's num_computed_tokens): a prefix cache's hit, taken without compute
            cached = kv.cached_prefix(r.prefix_hashes(sid))
            c = min(need - cached, budget, chunk_max)
            if not chunked and c < need - cached:
                break  # the whole prompt must fit in this step's budget
            if not kv.grow(sid, cached + c):
                break  # no KV room: wait for sequences to finish
            waiting.popleft()
            if r.admitted_s[sid] != r.admitted_s[sid]:
                r.admitted_s[sid] = self.now
            target[sid] = need
            done[sid] = cached + c
            r.state[sid] = PREFILLING
            if r.replica[sid] != self.index:  # shared queue: the replica that admits it holds it
                r.replica[sid] = self.index
            self.prefilling.append(sid)
            self.admitted.append(sid)
            if len(self.admitted) > self.admitted_cap:
                self._prune_admitted()
            pairs += c * (cached + (c + 1) / 2)
            tokens += c
            chunks += 1
            budget -= c
            if cached + c == need:
                completed.append(sid)
        if self.track:
            self.pend_prefill -= tokens
        if self.peers is not None and waiting and waiting[0] != head:
            self._share()  # another replica may be able to take the new head
        return tokens, pairs, chunks, completed
