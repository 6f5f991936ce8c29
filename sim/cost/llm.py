"""LLM iteration cost: one step of a continuous-batching engine, priced by what it computes.

    step = overhead + base + prefill_token * P + prefill_attention * A + prefill_seq * S + decode_seq * D
           + decode_context * C

P: prefill tokens in the step (chunks included); A: prefill attention work, sum over chunks of
chunk * (tokens already in context + (chunk + 1) / 2), i.e. query-key pairs, which grows with prompt
length; S: prefill chunks (sequences) in the step, each a forward of its own in engines that do not fuse
them (0 for fused engines such as vLLM); D: sequences decoding one token; C: their total context (KV)
length. All coefficients in ms.
"""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal, Optional

from pydantic import Field, model_validator

from . import REGISTRY
from .base import CostModel


@REGISTRY.register
class LlmCost(CostModel):
    is_llm_cost: ClassVar[bool] = True
    kind: Literal["llm"] = "llm"
    profile: Optional[str] = Field(default=None, description="LLM profile (python -m profiler.profile --llm) whose "
                                   "fitted coefficients to use; coefficients given here override it")
    base_ms: Optional[float] = Field(default=None, ge=0, le=1e6, description="per step whatever it holds (weights read once), ms")
    prefill_token_ms: Optional[float] = Field(default=None, ge=0, le=1e3, description="per prefill token (linear layers), ms")
    prefill_attention_ms: float = Field(default=0.0, ge=0, le=1, description="per prefill query-key pair, ms")
    prefill_seq_ms: float = Field(default=0.0, ge=0, le=1e6, description="per prefill chunk (sequence) in the step, ms")
    decode_seq_ms: Optional[float] = Field(default=None, ge=0, le=1e3, description="per decoding sequence, ms")
    decode_context_ms: float = Field(default=0.0, ge=0, le=1, description="per context token of decoding sequences, ms")

    @model_validator(mode="after")
    def _source(self):
        missing = [k for k in ("base_ms", "prefill_token_ms", "decode_seq_ms") if getattr(self, k) is None]
        if missing and self.profile is None:
            raise ValueError(f"give {', '.join(missing)} or a profile (an LLM profile from python -m profiler.profile --llm)")
        return self

    def with_base_dir(self, base: Path) -> "LlmCost":
        """Returns a copy with the coefficients the profile's fit gives (those set explicitly are kept)."""
        if self.profile is None:
            return self
        from ..errors import ScenarioError
        from ..llm_fit import fit_llm
        from ..profiles import load_profile

        path = self.profile if Path(self.profile).is_absolute() else str((base / self.profile).resolve())
        prof = load_profile(path)
        if prof.mode != "llm":
            raise ScenarioError(path, "mode", "not an LLM profile: make one with python -m profiler.profile --model gpt --llm")
        coef = fit_llm([p.model_dump() for p in prof.llm_points])["coefficients"]
        update = {"profile": path}
        for key, value in coef.items():
            if key not in self.model_fields_set:
                update[key] = value
        return self.model_copy(update=update)
    def batch_limit(self) -> int:
        return 1_000_000  # request-level limits do not apply; LLM policies bound the batch themselves

    def compute_s(self, batch_size):
        raise TypeError("an llm cost model prices iterations (prefill and decode tokens), not request batches; "
                        "use it with server.batching.policy continuous or llm_static")

    def step_function(self):
        """Returns step_s(prefill_tokens, prefill_pairs, decode_seqs, decode_context, prefill_chunks=0) -> seconds,
        the LLM step cost (the one formula, `llm_step`) with this model's coefficients bound once: engines call
        it every step."""
        return llm_step(self.overhead_ms + self.base_ms, self.prefill_token_ms, self.prefill_attention_ms,
                        self.prefill_seq_ms, self.decode_seq_ms, self.decode_context_ms)

    def iteration_s(self, prefill_tokens: float, prefill_pairs: float, decode_seqs: float, decode_context: float,
                    prefill_chunks: float = 0) -> float:
        """Returns the time of one engine step in seconds."""
        return self.step_function()(prefill_tokens, prefill_pairs, decode_seqs, decode_context, prefill_chunks)


def llm_step(fixed_ms: float, prefill_token_ms: float, prefill_attention_ms: float, prefill_seq_ms: float,
             decode_seq_ms: float, decode_context_ms: float):
    """Returns the step-time function of the LLM cost formula in this module's docstring (seconds)."""
    def step_s(prefill_tokens, prefill_pairs, decode_seqs, decode_context, prefill_chunks=0):
        return (fixed_ms + prefill_token_ms * prefill_tokens + prefill_attention_ms * prefill_pairs
                + prefill_seq_ms * prefill_chunks + decode_seq_ms * decode_seqs + decode_context_ms * decode_context) / 1000.0
    return step_s
