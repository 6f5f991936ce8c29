"""Runs of decode steps: one event for many engine steps of a continuous-batching engine (sim.replica.continuous).

A mixin of ContinuousReplica: it reads and writes the engine's run state (`run_bounds`, `run_d0`, `run_m`,
`run_n`, `row_k`, `row`, the KV cache and the decode heaps); kept apart because it is one concept, the
coalescing of identical decode steps, with its own invariants (below).
"""
from __future__ import annotations

import heapq
from bisect import bisect_left

import numpy as np

from .llm_requests import DECODING


class DecodeRuns:
    # ---- runs of decode steps: one event for many steps ----
    # While no request arrives, finishes, is admitted or preempted, consecutive steps decode the same n
    # sequences and the context grows by n a step, so the run's step times are known when it starts (summed
    # into `run_bounds`, a cheap loop without any per-sequence work). New KV blocks inside the run are
    # predictable and are allocated when the run is materialised; the run is kept short enough that they
    # cannot run out (each sequence takes at most one block per block_size steps).
    def _run_length(self, d: int) -> int:
        heap, r = self.dec_heap, self.r
        while heap and (heap[0][1] != r.epoch[heap[0][2]] or r.state[heap[0][2]] != DECODING):
            heapq.heappop(heap)
        if not heap:
            return 1
        m_finish = heap[0][0] - d + 1  # the first finish ends the run
        m_blocks = self.kv.block_size * (self.kv.free // self.n_dec) + 1
        return max(1, min(m_finish, m_blocks))

    def _plan_run(self, t: float, h: float, context: int, m: int) -> float:
        n = self.n_dec
        self.in_run = True
        # the boundaries are summed step by step with the same cost calls as one event per step would make,
        # so both give bit-identical times (an arrival exactly on a boundary falls on the same side)
        cost = self.step_cost
        if m < 32:
            bounds, end = [t], t + h
            bounds.append(end)
            for k in range(1, m):
                end += cost(0, 0.0, n, context + n * k, 0)
                bounds.append(end)
        else:  # the same operations elementwise, and a sequential cumulative sum: the same bits, faster
            hs = cost(0, 0.0, n, context + n * np.arange(1, m, dtype=np.int64), 0)
            bounds = np.add.accumulate(np.concatenate(([t, h], hs))).tolist()
            end = bounds[-1]
        self.run_bounds = bounds
        self.run_h0, self.run_dh = h, (bounds[2] - bounds[1] - h) if m > 1 else 0.0
        self.run_d0, self.run_m, self.run_n = self.d, m, n
        self._open_row(0)
        self.running_step = (end, n, [])
        return end

    def _s(self, k: int) -> float:
        """Returns the start of step k of the run (the end of step k - 1)."""
        return self.run_bounds[k]

    def _step_at(self, t: float) -> int:
        """Returns the run's step in flight at t: the last step (of the row and after) starting before t."""
        k = bisect_left(self.run_bounds, t, self.row_k, self.run_m) - 1
        return k if k > self.row_k else self.row_k

    def _open_row(self, k: int) -> None:
        """Starts the step row for run steps k.. (allocating the KV blocks step k needs at its start)."""
        if k > 0:
            self._allocate_through(self.run_d0 + k, None)
        self.row_k = k
        self.row_kv0 = self.kv.used_tokens
        self.row = len(self.steps.cols["start"])
        self.steps.add(self._s(k), 0.0, 0, 0, 0, self.row_kv0, self.run_n, len(self.waiting))

    def _allocate_through(self, d_last: int, row_end) -> float:
        """Allocates the blocks decode steps up to d_last need (no preemption: the run length guarantees
        room); returns the block-seconds they add before `row_end` (for the row's time-weighted KV)."""
        heap, r, kv = self.blk_heap, self.r, self.kv
        epoch, state, blocks, base = r.epoch, r.state, r.blocks, r.base
        bs, d0, extra, taken = kv.block_size, self.run_d0, 0.0, 0
        bounds = self.run_bounds
        replace, pop = heapq.heapreplace, heapq.heappop
        # hot path: heapreplace pops the due entry and pushes the sequence's next boundary at once
        while heap and heap[0][0] <= d_last:
            key, ep, sid = heap[0]
            if ep != epoch[sid] or state[sid] != DECODING:
                pop(heap)
                continue
            b = blocks[sid] = blocks[sid] + 1  # hot path: KvCache.append inlined, one sequence at a time
            taken += 1
            nxt = b * bs - base[sid] - key + 2
            replace(heap, (key + (nxt if nxt > 1 else 1), ep, sid))
            if row_end is not None:
                extra += row_end - bounds[key - d0]
        kv.free -= taken
        return extra * bs

    def _close_row(self, k_end: int) -> None:
        """Completes run steps row_k..k_end-1: their KV blocks, inter-token gaps, decode count and row."""
        k1, n = self.row_k, self.run_n
        end = self._s(k_end)
        extra = self._allocate_through(self.run_d0 + k_end - 1, end)
        k = k1
        if k1 == 0:  # the run's first step: joiners waited from their own last token
            self._decode_gaps(self._s(1), n)
            k = 1
        if k < k_end:
            # steps k..k_end-1 of the run: one entry, their mean gap, for n tokens a step (within a run the gaps
            # differ only by the cost of n more context tokens a step: microseconds)
            self.itl_gap.append((end - self._s(k)) / (k_end - k))
            self.itl_weight.append(n * (k_end - k))
            self.prev_dec_end = end
        self.d = self.run_d0 + k_end
        c, row, dur = self.steps.cols, self.row, end - self._s(k1)
        c["dur"][row] = dur
        c["dec"][row] = c["slots"][row] = n * (k_end - k1)
        c["n"][row] = k_end - k1
        c["kv"][row] = self.row_kv0 + extra / dur if dur > 0 else self.row_kv0
        c["peak"][row] = self.kv.used_tokens
