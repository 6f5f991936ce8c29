"""Roofline estimate of an LLM engine step on a GPU you do not have, from model dimensions and datasheet peaks.

Coefficients of the llm cost model (see cost/llm.py), in ms:
  base             = weight bytes / (bandwidth * memory_efficiency)          every step reads the weights once
  prefill_token    = 2 * params / (peak * compute_efficiency)                the matmuls of one token
  prefill_attention= 4 * layers * hidden / (peak * compute_efficiency)       QK^T and AV per query-key pair
  decode_seq       = 2 * params / (peak * compute_efficiency)
  decode_context   = KV bytes per token / (bandwidth * memory_efficiency) + prefill_attention
A sum of the memory floor and the compute terms, not their maximum: an upper-side estimate that is
tight where one term dominates (small-batch decode: weights; long prefill: FLOPs).
"""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal, Optional, Union

from pydantic import Field, model_validator

from . import REGISTRY
from .base import CostModel
from .roofline import GPUS, GpuSpec

_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "fp8": 1}


@REGISTRY.register
class LlmRooflineCost(CostModel):
    is_llm_cost: ClassVar[bool] = True
    kind: Literal["llm_roofline"] = "llm_roofline"
    gpu: Union[str, GpuSpec] = Field(description=f"one of {', '.join(GPUS)}, or {{bf16_tflops, fp32_tflops, bandwidth_gbps}}")
    dtype: Literal["fp32", "fp16", "bf16", "fp8"] = Field(default="bf16", description="weight and KV precision")
    model_stats_from: Optional[str] = Field(default=None, description="LLM profile whose model dimensions to use")
    params: Optional[float] = Field(default=None, gt=0, description="parameter count")
    layers: Optional[int] = Field(default=None, ge=1, description="transformer layers")
    hidden: Optional[int] = Field(default=None, ge=1, description="hidden size")
    heads: Optional[int] = Field(default=None, ge=1, description="attention heads")
    kv_heads: Optional[int] = Field(default=None, ge=1, description="default: heads (no grouped-query attention)")
    compute_efficiency: float = Field(default=0.5, gt=0, le=1, description="achieved / peak FLOP/s")
    memory_efficiency: float = Field(default=0.8, gt=0, le=1, description="achieved / peak bandwidth")

    @model_validator(mode="after")
    def _dims(self):
        if isinstance(self.gpu, str) and self.gpu not in GPUS:
            raise ValueError(f"unknown gpu {self.gpu!r}; allowed: {', '.join(GPUS)} or a mapping")
        if self.model_stats_from is None and None in (self.params, self.layers, self.hidden, self.heads):
            raise ValueError("give params, layers, hidden and heads (optionally kv_heads), or model_stats_from: an LLM profile")
        return self

    def with_base_dir(self, base: Path) -> "LlmRooflineCost":
        if self.model_stats_from is None:
            return self
        from ..errors import ScenarioError
        from ..profiles import load_profile

        path = self.model_stats_from if Path(self.model_stats_from).is_absolute() else str((base / self.model_stats_from).resolve())
        m = (load_profile(path).model.model_extra or {})
        if "layers" not in m:
            raise ScenarioError(path, "model", "no model dimensions: use an LLM profile (python -m profiler.profile --llm)")
        update = {"model_stats_from": path}
        for key in ("layers", "hidden", "heads", "kv_heads"):
            if getattr(self, key) is None:
                update[key] = int(m[key])
        if self.params is None:
            update["params"] = float(load_profile(path).model.params)
        return self.model_copy(update=update)

    @property
    def _peak(self) -> float:
        spec = GPUS[self.gpu] if isinstance(self.gpu, str) else self.gpu
        return spec.peak_flops("fp32" if self.dtype == "fp32" else "bf16") * (2 if self.dtype == "fp8" else 1)

    @property
    def _bw(self) -> float:
        spec = GPUS[self.gpu] if isinstance(self.gpu, str) else self.gpu
        return spec.bandwidth_gbps * 1e9 * self.memory_efficiency

    @property
    def base_ms(self) -> float:
        return self.params * _BYTES[self.dtype] / self._bw * 1000

    @property
    def prefill_token_ms(self) -> float:
        return 2 * self.params / (self._peak * self.compute_efficiency) * 1000

    @property
    def prefill_attention_ms(self) -> float:
        return 4 * self.layers * self.hidden / (self._peak * self.compute_efficiency) * 1000

    @property
    def prefill_seq_ms(self) -> float:
        return 0.0  # a fused engine: prefill chunks share the step's forward

    @property
    def decode_seq_ms(self) -> float:
        return self.prefill_token_ms

    @property
    def decode_context_ms(self) -> float:
        kv = 2 * self.layers * (self.kv_heads or self.heads) * (self.hidden // self.heads) * _BYTES[self.dtype]
        return kv / self._bw * 1000 + self.prefill_attention_ms

    def batch_limit(self) -> int:
        return 1_000_000

    def compute_s(self, batch_size):
        raise TypeError("an llm_roofline cost model prices engine steps; use it with an LLM policy")

    def step_function(self):
        """Returns step_s(...) -> seconds: the LLM step cost formula (sim.cost.llm.llm_step) with the roofline's
        coefficients, computed once."""
        from .llm import llm_step

        return llm_step(self.overhead_ms + self.base_ms, self.prefill_token_ms, self.prefill_attention_ms,
                        self.prefill_seq_ms, self.decode_seq_ms, self.decode_context_ms)

    def iteration_s(self, prefill_tokens, prefill_pairs, decode_seqs, decode_context, prefill_chunks=0) -> float:
        """Returns the time of one engine step in seconds."""
        return self.step_function()(prefill_tokens, prefill_pairs, decode_seqs, decode_context, prefill_chunks)
