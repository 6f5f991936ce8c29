"""Measure step time against batch size on a real device and write a servesim profile.

    python -m profiler.profile --model resnet50 --device cuda --dtype fp16 --out profiles/h200-resnet50-fp16.yaml
    python -m profiler.profile --list-models

Needs torch, numpy, pyyaml (matplotlib for the plot); not simpy or pydantic, so it runs on bare GPU hosts.
Exit codes: 0 ok, 2 bad arguments (one message), 1 internal error.
"""
from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from sim.fitreport import format_llm_table, format_table, plot_fit
from sim.fitting import fit_all
from sim.profile_format import FORMAT, VERSION, with_counts

from .timing import Settings, budget_shortfall, find_max_batch, measure

DTYPES = ("fp32", "fp16", "bf16")


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit code 2."""


def _torch():
    try:
        import torch
    except ImportError:
        raise UsageError("torch is not installed: pip install 'servesim[profile]' (CPU: pip install torch==2.13.0)") from None
    return torch


def _parse_kv(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--model-arg {item!r}: expected key=value, e.g. seq_len=256")
        try:
            out[key] = yaml.safe_load(val)
        except yaml.YAMLError:
            raise UsageError(f"--model-arg {item!r}: the value is not valid YAML") from None
    return out


def _is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return (type(exc).__name__ == "OutOfMemoryError" or "out of memory" in text or "can't allocate memory" in text
            or "alloc_failed" in text)


DTYPE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}


def torch_dtype(torch, name: str):
    """Returns the torch dtype of a profile's dtype name (fp32, fp16, bf16)."""
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def free_device_memory(torch, device) -> None:
    """Collects garbage and returns cached CUDA memory to the driver (no-op beyond gc on the CPU)."""
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


class Runner:
    """Runs the model on one device: builds inputs per batch size, times one step, checks fit, and serves
    batches exactly as it times them (eager, compiled, or replaying a CUDA graph captured per batch size)."""

    def __init__(self, torch, module, make_batch, device: str, dtype: str, compile_model: bool, cuda_graphs: bool,
                 max_step_s: float, max_memory_bytes: int | None = None):
        self.torch = torch
        self.device = torch.device(device)
        self.dtype = torch_dtype(torch, dtype)
        self.module = module.to(self.device, self.dtype).eval()
        self.fn = torch.compile(self.module) if compile_model else self.module
        self.make_batch = make_batch
        self.cuda = self.device.type == "cuda"
        self.cuda_graphs = cuda_graphs and self.cuda
        self.max_step_s = max_step_s
        self.max_memory_bytes = max_memory_bytes  # CUDA only: a step's peak allocated memory budget
        self.rejected: dict[int, str] = {}        # batch size -> why fits() said no
        self.inputs: dict = {}
        self.graphs: dict = {}
        self.outputs: dict = {}
        self.pool = None  # one memory pool shared by every captured graph (they never run concurrently)

    def cast(self, x):
        x = x.to(self.device)
        return x.to(self.dtype) if x.is_floating_point() else x

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize(self.device)

    def prepare(self, b: int):
        """Builds the input of batch size b and, with CUDA graphs, warms up and captures its graph."""
        if b in self.inputs:
            return
        self.inputs[b] = self.cast(self.make_batch(b))
        if self.cuda_graphs:
            torch = self.torch
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), torch.inference_mode():
                for _ in range(3):
                    self.fn(self.inputs[b])
            torch.cuda.current_stream().wait_stream(side)
            if self.pool is None:
                self.pool = torch.cuda.graph_pool_handle()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool), torch.inference_mode():
                self.outputs[b] = self.fn(self.inputs[b])
            self.graphs[b] = graph

    def release(self, b: int):
        self.inputs.pop(b, None)
        self.graphs.pop(b, None)
        self.outputs.pop(b, None)
        self.free_memory()

    def free_memory(self):
        free_device_memory(self.torch, self.device)

    def _call(self, b: int):
        if self.cuda_graphs:
            self.graphs[b].replay()
            return self.outputs[b]
        return self.fn(self.inputs[b])

    def run(self, x):
        """Runs one batch (a tensor on the device) as the profile timed it: with CUDA graphs, copies it
        into the captured input of its size and replays that graph (sizes not prepared are captured now:
        call prepare() for every size first when latency matters). Returns the output, not synchronised."""
        if not self.cuda_graphs:
            return self.fn(x)
        b = int(x.shape[0])
        self.prepare(b)
        self.inputs[b].copy_(x)
        return self._call(b)

    def step_ms(self, b: int) -> float:
        """Runs one step at batch b; returns its time in ms (CUDA events on GPU, perf_counter + sync on CPU)."""
        torch = self.torch
        self.prepare(b)
        with torch.inference_mode():
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                self._call(b)
                end.record()
                end.synchronize()
                return float(start.elapsed_time(end))
            t0 = time.perf_counter()
            self._call(b)
            self.sync()
            return (time.perf_counter() - t0) * 1000

    def fits(self, b: int) -> bool:
        """One step at batch b: False on out-of-memory, when slower than max_step_s, or (CUDA) when the
        peak allocated memory of preparing it (warm-up and graph capture included) and running it exceeds
        max_memory_bytes; records why in `rejected`; frees memory."""
        budget = self.max_memory_bytes if self.cuda else None
        why = None
        try:
            if budget is not None:
                self.sync()
                self.torch.cuda.reset_peak_memory_stats(self.device)
            self.prepare(b)
            self.step_ms(b)
            step_s = self.step_ms(b) / 1000
            # all the process holds on the device at the peak: weights, inputs, graph pool, activations
            peak = int(self.torch.cuda.max_memory_allocated(self.device)) if budget is not None else 0
            if step_s > self.max_step_s:
                why = f"a step takes {step_s:.3g} s > --max-step-s {self.max_step_s:g}"
            elif budget is not None and peak > budget:
                why = f"peak allocated memory {peak / 1e9:.3g} GB > --max-memory-gb {budget / 1e9:g}"
        except Exception as exc:  # torch raises RuntimeError / OutOfMemoryError subclasses
            if not _is_oom(exc):
                raise
            why = "out of memory"
        self.release(b)
        if why:
            self.rejected[b] = why
        return why is None

    def peak_memory_bytes(self, b: int):
        """Returns the device memory batch size b adds at its peak (its input, activations, and with CUDA
        graphs what its capture took), in bytes; None on the CPU, whose allocator keeps no peak counter."""
        if not self.cuda:
            return None
        torch = self.torch
        self.release(b)  # prepared afresh, so a graph capture's allocations are counted
        self.sync()
        before = torch.cuda.memory_allocated(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        self.prepare(b)
        self.step_ms(b)
        return int(torch.cuda.max_memory_allocated(self.device) - before)


def device_info(torch, device: str) -> dict:
    info = {"kind": "cuda" if device.startswith("cuda") else "cpu", "host": socket.gethostname(),
            "platform": platform.platform(), "python": platform.python_version(), "torch": str(torch.__version__),
            "cuda": str(torch.version.cuda) if torch.version.cuda else None, "cpu": _cpu_name(), "cpu_threads": torch.get_num_threads()}
    if info["kind"] == "cuda":
        props = torch.cuda.get_device_properties(torch.device(device))
        info.update({"name": props.name, "memory_bytes": int(props.total_memory),
                     "compute_capability": f"{props.major}.{props.minor}", "driver": _driver_version()})
    else:
        info["name"] = info["cpu"]
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _driver_version():
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


def measure_peaks(torch, runner: Runner) -> dict:
    """Returns the device's achieved matmul TFLOP/s and copy bandwidth GB/s in this dtype (roofline inputs)."""
    n = 4096 if runner.cuda else 1024
    a = torch.randn(n, n, device=runner.device).to(runner.dtype)
    b = torch.randn(n, n, device=runner.device).to(runner.dtype)
    big = torch.ones(int((1 << 30) if runner.cuda else (1 << 27)) // 4, device=runner.device)
    dst = torch.empty_like(big)

    def best_s(fn, reps=5):
        fn()
        runner.sync()
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            runner.sync()
            best = min(best, time.perf_counter() - t0)
        return best

    with torch.inference_mode():
        mm = best_s(lambda: a @ b)
        cp = best_s(lambda: dst.copy_(big))
    return {"matmul_tflops": 2 * n ** 3 / mm / 1e12, "copy_bandwidth_gbps": 2 * big.numel() * 4 / cp / 1e9}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m profiler.profile", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="built-in name (see --list-models) or pkg.module:factory")
    ap.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE", help="factory argument, e.g. seq_len=256")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--dtype", default="fp32", choices=DTYPES)
    ap.add_argument("--out", help="profile YAML to write (a PNG plot is written next to it)")
    ap.add_argument("--batch-sizes", help="comma-separated sizes to measure (default: search the largest that fits, "
                    "then 1, 2, 3, 4, 6, 8, 12, ... up to it)")
    ap.add_argument("--max-batch", type=int, default=None, help="cap of the fit search (default 4096 on cuda, 64 on cpu)")
    ap.add_argument("--max-step-s", type=float, default=None, help="treat sizes slower than this per step as not "
                    "fitting (default 10 on cuda, 2 on cpu)")
    ap.add_argument("--max-memory-gb", type=float, default=None, help="CUDA only: treat sizes whose step's peak "
                    "allocated memory (weights included, torch.cuda.max_memory_allocated) exceeds this many GB (1e9 "
                    "bytes) as not fitting, so the max-batch search stops there")
    ap.add_argument("--warmup", type=int, default=5, help="untimed runs per batch size first (more while the "
                    "step time is still settling)")
    ap.add_argument("--min-samples", type=int, default=10)
    ap.add_argument("--max-samples", type=int, default=200)
    ap.add_argument("--target-ci", type=float, default=0.02, help="stop when the median's 95%% CI is within this fraction")
    ap.add_argument("--budget-s", type=float, default=5.0, help="measured seconds allowed per batch size")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model first")
    ap.add_argument("--cuda-graphs", action="store_true", help="capture each batch size in a CUDA graph")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--no-peaks", action="store_true", help="skip measuring the device's matmul/copy peaks")
    ap.add_argument("--llm", action="store_true", help="LLM mode: GPT-shaped decoder with a KV cache, timed on a "
                    "grid of prefill (batch x prompt) and decode (batch x context) steps; fits the llm cost model")
    ap.add_argument("--max-prompt", type=int, default=None, help="LLM mode: longest prompt (default 512 cpu, 4096 cuda)")
    ap.add_argument("--max-context", type=int, default=None, help="LLM mode: longest decode context (default 1024 cpu, 8192 cuda)")
    ap.add_argument("--list-models", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    try:
        args = ap.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    args.command = "python -m profiler.profile " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        return _run(args)
    except UsageError as exc:
        print(f"python -m profiler.profile: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if os.environ.get("SERVESIM_DEBUG"):
            raise
        print(f"python -m profiler.profile: internal error: {exc.__class__.__name__}: {exc} "
              "(set SERVESIM_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


def _run(args) -> int:
    from . import models

    if args.list_models:
        print(models.describe())
        print("your own: --model pkg.module:factory (factory(**model_args) -> (torch.nn.Module, make_batch(b)))")
        return 0
    if not args.model or not args.out:
        raise UsageError("--model and --out are required (or --list-models)")
    torch = _torch()
    say = (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise UsageError(f"--device {args.device}: no CUDA device is available here (use --device cpu)")
    if not cuda and args.device != "cpu":
        raise UsageError(f"--device {args.device!r}: allowed cpu, cuda, cuda:N")
    if args.cuda_graphs and not cuda:
        raise UsageError("--cuda-graphs needs --device cuda")
    for name in ("warmup", "min_samples", "max_samples"):
        if getattr(args, name) < (0 if name == "warmup" else 1):
            raise UsageError(f"--{name.replace('_', '-')} must be >= {0 if name == 'warmup' else 1}")
    if not (0 < args.target_ci < 1) or args.budget_s <= 0:
        raise UsageError("--target-ci must be in (0, 1) and --budget-s > 0")
    for flag, value in (("--threads", args.threads), ("--max-batch", args.max_batch), ("--max-step-s", args.max_step_s),
                        ("--max-memory-gb", args.max_memory_gb)):
        if value is not None and value <= 0:
            raise UsageError(f"{flag} {value}: must be > 0")
    if args.max_memory_gb is not None:
        # the CPU allocator keeps no peak counter, so a memory budget could not be checked: refuse, not ignore
        if not cuda:
            raise UsageError(f"--max-memory-gb needs --device cuda: peak memory per step is not measurable on "
                             f"--device {args.device}")
        if args.llm or args.batch_sizes:
            raise UsageError("--max-memory-gb limits the max-batch search of batch mode; it has no effect with "
                             + ("--llm" if args.llm else "--batch-sizes (every listed size is measured)"))
    out = Path(args.out)
    if out.suffix not in (".yaml", ".yml"):
        raise UsageError(f"--out {out}: the profile must be a .yaml file")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model_args = _parse_kv(args.model_arg)
    if args.llm:
        return _run_llm(args, torch, model_args, cuda, out, say)
    try:
        module, make_batch, info = models.build(args.model, model_args)
    except KeyError:
        raise UsageError(f"--model {args.model!r}: not a built-in model ({', '.join(models.BUILTIN)}) "
                         "nor pkg.module:factory") from None
    except (ImportError, AttributeError, TypeError, ValueError, RuntimeError) as exc:
        raise UsageError(f"--model {args.model!r} with {model_args}: {exc.__class__.__name__}: {exc}") from None

    stats_model = models.count_model_stats(module.float().eval(), make_batch, lambda x: x)
    dtype_bytes = DTYPE_BYTES[args.dtype]
    stats_model["bytes_per_batch"] = float(models.parameter_count(module) * dtype_bytes)
    stats_model["bytes_per_item"] *= dtype_bytes / 4
    runner = Runner(torch, module, make_batch, args.device, args.dtype, args.compile, args.cuda_graphs,
                    args.max_step_s or (10.0 if cuda else 2.0),
                    None if args.max_memory_gb is None else int(args.max_memory_gb * 1e9))
    dev = device_info(torch, args.device)
    say(f"profiling {args.model} ({models.parameter_count(module):,} parameters, {args.dtype}) on {dev['name']}")

    if args.batch_sizes:
        try:
            sizes = sorted({int(s) for s in args.batch_sizes.split(",") if s.strip()})
        except ValueError:
            raise UsageError(f"--batch-sizes {args.batch_sizes!r}: expected integers like 1,2,4,8") from None
        if not sizes or sizes[0] < 1:
            raise UsageError("--batch-sizes must be integers >= 1")
        search = None
    else:
        cap = args.max_batch or (4096 if cuda else 64)
        try:
            limit, search = find_max_batch(runner.fits, cap)
        except RuntimeError as exc:
            if "does not fit" not in str(exc):
                raise
            raise UsageError(f"batch size 1 does not fit on {args.device}: {runner.rejected.get(1, 'out of memory')}") from None
        if search["first_failure"] is not None:
            search["first_failure_reason"] = runner.rejected.get(search["first_failure"])
        search["max_memory_gb"] = args.max_memory_gb
        say(describe_search(search))
        sizes = models.log2_sizes(limit)

    settings = Settings(warmup=args.warmup, min_samples=args.min_samples, max_samples=args.max_samples,
                        target_ci_rel=args.target_ci, budget_s=args.budget_s, seed=args.seed)
    profile = measure_profile(runner, sizes, settings, say=say)
    if not args.no_peaks:
        for b in list(runner.inputs):
            runner.release(b)
        try:
            dev.update(measure_peaks(torch, runner))
        except Exception as exc:  # optional extra: never lose the measurements for it
            if not _is_oom(exc):
                raise
            profile["warnings"].append("device peaks not measured: out of memory")
    profile.update({
        "model": {"name": args.model, "params": models.parameter_count(module), "args": model_args,
                  **{k: v for k, v in info.items()}, **stats_model},
        "device": dev,
        "search": search,
    })
    profile["settings"].update({"compile": args.compile, "cuda_graphs": args.cuda_graphs, "command": args.command})
    write_profile(out, profile)
    if not args.no_plot:
        plot_fit(out.with_suffix(".png"), profile["points"], profile["fit"], f"{args.model} on {dev['name']} ({args.dtype})")
    say(format_table(profile["points"], profile["fit"]))
    say(f"wrote {out}" + ("" if args.no_plot else f" and {out.with_suffix('.png')}"))
    return 0


def _run_llm(args, torch, model_args: dict, cuda: bool, out: Path, say) -> int:
    from . import llm

    if args.model not in llm.ENGINES:
        raise UsageError(f"--llm profiles the built-in GPT-shaped decoder (--model gpt, sizes via --model-arg) or the "
                         f"sleep stand-in (--model sleep); got {args.model!r}")
    if args.model == "sleep" and cuda:
        raise UsageError("--model sleep measures the machine's sleep, not a device: use --device cpu")
    max_prompt = args.max_prompt or (4096 if cuda else 512)
    max_context = args.max_context or (8192 if cuda else 1024)
    max_len = max(max_prompt, max_context) + 2
    device = torch.device(args.device)
    max_batch = args.max_batch or _default_llm_batch(torch, device, args, model_args, max_len, cuda, say)
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)
    try:
        engine = llm.build_engine(args.model, model_args, max_batch, max_len, device, torch_dtype(torch, args.dtype), sync)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"--model-arg {model_args}: {exc}") from None
    except RuntimeError as exc:
        if not _is_oom(exc):
            raise
        raise UsageError(f"the slot KV cache of {max_batch} sequences x {max_len} positions does not fit on "
                         f"{args.device}: lower --max-batch, --max-prompt or --max-context") from None
    dev = device_info(torch, args.device)
    points = llm.grid(max_batch, max_prompt, max_context)
    stats_model = llm.engine_stats(args.model, engine, DTYPE_BYTES[args.dtype])
    say(f"profiling {args.model} in LLM mode ({stats_model['params']:,} parameters, {args.dtype}) on "
        f"{dev['name']}: {len(points)} grid points")
    settings = Settings(warmup=args.warmup, min_samples=args.min_samples, max_samples=args.max_samples,
                        target_ci_rel=args.target_ci, budget_s=args.budget_s, seed=args.seed)
    try:
        res = llm.measure_llm(engine, points, settings, say, free=lambda: free_device_memory(torch, device))
    except RuntimeError as exc:
        if "too few to fit" not in str(exc):
            raise
        raise UsageError(f"{exc} (out of memory on {args.device}? lower --max-batch, --max-prompt or --max-context)") from None
    for w in res["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    profile = llm.llm_profile(args.model, model_args, engine, args.dtype, dev, settings, res,
                              {"max_prompt": max_prompt, "max_context": max_context, "command": args.command})
    write_profile(out, profile)
    say(format_llm_table(res["llm_points"], res["llm_fit"]))
    say(f"wrote {out}")
    return 0


def _default_llm_batch(torch, device, args, model_args: dict, max_len: int, cuda: bool, say) -> int:
    """Returns the default --max-batch of LLM mode: 32 on the CPU; on CUDA 256, halved until the slot KV
    cache (batch x max_len positions) takes at most 40% of the device's free memory."""
    if not cuda:
        return 32
    from .llm import kv_bytes_per_token

    free_bytes = torch.cuda.mem_get_info(device)[0]
    per_slot = kv_bytes_per_token(model_args, DTYPE_BYTES[args.dtype]) * max_len
    batch = 256
    while batch > 1 and batch * per_slot > 0.4 * free_bytes:
        batch //= 2
    if batch < 256:
        say(f"--max-batch {batch}: a slot cache of {batch} x {max_len} positions ({batch * per_slot / 1e9:.1f} GB) "
            f"fits in 40% of the {free_bytes / 1e9:.0f} GB free; give --max-batch to choose")
    return batch


def measure_profile(runner: Runner, sizes: list[int], settings: Settings, say=lambda s: None) -> dict:
    """Times `runner` at every batch size and fits the medians; returns the profile dict without the
    model and device sections (the caller adds them)."""
    started = time.perf_counter()
    stats = measure(runner.step_ms, sizes, settings, say)
    points, warnings = [], []
    for b in sizes:
        p = stats[b].summary()
        p["peak_memory_bytes"] = runner.peak_memory_bytes(b)
        if p["cv"] > 0.10:
            warnings.append(f"batch {b}: coefficient of variation {p['cv']:.0%} > 10%: noisy measurements "
                            "(other load on the machine? frequency scaling?)")
        points.append(p)
    short = budget_shortfall([(f"batch {b}", stats[b]) for b in sizes], settings)
    if short:
        warnings.append(short)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    dtype = next(name for name in DTYPE_BYTES if torch_dtype(runner.torch, name) == runner.dtype)
    return {
        "format": FORMAT, "version": VERSION,
        "created_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model": {}, "device": {},
        "dtype": dtype,
        "settings": {**settings.as_dict(), "timer": "cuda_events" if runner.cuda else "perf_counter+synchronize",
                     "inference_mode": True, "measured_s": round(time.perf_counter() - started, 3)},
        "max_batch_size": max(sizes),
        "search": None,
        "points": points,
        "fit": fit_all([p["batch_size"] for p in points], [p["median_ms"] for p in points]).to_dict(),
        "warnings": warnings,
    }


def describe_search(search: dict) -> str:
    """Returns the one-line summary of a max-batch search record (see timing.find_max_batch)."""
    first = search.get("first_failure")
    if first is None:
        outcome = "no failure up to the cap"
    else:
        reason = search.get("first_failure_reason")
        outcome = f"first failure at {first}" + (f": {reason}" if reason else "")
    budget = search.get("max_memory_gb")
    return (f"largest batch that fits: {search['largest_fits']} (cap {search['cap']}"
            + (f", memory budget {budget:g} GB" if budget is not None else "") + f"; {outcome})")


def write_profile(out: Path, profile: dict) -> None:
    """Writes the profile YAML atomically (temporary file, then rename), at the current format version with
    the integrity counts (sim.profile_format.with_counts) ahead of the lists."""
    profile = with_counts(profile)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".profile-", suffix=".yaml", dir=out.parent)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(f"# servesim profile: {profile['model'].get('name')} on {profile['device'].get('name')} "
                     f"({profile['dtype']}); written by python -m profiler.profile\n")
            yaml.safe_dump(profile, fh, sort_keys=False, width=120)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


if __name__ == "__main__":
    sys.exit(main())
