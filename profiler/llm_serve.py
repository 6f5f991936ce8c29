"""A real continuous-batching LLM server loop (the measured half of `servesim validate` for LLM scenarios).

The engine (profiler/llm.py: the GPT-shaped decoder with a slot-based KV cache, where every running
sequence owns a slot of a preallocated [max_num_seqs, kv_heads, max_len, head_dim] cache per layer; or the
SleepEngine stand-in) runs one step at a time. Each step runs what the policy's step scheduler
(sim.llm_schedulers, the simulator's own) plans: for decode_first, one batched decode for all decoding sequences,
then prefill chunks in the leftover token budget, first come first served. Tokens of a step are delivered when the
step ends. An arrival thread releases
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


class _Plan:
    """The real loop's side of a step scheduler (sim.llm_schedulers): its two planning primitives over the loop's
    sequences (no preemption: validate accepts only settings whose KV cache cannot run out)."""

    def __init__(self, policy, prompt: list):
        self.policy, self.prompt = policy, prompt
        self.chunk_max = policy.chunk if policy.chunked_prefill else policy.max_num_batched_tokens
        self.waiting: list[int] = []
        self.free_slots = list(range(policy.max_num_seqs - 1, -1, -1))
        self.slot, self.done, self.generated, self.last_tok = {}, {}, {}, {}
        self.prefilling: list[int] = []
        self.decoding: list[int] = []
        self.dec: list[int] = []

    def plan_decode(self) -> int:
        """Every decoding sequence decodes this step; returns how many."""
        self.dec = list(self.decoding)
        return len(self.dec)

    def plan_prefill(self, budget: int) -> tuple:
        """Continues prefills, then admits the waiting first come, first served, within `budget` tokens; returns
        (prefill tokens, chunks as (request, start, tokens))."""
        prompt, done, chunk_max, chunks, tokens = self.prompt, self.done, self.chunk_max, [], 0
        for i in self.prefilling:
            if budget <= 0:
                break
            c = min(prompt[i] - done[i], budget, chunk_max)
            chunks.append((i, done[i], c))
            budget -= c
            tokens += c
        waiting, policy = self.waiting, self.policy
        while (waiting and budget > 0 and self.free_slots
               and len(self.prefilling) + len(self.decoding) < policy.max_num_seqs):
            c = min(prompt[waiting[0]], budget, chunk_max)
            if not policy.chunked_prefill and c < prompt[waiting[0]]:
                break
            i = waiting.pop(0)
            self.slot[i], done[i], self.generated[i] = self.free_slots.pop(), 0, 0
            self.prefilling.append(i)
            chunks.append((i, 0, c))
            budget -= c
            tokens += c
        return tokens, chunks


def serve_llm(engine, policy, arrival_s, prompt_tokens, output_tokens) -> LlmServeRecord:
    """Serves the trace for real with continuous batching (no preemption) on `engine` (profiler.llm:
    GptEngine or SleepEngine); returns per-request times. Each step is planned first by the policy's step scheduler
    (sim.llm_schedulers, the simulator's own: decode_first decodes, then prefills in the leftover budget, admitting
    first come first served), then run as one engine.step, whose tokens are delivered when it returns."""
    from sim.llm_schedulers import scheduler

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
    plan, sched = _Plan(policy, prompt), scheduler(policy.order)
    waiting, slot, done, generated, last_tok = plan.waiting, plan.slot, plan.done, plan.generated, plan.last_tok
    finished = 0
    while finished < n:
        feeder.drain(waiting)
        if not waiting and not plan.prefilling and not plan.decoding:
            waiting.append(q.get())
            continue
        step_start = clock()
        plan.dec = []
        _, (_, chunks) = sched.plan(plan, policy.max_num_batched_tokens)
        dec = plan.dec
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
                plan.decoding.remove(i)
                plan.free_slots.append(slot[i])
                finished += 1
        for (i, s, c), tok in zip(chunks, nxt_pre):
            done[i] = s + c
            last_tok[i] = tok
            if done[i] < prompt[i]:
                continue
            plan.prefilling.remove(i)
            generated[i] = 1  # the prefill yields the first output token
            first[i] = end
            if out[i] <= 1:
                finish[i] = end
                plan.free_slots.append(slot[i])
                finished += 1
            else:
                plan.decoding.append(i)
    feeder.join()
    return LlmServeRecord(np.asarray(arrival_s, float), first, finish, np.asarray(walls), np.asarray(models))
