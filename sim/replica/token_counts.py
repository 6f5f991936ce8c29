"""What a token-aware router reads of a continuous-batching engine (sim.replica.continuous): prompt tokens not yet
prefilled plus the remaining output of every request there, kept as running aggregates so that a read costs O(1)
(plus the decoders crossing the mean output length since the last read).

A mixin of ContinuousReplica, kept apart because it is one concept with its own invariant: outstanding_tokens() =
pend_prefill + rem_fixed + dec_rem_const - dec_bp - n_counted * (d - 1), where a counted decoder's remaining output is
its true (oracle) or mean output length minus what it generated, base + d - prompt after d decode steps. The engine
calls `_count_decoder` when a sequence starts decoding and `_uncount` when it stops; it updates `pend_prefill` and
`rem_fixed` as requests queue, prefill and leave, only when `track` is set.
"""
from __future__ import annotations

import heapq
import math
from typing import Optional


class TokenCounts:
    """The outstanding-token aggregates of one engine (`track`: kept only for token-aware routers)."""

    def _init_token_counts(self, track: bool, oracle: bool, mean_output: float) -> None:
        self.track = track
        self.oracle = oracle
        self.mean_out = float(mean_output)
        self.mean_ceil = math.ceil(mean_output)
        self.pend_prefill = 0    # prompt tokens not yet prefilled, over queued and prefilling requests
        self.rem_fixed = 0.0     # estimated remaining output of queued and prefilling requests
        self.dec_rem_const = 0.0  # decoders: sum(true output) (oracle) or mean * n_below (estimate)
        self.dec_bp = 0          # decoders counted: sum(base - prompt)
        self.n_counted = 0       # decoders counted in the estimate (oracle: all)
        self.cross_heap: list = []  # (decode step where generated reaches the mean, epoch, sid)

    def outstanding_tokens(self, t: Optional[float] = None) -> float:
        """Returns prompt tokens not yet prefilled plus the remaining output tokens (estimated, or true
        with oracle) of every request here, as of the latest step start before t (default: the latest).
        Inside a run of decode steps only the decode count moves, so this reads it without splitting the run."""
        d, heap, r = self.d, self.cross_heap, self.r
        if self.in_run and t is not None:
            d = self.run_d0 + self._step_at(t)
        while heap and heap[0][0] <= d:
            _, ep, sid = heapq.heappop(heap)
            if ep == r.epoch[sid] and r.below[sid]:
                self._uncount(sid)
        return self.pend_prefill + self.rem_fixed + self.dec_rem_const - self.dec_bp - self.n_counted * (d - 1)

    def _est(self, sid: int) -> float:
        r = self.r
        left = (r.out[sid] if self.oracle else self.mean_out) - r.generated[sid]
        return left if left > 0 else 0.0

    def _count_decoder(self, sid: int) -> None:
        r = self.r
        if self.oracle:
            self.dec_rem_const += r.out[sid]
        elif r.generated[sid] < self.mean_ceil:
            self.dec_rem_const += self.mean_out
            r.below[sid] = True
            heapq.heappush(self.cross_heap, (self.mean_ceil + 1 + r.prompt[sid] - r.base[sid], r.epoch[sid], sid))
        else:
            return
        self.dec_bp += r.base[sid] - r.prompt[sid]
        self.n_counted += 1

    def _uncount(self, sid: int) -> None:
        r = self.r
        if self.oracle:
            self.dec_rem_const -= r.out[sid]
        elif r.below[sid]:
            r.below[sid] = False
            self.dec_rem_const -= self.mean_out
        else:
            return
        self.dec_bp -= r.base[sid] - r.prompt[sid]
        self.n_counted -= 1
