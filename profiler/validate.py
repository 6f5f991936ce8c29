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
from sim.rng import component_rng

from .profile import Runner, device_info, measure_profile, write_profile
from .serve import serve_trace
from .timing import Settings

from .validate_common import (CHECKED, METRICS, _plot, _stats, _with_rate, backlog_note, backlog_verdicts,
                              check_bound, device_differences, parse_loads, prepare_device, refuse_other_device,
                              validation_outputs)


def validate_batch(args, scenario) -> int:
    """Validates a request-level scenario (one replica, a measured profile); returns the exit code (0, or 3
    past the bound)."""
    from . import models  # imports torch

    cm = scenario.cost_model
    if not isinstance(cm, ProfileCost):
        raise ScenarioError(args.scenario, "cost_model", "validate needs a measured profile ({profile: file.yaml}) "
                            "to know which model to serve and how it was measured")
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
