"""Per-request state of one LLM fleet's requests, shared by its continuous-batching engines (columns indexed by
request id, Python lists because the engines read and write single entries on their hot path)."""
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
        self.refused = [False] * n
        self.rejected = [False] * n  # turned away by a full waiting queue (server.queue.max_waiting)
        self.timed_out = [False] * n  # the client gave up waiting for admission (workload.client_timeout_ms)
        self.admitted_s = [nan] * n  # when it was first admitted (its prefill began)
        self.below = [False] * n   # token-aware routing: still under the mean output length

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
            if isinstance(value, list):
                del value[n:]
        self.n = n
