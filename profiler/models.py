"""Built-in workloads, built from code with random weights (nothing is ever downloaded).

Each factory takes keyword arguments (`--model-arg key=value`) and returns (module, make_batch, info):
make_batch(b) returns the input batch of size b on the CPU (the profiler moves and casts it), and info
describes one input item. A user's own model plugs in as `--model pkg.module:factory`, where
factory(**kwargs) returns (module, make_batch) or (module, make_batch, info).
"""
from __future__ import annotations

import importlib
import math
import time
from typing import Callable

import torch
from torch import nn

from .timing import sleep_until

BUILTIN: dict[str, Callable] = {}


def builtin(name: str, summary: str):
    def deco(fn):
        fn.summary = summary
        BUILTIN[name] = fn
        return fn
    return deco


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@builtin("mlp", "multi-layer perceptron: in_features=1024, hidden=4096, layers=4, out_features=1000")
def mlp(in_features: int = 1024, hidden: int = 4096, layers: int = 4, out_features: int = 1000):
    mods, width = [], in_features
    for _ in range(layers - 1):
        mods += [nn.Linear(width, hidden), nn.GELU()]
        width = hidden
    mods.append(nn.Linear(width, out_features))
    model = nn.Sequential(*mods)
    return model, lambda b: torch.randn(b, in_features, generator=_gen()), {"input": f"float[{in_features}]"}


class _Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * 4
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(self.body(x) + self.skip(x))


@builtin("resnet50", "ResNet-50-shaped CNN (bottlenecks 3-4-6-3): image=224, width=64, classes=1000")
def resnet50(image: int = 224, width: int = 64, classes: int = 1000, blocks: str = "3,4,6,3"):
    layers = [nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
              nn.MaxPool2d(3, stride=2, padding=1)]
    cin = width
    for stage, count in enumerate(int(c) for c in str(blocks).split(",")):
        w = width * 2 ** stage
        for i in range(count):
            layers.append(_Bottleneck(cin, w, 2 if (i == 0 and stage > 0) else 1))
            cin = w * 4
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
    model = nn.Sequential(*layers)
    return model, lambda b: torch.randn(b, 3, image, image, generator=_gen()), {"input": f"float[3,{image},{image}]"}


class _Encoder(nn.Module):
    def __init__(self, vocab, seq_len, layers, hidden, heads, ffn, causal, head_out):
        super().__init__()
        self.tok = nn.Embedding(vocab, hidden)
        self.pos = nn.Embedding(seq_len, hidden)
        layer = nn.TransformerEncoderLayer(hidden, heads, ffn, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=causal)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, head_out)
        self.causal = causal
        self.register_buffer("positions", torch.arange(seq_len), persistent=False)
        mask = torch.full((seq_len, seq_len), float("-inf")).triu(1) if causal else None
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, ids):
        x = self.tok(ids) + self.pos(self.positions[: ids.shape[1]])
        mask = self.mask.to(x.dtype) if self.mask is not None else None
        x = self.blocks(x, mask=mask, is_causal=self.causal)
        x = self.norm(x)
        # encoder: pooled [CLS] embedding; decoder: next-token logits of the last position
        return self.head(x[:, -1] if self.causal else x[:, 0])


@builtin("bert-base", "BERT-base-shaped encoder: seq_len=128, layers=12, hidden=768, heads=12, ffn=3072")
def bert_base(seq_len: int = 128, layers: int = 12, hidden: int = 768, heads: int = 12, ffn: int = 3072,
              vocab: int = 30522):
    model = _Encoder(vocab, seq_len, layers, hidden, heads, ffn, causal=False, head_out=hidden)
    return model, lambda b: torch.randint(0, vocab, (b, seq_len), generator=_gen()), {"input": f"int64[{seq_len}] token ids"}


@builtin("gpt", "GPT-shaped decoder (causal, pre-norm), one prefill forward: seq_len=128, layers=12, hidden=768, heads=12")
def gpt(seq_len: int = 128, layers: int = 12, hidden: int = 768, heads: int = 12, ffn: int = 0, vocab: int = 50257):
    model = _Encoder(vocab, seq_len, layers, hidden, heads, ffn or 4 * hidden, causal=True, head_out=vocab)
    return model, lambda b: torch.randint(0, vocab, (b, seq_len), generator=_gen()), {"input": f"int64[{seq_len}] token ids"}


class _Sleep(nn.Module):
    """Waits base_ms + per_item_ms x batch per forward, then returns its input: a model whose step time is
    known, so that serving it tests the serving loop and the simulator, not the machine's speed."""

    def __init__(self, base_ms: float, per_item_ms: float):
        super().__init__()
        self.base_ms, self.per_item_ms = float(base_ms), float(per_item_ms)

    def forward(self, x):
        sleep_until(time.perf_counter() + (self.base_ms + self.per_item_ms * x.shape[0]) / 1000)
        return x


@builtin("sleep", "a stand-in whose step takes exactly base_ms + per_item_ms x batch (sleeps; no compute): "
         "base_ms=4, per_item_ms=0.5, features=8")
def sleep(base_ms: float = 4.0, per_item_ms: float = 0.5, features: int = 8):
    return _Sleep(base_ms, per_item_ms), lambda b: torch.zeros(b, features), {"input": f"float[{features}]"}


def build(spec: str, args: dict):
    """Returns (module, make_batch, info) for a built-in name or a `pkg.module:factory` spec."""
    if spec in BUILTIN:
        out = BUILTIN[spec](**args)
    elif ":" in spec:
        mod_name, _, attr = spec.partition(":")
        factory = getattr(importlib.import_module(mod_name), attr)
        out = factory(**args)
    else:
        raise KeyError(spec)
    if not isinstance(out, tuple) or len(out) not in (2, 3) or not isinstance(out[0], nn.Module) or not callable(out[1]):
        raise TypeError(f"{spec} must return (torch.nn.Module, make_batch) or (module, make_batch, info)")
    module, make_batch = out[0], out[1]
    info = dict(out[2]) if len(out) == 3 else {}
    return module, make_batch, info


def parameter_count(module: nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def weight_bytes(module: nn.Module) -> int:
    return int(sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers())))


def count_model_stats(module: nn.Module, make_batch, cast) -> dict:
    """Returns FLOPs and bytes per item and per batch (a roofline's inputs), counted on the CPU.

    FLOPs from torch's FlopCounterMode at batch 1 and 2 (F(k) = F0 + k F1). Bytes per batch are the
    weights read once per step; bytes per item estimate activation traffic as every leaf module's
    output written once and read once, plus the input. Both are estimates for a roofline, not measurements.
    """
    from torch.utils.flop_counter import FlopCounterMode

    flops = []
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # fused transformer kernels are invisible to the counter
    try:
        for b in (1, 2):
            x = cast(make_batch(b))
            with FlopCounterMode(display=False) as counter, torch.inference_mode():
                module(x)
            flops.append(int(counter.get_total_flops()))
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    per_item = max(flops[1] - flops[0], 0)
    act = [0]

    def hook(_m, _i, out):
        if isinstance(out, torch.Tensor):
            act[0] += out.numel() * out.element_size()

    leaves = [m for m in module.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        x = cast(make_batch(1))
        with torch.inference_mode():
            module(x)
    finally:
        for h in handles:
            h.remove()
    return {"flops_per_item": float(per_item), "flops_per_batch": float(max(flops[0] - per_item, 0)),
            "bytes_per_item": float(2 * act[0] + x.numel() * x.element_size()),
            "bytes_per_batch": float(weight_bytes(module))}


def describe() -> str:
    width = max(len(n) for n in BUILTIN)
    return "\n".join(f"{n:<{width}}  {fn.summary}" for n, fn in BUILTIN.items())


def log2_sizes(limit: int) -> list[int]:
    """Returns 1, 2, 3, 4, 6, 8, 12, ... up to and including `limit` (powers of two and 1.5x between)."""
    out = set()
    for i in range(int(math.log2(max(limit, 1))) + 1):
        p = 2 ** i
        out.add(p)
        if p >= 2 and p * 3 // 2 <= limit:
            out.add(p * 3 // 2)
    out.add(limit)
    return sorted(s for s in out if s <= limit)
