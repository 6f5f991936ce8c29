"""A real continuous-batching LLM server loop (the measured half of `servesim validate` for LLM scenarios).

The engine (profiler/llm.py: the GPT-shaped decoder with a slot-based KV cache, where every running
sequence owns a slot of a preallocated [max_num_seqs, kv_heads, max_len, head_dim] cache per layer; or the
SleepEngine stand-in) runs one step at a time. Each step does what the simulator's continuous policy does:
one batched decode for all decoding sequences, then prefill chunks in the leftover token budget, first
come first served. Tokens of a step are delivered when the step ends. An arrival thread releases
requests at their trace times on the real clock. The loop does not preempt: validate only accepts
settings whose KV cache cannot run out, so the simulator does not preempt either.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from .serve import Feeder


@dataclass
class LlmServeRecord:
    arrival_s: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    step_wall_s: np.ndarray        # per step: wall time of the whole step
    step_model_s: np.ndarray       # per step: time inside model forwards (synchronised)


def serve_llm(engine, policy, arrival_s, prompt_tokens, output_tokens) -> LlmServeRecord:
    """Serves the trace for real with continuous batching (no preemption) on `engine` (profiler.llm:
    GptEngine or SleepEngine); returns per-request times. Each step is planned first (decodes, then
    prefill chunks in the leftover budget, admitting first come first served), then run as one
    engine.step, whose tokens are delivered when it returns."""
    n = len(arrival_s)
    prompt = [int(x) for x in prompt_tokens]
    out = [int(x) for x in output_tokens]
    gen = torch.Generator().manual_seed(0)
    prompts = [engine.prompt(p, gen) for p in prompt]
    first = np.full(n, np.nan)
    finish = np.full(n, np.nan)
    walls, models = [], []
    clock = time.perf_counter
    feeder = Feeder(arrival_s)
    q, t0 = feeder.queue, feeder.t0
    chunk_max = policy.chunk if policy.chunked_prefill else policy.max_num_batched_tokens
    waiting: list[int] = []
    free_slots = list(range(policy.max_num_seqs - 1, -1, -1))
    slot, done, generated, last_tok = {}, {}, {}, {}
    prefilling: list[int] = []
    decoding: list[int] = []
    finished = 0
    while finished < n:
        feeder.drain(waiting)
        if not waiting and not prefilling and not decoding:
            waiting.append(q.get())
            continue
        step_start = clock()
        dec = list(decoding)
        budget = policy.max_num_batched_tokens - len(dec)
        chunks = []  # (request, start, tokens)
        for i in prefilling:
            if budget <= 0:
                break
            c = min(prompt[i] - done[i], budget, chunk_max)
            chunks.append((i, done[i], c))
            budget -= c
        while waiting and budget > 0 and free_slots and len(prefilling) + len(decoding) < policy.max_num_seqs:
            c = min(prompt[waiting[0]], budget, chunk_max)
            if not policy.chunked_prefill and c < prompt[waiting[0]]:
                break
            i = waiting.pop(0)
            slot[i], done[i], generated[i] = free_slots.pop(), 0, 0
            prefilling.append(i)
            chunks.append((i, 0, c))
            budget -= c
        m0 = clock()
        nxt_dec, nxt_pre = engine.step([(slot[i], last_tok[i], prompt[i] + generated[i] - 1) for i in dec],
                                       [(slot[i], prompts[i][s:s + c], s) for i, s, c in chunks])
        models.append(clock() - m0)
        end = clock() - t0
        walls.append(clock() - step_start)
        for i, tok in zip(dec, nxt_dec):
            last_tok[i] = tok
            generated[i] += 1
            if generated[i] >= out[i]:
                finish[i] = end
                decoding.remove(i)
                free_slots.append(slot[i])
                finished += 1
        for (i, s, c), tok in zip(chunks, nxt_pre):
            done[i] = s + c
            last_tok[i] = tok
            if done[i] < prompt[i]:
                continue
            prefilling.remove(i)
            generated[i] = 1  # the prefill yields the first output token
            first[i] = end
            if out[i] <= 1:
                finish[i] = end
                free_slots.append(slot[i])
                finished += 1
            else:
                decoding.append(i)
    feeder.join()
    return LlmServeRecord(np.asarray(arrival_s, float), first, finish, np.asarray(walls), np.asarray(models))
