"""SimPy engine for LLM serving: continuous (iteration-level) and static (request-level) batching.

One SimPy event per engine step, never per token. Decoding sequences are not visited one by one each
step: a sequence's length is `base + d` at decode step d, so the total context is `sum(base) + n * d`;
finishes and KV-block boundaries are heaps keyed by decode-step index. Per-step Python work is O(1)
amortised plus O(log n) per finish, block boundary, admission or preemption.
"""
from __future__ import annotations

import heapq
import math
from array import array
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass
from typing import Optional

import numpy as np
import simpy

from .batching import ContinuousBatching, LlmStaticBatching
from .cost import LlmCost


@dataclass
class LlmLog:
    """Per-request and per-step results of one LLM run (times in seconds, NaN when never reached)."""

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    preemptions: np.ndarray          # per request
    recomputed_tokens: np.ndarray    # per request: prefill tokens computed again after preemption
    step_start_s: np.ndarray
    step_s: np.ndarray
    step_prefill_tokens: np.ndarray
    step_decode_tokens: np.ndarray   # output tokens that requests received from this step's decode
    step_decode_slots: np.ndarray    # sequences the step computed a decode for (static: padding included)
    step_kv_used: np.ndarray         # KV tokens held (continuous: blocks * block_size)
    step_running: np.ndarray
    step_waiting: np.ndarray
    kv_capacity_tokens: int
    refused: np.ndarray              # per request: could never run (too large for the KV cache or step budget)
    itl_s: Optional[np.ndarray] = None       # distinct inter-token gaps (continuous batching) ...
    itl_weight: Optional[np.ndarray] = None  # ... and how many tokens waited each of them

    @property
    def finished(self) -> np.ndarray:
        return np.isfinite(self.finish_s)


class _Steps:
    def __init__(self):
        self.cols = {k: array(t) for k, t in (("start", "d"), ("dur", "d"), ("prefill", "q"), ("dec", "q"),
                                               ("slots", "q"), ("kv", "q"), ("run", "q"), ("wait", "q"))}

    def add(self, start, dur, prefill, dec, slots, kv, run, wait):
        c = self.cols
        c["start"].append(start)
        c["dur"].append(dur)
        c["prefill"].append(prefill)
        c["dec"].append(dec)
        c["slots"].append(slots)
        c["kv"].append(kv)
        c["run"].append(run)
        c["wait"].append(wait)

    def arrays(self) -> dict:
        return {k: np.frombuffer(v, dtype=np.float64 if v.typecode == "d" else np.int64).copy() for k, v in self.cols.items()}


def _log(arrival, prompt, output, first, finish, preempt, recomputed, steps: _Steps, kv_capacity, refused) -> LlmLog:
    s = steps.arrays()
    return LlmLog(np.asarray(arrival, float), np.asarray(prompt, np.int64), np.asarray(output, np.int64),
                  np.asarray(first, float), np.asarray(finish, float), np.asarray(preempt, np.int32),
                  np.asarray(recomputed, np.int64), s["start"], s["dur"], s["prefill"], s["dec"], s["slots"], s["kv"],
                  s["run"], s["wait"], int(kv_capacity), np.asarray(refused, bool))


def simulate_continuous(policy: ContinuousBatching, cost: LlmCost, arrival_s, prompt_tokens, output_tokens) -> LlmLog:
    """Runs continuous batching over the given requests (sorted arrivals, seconds); returns the LlmLog.

    KV accounting follows vLLM: a decode step writes the KV of the sequence's latest token, so a sequence
    of L tokens (prompt + generated) needs ceil(L / block_size) blocks during the step that produces token L+1.
    """
    arr = np.asarray(arrival_s, float).tolist()
    prompt = np.asarray(prompt_tokens, np.int64).tolist()
    out = np.asarray(output_tokens, np.int64).tolist()
    n = len(arr)
    bs = policy.block_size
    total_blocks = policy.kv_blocks
    max_seqs = policy.max_num_seqs
    budget_max = policy.max_num_batched_tokens
    chunk_max = policy.chunk if policy.chunked_prefill else budget_max
    chunked = policy.chunked_prefill
    decode_first = policy.order == "decode_first"
    step_cost = cost.iteration_s
    nan = math.nan

    first = [nan] * n
    finish = [nan] * n
    preempt = [0] * n
    recomputed = [0] * n
    generated = [0] * n      # output tokens produced so far
    target = [0] * n         # tokens the current prefill must cover (prompt, plus generated after a preemption)
    done = [0] * n           # of which computed
    blocks = [0] * n         # KV blocks held
    base = [0] * n           # decoding: length after decode step d is base + d
    join = [0] * n           # decode step at which the sequence (re)joined the decoders
    last_tok = [nan] * n     # when the sequence last received a token (for inter-token latency)
    epoch = [0] * n          # bumped on preemption: heap entries of older epochs are stale
    state = [0] * n          # 0 waiting, 1 prefilling, 2 decoding, 3 finished
    steps = _Steps()
    itl_gap, itl_weight = array("d"), array("q")
    st = {"free": total_blocks, "n_dec": 0, "sum_base": 0, "d": 0, "next_arrival": 0, "prev_dec_end": nan,
          "preempted": False}
    joiners: list = []           # (sid, epoch) that started decoding since the last decode step
    waiting: deque[int] = deque()
    prefilling: list[int] = []
    admitted: list[int] = []     # admission order, for last-in-first-out preemption
    dec_heap: list = []          # (decode step of the last token, epoch, sid)
    blk_heap: list = []          # (decode step needing a new block, epoch, sid)
    # a request that can never run is refused on arrival, as vLLM does: its KV at the last step (prompt + output
    # - 1 tokens) beyond the whole cache, or, without chunked prefill, a (re)prefill beyond one step's budget
    fits = policy.fits(prompt_tokens, output_tokens).tolist()

    def start_decoding(sid: int, d_next: int, t_tok: float) -> None:
        length = prompt[sid] + generated[sid]  # tokens whose KV the first decode step holds
        base[sid] = length + 1 - d_next
        join[sid] = d_next
        last_tok[sid] = t_tok
        st["sum_base"] += base[sid]
        st["n_dec"] += 1
        state[sid] = 2
        heapq.heappush(dec_heap, (d_next + out[sid] - generated[sid] - 1, epoch[sid], sid))
        heapq.heappush(blk_heap, (d_next + max(0, blocks[sid] * bs - length + 1), epoch[sid], sid))
        joiners.append((sid, epoch[sid]))

    def release(sid: int) -> None:
        st["free"] += blocks[sid]
        blocks[sid] = 0
        if state[sid] == 2:
            st["n_dec"] -= 1
            st["sum_base"] -= base[sid]
            # tokens produced by the decode steps completed so far (steps < st["d"])
            generated[sid] = min(out[sid], base[sid] + st["d"] - 1 - prompt[sid])
            if st["d"] > join[sid]:
                last_tok[sid] = st["prev_dec_end"]
        elif state[sid] == 1:
            prefilling.remove(sid)
        epoch[sid] += 1

    def preempt_one() -> int:
        while admitted:
            sid = admitted.pop()
            if state[sid] in (1, 2):
                release(sid)
                state[sid] = 0
                preempt[sid] += 1
                # the prefill work this preemption adds: what was computed and is thrown away (a half-done
                # prefill's done tokens; a decoder's whole prefill) plus the generated tokens to re-prefill
                new_target = prompt[sid] + generated[sid]
                recomputed[sid] += done[sid] + new_target - target[sid]
                target[sid] = new_target
                done[sid] = 0
                waiting.appendleft(sid)
                st["preempted"] = True
                return sid
        return -1

    def prepare_decode(d: int) -> int:
        """Allocates this step's KV blocks (preempting if needed); returns the number of decoding sequences."""
        needers = []
        while blk_heap and blk_heap[0][0] <= d:
            _, ep, sid = heapq.heappop(blk_heap)
            if ep == epoch[sid] and state[sid] == 2:
                needers.append(sid)
        while st["free"] < len(needers):
            victim = preempt_one()
            if victim < 0:
                break
            if victim in needers:
                needers.remove(victim)
        for sid in needers:
            blocks[sid] += 1
            length = base[sid] + d - 1
            heapq.heappush(blk_heap, (d + max(1, blocks[sid] * bs - length + 1), epoch[sid], sid))
        st["free"] -= len(needers)
        return st["n_dec"]

    def plan_prefill(budget: int, running: int):
        """Continues chunked prefills, then admits waiting requests first come, first served; returns
        (prefill tokens, attention pairs, chunks, sequences whose prefill completes this step)."""
        tokens, pairs, chunks, completed = 0, 0.0, 0, []
        for sid in list(prefilling):
            if budget <= 0:
                break
            c = min(target[sid] - done[sid], budget, chunk_max)
            grow = -(-(done[sid] + c) // bs) - blocks[sid]
            if grow > st["free"]:
                c = max(0, (blocks[sid] + st["free"]) * bs - done[sid])
                grow = -(-(done[sid] + c) // bs) - blocks[sid]
                if c <= 0:
                    continue
            st["free"] -= grow
            blocks[sid] += grow
            pairs += c * (done[sid] + (c + 1) / 2)
            done[sid] += c
            tokens += c
            chunks += 1
            budget -= c
            if done[sid] == target[sid]:
                completed.append(sid)
        # vLLM admits nothing in a step that had to preempt
        while waiting and budget > 0 and running + len(prefilling) < max_seqs and not st["preempted"]:
            sid = waiting[0]
            need = target[sid] or prompt[sid]
            c = min(need, budget, chunk_max)
            if not chunked and c < need:
                break  # the whole prompt must fit in this step's budget
            grow = -(-c // bs)
            if grow > st["free"]:
                break  # no KV room: wait for sequences to finish
            waiting.popleft()
            target[sid] = need
            done[sid] = c
            blocks[sid] = grow
            st["free"] -= grow
            state[sid] = 1
            prefilling.append(sid)
            admitted.append(sid)
            pairs += c * (c + 1) / 2
            tokens += c
            chunks += 1
            budget -= c
            if c == need:
                completed.append(sid)
        return tokens, pairs, chunks, completed

    def engine(env: simpy.Environment):
        timeout = env.timeout
        while True:
            t = env.now
            k = st["next_arrival"]
            j = bisect_right(arr, t, k)
            if j > k:
                waiting.extend(i for i in range(k, j) if fits[i])
                st["next_arrival"] = j
            if not waiting and not prefilling and st["n_dec"] == 0:
                if j >= n:
                    return
                yield timeout(arr[j] - t)
                continue
            d = st["d"]
            st["preempted"] = False
            if decode_first:
                dec_tokens = prepare_decode(d) if st["n_dec"] else 0
                prefill_tokens, pairs, chunks, completed = plan_prefill(budget_max - dec_tokens, st["n_dec"])
            else:  # prefill-only steps while prefill can progress, decode steps otherwise
                prefill_tokens, pairs, chunks, completed = plan_prefill(budget_max, st["n_dec"])
                dec_tokens = prepare_decode(d) if prefill_tokens == 0 and st["n_dec"] else 0
            if dec_tokens == 0 and prefill_tokens == 0:
                if prefilling:
                    preempt_one()  # the KV cache is full of half-done prefills: the newest yields
                    continue
                if j >= n:
                    return
                yield timeout(max(arr[j] - t, 0.0))
                continue
            context = st["sum_base"] + st["n_dec"] * (d - 1) if dec_tokens else 0
            h = step_cost(prefill_tokens, pairs, dec_tokens, context, chunks)
            end = t + h
            steps.add(t, h, prefill_tokens, dec_tokens, dec_tokens, (total_blocks - st["free"]) * bs,
                      st["n_dec"] + len(prefilling), len(waiting))
            yield timeout(h)
            if dec_tokens:
                # inter-token latency: decoders that also decoded last step waited this step's gap;
                # sequences that joined since then waited from their own last token
                fresh = 0
                for sid, ep in joiners:
                    if ep == epoch[sid] and state[sid] == 2:
                        itl_gap.append(end - last_tok[sid])
                        itl_weight.append(1)
                        fresh += 1
                joiners.clear()
                if dec_tokens > fresh:
                    itl_gap.append(end - st["prev_dec_end"])
                    itl_weight.append(dec_tokens - fresh)
                st["prev_dec_end"] = end
                st["d"] = d + 1
                while dec_heap and dec_heap[0][0] <= d:
                    _, ep, sid = heapq.heappop(dec_heap)
                    if ep != epoch[sid] or state[sid] != 2:
                        continue
                    generated[sid] = out[sid]
                    finish[sid] = end
                    release(sid)
                    state[sid] = 3
            for sid in completed:
                prefilling.remove(sid)
                generated[sid] += 1  # prefill (or recompute) yields the next token
                if math.isnan(first[sid]):
                    first[sid] = end
                elif not math.isnan(last_tok[sid]):
                    itl_gap.append(end - last_tok[sid])  # a preempted sequence's stall until its next token
                    itl_weight.append(1)
                if generated[sid] >= out[sid]:
                    generated[sid] = out[sid]
                    finish[sid] = end
                    st["free"] += blocks[sid]
                    blocks[sid] = 0
                    epoch[sid] += 1
                    state[sid] = 3
                else:
                    start_decoding(sid, st["d"], end)

    env = simpy.Environment()
    env.process(engine(env))
    env.run()
    log = _log(arrival_s, prompt_tokens, output_tokens, first, finish, preempt, recomputed, steps,
               total_blocks * bs, [not f for f in fits])
    log.itl_s = np.frombuffer(itl_gap, dtype=np.float64).copy()
    log.itl_weight = np.frombuffer(itl_weight, dtype=np.int64).copy()
    return log


def simulate_static(policy: LlmStaticBatching, cost: LlmCost, arrival_s, prompt_tokens, output_tokens) -> LlmLog:
    """Runs request-level static batching for an LLM (padded prefill, decode to the longest); returns the LlmLog."""
    arr = np.asarray(arrival_s, float)
    arr_list = arr.tolist()
    prompt = np.asarray(prompt_tokens, np.int64)
    out = np.asarray(output_tokens, np.int64)
    n = arr.size
    rule = policy.rule(policy.max_batch_size)
    first = np.full(n, np.nan)
    finish = np.full(n, np.nan)
    refused = np.zeros(n, bool)
    steps = _Steps()
    state = {"head": 0}
    inf = math.inf

    def engine(env: simpy.Environment):
        while state["head"] < n:
            h0 = state["head"]
            t = env.now
            due = arr_list[h0] + rule.delay_s
            jfull = h0 + rule.max_batch_size - 1
            full = arr_list[jfull] if jfull < n else inf
            d = max(t, min(due, full))
            if d == inf:
                return
            k = bisect_right(arr_list, d, h0, min(h0 + rule.max_batch_size, n)) - h0
            # every slot reserves the batch's longest prompt + longest output (padding)
            while k > 1 and k * (int(prompt[h0:h0 + k].max()) + int(out[h0:h0 + k].max())) > policy.kv_cache_tokens:
                k -= 1
            if k == 1 and prompt[h0] + out[h0] > policy.kv_cache_tokens:
                refused[h0] = True  # alone it still does not fit the KV cache
                state["head"] = h0 + 1
                continue
            idx = slice(h0, h0 + k)
            state["head"] = h0 + k
            p_max = int(prompt[idx].max())
            o_max = int(out[idx].max())
            if d > t:
                yield env.timeout(d - t)
            # padded prefill of the whole batch in one step, then o_max - 1 decode steps of all k slots
            h_pre = cost.iteration_s(k * p_max, k * p_max * (p_max + 1) / 2, 0, 0, 1)  # one padded batched forward
            j = np.arange(o_max - 1, dtype=float)
            h_dec = (cost.overhead_ms + cost.base_ms + cost.decode_seq_ms * k
                     + cost.decode_context_ms * k * (p_max + 1 + j)) / 1000
            ends = d + h_pre + np.concatenate([[0.0], np.cumsum(h_dec)])  # end of prefill, then of each decode step
            first[idx] = ends[0]
            finish[idx] = ends[out[idx] - 1]
            real = (out[idx][None, :] > (j[:, None] + 1)).sum(axis=1)  # requests still producing tokens per step
            starts = ends[:-1]
            # waiting at a step's start: arrived by then and not yet taken into a batch (refused ones are behind head)
            waits = (np.searchsorted(arr, np.concatenate([[d], starts]), side="right") - state["head"]).tolist()
            steps.add(d, h_pre, k * p_max, 0, 0, k * (p_max + o_max), k, waits[0])
            for s0, hd, r, w in zip(starts.tolist(), h_dec.tolist(), real.tolist(), waits[1:]):
                steps.add(s0, hd, 0, r, k, k * (p_max + o_max), k, w)
            yield env.timeout(float(ends[-1]) - d)

    env = simpy.Environment()
    env.process(engine(env))
    env.run()
    zeros = np.zeros(n, np.int64)
    return _log(arr, prompt, out, first, finish, zeros.astype(np.int32), zeros, steps, policy.kv_cache_tokens, refused)
