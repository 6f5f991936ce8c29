"""`servesim validate` for LLM scenarios: a real continuous-batching loop around the GPT-shaped decoder
(profiler/llm_serve.py) against the simulator, on the same trace and the same request sizes.

Each load is a fraction of the engine's estimated capacity for the scenario's request sizes. A short
saturated burst first measures the loop's per-step overhead outside the model (scheduling, tensor
assembly), which becomes the cost model's overhead_ms before any validated run is seen.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np

from sim.errors import ScenarioError

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
    from sim.llm_engine import simulate_continuous
    from sim.llm_metrics import capacity_rps
    from sim.profiles import load_profile
    from sim.rng import component_rng
    from sim.runner import simulate_replication
    from sim.sizes import sample_pair

    from .llm import GptKV
    from .llm_serve import serve_llm
    from .profile import device_info
    from .validate import _plot, _with_rate, check_bound, parse_loads, prepare_device

    cm, pol = scenario.cost_model, scenario.server.batching
    if not isinstance(cm, LlmCost) or cm.profile is None:
        raise ScenarioError(args.scenario, "cost_model", "LLM validate needs {kind: llm, profile: <LLM profile>} to know "
                            "which decoder to serve")
    if pol.policy != "continuous" or pol.order != "decode_first" or not pol.chunked_prefill:
        raise ScenarioError(args.scenario, "server.batching", "the real LLM loop runs continuous batching, decode_first, "
                            "with chunked prefill; set policy: continuous, order: decode_first, chunked_prefill: true")
    if args.reprofile:
        raise ScenarioError("--reprofile", "", "not available for LLM scenarios yet; re-run python -m profiler.profile --llm")
    prof = load_profile(cm.profile)
    loads = parse_loads(args)
    torch = prepare_device(args, prof, cm.profile)
    say = (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))
    device = torch.device(args.device)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[prof.dtype]
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    wl = scenario.workload
    probe = simulate_replication(scenario.model_copy(update={"requests": min(scenario.requests or 500, 500),
                                                             "duration_s": None}), 0)
    longest = int((probe.prompt_tokens + probe.output_tokens).max())
    if pol.kv_cache_tokens < pol.max_num_seqs * longest * 2:
        raise ScenarioError(args.scenario, "server.batching.kv_cache_tokens", "the real loop does not preempt: give a "
                            f"KV cache that cannot run out (at least {pol.max_num_seqs * longest * 2} tokens here)")
    margs = {**prof.model.args, "max_len": longest * 2 + 2}
    model = GptKV(**margs).to(device, dtype).eval()
    dev = device_info(torch, args.device)
    say(f"validating {scenario.name}: GPT decoder {prof.model.params:,} parameters ({prof.dtype}) on {dev['name']}, "
        f"LLM profile {Path(cm.profile).name}")

    # calibration burst: everything at once, so every step is full; per-step time outside the model = overhead
    n_burst = 2 * pol.max_num_seqs
    burst = serve_llm(model, pol, np.zeros(n_burst), probe.prompt_tokens[:n_burst], probe.output_tokens[:n_burst],
                      device, dtype, sync)
    overhead_ms = float(np.mean(burst.step_wall_s - burst.step_model_s) * 1000)
    cost = cm.model_copy(update={"overhead_ms": cm.overhead_ms + overhead_ms})
    capacity = capacity_rps(scenario.model_copy(update={"cost_model": cost}), [probe])
    say(f"  loop overhead outside the model {overhead_ms:.3f} ms per step; estimated capacity {capacity:.4g} rps")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.validate-", dir=out.parent))
    rows, figs = [], []
    try:
        for load in loads:
            arr_proc = _with_rate(wl.arrival, load * capacity)
            arrivals = arr_proc.arrival_times_s(component_rng(scenario.seed, 0, "workload.arrival"), **scenario.horizon())
            if wl.tokens_from_trace:
                prompt, output = (x[: arrivals.size] for x in wl.arrival.load_tokens())
            else:
                prompt, output = sample_pair(wl.prompt_tokens, wl.output_tokens, wl.token_correlation,
                                             component_rng(scenario.seed, 0, "workload.tokens"), arrivals.size)
            np.savetxt(tmp / f"trace-load{load:g}.csv", np.column_stack([arrivals, prompt, output]),
                       header="arrival_s,prompt_tokens,output_tokens", comments="", delimiter=",", fmt=["%.9f", "%d", "%d"])
            say(f"  load {load:.0%}: {arrivals.size} requests over {arrivals[-1]:.1f} s ...")
            rec = serve_llm(model, pol, arrivals, prompt, output, device, dtype, sync)
            log = simulate_continuous(pol, cost, arrivals, prompt, output)
            measured = _stats(rec.arrival_s, rec.first_token_s, rec.finish_s, np.asarray(output), scenario.warmup_s)
            predicted = _stats(log.arrival_s, log.first_token_s, log.finish_s, log.output_tokens, scenario.warmup_s)
            # diagnostic: the model's measured busy time against the simulated steps' compute
            ratio = float(rec.step_model_s.sum() / max(log.step_s.sum() - len(log.step_s) * cost.overhead_ms / 1000, 1e-12))
            err = {m: 100 * (predicted[m] / measured[m] - 1) for m in METRICS}
            rows.append({"load": load, "offered_rps": load * capacity, "measured": measured, "predicted": predicted,
                         "error_pct": err, "server": {"model_time_vs_profile": ratio, "steps_measured": int(rec.step_wall_s.size),
                                                      "steps_simulated": int(log.step_s.size)}})
            keep_m = rec.arrival_s >= scenario.warmup_s
            keep_p = log.arrival_s >= scenario.warmup_s
            figs.append((load, (rec.first_token_s - rec.arrival_s)[keep_m], (log.first_token_s - log.arrival_s)[keep_p]))
        report = {"scenario": scenario.name, "created_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "device": dev, "profile": cm.profile, "model": "gpt", "dtype": prof.dtype, "llm": True,
                  "batching": pol.model_dump(), "calibration": {"overhead_ms": overhead_ms},
                  "capacity_rps": capacity, "warmup_s": scenario.warmup_s, "loads": rows}
        (tmp / "validation.json").write_text(json.dumps(report, indent=2) + "\n")
        (tmp / "validation.csv").write_text("load,metric,measured,predicted,error_pct\n" + "".join(
            f"{r['load']},{m},{r['measured'][m]:.6g},{r['predicted'][m]:.6g},{r['error_pct'][m]:.3f}\n" for r in rows for m in METRICS))
        _plot(tmp / "latency_cdf.png", figs, f"{scenario.name} (TTFT)")
        out.mkdir(exist_ok=True)
        for f in sorted(tmp.iterdir()):
            f.replace(out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(format_table(report))
    print(f"  wrote {out}/: validation.json validation.csv latency_cdf.png and traces")
    return check_bound(rows, CHECKED, args.max_error_pct)


def format_table(report: dict) -> str:
    """Returns the measured / predicted / error table of an LLM validation report."""
    lines = [f"servesim validate: {report['scenario']} - GPT decoder ({report['dtype']}) on {report['device']['name']}; "
             f"continuous batching; loop overhead {report['calibration']['overhead_ms']:.3f} ms/step",
             f"  {'load':>5} {'metric':<20} {'measured':>11} {'predicted':>11} {'error %':>8}"]
    for r in report["loads"]:
        for m in METRICS:
            lines.append(f"  {r['load']:>5.0%} {m:<20} {r['measured'][m]:>11.4g} {r['predicted'][m]:>11.4g} "
                         f"{r['error_pct'][m]:>+8.1f}")
        lines.append(f"  {'':>5} server: the model's busy time was {r['server']['model_time_vs_profile']:.2f}x the "
                     f"profiled step times ({r['server']['steps_measured']} steps served, {r['server']['steps_simulated']} simulated)")
    return "\n".join(lines)
