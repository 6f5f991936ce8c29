"""How far the roofline estimate lands from measured profiles.

    python bench/roofline_vs_measured.py [profiles/*.yaml]

For each profile, the roofline uses the model's FLOPs/bytes counted by the profiler and, as the device's
peaks, the matmul TFLOP/s and copy bandwidth the profiler measured on that same device (so the only
unknowns are the roofline's own simplifications), with efficiency 1. It prints the error per batch size
and the single efficiency factor that would have fitted best (the median of measured/estimated).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from sim.cost import GpuSpec, RooflineCost
from sim.profiles import load_profile


def compare(path: Path) -> None:
    prof = load_profile(path)
    dev = prof.device.model_extra or {}
    if "matmul_tflops" not in dev:
        print(f"{path}: no measured device peaks (profiled with --no-peaks); skipped")
        return
    spec = GpuSpec(name=prof.device.name, bf16_tflops=dev["matmul_tflops"], fp32_tflops=dev["matmul_tflops"],
                   bandwidth_gbps=dev["copy_bandwidth_gbps"])
    m = prof.model
    rl = RooflineCost(gpu=spec, dtype="fp32" if prof.dtype == "fp32" else "bf16", flops_per_item=m.flops_per_item,
                      flops_per_batch=m.flops_per_batch, bytes_per_item=m.bytes_per_item,
                      bytes_per_batch=m.bytes_per_batch, compute_efficiency=1.0, memory_efficiency=1.0)
    k, measured = prof.table()
    est = np.asarray(rl.step_s(k)) * 1000
    ratio = measured / est
    print(f"{path.name}: {m.name} on {prof.device.name} ({prof.dtype}); peaks measured there: "
          f"{spec.fp32_tflops:.3g} TFLOP/s, {spec.bandwidth_gbps:.3g} GB/s")
    print(f"  {'batch':>5} {'measured ms':>12} {'roofline ms':>12} {'error %':>8}")
    for b, y, e in zip(k, measured, est):
        print(f"  {int(b):>5} {y:>12.4g} {e:>12.4g} {100 * (e / y - 1):>+8.1f}")
    eff = float(np.median(1 / ratio))
    adj = est / eff
    print(f"  efficiency 1: median |error| {100 * np.median(np.abs(est / measured - 1)):.0f}%; best single "
          f"efficiency {eff:.2f} -> median |error| {100 * np.median(np.abs(adj / measured - 1)):.0f}%, "
          f"worst {100 * np.max(np.abs(adj / measured - 1)):.0f}%")


def main(argv: list[str]) -> None:
    paths = [Path(p) for p in argv] or sorted(Path(__file__).resolve().parent.parent.glob("profiles/*.yaml"))
    for p in paths:
        compare(p)


if __name__ == "__main__":
    main(sys.argv[1:])
