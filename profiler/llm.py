"""LLM mode of the profiler: a GPT-shaped decoder with a real KV cache, timed on a grid of prefill
(batch x prompt length) and decode (batch x context length) steps, then fitted to sim's LLM cost model.

    python -m profiler.profile --model gpt --llm --out profiles/cpu-gpt-llm-fp32.yaml

Steps are timed exactly as the serving loop runs them (profiler/llm_serve.py): a slot-based KV cache per
layer, one batched decode forward over all sequences at their positions, and one prefill forward per
sequence; "profile what you serve" keeps `servesim validate` about the simulator, not about two programs.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F



class _Block(nn.Module):
    def __init__(self, hidden: int, heads: int, kv_heads: int, ffn: int):
        super().__init__()
        self.heads, self.kv_heads, self.dim = heads, kv_heads, hidden // heads
        self.ln1, self.ln2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.q = nn.Linear(hidden, hidden)
        self.kv = nn.Linear(hidden, 2 * kv_heads * self.dim)
        self.o = nn.Linear(hidden, hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, ffn), nn.GELU(), nn.Linear(ffn, hidden))

    def forward(self, x, cache_k, cache_v, pos: int):
        b, t, _ = x.shape
        h = self.ln1(x)
        q = self.q(h).view(b, t, self.heads, self.dim).transpose(1, 2)
        k, v = self.kv(h).view(b, t, 2, self.kv_heads, self.dim).permute(2, 0, 3, 1, 4)
        cache_k[:b, :, pos:pos + t] = k
        cache_v[:b, :, pos:pos + t] = v
        keys, values = cache_k[:b, :, :pos + t], cache_v[:b, :, :pos + t]
        if self.kv_heads != self.heads:
            rep = self.heads // self.kv_heads
            keys, values = keys.repeat_interleave(rep, 1), values.repeat_interleave(rep, 1)
        # prefill attends causally within the new tokens; a decode step's single query sees all the context
        a = F.scaled_dot_product_attention(q, keys, values, is_causal=t > 1 and pos == 0)
        x = x + self.o(a.transpose(1, 2).reshape(b, t, -1))
        return x + self.mlp(self.ln2(x))


class GptKV(nn.Module):
    """GPT-shaped decoder with a preallocated KV cache; random weights."""

    def __init__(self, layers=12, hidden=768, heads=12, kv_heads=0, ffn=0, vocab=50257, max_len=2048):
        super().__init__()
        self.cfg = {"layers": layers, "hidden": hidden, "heads": heads, "kv_heads": kv_heads or heads,
                    "ffn": ffn or 4 * hidden, "vocab": vocab, "max_len": max_len}
        self.tok = nn.Embedding(vocab, hidden)
        self.pos = nn.Embedding(max_len, hidden)
        self.blocks = nn.ModuleList(_Block(hidden, heads, kv_heads or heads, ffn or 4 * hidden) for _ in range(layers))
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, vocab, bias=False)

    def new_cache(self, batch: int, length: int, device, dtype):
        c = self.cfg
        shape = (batch, c["kv_heads"], length, c["hidden"] // c["heads"])
        return [(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))
                for _ in range(c["layers"])]

    def forward(self, ids, cache, pos: int):
        t = ids.shape[1]
        x = self.tok(ids) + self.pos.weight[pos:pos + t]
        for blk, (k, v) in zip(self.blocks, cache):
            x = blk(x, k, v, pos)
        return self.head(self.norm(x[:, -1]))  # next-token logits


def grid(max_batch: int, max_prompt: int, max_context: int) -> list[dict]:
    """Returns the prefill and decode grid points to time."""
    def ladder(top, start):
        out, v = [], start
        while v <= top:
            out.append(v)
            v *= 2
        return out or [top]

    pts = [{"phase": "prefill", "batch": b, "tokens": p, "context": 0}
           for b in ladder(min(max_batch, 4), 1) for p in ladder(max_prompt, 32)]
    pts += [{"phase": "decode", "batch": b, "tokens": 1, "context": c}
            for b in ladder(max_batch, 1) for c in ladder(max_context, 64)]
    return pts


def make_step(model: GptKV, runner, point: dict):
    """Returns a zero-argument function running one step of `point` exactly as the serving loop does
    (profiler/llm_serve.py): decode = one batched forward over slot caches at position `context`;
    prefill = `batch` separate forwards of `tokens` each (the loop prefills sequence by sequence)."""
    from .llm_serve import SlotCache

    b, t, ctx = point["batch"], point["tokens"], point["context"]
    cache = SlotCache(model, b, ctx + t + 1, runner.device, runner.dtype)
    vocab = model.cfg["vocab"]
    if point["phase"] == "decode":
        slots = list(range(b))
        tokens = torch.randint(0, vocab, (b,), device=runner.device)
        pos = torch.full((b,), ctx, device=runner.device)

        def step():
            with torch.inference_mode():
                cache.decode(slots, tokens, pos)
    else:
        prompts = [torch.randint(0, vocab, (t,), device=runner.device) for _ in range(b)]

        def step():
            with torch.inference_mode():
                for i in range(b):
                    cache.prefill(i, prompts[i], 0)
    return step


def model_stats(model: GptKV, dtype_bytes: int) -> dict:
    """Returns the dimensions an LLM roofline needs, in the profiled dtype."""
    c = model.cfg
    params = int(sum(p.numel() for p in model.parameters()))
    return {"params": params, "layers": c["layers"], "hidden": c["hidden"], "heads": c["heads"],
            "kv_heads": c["kv_heads"], "weight_bytes": params * dtype_bytes,
            "kv_bytes_per_token": 2 * c["layers"] * c["kv_heads"] * (c["hidden"] // c["heads"]) * dtype_bytes,
            "flops_per_token": 2 * params}
