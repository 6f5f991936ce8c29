"""Per-request state of one LLM fleet's requests, shared by its continuous-batching engines (columns indexed by
request id: Python lists because the engines read and write single entries on their hot path; the flags, read
rarely, are bytearrays of 1 byte an entry; typed arrays for the hot columns were measured 6-10% slower on the
LLM day, bench/README.md)."""
from __future__ import annotations

import math

import numpy as np

WAITING, PREFILLING, DECODING, FINISHED = 0, 1, 2, 3


class LlmRequests:
    """Per-request state shared by the replicas of one LLM fleet: a request is at one replica at a time
    (behind a shared queue a preempted request may resume on another)."""

    def __init__(self, arrival_s, prompt_tokens, output_tokens):
        self.arrival = np.asarray(arrival_s, float).tolist()
        self.prompt = np.asarray(prompt_tokens, np.int64).tolist()
        self.out = np.asarray(output_tokens, np.int64).tolist()
        n = self.n = len(self.arrival)
        nan = math.nan
        self.first = [nan] * n
        self.finish = [nan] * n
        self.preempt = [0] * n
        self.recomputed = [0] * n
        self.generated = [0] * n   # output tokens produced so far
        self.target = [0] * n      # tokens the current prefill must cover (prompt, plus generated after a preemption)
        self.done = [0] * n        # of which computed
        self.blocks = [0] * n      # KV blocks held
        self.base = [0] * n        # decoding: length after decode step d is base + d
        self.join = [0] * n        # decode step at which the sequence (re)joined the decoders
        self.last_tok = [nan] * n  # when the sequence last received a token (for inter-token latency)
        self.epoch = [0] * n       # bumped on preemption or finish: heap entries of older epochs are stale
        self.state = [WAITING] * n
        self.replica = [-1] * n    # the replica that last held it
        self.refused = bytearray(n)
        self.rejected = bytearray(n)  # turned away by a full waiting queue (server.queue.max_waiting)
        self.timed_out = bytearray(n)  # the client gave up waiting for admission (workload.client_timeout_ms)
        self.admitted_s = [nan] * n  # when it was first admitted (its prefill began)
        self.below = bytearray(n)  # token-aware routing: still under the mean output length
        self.packed = None  # streaming (pack_done): per request, whether its values moved to `kept`
        self.inputs = None  # streaming: the fleet's arrival and size arrays (keep_inputs)

    # columns a finished request's values are still read from (the log), and those only its engine reads
    KEPT = ("first", "finish", "admitted_s", "recomputed")
    DROPPED = ("arrival", "prompt", "out", "last_tok", "generated", "target", "done", "base", "join")

    def pack_done(self, arrived: int) -> int:
        """Streaming: for every request among the first `arrived` ids that is done (finished, refused, turned away,
        gave up) and not yet packed, moves the values the log reads (KEPT) into numpy columns and replaces its
        entries in every per-request list with shared constants, so the Python objects of finished requests are
        freed and memory grows by a few list slots per request, not by its objects. Returns how many it packed.
        Arrival, prompt and output come from the arrays the fleet was given (`keep_inputs`)."""
        if self.packed is None:
            self.packed = np.zeros(self.n, bool)
            self.packed_lo = 0  # every id below is packed
            self.kept = {k: np.full(self.n, math.nan) if k in ("first", "finish", "admitted_s") else
                         np.zeros(self.n, np.int64) for k in self.KEPT}
        lo = self.packed_lo
        if arrived <= lo:
            return 0
        state = np.asarray(self.state[lo:arrived], np.int8)
        done = ((state == FINISHED) | np.asarray(self.refused[lo:arrived], bool)
                | np.asarray(self.rejected[lo:arrived], bool) | np.asarray(self.timed_out[lo:arrived], bool))
        done &= ~self.packed[lo:arrived]
        idx = np.flatnonzero(done) + lo
        if idx.size:
            ids = idx.tolist()
            for k in self.KEPT:
                col = getattr(self, k)
                self.kept[k][idx] = [col[i] for i in ids]
            nan = math.nan
            for k in self.KEPT + self.DROPPED:
                col, blank = getattr(self, k), (nan if k in ("first", "finish", "admitted_s", "arrival", "last_tok")
                                                else 0)
                for i in ids:
                    col[i] = blank
            self.packed[idx] = True
        rest = np.flatnonzero(~self.packed[lo:arrived])
        self.packed_lo = lo + int(rest[0]) if rest.size else arrived
        return int(idx.size)

    def keep_inputs(self, arrival_s: np.ndarray, prompt_tokens: np.ndarray, output_tokens: np.ndarray) -> None:
        """Keeps the fleet's input arrays: a packed request's arrival and sizes are read from them (`column`)."""
        self.inputs = {"arrival": np.asarray(arrival_s, float), "prompt": np.asarray(prompt_tokens, np.int64),
                       "out": np.asarray(output_tokens, np.int64)}

    def column(self, name: str, dtype) -> np.ndarray:
        """Returns a per-request column as a numpy array of `dtype`, packed requests' values included."""
        if self.packed is None:
            return np.asarray(getattr(self, name), dtype)
        if name in self.inputs:
            return self.inputs[name].astype(dtype, copy=True)
        out = np.asarray(getattr(self, name), dtype)
        if name in self.kept:
            out[self.packed] = self.kept[name][self.packed]
        return out

    def prefix_hashes(self, sid: int) -> tuple:
        """Returns the hashes of request sid's full prompt blocks, the identity a prefix cache matches (requests
        carry no shared-prefix identity yet: none)."""
        return ()

    def extend(self, prompt_tokens, output_tokens) -> None:
        """Adds requests (closed-loop clients: ids are handed out as the clients send); their arrival times
        are set when they arrive."""
        m = len(prompt_tokens)
        nan = math.nan
        self.arrival += [nan] * m
        self.prompt += np.asarray(prompt_tokens, np.int64).tolist()
        self.out += np.asarray(output_tokens, np.int64).tolist()
        for name, value in (("first", nan), ("finish", nan), ("preempt", 0), ("recomputed", 0), ("generated", 0),
                            ("target", 0), ("done", 0), ("blocks", 0), ("base", 0), ("join", 0), ("last_tok", nan),
                            ("epoch", 0), ("state", WAITING), ("replica", -1), ("refused", False), ("rejected", False),
                            ("timed_out", False), ("admitted_s", nan), ("below", False)):
            getattr(self, name).extend([value] * m)
        self.n += m

    def trim(self, n: int) -> None:
        """Keeps the first n requests (the ones clients actually sent)."""
        for name, value in vars(self).items():
            if isinstance(value, (list, bytearray)):
                del value[n:]
        self.n = n
