"""`servesim validate` for LLM scenarios: a real continuous-batching loop (profiler/llm_serve.py) around the
profile's engine (the GPT-shaped decoder, or the SleepEngine stand-in whose step time is known) against
the simulator, on the same trace and the same request sizes. `--reprofile` re-measures the engine's
step costs here first, over a grid sized to the scenario.

Each load is a fraction of the engine's estimated capacity for the scenario's request sizes. A short
saturated burst first measures the loop's per-step overhead outside the model (scheduling, tensor
assembly), which becomes the cost model's overhead_ms before any validated run is seen.
"""
from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np

from sim.errors import ScenarioError
from sim.llm_fit import COEFS

METRICS = ("ttft_p50_ms", "ttft_p99_ms", "tpot_p50_ms", "tpot_p99_ms", "e2e_mean_ms", "e2e_p99_ms",
           "throughput_rps", "output_tokens_per_s")
CHECKED = ("ttft_p50_ms", "ttft_p99_ms", "tpot_p50_ms", "tpot_p99_ms", "e2e_p99_ms")


def _stats(arrival, first, finish, out, warmup_s: float) -> dict:
    keep = (arrival >= warmup_s) & np.isfinite(finish)
    if keep.sum() < 2:
        raise ScenarioError("--requests", "", f"fewer than 2 requests finished after warmup_s={warmup_s}; serve more")
    ttft = (first[keep] - arrival[keep]) * 1000
    e2e = (finish[keep] - arrival[keep]) * 1000
    o = out[keep]
    multi = o > 1
    tpot = (e2e[multi] - ttft[multi]) / (o[multi] - 1) if multi.any() else np.array([math.nan])
    span = (finish[keep].max() - arrival[keep].min())
    return {"requests": int(keep.sum()), "ttft_p50_ms": float(np.percentile(ttft, 50)),
            "ttft_p99_ms": float(np.percentile(ttft, 99)), "tpot_p50_ms": float(np.percentile(tpot, 50)),
            "tpot_p99_ms": float(np.percentile(tpot, 99)), "e2e_mean_ms": float(e2e.mean()),
            "e2e_p99_ms": float(np.percentile(e2e, 99)), "throughput_rps": float(keep.sum() / span),
            "output_tokens_per_s": float(o.sum() / span)}


def validate_llm(args, scenario) -> int:
    """Validates an LLM scenario (continuous batching, llm cost model from an LLM profile); returns the exit code."""
    from sim.cost import LlmCost
    from sim.llm_metrics import capacity_rps
    from sim.outdir import OutputDir
    from sim.profiles import load_profile
    from sim.runner import generate_workload

    from .llm import ENGINES, build_engine
    from .llm_serve import serve_llm
    from .profile import device_info, free_device_memory, torch_dtype
    from .validate_common import parse_loads, prepare_device, refuse_other_device, validation_outputs

    cm, pol = scenario.cost_model, scenario.server.batching
    if not isinstance(cm, LlmCost) or cm.profile is None:
        raise ScenarioError(args.scenario, "cost_model", "LLM validate needs {kind: llm, profile: <LLM profile>} to know "
                            "which decoder to serve")
    if pol.policy != "continuous" or not pol.chunked_prefill:
        # any registered step scheduler (server.batching.order): the real loop plans its steps with the same one
        raise ScenarioError(args.scenario, "server.batching", "the real LLM loop runs continuous batching with chunked "
                            "prefill; set policy: continuous, chunked_prefill: true")
    prof = load_profile(cm.profile)
    if prof.model.name not in ENGINES:
        raise ScenarioError(cm.profile, "model.name", f"{prof.model.name!r} cannot be served; allowed: {', '.join(ENGINES)}")
    loads = parse_loads(args)
    out = OutputDir(args.out)
    out.prepare(validation_outputs(loads, args.reprofile, llm=True))
    torch = prepare_device(args, prof, cm.profile)
    dev = device_info(torch, args.device)
    diffs = refuse_other_device(args, prof, cm.profile, dev)
    say = (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))
    device = torch.device(args.device)
    dtype = torch_dtype(torch, prof.dtype)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    probe_scenario = scenario.model_copy(update={"requests": min(scenario.requests or 500, 500), "duration_s": None})
    probe = generate_workload(probe_scenario, 0)
    longest = int((probe.prompt_tokens + probe.output_tokens).max())
    if pol.kv_cache_tokens < pol.max_num_seqs * longest * 2:
        raise ScenarioError(args.scenario, "server.batching.kv_cache_tokens", "the real loop does not preempt: give a "
                            f"KV cache that cannot run out (at least {pol.max_num_seqs * longest * 2} tokens here)")
    engine = build_engine(prof.model.name, dict(prof.model.args), pol.max_num_seqs, longest * 2 + 2, device, dtype, sync)
    say(f"validating {scenario.name}: {prof.model.name} engine ({prof.model.params:,} parameters, {prof.dtype}) on "
        f"{dev['name']}, LLM profile {Path(cm.profile).name}")
    if diffs:
        say("  the profile was measured elsewhere (" + "; ".join(diffs) + "): predicting from the fresh profile only")

    with out.staging() as tmp:
        if args.reprofile:
            cm = _reprofile(engine, prof, pol, probe, longest, dev, tmp, say, free=lambda: free_device_memory(torch, device))
        # calibration burst: everything at once, so every step is full; per-step time outside the model = overhead
        n_burst = 2 * pol.max_num_seqs
        burst = serve_llm(engine, pol, np.zeros(n_burst), probe.prompt_tokens[:n_burst], probe.output_tokens[:n_burst])
        overhead_ms = float(np.mean(burst.step_wall_s - burst.step_model_s) * 1000)
        cost = cm.model_copy(update={"overhead_ms": cm.overhead_ms + overhead_ms})
        capacity = capacity_rps(scenario.model_copy(update={"cost_model": cost}), [workload_as_log(probe)])
        say(f"  loop overhead outside the model {overhead_ms:.3f} ms per step; estimated capacity {capacity:.4g} rps")
        rows, figs = _serve_loads(args, scenario, engine, pol, cost, capacity, loads, tmp, say)
        report = {"scenario": scenario.name, "created_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "device": dev, "profile": scenario.cost_model.profile, "profile_device": prof.device.name,
                  "model": prof.model.name, "dtype": prof.dtype, "llm": True, "reprofiled": bool(args.reprofile),
                  "batching": pol.model_dump(), "cost_model": {k: getattr(cost, k) for k in COEFS + ("overhead_ms",)},
                  "calibration": {"overhead_ms": overhead_ms}, "capacity_rps": capacity, "warmup_s": scenario.warmup_s,
                  "loads": rows}
        (tmp / "validation.json").write_text(json.dumps(report, indent=2) + "\n")
        (tmp / "validation.csv").write_text("load,metric,measured,predicted,error_pct\n" + "".join(
            f"{r['load']},{m},{r['measured'][m]:.6g},{r['predicted'][m]:.6g},{r['error_pct'][m]:.3f}\n" for r in rows for m in METRICS))
        from .validate_common import _plot
        _plot(tmp / "latency_cdf.png", figs, f"{scenario.name} (TTFT)")
        out.commit(tmp)
    print(format_table(report))
    print(f"  wrote {args.out}/: validation.json validation.csv latency_cdf.png and traces")
    from .validate_common import check_bound
    return check_bound(rows, CHECKED, args.max_error_pct)


def workload_as_log(wl):
    """The probe workload in the shape sim.llm_metrics.capacity_rps reads (token counts, nothing refused)."""
    from types import SimpleNamespace

    return SimpleNamespace(prompt_tokens=np.asarray(wl.prompt_tokens), output_tokens=np.asarray(wl.output_tokens),
                           refused=np.zeros(len(wl.prompt_tokens), bool))


def _reprofile(engine, prof, pol, probe, longest: int, dev: dict, tmp: Path, say, free):
    """Re-measures the engine's step times here, over a grid sized to the scenario, and returns the llm
    cost model fitted to them (written as fresh-profile.yaml)."""
    from sim.cost import LlmCost

    from .llm import grid, llm_profile, measure_llm
    from .profile import write_profile
    from .timing import Settings

    prompt_top = min(pol.chunk, int(np.max(probe.prompt_tokens)))
    points = grid(pol.max_num_seqs, max(prompt_top, 32), max(longest, 64))
    settings = Settings(warmup=3, min_samples=6, max_samples=40, target_ci_rel=0.03, budget_s=0.25)
    say(f"  re-profiling {len(points)} grid points here first (--reprofile) ...")
    res = measure_llm(engine, points, settings, free=free)
    fresh = llm_profile(prof.model.name, prof.model.args, engine, prof.dtype, dev, settings, res,
                        {"command": "servesim validate --reprofile"})
    write_profile(tmp / "fresh-profile.yaml", fresh)
    coef = res["llm_fit"]["coefficients"]
    say("  fresh fit: " + ", ".join(f"{k}={v:.4g}" for k, v in coef.items())
        + f"; worst {100 * res['llm_fit']['max_error']:.1f}%, leave-one-out {100 * res['llm_fit']['loo_error']:.1f}%")
    return LlmCost(profile=str(tmp / "fresh-profile.yaml"), **coef)


def _serve_loads(args, scenario, engine, pol, cost, capacity, loads, tmp: Path, say):
    """Serves and simulates the scenario's trace at each load; returns (rows, CDF figures)."""
    from sim.llm_engine import simulate_continuous
    from sim.runner import generate_workload

    from .llm_serve import serve_llm
    from .validate_common import _with_rate, backlog_verdicts

    rows, figs = [], []
    for load in loads:
        at_load = scenario.model_copy(update={"workload": scenario.workload.model_copy(
            update={"arrival": _with_rate(scenario.workload.arrival, load * capacity)})})
        wl = generate_workload(at_load, 0)
        arrivals, prompt, output = wl.arrival_s, wl.prompt_tokens, wl.output_tokens
        np.savetxt(tmp / f"trace-load{load:g}.csv", np.column_stack([arrivals, prompt, output]),
                   header="arrival_s,prompt_tokens,output_tokens", comments="", delimiter=",", fmt=["%.9f", "%d", "%d"])
        say(f"  load {load:.0%}: {arrivals.size} requests over {arrivals[-1]:.1f} s ...")
        rec = serve_llm(engine, pol, arrivals, prompt, output)
        log = simulate_continuous(pol, cost, arrivals, prompt, output)
        measured = _stats(rec.arrival_s, rec.first_token_s, rec.finish_s, np.asarray(output), scenario.warmup_s)
        predicted = _stats(log.arrival_s, log.first_token_s, log.finish_s, log.output_tokens, scenario.warmup_s)
        # diagnostic: the model's measured busy time against the simulated steps' compute
        ratio = float(rec.step_model_s.sum() / max(log.step_s.sum() - len(log.step_s) * cost.overhead_ms / 1000, 1e-12))
        err = {m: 100 * (predicted[m] / measured[m] - 1) for m in METRICS}
        rows.append({"load": load, "offered_rps": load * capacity, "measured": measured, "predicted": predicted,
                     "error_pct": err, "backlog": backlog_verdicts(arrivals, rec.finish_s, log.finish_s, scenario.warmup_s),
                     "server": {"model_time_vs_profile": ratio, "steps_measured": int(rec.step_wall_s.size),
                                "steps_simulated": int(log.step_s.size)}})
        keep_m = rec.arrival_s >= scenario.warmup_s
        keep_p = log.arrival_s >= scenario.warmup_s
        figs.append((load, (rec.first_token_s - rec.arrival_s)[keep_m], (log.first_token_s - log.arrival_s)[keep_p]))
    return rows, figs


def format_table(report: dict) -> str:
    """Returns the measured / predicted / error table of an LLM validation report."""
    lines = [f"servesim validate: {report['scenario']} - {report['model']} engine ({report['dtype']}) on {report['device']['name']}; "
             f"continuous batching; loop overhead {report['calibration']['overhead_ms']:.3f} ms/step",
             f"  {'load':>5} {'metric':<20} {'measured':>11} {'predicted':>11} {'error %':>8}"]
    for r in report["loads"]:
        for m in METRICS:
            lines.append(f"  {r['load']:>5.0%} {m:<20} {r['measured'][m]:>11.4g} {r['predicted'][m]:>11.4g} "
                         f"{r['error_pct'][m]:>+8.1f}")
        from .validate_common import backlog_note
        if backlog_note(r):
            lines.append(backlog_note(r))
        lines.append(f"  {'':>5} server: the model's busy time was {r['server']['model_time_vs_profile']:.2f}x the "
                     f"profiled step times ({r['server']['steps_measured']} steps served, {r['server']['steps_simulated']} simulated)")
    return "\n".join(lines)
