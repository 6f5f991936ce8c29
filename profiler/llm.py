"""LLM mode of the profiler: a GPT-shaped decoder with a real KV cache, timed on a grid of prefill
(batch x prompt length) and decode (batch x context length) steps, then fitted to sim's LLM cost model.

    python -m profiler.profile --model gpt --llm --out profiles/cpu-gpt-llm-fp32.yaml

Steps are timed exactly as the serving loop runs them (profiler/llm_serve.py), through the same engine
object: a slot-based KV cache per layer, one batched decode forward over all sequences at their positions,
and one prefill forward per chunk; "profile what you serve" keeps `servesim validate` about the simulator,
not about two programs. `--model sleep` profiles and serves SleepEngine instead, whose step time is known.
"""
from __future__ import annotations

import time

import torch
from torch import nn
from torch.nn import functional as F

from .timing import sleep_until


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


GPT_DEFAULTS = {"layers": 12, "hidden": 768, "heads": 12}


class GptKV(nn.Module):
    """GPT-shaped decoder with a preallocated KV cache; random weights."""

    def __init__(self, layers=GPT_DEFAULTS["layers"], hidden=GPT_DEFAULTS["hidden"], heads=GPT_DEFAULTS["heads"],
                 kv_heads=0, ffn=0, vocab=50257, max_len=2048):
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


class GptEngine:
    """The GPT-shaped decoder behind a slot KV cache: one engine step is one batched decode forward over
    every decoding sequence, then one forward per prefill chunk (as the serving loop runs it)."""

    def __init__(self, model: GptKV, slots: int, max_len: int, device, dtype, sync=lambda: None):
        self.cache = SlotCache(model, slots, max_len, device, dtype)
        self.device = device
        self.sync = sync
        self.vocab = model.cfg["vocab"]

    def prompt(self, tokens: int, generator) -> torch.Tensor:
        """Returns random prompt token ids of the given length, on the engine's device."""
        return torch.randint(0, self.vocab, (tokens,), generator=generator).to(self.device)

    def first_token(self) -> torch.Tensor:
        return torch.zeros((), dtype=torch.long, device=self.device)

    def step(self, decodes: list, prefills: list) -> tuple[list, list]:
        """Runs one engine step and waits for it; `decodes` holds (slot, last token, position of the new
        token), `prefills` (slot, prompt token ids of the chunk, start position). Returns the next token of
        each decode and of each prefill chunk."""
        with torch.inference_mode():
            nxt_dec = []
            if decodes:
                slots = [d[0] for d in decodes]
                toks = torch.stack([d[1] for d in decodes])
                pos = torch.as_tensor([d[2] for d in decodes], device=self.device)
                nxt_dec = list(self.cache.decode(slots, toks, pos))
            nxt_pre = [self.cache.prefill(slot, ids, start)[0] for slot, ids, start in prefills]
            self.sync()
        return nxt_dec, nxt_pre


class SleepEngine:
    """A stand-in engine whose step takes a known time: it sleeps the llm cost model's step time for what
    the step computes (sim/cost/llm.py: base + prefill tokens, attention pairs and chunks + decoding
    sequences and their context). With it the serving loop and the simulator must agree to within the
    sleep's own jitter, whatever the machine's speed: the tests' and the calibration kit's controlled model."""

    COEFS = ("base_ms", "prefill_token_ms", "prefill_attention_ms", "prefill_seq_ms", "decode_seq_ms", "decode_context_ms")

    def __init__(self, base_ms=4.0, prefill_token_ms=0.01, prefill_attention_ms=0.0, prefill_seq_ms=0.5,
                 decode_seq_ms=0.1, decode_context_ms=0.0, **_ignored):
        self.coef = dict(zip(self.COEFS, (float(base_ms), float(prefill_token_ms), float(prefill_attention_ms),
                                          float(prefill_seq_ms), float(decode_seq_ms), float(decode_context_ms))))
        self.device = "cpu"

    def prompt(self, tokens: int, generator) -> torch.Tensor:
        return torch.zeros(tokens, dtype=torch.long)

    def first_token(self) -> torch.Tensor:
        return torch.zeros((), dtype=torch.long)

    def step_ms(self, decodes: list, prefills: list) -> float:
        """Returns the step time in ms the cost model gives for these decodes and prefill chunks."""
        c = self.coef
        tokens = sum(int(ids.numel()) for _, ids, _ in prefills)
        pairs = sum(int(ids.numel()) * (start + (int(ids.numel()) + 1) / 2) for _, ids, start in prefills)
        context = sum(pos + 1 for _, _, pos in decodes)
        return (c["base_ms"] + c["prefill_token_ms"] * tokens + c["prefill_attention_ms"] * pairs
                + c["prefill_seq_ms"] * len(prefills) + c["decode_seq_ms"] * len(decodes)
                + c["decode_context_ms"] * context)

    def step(self, decodes: list, prefills: list) -> tuple[list, list]:
        sleep_until(time.perf_counter() + self.step_ms(decodes, prefills) / 1000)
        zero = torch.zeros((), dtype=torch.long)
        return [zero] * len(decodes), [zero] * len(prefills)


ENGINES = ("gpt", "sleep")


def build_engine(name: str, model_args: dict, slots: int, max_len: int, device, dtype, sync=lambda: None):
    """Returns the engine a profile's model names: 'gpt' (GptKV with random weights, seeded) or 'sleep'
    (SleepEngine with the cost coefficients in model_args). Raises KeyError for other names."""
    if name == "sleep":
        return SleepEngine(**model_args)
    if name != "gpt":
        raise KeyError(name)
    torch.manual_seed(0)
    model = GptKV(**{**model_args, "max_len": max_len + 1}).to(device, dtype).eval()
    return GptEngine(model, slots, max_len, device, dtype, sync)


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


def make_step(engine, point: dict):
    """Returns a zero-argument function running one engine step of `point` exactly as the serving loop
    does (profiler/llm_serve.py): decode = one step decoding `batch` sequences at position `context`;
    prefill = one step of `batch` chunks of `tokens` each from position 0. Every point shares the
    engine's one slot cache (slots 0..batch-1), so memory does not grow with the grid."""
    b, t, ctx = point["batch"], point["tokens"], point["context"]
    gen = torch.Generator().manual_seed(0)
    if point["phase"] == "decode":
        decodes = [(i, engine.first_token(), ctx) for i in range(b)]
        return lambda: engine.step(decodes, [])
    prefills = [(i, engine.prompt(t, gen), 0) for i in range(b)]
    return lambda: engine.step([], prefills)


def model_stats(model: GptKV, dtype_bytes: int) -> dict:
    """Returns the dimensions an LLM roofline needs, in the profiled dtype."""
    c = model.cfg
    params = int(sum(p.numel() for p in model.parameters()))
    return {"params": params, "layers": c["layers"], "hidden": c["hidden"], "heads": c["heads"],
            "kv_heads": c["kv_heads"], "weight_bytes": params * dtype_bytes,
            "kv_bytes_per_token": 2 * c["layers"] * c["kv_heads"] * (c["hidden"] // c["heads"]) * dtype_bytes,
            "flops_per_token": 2 * params}


def point_label(p: dict) -> str:
    """Returns 'decode batch 8 x 512' style names of grid points for progress lines and warnings."""
    return f"{p['phase']} batch {p['batch']} x {p['tokens'] if p['phase'] == 'prefill' else p['context']}"


def measure_llm(engine, points: list[dict], settings, say=lambda s: None, free=lambda: None) -> dict:
    """Times one engine step of every grid point in shuffled interleaved rounds (profiler.timing.measure,
    wall clock around engine.step, which waits for the device) and fits the llm cost model (sim.llm_fit).

    A point that runs out of memory is dropped with a warning (`free` releases cached device memory).
    Returns {"llm_points": measured points with their timing summaries, "llm_fit", "warnings",
    "measured_s"}."""
    from sim.llm_fit import fit_llm

    from .profile import _is_oom
    from .timing import budget_shortfall, measure

    steps, warnings = {}, []
    for i, p in enumerate(points):
        try:
            fn = make_step(engine, p)
            fn()
            steps[i] = fn
        except Exception as exc:  # out of memory at a large grid point: drop it, keep the rest
            if not _is_oom(exc):
                raise
            warnings.append(f"{point_label(p)}: out of memory, not measured")
            free()
    if len(steps) < 6:
        raise RuntimeError(f"only {len(steps)} grid points could run: too few to fit the llm cost model")

    def timed(i: int) -> float:
        t0 = time.perf_counter()
        steps[i]()
        return (time.perf_counter() - t0) * 1000

    started = time.perf_counter()
    stats = measure(timed, list(steps), settings, say, label=lambda i: f"{point_label(points[i]):>24}")
    measured = []
    for i in steps:
        summary = stats[i].summary()
        measured.append({**points[i], **{k: v for k, v in summary.items() if k != "batch_size"}})
        if summary["cv"] > 0.10:
            warnings.append(f"{point_label(points[i])}: coefficient of variation {summary['cv']:.0%} > 10%")
    short = budget_shortfall([(point_label(points[i]), stats[i]) for i in steps], settings)
    if short:
        warnings.append(short)
    return {"llm_points": measured, "llm_fit": fit_llm(measured), "warnings": warnings,
            "measured_s": round(time.perf_counter() - started, 3)}


def llm_profile(name: str, model_args: dict, engine, dtype: str, dev: dict, settings, res: dict,
                extra_settings: dict) -> dict:
    """Returns an LLM profile (format servesim-profile, mode llm) from measure_llm's result `res`."""
    import datetime as dt

    from sim.profile_format import FORMAT, VERSION

    from .profile import DTYPE_BYTES

    return {"format": FORMAT, "version": VERSION, "mode": "llm",
            "created_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "model": {"name": name, "args": dict(model_args), **engine_stats(name, engine, DTYPE_BYTES[dtype])},
            "device": dev, "dtype": dtype,
            "settings": {**settings.as_dict(), "timer": "perf_counter around engine.step (synchronised)",
                         "inference_mode": True, "kv_cache": "one preallocated slot cache per layer",
                         "measured_s": res["measured_s"], **extra_settings},
            "max_batch_size": max(p["batch"] for p in res["llm_points"]),
            "points": [], "llm_points": res["llm_points"], "llm_fit": res["llm_fit"], "warnings": res["warnings"]}


def kv_bytes_per_token(model_args: dict, dtype_bytes: int) -> int:
    """Returns the slot cache's bytes per token position for a GptKV with these arguments (K and V, all layers)."""
    layers = int(model_args.get("layers", GPT_DEFAULTS["layers"]))
    hidden = int(model_args.get("hidden", GPT_DEFAULTS["hidden"]))
    heads = int(model_args.get("heads", GPT_DEFAULTS["heads"]))
    kv_heads = int(model_args.get("kv_heads", 0) or heads)
    return 2 * layers * kv_heads * (hidden // heads) * dtype_bytes


def engine_stats(name: str, engine, dtype_bytes: int) -> dict:
    """Returns the profile's model section for an engine: GptKV's dimensions, or the SleepEngine's
    coefficients (no parameters)."""
    if name == "sleep":
        return {"params": 0, **engine.coef}
    return model_stats(engine.cache.m, dtype_bytes)
