"""A real continuous-batching LLM server loop (the measured half of `servesim validate` for LLM scenarios).

The GPT-shaped decoder (profiler/llm.py) runs with a slot-based KV cache: every running sequence owns a
slot of a preallocated [max_num_seqs, kv_heads, max_len, head_dim] cache per layer. Each engine step
does what the simulator's continuous policy does: one batched decode forward for all decoding sequences
(each at its own position, masked attention), then prefill chunks in the leftover token budget, first
come first served, sequence by sequence. Tokens of a step are delivered when the step ends. An arrival
thread releases requests at their trace times on the real clock. The loop does not preempt: validate only
accepts settings whose KV cache cannot run out, so the simulator does not preempt either.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from .serve import Feeder


@dataclass
class LlmServeRecord:
    arrival_s: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    step_wall_s: np.ndarray        # per step: wall time of the whole step
    step_model_s: np.ndarray       # per step: time inside model forwards (synchronised)


class SlotCache:
    """Runs GptKV forwards against a slot-based KV cache."""

    def __init__(self, model, slots: int, max_len: int, device, dtype):
        c = model.cfg
        self.m = model
        self.heads, self.kv_heads, self.dim = c["heads"], c["kv_heads"], c["hidden"] // c["heads"]
        shape = (slots, self.kv_heads, max_len, self.dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(c["layers"])]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(c["layers"])]
        self.device = device

    def _block(self, blk, x, li, idx, mask, lmax, write):
        """One transformer block over x, writing the new K/V with write(cache_k, cache_v, k, v) first."""
        b, t, _ = x.shape
        h = blk.ln1(x)
        q = blk.q(h).view(b, t, self.heads, self.dim).transpose(1, 2)
        k, v = blk.kv(h).view(b, t, 2, self.kv_heads, self.dim).permute(2, 0, 3, 1, 4)
        write(self.k[li], self.v[li], k, v)
        keys, values = self.k[li][idx, :, :lmax], self.v[li][idx, :, :lmax]
        if self.kv_heads != self.heads:
            rep = self.heads // self.kv_heads
            keys, values = keys.repeat_interleave(rep, 1), values.repeat_interleave(rep, 1)
        a = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
        x = x + blk.o(a.transpose(1, 2).reshape(b, t, -1))
        return x + blk.mlp(blk.ln2(x))

    def decode(self, slots: list[int], tokens: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """One token for each slot at its own position (pos); returns the next token ids."""
        idx = torch.as_tensor(slots, device=self.device)
        lmax = int(pos.max()) + 1
        mask = (torch.arange(lmax, device=self.device)[None, :] <= pos[:, None])[:, None, None, :]
        x = self.m.tok(tokens[:, None]) + self.m.pos.weight[pos][:, None]

        def write(ck, cv, k, v):  # each sequence at its own position
            ck[idx, :, pos] = k[:, :, 0]
            cv[idx, :, pos] = v[:, :, 0]

        for li, blk in enumerate(self.m.blocks):
            x = self._block(blk, x, li, idx, mask, lmax, write)
        return self.m.head(self.m.norm(x[:, -1])).argmax(-1)

    def prefill(self, slot: int, tokens: torch.Tensor, start: int) -> torch.Tensor:
        """Positions start..start+len(tokens)-1 of one sequence (a chunk); returns the next token id."""
        t = tokens.numel()
        idx = torch.as_tensor([slot], device=self.device)
        lmax = start + t
        mask = (torch.arange(lmax, device=self.device)[None, :] <= torch.arange(start, lmax, device=self.device)[:, None])[None, None]
        x = self.m.tok(tokens[None]) + self.m.pos.weight[start:lmax][None]

        def write(ck, cv, k, v):  # one sequence, contiguous positions
            ck[slot, :, start:lmax] = k[0]
            cv[slot, :, start:lmax] = v[0]

        for li, blk in enumerate(self.m.blocks):
            x = self._block(blk, x, li, idx, mask, lmax, write)
        return self.m.head(self.m.norm(x[:, -1])).argmax(-1)


def serve_llm(model, policy, arrival_s, prompt_tokens, output_tokens, device, dtype, sync) -> LlmServeRecord:
    """Serves the trace for real with continuous batching (no preemption); returns per-request times."""
    n = len(arrival_s)
    prompt = [int(x) for x in prompt_tokens]
    out = [int(x) for x in output_tokens]
    max_len = max(p + o for p, o in zip(prompt, out)) + 1
    cache = SlotCache(model, policy.max_num_seqs, max_len, device, dtype)
    vocab = model.cfg["vocab"]
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, vocab, (p,), generator=gen).to(device) for p in prompt]
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
    with torch.inference_mode():
        while finished < n:
            feeder.drain(waiting)
            if not waiting and not prefilling and not decoding:
                waiting.append(q.get())
                continue
            step_start = clock()
            model_s = 0.0
            budget = policy.max_num_batched_tokens
            dec = list(decoding)
            if dec:
                m0 = clock()
                pos = torch.as_tensor([prompt[i] + generated[i] - 1 for i in dec], device=device)
                toks = torch.stack([last_tok[i] for i in dec])
                nxt = cache.decode([slot[i] for i in dec], toks, pos)
                sync()
                model_s += clock() - m0
                for k, i in enumerate(dec):
                    last_tok[i] = nxt[k]
                budget -= len(dec)
            completed = []
            for i in list(prefilling):
                if budget <= 0:
                    break
                c = min(prompt[i] - done[i], budget, chunk_max)
                m0 = clock()
                last_tok[i] = cache.prefill(slot[i], prompts[i][done[i]:done[i] + c], done[i])[0]
                sync()
                model_s += clock() - m0
                done[i] += c
                budget -= c
                if done[i] == prompt[i]:
                    completed.append(i)
            while waiting and budget > 0 and free_slots and len(prefilling) + len(decoding) < policy.max_num_seqs:
                c = min(prompt[waiting[0]], budget, chunk_max)
                if not policy.chunked_prefill and c < prompt[waiting[0]]:
                    break
                i = waiting.pop(0)
                slot[i], done[i], generated[i] = free_slots.pop(), 0, 0
                prefilling.append(i)
                m0 = clock()
                last_tok[i] = cache.prefill(slot[i], prompts[i][:c], 0)[0]
                sync()
                model_s += clock() - m0
                done[i] = c
                budget -= c
                if c == prompt[i]:
                    completed.append(i)
            end = clock() - t0
            walls.append(clock() - step_start)
            models.append(model_s)
            for i in dec:
                generated[i] += 1
                if generated[i] >= out[i]:
                    finish[i] = end
                    decoding.remove(i)
                    free_slots.append(slot[i])
                    finished += 1
            for i in completed:
                prefilling.remove(i)
                generated[i] = 1
                first[i] = end
                if out[i] <= 1:
                    finish[i] = end
                    free_slots.append(slot[i])
                    finished += 1
                else:
                    decoding.append(i)
    feeder.join()
    return LlmServeRecord(np.asarray(arrival_s, float), first, finish, np.asarray(walls), np.asarray(models))
