"""Default GPU prices: public on-demand list prices, per GPU, in US dollars per hour, each dated and sourced.

These are list prices, not what anyone pays after discounts: no spot, reserved, savings-plan, capacity-block
or negotiated rates. They go stale; every entry records where the number came from and when it was seen, and
a scenario that knows its real price sets `cost_per_hour` (USD per replica-hour) instead of using this table.

Basis: AWS EC2 on-demand, us-east-1, Linux, per GPU = instance price / GPUs in the instance (the June 2025
P4d/P4de/P5/P5en price cut included). The G families use the smallest one-GPU size (xlarge: 4 vCPUs), the P
families their 8-GPU instance, so the per-GPU figure carries that instance's CPU, memory and network share.
AWS offers no H100 PCIe, so that entry is Lambda's public on-demand rate for a 1x H100 PCIe instance.
AWS figures were read from an instances.vantage.sh snapshot (2026-01-21) of AWS's price list and agree with
the later dated records noted beside each entry; `observed` is the latest date the figure was seen.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

PRICES_AS_OF = "2026-11-27"   # when this table was compiled; entries were observed 2026-06 .. 2026-11-09


@dataclass(frozen=True)
class GpuPrice:
    gpu: str                 # the roofline table's GPU name (sim/cost/roofline.py)
    usd_per_gpu_hour: float
    source: str              # provider, instance, instance price and the GPU count it was divided by
    url: str
    observed: str            # YYYY-MM-DD or YYYY-MM


_VANTAGE = "https://instances.vantage.sh/aws/ec2/"

PRICES: dict[str, GpuPrice] = {p.gpu: p for p in (
    # also $1.006 in a us-east-1 on-demand price survey dated June 2026 (factualminds.com)
    GpuPrice("A10G", 1.006, "AWS g5.xlarge on-demand, us-east-1, Linux: $1.006/h / 1 GPU",
             _VANTAGE + "g5.xlarge", "2026-06"),
    # also quoted at $0.8048 (us-east-1) in a public planning file dated 2026-09-26
    GpuPrice("L4", 0.8048, "AWS g6.xlarge on-demand, us-east-1, Linux: $0.8048/h / 1 GPU",
             _VANTAGE + "g6.xlarge", "2026-09-26"),
    # also $1.861 (us-east-1 on-demand) in modal.com/blog/nvidia-l40s-price-article, 2025-08-12
    GpuPrice("L40S", 1.861, "AWS g6e.xlarge on-demand, us-east-1, Linux: $1.861/h / 1 GPU",
             _VANTAGE + "g6e.xlarge", "2026-01-21"),
    # A100-40GB, A100-80GB, H100-SXM: same in datareceipts/data-receipts 109-gpu-pricing, retrieved 2026-11-09
    GpuPrice("A100-40GB", 2.7447, "AWS p4d.24xlarge on-demand, us-east-1, Linux: $21.957642/h / 8 GPUs",
             _VANTAGE + "p4d.24xlarge", "2026-11-09"),
    GpuPrice("A100-80GB", 3.4309, "AWS p4de.24xlarge on-demand, us-east-1, Linux: $27.44705/h / 8 GPUs",
             _VANTAGE + "p4de.24xlarge", "2026-11-09"),
    GpuPrice("H100-SXM", 6.88, "AWS p5.48xlarge on-demand, us-east-1, Linux: $55.04/h / 8 GPUs",
             _VANTAGE + "p5.48xlarge", "2026-11-09"),
    # not on AWS; same $3.29 in a transcription of lambda.ai/instances dated 2026-09-20
    GpuPrice("H100-PCIe", 3.29, "Lambda 1x H100 PCIe on-demand instance: $3.29/h / 1 GPU",
             "https://lambda.ai/instances", "2026-09-25"),
    # p5en (H200 + newer CPUs/network); AWS lists no standard on-demand p5e row. Also $63.296 in
    # `dstack offer` output (aws us-east-1, on-demand) in github.com/dstackai/dstack/pull/4110, 2026-08-06
    GpuPrice("H200", 7.912, "AWS p5en.48xlarge on-demand, us-east-1, Linux: $63.296/h / 8 GPUs",
             _VANTAGE + "p5en.48xlarge", "2026-08-06"),
    # also $113.9328/h on-demand us-east-1 in a sizing report whose pricing was "verified August 2026"
    GpuPrice("B200", 14.2416, "AWS p6-b200.48xlarge on-demand, us-east-1, Linux: $113.9328/h / 8 GPUs",
             _VANTAGE + "p6-b200.48xlarge", "2026-08"),
)}

_ROOFLINE_NAMES = ("A10G", "L4", "L40S", "A100-40GB", "A100-80GB", "H100-SXM", "H100-PCIe", "H200", "B200")


def gpu_for_device(device_name: str) -> Optional[str]:
    """Returns the table's GPU name for a torch device name such as 'NVIDIA H100 80GB HBM3' ('H100-SXM'),
    'NVIDIA H100 PCIe' ('H100-PCIe'), 'NVIDIA A100-SXM4-80GB' ('A100-80GB'), 'NVIDIA A100-SXM4-40GB'/
    'NVIDIA A100-PCIE-40GB' ('A100-40GB'), 'NVIDIA L4', 'NVIDIA L40S', 'NVIDIA A10G', 'NVIDIA H200',
    'NVIDIA B200'; None when unknown (CPUs included). A roofline name ('H100-SXM') maps to itself.

    Variants with other memory or bandwidth (H100 NVL, H200 NVL, L40, A10, GH200, GB200) are unknown, not
    rounded to a neighbour."""
    if not isinstance(device_name, str):
        return None
    for name in _ROOFLINE_NAMES:
        if device_name.strip().lower() == name.lower():
            return name
    tokens = [t for t in re.split(r"[^A-Z0-9]+", device_name.upper()) if t and t not in ("NVIDIA", "TESLA")]
    if not tokens:
        return None
    model, rest = tokens[0], set(tokens[1:])
    if model in ("A10G", "L4", "L40S", "B200") and not rest - {"24GB", "48GB", "180GB", "192GB"}:
        return model
    if model == "H200" and "NVL" not in rest:
        return "H200"
    if model == "H100":
        if "NVL" in rest:
            return None
        if "PCIE" in rest:
            return "H100-PCIe"
        if rest & {"SXM", "SXM5", "HBM3"}:
            return "H100-SXM"
        return None
    if model == "A100":
        if "80GB" in rest:
            return "A100-80GB"
        if "40GB" in rest:
            return "A100-40GB"
    return None


def price_per_gpu_hour(gpu: str) -> Optional[GpuPrice]:
    """Returns the table entry for a roofline GPU name or a torch device name, None when unknown."""
    if isinstance(gpu, str) and gpu in PRICES:
        return PRICES[gpu]
    name = gpu_for_device(gpu)
    return PRICES.get(name) if name else None
