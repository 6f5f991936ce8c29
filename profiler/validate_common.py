"""What both halves of `servesim validate` share (request-level: profiler.validate; LLM:
profiler.validate_llm): the loads, device checks, error bound, backlog verdicts, output names and the
measured-vs-predicted plot. The command's entry point is profiler.validation."""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np

from sim.errors import ScenarioError
from sim.stability import growth_test

METRICS = ("mean_latency_ms", "p50_latency_ms", "p90_latency_ms", "p99_latency_ms", "mean_batch", "throughput_rps")
CHECKED = ("p50_latency_ms", "p99_latency_ms", "throughput_rps")  # what --max-error-pct bounds
BOUND_EXCEEDED = 3


def _stats(arrival, dispatch, completion, size, warmup_s: float) -> dict:
    keep = (arrival >= warmup_s) & np.isfinite(completion)
    if not keep.any():
        raise ScenarioError("--requests", "", f"no request completed after warmup_s={warmup_s}; serve more requests")
    lat_ms = (completion[keep] - arrival[keep]) * 1000
    first = arrival[keep].min()
    span = completion[keep].max() - first
    # mean batch over the batches that served measured requests (each batch counted once)
    d, s = dispatch[keep], size[keep]
    _, first_idx = np.unique(d, return_index=True)
    return {"requests": int(keep.sum()), "mean_latency_ms": float(lat_ms.mean()),
            "p50_latency_ms": float(np.percentile(lat_ms, 50)), "p90_latency_ms": float(np.percentile(lat_ms, 90)),
            "p99_latency_ms": float(np.percentile(lat_ms, 99)), "mean_batch": float(s[first_idx].mean()),
            "throughput_rps": float(keep.sum() / span) if span > 0 else math.nan}


def _with_rate(arrival, factor_rps: float):
    """Returns the arrival process with its mean rate set to factor_rps (traces: replayed faster or slower)."""
    from sim.arrivals import TraceArrivals

    if isinstance(arrival, TraceArrivals):
        faster = arrival.model_copy(update={"speedup": arrival.speedup * factor_rps / arrival.rate_rps})
        faster._times = None  # the copy must re-read its times at the new speed-up
        return faster
    return arrival.model_copy(update={"rate_rps": factor_rps})


def backlog_verdicts(arrival_s, measured_done_s, predicted_done_s, warmup_s: float) -> dict:
    """Returns whether the backlog grew through the real and the simulated run (sim.stability's test):
    {"measured": verdict, "predicted": verdict}. At a load the server cannot keep up with, latency errors
    compare two run-length artefacts and mean nothing."""
    start = max(warmup_s, float(arrival_s[0]) if len(arrival_s) else 0.0)
    return {name: growth_test([(np.asarray(arrival_s, float), np.asarray(done, float), start)])["verdict"]
            for name, done in (("measured", measured_done_s), ("predicted", predicted_done_s))}


def backlog_note(row: dict) -> str:
    """Returns a table line warning that a load's real or simulated backlog grew, or '' when neither did."""
    grew = [k for k, v in (row.get("backlog") or {}).items() if v == "growing"]
    if not grew:
        return ""
    return (f"  {'':>5} UNSTABLE: the {' and the '.join(grew)} run's backlog grew through the run; its latency "
            "errors compare run-length artefacts")


def check_bound(rows: list[dict], checked, bound) -> int:
    """Returns BOUND_EXCEEDED (printing which metric and load) when any checked |error %| exceeds bound, else 0."""
    if bound is None:
        return 0
    worst = max((abs(r["error_pct"][m]), m, r["load"]) for r in rows for m in checked if not math.isnan(r["error_pct"][m]))
    if worst[0] > bound:
        print(f"servesim validate: prediction error {worst[0]:.1f}% ({worst[1]} at load {worst[2]:.0%}) exceeds "
              f"--max-error-pct {bound:g}", file=sys.stderr)
        return BOUND_EXCEEDED
    return 0


def parse_loads(args) -> list[float]:
    """Returns the --loads fractions; raises ScenarioError unless they are in (0, 1)."""
    try:
        loads = [float(x) for x in args.loads.split(",") if x.strip()]
    except ValueError:
        loads = []
    if not loads or any(not 0 < x < 1 for x in loads):
        raise ScenarioError("--loads", "", f"{args.loads!r}: expected fractions of capacity in (0, 1), e.g. 0.2,0.5,0.8")
    return loads


def prepare_device(args, prof, profile_path: str):
    """Checks --device against the profile's device kind and sets CPU threads as profiled; returns the
    torch module."""
    from .profile import _torch

    kind = "cuda" if args.device.startswith("cuda") else args.device
    if kind not in ("cpu", "cuda"):
        raise ScenarioError("--device", "", f"{args.device!r}: allowed cpu, cuda, cuda:N")
    if prof.device.kind != kind:
        raise ScenarioError(profile_path, "device.kind", f"the profile was measured on {prof.device.kind} "
                            f"({prof.device.name}), but --device is {args.device}; profile this device first")
    torch = _torch()
    if kind == "cuda" and not torch.cuda.is_available():
        raise ScenarioError("--device", "", f"{args.device}: no CUDA device is available here")
    threads = (prof.device.model_extra or {}).get("cpu_threads")
    if kind == "cpu" and threads:
        torch.set_num_threads(int(threads))
    return torch


def device_differences(prof, dev: dict) -> list[str]:
    """Returns how the machine about to serve differs from the one the profile was measured on (device
    name: CPU model or GPU; torch and CUDA versions; CPU threads against the cores available here);
    empty when they match. The dtype served is always the profile's own."""
    recorded = prof.device.model_extra or {}
    diffs = []
    if prof.device.name != dev["name"]:
        diffs.append(f"device {prof.device.name!r} here {dev['name']!r}")
    if recorded.get("torch") != dev.get("torch"):
        diffs.append(f"torch {recorded.get('torch')} here {dev.get('torch')}")
    if prof.device.kind == "cuda" and recorded.get("cuda") != dev.get("cuda"):
        diffs.append(f"CUDA {recorded.get('cuda')} here {dev.get('cuda')}")
    threads = recorded.get("cpu_threads")
    if prof.device.kind == "cpu":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        if threads is None or int(threads) > (cores or 1):
            diffs.append(f"{threads} CPU threads here {cores} cores")
    return diffs


def refuse_other_device(args, prof, profile_path: str, dev: dict) -> list[str]:
    """Raises ScenarioError (exit 2) when the profile was measured elsewhere and --reprofile is not given:
    the comparison would measure the difference between two machines, not the simulator (pyperf refuses
    to compare runs of different machines the same way). Returns the differences (possibly empty)."""
    diffs = device_differences(prof, dev)
    if diffs and not args.reprofile:
        raise ScenarioError(profile_path, "device", "was measured on another machine or software ("
                            + "; ".join(diffs) + "): validating against it would measure the difference between "
                            "the machines, not the simulator. Re-run with --reprofile (re-measures the step times "
                            "here first) or profile this machine with python -m profiler.profile")
    return diffs


def validation_outputs(loads: list[float], reprofile: bool, llm: bool) -> list[str]:
    """Returns the file names `servesim validate` writes into its output folder."""
    names = ["validation.json", "validation.csv", "latency_cdf.png"] + [f"trace-load{x:g}.csv" for x in loads]
    if not llm:
        names += [f"measured-load{x:g}.parquet" for x in loads]
    return names + (["fresh-profile.yaml"] if reprofile else [])


def load_for_validation(args):
    """Returns the scenario with the command's overrides (--set, --seed, --requests) applied; raises
    ScenarioError when its arrivals have no rate to rescale."""
    import sim

    overrides = list(args.overrides) + ([f"seed={args.seed}"] if args.seed is not None else [])
    if args.requests is not None:
        overrides.append(f"requests={args.requests}")
    scenario = sim.load_scenario(args.scenario, overrides)
    if scenario.workload.arrival.rate_rps is None:
        raise ScenarioError(args.scenario, "workload.arrival", "the trace spans no time (a single request, or all at "
                            "one instant): validate rescales the arrival rate to each load and needs arrivals with a rate")
    return scenario


def _plot(path: Path, figs, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(figs), figsize=(4.2 * len(figs), 3.8), squeeze=False)
    for ax, (load, meas, pred) in zip(axes[0], figs):
        for data, label, style in ((meas, "measured", "-"), (pred, "predicted", "--")):
            x = np.sort(data) * 1000
            ax.plot(x, np.arange(1, x.size + 1) / x.size, ls=style, lw=1.6, label=label)
        ax.set_title(f"load {load:.0%} of capacity", fontsize=10)
        ax.set_xlabel("latency (ms)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("fraction of requests")
    axes[0][0].legend(loc="lower right")
    fig.suptitle(f"{name}: measured vs predicted latency", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
