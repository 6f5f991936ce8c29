"""Roofline estimate of step time on a GPU you do not have: datasheet peaks, model FLOPs and bytes.

    h(k) = overhead_ms + max( F(k) / (peak_flops * compute_efficiency), B(k) / (bandwidth * memory_efficiency) )
    F(k) = flops_per_batch + k * flops_per_item,   B(k) = bytes_per_batch + k * bytes_per_item

bytes_per_batch is what every step reads whatever the batch (the weights); the four model numbers can
come from a profile (`model_stats_from: profiles/x.yaml`, counted by the profiler) or be given directly.
This is an estimate: it ignores kernel launch gaps, attention/shape effects and caches; see README for
how far it landed from measured profiles.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional, Union

import numpy as np
from pydantic import Field, model_validator

from ..config import StrictModel
from . import REGISTRY
from .base import CostModel


class GpuSpec(StrictModel):
    name: str = Field(default="custom", description="label in outputs")
    bf16_tflops: float = Field(gt=0, description="dense (no sparsity) fp16/bf16 tensor TFLOP/s")
    fp32_tflops: float = Field(gt=0, description="fp32 (non-tensor) TFLOP/s")
    bandwidth_gbps: float = Field(gt=0, description="memory bandwidth, GB/s")
    memory_gb: float = Field(default=0, ge=0, description="device memory, GB (informative)")

    def peak_flops(self, dtype: str) -> float:
        return (self.fp32_tflops if dtype == "fp32" else self.bf16_tflops) * 1e12


# Vendor datasheet peaks, dense (without 2:4 sparsity), SXM unless named otherwise.
GPUS: dict[str, GpuSpec] = {g.name: g for g in (
    GpuSpec(name="A10G", bf16_tflops=70, fp32_tflops=31.2, bandwidth_gbps=600, memory_gb=24),
    GpuSpec(name="L4", bf16_tflops=121, fp32_tflops=30.3, bandwidth_gbps=300, memory_gb=24),
    GpuSpec(name="L40S", bf16_tflops=362, fp32_tflops=91.6, bandwidth_gbps=864, memory_gb=48),
    GpuSpec(name="A100-40GB", bf16_tflops=312, fp32_tflops=19.5, bandwidth_gbps=1555, memory_gb=40),
    GpuSpec(name="A100-80GB", bf16_tflops=312, fp32_tflops=19.5, bandwidth_gbps=2039, memory_gb=80),
    GpuSpec(name="H100-SXM", bf16_tflops=989, fp32_tflops=67, bandwidth_gbps=3350, memory_gb=80),
    GpuSpec(name="H100-PCIe", bf16_tflops=756, fp32_tflops=51, bandwidth_gbps=2000, memory_gb=80),
    GpuSpec(name="H200", bf16_tflops=989, fp32_tflops=67, bandwidth_gbps=4800, memory_gb=141),
    GpuSpec(name="B200", bf16_tflops=2250, fp32_tflops=80, bandwidth_gbps=8000, memory_gb=180),
)}


@REGISTRY.register
class RooflineCost(CostModel):
    kind: Literal["roofline"] = "roofline"
    gpu: Union[str, GpuSpec] = Field(description=f"one of {', '.join(GPUS)}, or {{bf16_tflops, fp32_tflops, bandwidth_gbps}}")
    dtype: Literal["fp16", "bf16", "fp32"] = Field(default="bf16", description="precision the peaks are taken for")
    model_stats_from: Optional[str] = Field(default=None, description="profile whose model FLOPs/bytes to use")
    flops_per_item: Optional[float] = Field(default=None, ge=0, description="FLOPs per request in a batch")
    flops_per_batch: Optional[float] = Field(default=None, ge=0, description="FLOPs per step whatever the batch")
    bytes_per_item: Optional[float] = Field(default=None, ge=0, description="memory traffic per request, bytes")
    bytes_per_batch: Optional[float] = Field(default=None, ge=0, description="memory traffic per step (weights), bytes")
    compute_efficiency: float = Field(default=0.5, gt=0, le=1, description="achieved / peak FLOP/s")
    memory_efficiency: float = Field(default=0.8, gt=0, le=1, description="achieved / peak bandwidth")
    max_batch_size: int = Field(default=1024, ge=1, le=1_000_000, description="largest batch the model runs")

    @model_validator(mode="after")
    def _known(self):
        if isinstance(self.gpu, str) and self.gpu not in GPUS:
            raise ValueError(f"unknown gpu {self.gpu!r}; allowed: {', '.join(GPUS)} or a mapping "
                             "{bf16_tflops, fp32_tflops, bandwidth_gbps}")
        if self.model_stats_from is None and (self.flops_per_item is None or self.bytes_per_batch is None):
            raise ValueError("give flops_per_item and bytes_per_batch (and optionally flops_per_batch, "
                             "bytes_per_item), or model_stats_from: a profile file")
        return self

    @property
    def spec(self) -> GpuSpec:
        return GPUS[self.gpu] if isinstance(self.gpu, str) else self.gpu

    def with_base_dir(self, base: Path) -> "RooflineCost":
        """Returns a copy with the model statistics filled in from `model_stats_from` (resolved against base)."""
        if self.model_stats_from is None:
            return self
        from ..errors import ScenarioError
        from ..profiles import load_profile

        path = self.model_stats_from if Path(self.model_stats_from).is_absolute() else str((base / self.model_stats_from).resolve())
        prof = load_profile(path)
        m = prof.model
        if m.flops_per_item is None:
            raise ScenarioError(path, "model.flops_per_item", "this profile has no FLOP count")
        size = {"fp32": 4, "fp16": 2, "bf16": 2}
        scale = size[self.dtype] / size.get(prof.dtype, 4)  # weights and activations take the roofline's dtype
        update = {"model_stats_from": path}
        for key in ("flops_per_item", "flops_per_batch", "bytes_per_item", "bytes_per_batch"):
            if getattr(self, key) is None:
                update[key] = (getattr(m, key) or 0.0) * (scale if key.startswith("bytes") else 1.0)
        return self.model_copy(update=update)

    def batch_limit(self) -> int:
        return self.max_batch_size

    def compute_s(self, batch_size):
        k = np.asarray(batch_size, dtype=float)
        flops = (self.flops_per_batch or 0.0) + k * (self.flops_per_item or 0.0)
        nbytes = (self.bytes_per_batch or 0.0) + k * (self.bytes_per_item or 0.0)
        t = np.maximum(flops / (self.spec.peak_flops(self.dtype) * self.compute_efficiency),
                       nbytes / (self.spec.bandwidth_gbps * 1e9 * self.memory_efficiency))
        return t
