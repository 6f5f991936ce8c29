"""`servesim validate`: serve a scenario's arrival trace for real and report how far the prediction is.

For each load (a fraction of the batching policy's capacity) it generates the scenario's arrivals with
the same seed, saves them, serves them with a real batching loop around the profiled torch model
(profiler/serve.py), simulates the identical trace with the profile's cost model, and compares mean,
p50, p90, p99 latency, mean batch size and throughput. Before the loads, a short saturated burst
measures the server's own overheads (input assembly, gap between batches), which become the cost
model's `overhead_ms`, so the prediction is made before the validated runs are seen.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

from sim.cost import ProfileCost, TableCost
from sim.engine import simulate
from sim.errors import ScenarioError
from sim.metrics import request_columns
from sim.outdir import OutputDir
from sim.stability import growth_test
from sim.rng import component_rng

from .profile import Runner, device_info, measure_profile, write_profile
from .serve import serve_trace
from .timing import Settings

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


def run_validation(args) -> int:
    """Runs the validation described by the CLI arguments; returns the exit code (0, or 3 past the bound)."""
    from . import models  # imports torch

    scenario = load_for_validation(args)
    cm = scenario.cost_model
    if scenario.is_llm:
        from .validate_llm import validate_llm
        return validate_llm(args, scenario)
    if not isinstance(cm, ProfileCost):
        raise ScenarioError(args.scenario, "cost_model", "validate needs a measured profile ({profile: file.yaml}) "
                            "to know which model to serve and how it was measured")
    if scenario.server.replicas != 1:
        raise ScenarioError(args.scenario, "server.replicas", "validate serves one model instance; allowed: 1")
    prof, _ = cm.load()
    loads = parse_loads(args)
    out = OutputDir(args.out)
    out.prepare(validation_outputs(loads, args.reprofile, llm=False))
    torch = prepare_device(args, prof, cm.paths[0])
    dev = device_info(torch, args.device)
    diffs = refuse_other_device(args, prof, cm.paths[0], dev)

    module, make_batch, _ = models.build(prof.model.name, dict(prof.model.args))
    # serve the same program that was profiled (compiled / CUDA graphs as recorded): Runner.run replays the
    # graph of each batch size, as step_ms timed it
    runner = Runner(torch, module, make_batch, args.device, prof.dtype, bool(prof.settings.get("compile")),
                    bool(prof.settings.get("cuda_graphs")), math.inf)
    rule = scenario.rule
    pool = [runner.cast(make_batch(1)) for _ in range(16)]
    say = (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))
    say(f"validating {scenario.name}: {prof.model.name} ({prof.dtype}) on {dev['name']}, profile {Path(cm.paths[0]).name}")
    if diffs:
        say("  the profile was measured elsewhere (" + "; ".join(diffs) + "): predicting from the fresh profile only")
    for b in sorted({1, rule.max_batch_size, *rule.preferred_batch_sizes}):  # warm kernels/allocator
        for _ in range(3):
            runner.step_ms(b)
        if not runner.cuda_graphs:
            runner.release(b)
    with out.staging() as tmp:
        code = _validate(args, loads, scenario, cm, prof, rule, runner, pool, dev, say, tmp, same_device=not diffs)
        out.commit(tmp)
    return code


def _validate(args, loads, scenario, cm, prof, rule, runner, pool, dev, say, tmp, same_device: bool) -> int:
    from . import models

    drift = None
    if args.reprofile:
        # same process, same conditions, minutes before serving: separates the simulator's error from the
        # device drifting since the shipped profile was measured
        sizes = models.log2_sizes(rule.max_batch_size)
        fresh = measure_profile(runner, sizes, Settings(warmup=2, min_samples=10, budget_s=1.0, target_ci_rel=0.02))
        fresh["model"] = prof.model.model_dump()
        fresh["device"] = dev
        fresh["settings"]["command"] = "servesim validate --reprofile"
        write_profile(tmp / "fresh-profile.yaml", fresh)
        if same_device:  # drift is only meaningful against a profile of this very machine
            drift = {p["batch_size"]: p["median_ms"] / (float(cm.compute_s(p["batch_size"])) * 1000)
                     for p in fresh["points"]}
            say("  re-profiled now: step time / shipped profile = " + ", ".join(f"{b}: {r:.2f}" for b, r in drift.items()))
        cm = cm.model_copy(update={"profile": str(tmp / "fresh-profile.yaml")})
        cm._loaded = None
        cm.load()

    if runner.cuda_graphs:
        # the loop forms batches of any size up to the limit: capture them all before serving, largest first
        # (one shared pool), so no capture lands inside a timed run
        for k in range(rule.max_batch_size, 0, -1):
            runner.prepare(k)
    # calibration burst: everything arrives at once, so the server runs back-to-back full batches
    b = rule.max_batch_size
    burst = serve_trace(runner, rule, np.zeros(b * max(10, -(-100 // b))), pool)  # whole batches only
    assembly_ms = float(np.mean(burst.batch_assembly_s)) * 1000
    gap_ms = float(np.mean(burst.batch_gap_s)) * 1000 if burst.batch_gap_s.size else 0.0
    overhead_ms = assembly_ms + gap_ms
    full_batches = burst.batch_sizes == rule.max_batch_size
    compute_full_ms = float(np.median(burst.batch_compute_s[full_batches])) * 1000
    fitted_full_ms = float(cm.compute_s(rule.max_batch_size)) * 1000
    cost = cm.model_copy(update={"overhead_ms": overhead_ms})
    capacity = rule.max_batch_size / float(cost.step_s(rule.max_batch_size))
    say(f"  server overheads (calibration burst): input assembly {assembly_ms:.3f} ms + gap between batches "
        f"{gap_ms:.3f} ms per batch -> overhead_ms {overhead_ms:.3f}")
    say(f"  full batch ({rule.max_batch_size}): compute {compute_full_ms:.3f} ms served vs {fitted_full_ms:.3f} ms profiled; "
        f"capacity {capacity:.5g} rps")

    rows = []
    figs = []
    for load in loads:
        arr_proc = _with_rate(scenario.workload.arrival, load * capacity)
        arrivals = arr_proc.arrival_times_s(component_rng(scenario.seed, 0, "workload.arrival"), **scenario.horizon())
        np.savetxt(tmp / f"trace-load{load:g}.csv", arrivals, header="arrival_s", comments="", fmt="%.9f")
        say(f"  load {load:.0%}: {arrivals.size} requests at {arrivals.size / max(arrivals[-1], 1e-9):.5g} rps "
            f"for {arrivals[-1]:.1f} s ...")
        rec = serve_trace(runner, rule, arrivals, pool)
        log = simulate(rule, cost, arrivals, noise_rng=component_rng(scenario.seed, 0, "cost_model.noise"))
        pred = request_columns(log)
        measured = _stats(rec.arrival_s, rec.dispatch_s, rec.completion_s, rec.batch_size, scenario.warmup_s)
        predicted = _stats(pred["arrival_s"], pred["dispatch_s"], pred["completion_s"], pred["batch_size"],
                           scenario.warmup_s)
        err = {m: 100 * (predicted[m] / measured[m] - 1) for m in METRICS}
        # diagnostic, not a prediction: the same simulation with the profiled step times scaled by how much
        # slower or faster the model really ran while serving; what remains is the queueing model's own error
        ratio = _compute_ratio(rec, cost)
        ks = np.arange(1, rule.max_batch_size + 1)
        scaled = TableCost(step_ms=dict(zip(ks.tolist(), (ratio * 1000 * np.asarray(cost.compute_s(ks))).tolist())),
                           overhead_ms=overhead_ms)
        post_cols = request_columns(simulate(rule, scaled, arrivals))
        post = _stats(post_cols["arrival_s"], post_cols["dispatch_s"], post_cols["completion_s"],
                      post_cols["batch_size"], scenario.warmup_s)
        post_err = {m: 100 * (post[m] / measured[m] - 1) for m in METRICS}
        rows.append({"load": load, "offered_rps": load * capacity, "measured": measured, "predicted": predicted,
                     "error_pct": err, "post_hoc_error_pct": post_err,
                     "backlog": backlog_verdicts(arrivals, rec.completion_s, pred["completion_s"], scenario.warmup_s),
                     "server": {"release_lateness_ms_p99": float(np.percentile(rec.released_s - rec.arrival_s, 99) * 1000),
                                "assembly_ms_mean": float(rec.batch_assembly_s.mean() * 1000),
                                "gap_ms_mean": float(rec.batch_gap_s.mean() * 1000) if rec.batch_gap_s.size else 0.0,
                                "compute_vs_profile_median": ratio}})
        figs.append((load, (rec.completion_s - rec.arrival_s)[rec.arrival_s >= scenario.warmup_s],
                     (pred["completion_s"] - pred["arrival_s"])[pred["arrival_s"] >= scenario.warmup_s]))
        import pandas as pd
        pd.DataFrame({"arrival_s": rec.arrival_s, "released_s": rec.released_s, "dispatch_s": rec.dispatch_s,
                      "completion_s": rec.completion_s, "batch_size": rec.batch_size}).to_parquet(
            tmp / f"measured-load{load:g}.parquet", index=False)
    report = {
        "scenario": scenario.name, "created_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "device": dev, "profile": cm.paths, "model": prof.model.name, "dtype": prof.dtype,
        "batching": {"policy": scenario.server.batching.policy, "max_batch_size": rule.max_batch_size,
                     "max_queue_delay_ms": None if math.isinf(rule.delay_s) else rule.delay_s * 1000},
        "calibration": {"overhead_ms": overhead_ms, "assembly_ms": assembly_ms, "gap_ms": gap_ms,
                        "full_batch_compute_ms_served": compute_full_ms, "full_batch_compute_ms_profiled": fitted_full_ms,
                        "full_batches_in_burst": int(full_batches.sum())},
        "capacity_rps": capacity, "warmup_s": scenario.warmup_s, "loads": rows,
        "reprofiled": bool(args.reprofile),
        "step_time_drift_vs_shipped_profile": {str(k): v for k, v in drift.items()} if drift else None,
    }
    (tmp / "validation.json").write_text(json.dumps(report, indent=2) + "\n")
    _write_csv(tmp / "validation.csv", rows)
    _plot(tmp / "latency_cdf.png", figs, scenario.name)
    print(format_table(report))
    print(f"  wrote {args.out}/: validation.json validation.csv latency_cdf.png, traces and measured records")
    return check_bound(rows, CHECKED, args.max_error_pct)


def _compute_ratio(rec, cm) -> float:
    """Median over batches of (model time measured while serving) / (profiled time at that batch size):
    above 1 when serving runs the model slower than back-to-back profiling did (idle wake-ups, contention)."""
    if rec.batch_sizes.size == 0:
        return 1.0
    profiled = np.asarray(cm.compute_s(rec.batch_sizes), dtype=float)
    return float(np.median(rec.batch_compute_s / profiled))


def format_table(report: dict) -> str:
    """Returns the side-by-side measured / predicted / error table of a validation report."""
    lines = [f"servesim validate: {report['scenario']} - {report['model']} ({report['dtype']}) on "
             f"{report['device']['name']}; {report['batching']['policy']} batching, max {report['batching']['max_batch_size']}"
             f"; overhead_ms {report['calibration']['overhead_ms']:.3f}",
             f"  {'load':>5} {'metric':<16} {'measured':>11} {'predicted':>11} {'error %':>8} {'post-hoc %':>10}"]
    for r in report["loads"]:
        for m in METRICS:
            lines.append(f"  {r['load']:>5.0%} {m:<16} {r['measured'][m]:>11.4g} {r['predicted'][m]:>11.4g} "
                         f"{r['error_pct'][m]:>+8.1f} {r['post_hoc_error_pct'][m]:>+10.1f}")
        if backlog_note(r):
            lines.append(backlog_note(r))
        srv = r["server"]
        lines.append(f"  {'':>5} server: model ran {srv['compute_vs_profile_median']:.2f}x its profiled time while serving; "
                     f"arrivals released {srv['release_lateness_ms_p99']:.2f} ms late at p99")
    lines.append("  post-hoc %: the same simulation with step times scaled by how fast the model really ran while "
                 "serving (a diagnostic of the queueing model alone, not a prediction)")
    return "\n".join(lines)


def _write_csv(path: Path, rows: list[dict]) -> None:
    lines = ["load,metric,measured,predicted,error_pct"]
    for r in rows:
        for m in METRICS:
            lines.append(f"{r['load']},{m},{r['measured'][m]:.6g},{r['predicted'][m]:.6g},{r['error_pct'][m]:.3f}")
    path.write_text("\n".join(lines) + "\n")


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
