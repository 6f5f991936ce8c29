"""LLM continuous-batching benchmark: the reference workload of the LLM issue, whole command timed.

    python bench/bench_llm.py [--requests 100000] [--naive-requests 3000]

Reference workload: prompt 512 and output 128 tokens (fixed), Poisson at about 72% of the engine's
capacity, chunked prefill with a 512-token budget and chunk, max_num_seqs 128, a 7B-class step cost.
It times `servesim run` end to end in a fresh process (start-up, YAML, simulation, summary, parquet;
no plots) with /usr/bin/time for peak memory, then runs the naive per-sequence SimPy model
(sim.llm_reference) on the first requests of the same stream for the speed ratio.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

COST = {"kind": "llm", "base_ms": 12.0, "prefill_token_ms": 0.06, "prefill_attention_ms": 0.000004,
        "decode_seq_ms": 0.08, "decode_context_ms": 0.00002}
POLICY = {"policy": "continuous", "max_num_seqs": 128, "max_num_batched_tokens": 512, "chunked_prefill": True,
          "chunk_size": 512, "kv_cache_tokens": 400000, "block_size": 16}


def scenario(requests: int, rate: float) -> dict:
    return {"name": "bench-llm", "seed": 1, "requests": requests,
            "workload": {"arrival": {"process": "poisson", "rate_rps": rate},
                         "prompt_tokens": {"dist": "fixed", "value": 512}, "output_tokens": {"dist": "fixed", "value": 128}},
            "cost_model": COST, "server": {"batching": POLICY}, "outputs": {"records": True, "plots": False}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--naive-requests", type=int, default=3000)
    args = ap.parse_args()
    import sim
    from sim.llm_metrics import capacity_rps
    from sim.llm_reference import naive_continuous
    from sim.rng import component_rng

    probe = sim.validate(scenario(1000, 1.0))
    cap = capacity_rps(probe, [sim.simulate_replication(probe)])
    rate = round(0.72 * cap, 3)
    tmp = Path(tempfile.mkdtemp())
    try:
        path = tmp / "bench-llm.yaml"
        path.write_text(yaml.safe_dump(scenario(args.requests, rate)))
        exe = shutil.which("servesim")
        t0 = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-v", exe, "run", str(path), "--out", str(tmp / "out")],
                              capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t0
        rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
        summary = yaml.safe_load((tmp / "out/summary.json").read_text())
        # same stream, first N requests, through the naive model (and, for a like-for-like rate, the engine alone)
        s = sim.validate(scenario(args.naive_requests, rate))
        arr = s.workload.arrival.arrival_times_s(component_rng(1, 0, "workload.arrival"), requests=args.naive_requests)
        p = [512] * args.naive_requests
        o = [128] * args.naive_requests
        t1 = time.perf_counter()
        naive_continuous(s.server.batching, s.cost_model, arr, p, o)
        naive_s = time.perf_counter() - t1
        from sim.llm_engine import simulate_continuous
        t2 = time.perf_counter()
        simulate_continuous(s.server.batching, s.cost_model, arr, p, o)
        engine_small_s = time.perf_counter() - t2
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"estimated capacity {cap:.4g} rps; offered {rate} rps (72%); {args.requests} requests, prompt 512, output 128")
    print(f"servesim run (whole command, fresh process): {wall:.2f} s wall, peak RSS {rss_kb / 1024:.0f} MB, "
          f"{args.requests / wall:,.0f} requests/s")
    print(f"  simulated: {summary['duration_s']:.0f} s, {summary['output_tokens_per_s']:.0f} output tokens/s, "
          f"mean {summary['batch_size']['mean']:.1f} decoding sequences/step, TTFT p50 {summary['ttft_s']['p50'] * 1000:.1f} ms, "
          f"TPOT p50 {summary['tpot_s']['p50'] * 1000:.2f} ms, {summary['preemptions']} preemptions")
    print(f"naive per-sequence SimPy model, first {args.naive_requests} requests: {naive_s:.2f} s "
          f"({args.naive_requests / naive_s:,.0f} requests/s); engine on the same: {engine_small_s:.3f} s "
          f"({args.naive_requests / engine_small_s:,.0f} requests/s); ratio {naive_s / engine_small_s:.1f}x")


if __name__ == "__main__":
    main()
