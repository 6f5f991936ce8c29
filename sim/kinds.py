"""Engine kinds: request-level batching and LLM engines. The one place that picks the kind of a scenario
(`engine_kind`); each kind brings its own fleet, log, summary sections, request table and plots, so the
runner, CLI and report never ask which kind they hold."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np


class EngineKind:
    """What a kind of replica contributes to a run."""

    name = ""
    plots: tuple[str, ...] = ()
    needs_tokens = False

    def simulate(self, scenario, workload, replication: int):
        """Returns the log of one replication (BatchLog or LlmLog)."""
        raise NotImplementedError

    def summarize(self, scenario, logs: list, source: str) -> dict:
        """Returns the summary.json dict of the replications in `logs`."""
        raise NotImplementedError

    def request_frame(self, logs: list, scenario):
        """Returns one row per request of every replication (pandas DataFrame)."""
        raise NotImplementedError

    def write_plots(self, result, out_dir) -> list:
        raise NotImplementedError

    def window_rows(self, scenario, logs: list) -> list[dict]:
        """Returns windows.parquet's rows (outputs.window_s) from the replications' logs."""
        raise NotImplementedError

    def metric_block(self, scenario, log):
        """Returns the measured, finished requests of one replication's log as a sim.sink_metrics.RequestBlock."""
        raise NotImplementedError

    def unmeasurable(self, scenario, workload, first_measured: int) -> Optional[tuple[str, str]]:
        """Returns (key path, message) when no measured request could ever be served, else None."""
        return None

    def check_lines(self, scenario) -> list[str]:
        """Returns the lines `servesim check` prints about the fleet's capacity."""
        return []


class BatchKind(EngineKind):
    name = "batch"
    plots = ("latency_cdf.png", "batch_size.png", "queue_length.png", "replicas.png")

    def simulate(self, scenario, workload, replication):
        from .fleet.build import run_batch_closed, run_batch_fleet
        from .stages import Stages, has_stages

        srv, wl = scenario.server, scenario.workload
        if workload.clients is not None:
            src = workload.clients
            log = run_batch_closed(scenario.fleet_groups, srv.router, src, scenario.seed, replication,
                                   srv.queue.max_queue_size, wl.priority_levels, srv.instances_per_gpu,
                                   srv.instance_contention, srv.autoscaler, scenario.scaling_replicas,
                                   scenario.duration_s,
                                   srv.queue.timeout_ms / 1000 if srv.queue.timeout_ms is not None else None,
                                   srv.queue.timeout_ms is not None and srv.queue.timeout_action == "delay")
            cols = src.columns()
            log.clients = {k: cols[k] for k in ("client", "sent_s", "think_s", "cycle_end_s")}
            log.classes = cols["class"]
            if src.stages is not None:
                answered = np.where(np.isfinite(log.request_times("completion_s")), cols["cycle_end_s"], np.nan)
                log.stages = {"sent_s": cols["sent_s"], "pre_wait_s": cols["pre_wait_s"], "answered_s": answered,
                              "post_wait_s": cols["post_wait_s"]}
            return log
        limited = (srv.queue.max_queue_size is not None or srv.queue.timeout_ms is not None or wl.priority_levels > 1
                   or has_stages(srv) or bool(srv.groups) or srv.instances_per_gpu > 1)
        if srv.autoscaler is not None and srv.router.policy == "shared_queue" and not limited:
            from .fleet.scaling import simulate_autoscaled
            from .rng import component_rng

            g = scenario.fleet_groups[0]
            log, scaling = simulate_autoscaled(g.batching.rule(g.cost_model.batch_limit()), g.cost_model, srv.autoscaler,
                                               srv.replicas, workload.arrival_s, end_s=scenario.duration_s,
                                               noise_rng=component_rng(scenario.seed, replication, "cost_model.noise"))
            log.scaling = scaling
            log.classes = workload.classes
            return log
        stages = Stages(srv, scenario.seed, replication) if has_stages(srv) else None
        a = workload.arrival_s
        perm, b = None, a
        if stages is not None and stages.pre is not None:
            b, pre_wait = stages.pre.run(a)
            perm = np.argsort(b, kind="stable")  # several workers may finish out of order
            b = b[perm]
        levels = workload.levels if perm is None or workload.levels is None else [workload.levels[i] for i in perm]
        log = run_batch_fleet(scenario.fleet_groups, srv.router, b, scenario.seed, replication, srv.queue.max_queue_size,
                              None if srv.queue.timeout_ms is None else srv.queue.timeout_ms / 1000, levels,
                              wl.priority_levels, srv.instances_per_gpu, srv.instance_contention,
                              delay=srv.queue.timeout_ms is not None and srv.queue.timeout_action == "delay",
                              autoscaler=srv.autoscaler, server_replicas=scenario.scaling_replicas,
                              end_s=scenario.duration_s)
        log.classes = workload.classes if perm is None or workload.classes is None else workload.classes[perm]
        if stages is not None:
            answered, post_wait = stages.answers(log.request_times("completion_s"))
            log.stages = {"sent_s": a[perm] if perm is not None else a,
                          "pre_wait_s": pre_wait[perm] if perm is not None else np.zeros(a.size),
                          "answered_s": answered, "post_wait_s": post_wait}
        return log

    def summarize(self, scenario, logs, source):
        from .metrics import summarize

        return summarize(scenario, logs, source)

    def request_frame(self, logs, scenario):
        from .metrics import request_frame

        names = [c.name for c in scenario.workload.classes] if scenario.workload.classes else None
        return request_frame(logs, scenario.fleet_groups, names)

    def write_plots(self, result, out_dir):
        from .plots import write_plots

        return write_plots(result, out_dir)

    def window_rows(self, scenario, logs):
        from .metrics import window_rows

        return window_rows(scenario, logs)

    def metric_block(self, scenario, log):
        from .metrics import request_columns
        from .sink_metrics import RequestBlock

        cols = request_columns(log)
        m = (cols["arrival_s"] >= scenario.warmup_s) & np.isfinite(cols["completion_s"])
        return RequestBlock(cols["arrival_s"][m], cols["latency_s"][m], cols["queue_wait_s"][m], cols["replica"][m])

    def unmeasurable(self, scenario, workload, first_measured):
        a = workload.arrival_s
        if workload.clients is not None:
            return None  # clients send as they are answered: sim.checks refuses batches they can never fill
        if scenario.server.router.policy != "shared_queue":
            return None  # each replica fills its own batches: the summary says so if none ever filled
        for g in scenario.fleet_groups:
            rule = g.batching.rule(g.cost_model.batch_limit())
            if math.isinf(rule.delay_s) and (a.size // rule.max_batch_size) * rule.max_batch_size <= first_measured:
                return "server.batching.max_batch_size", (
                    f"no measured request would ever be dispatched: {a.size} requests arrive "
                    f"({a.size - first_measured} after the warm-up) and batches wait for {rule.max_batch_size}; "
                    "lower max_batch_size, lengthen the run or set max_queue_delay_ms")
        return None

    def check_lines(self, scenario):
        if scenario.workload.clients is not None:
            return [f"capacity: {scenario.capacity_rps():.6g} rps; closed loop of {scenario.workload.clients.count} "
                    "client(s): no offered rate (the load follows from the answers)"]
        rate = scenario.workload.arrival.rate_rps
        offered = "no offered rate (the arrivals span no time)" if rate is None else f"offered {rate:.6g} rps"
        return [f"capacity: {scenario.capacity_rps():.6g} rps; {offered}"]


class LlmKind(EngineKind):
    name = "llm"
    plots = ("llm_latency_cdf.png", "kv_cache.png", "replicas.png")
    needs_tokens = True

    def simulate(self, scenario, workload, replication):
        from .fleet.build import run_llm_closed, run_llm_fleet

        wl = scenario.workload
        if workload.clients is not None:
            src = workload.clients
            log = run_llm_closed(scenario.fleet_groups, scenario.server.router, src, workload.tokens, scenario.seed,
                                 replication, scenario.server.queue.max_waiting, wl.priority_levels,
                                 autoscaler=scenario.server.autoscaler, server_replicas=scenario.scaling_replicas,
                                 end_s=scenario.duration_s,
                                 client_timeout_s=None if wl.client_timeout_ms is None else wl.client_timeout_ms / 1000)
            cols = src.columns()
            log.clients = {k: cols[k] for k in ("client", "sent_s", "think_s", "cycle_end_s")}
            log.classes = cols["class"]
            return log
        log = run_llm_fleet(scenario.fleet_groups, scenario.server.router, workload.arrival_s, workload.prompt_tokens,
                            workload.output_tokens, scenario.seed, replication,
                            max_waiting=scenario.server.queue.max_waiting, level=workload.levels,
                            levels=wl.priority_levels,
                            client_timeout_s=None if wl.client_timeout_ms is None else wl.client_timeout_ms / 1000,
                            autoscaler=scenario.server.autoscaler, server_replicas=scenario.scaling_replicas,
                            end_s=scenario.duration_s, steps=_step_stats(scenario, workload.arrival_s))
        log.classes = workload.classes
        return log

    def summarize(self, scenario, logs, source):
        from .llm_metrics import summarize_llm

        return summarize_llm(scenario, logs, source)

    def request_frame(self, logs, scenario):
        from .llm_metrics import request_frame

        names = [c.name for c in scenario.workload.classes] if scenario.workload.classes else None
        return request_frame(logs, scenario.fleet_groups, names)

    def write_plots(self, result, out_dir):
        from .plots import write_llm_plots

        return write_llm_plots(result, out_dir)

    def window_rows(self, scenario, logs):
        from .llm_metrics import window_rows

        return window_rows(scenario, logs)

    def metric_block(self, scenario, log):
        from .sink_metrics import RequestBlock

        m = (log.arrival_s >= scenario.warmup_s) & log.finished
        a = log.arrival_s[m]
        admitted = log.admitted_s if log.admitted_s is not None else log.first_token_s
        ttft = log.first_token_s[m] - a
        e2e = log.finish_s[m] - a
        out = log.output_tokens[m]
        with np.errstate(invalid="ignore", divide="ignore"):
            tpot = np.where(out > 1, (e2e - ttft) / (out - 1), np.nan)
        replica = log.replica[m] if log.replica is not None else np.zeros(a.size, np.int32)
        return RequestBlock(a, e2e, admitted[m] - a, replica, ttft, tpot)

    def unmeasurable(self, scenario, workload, first_measured):
        if workload.clients is not None:
            return None  # clients send as they are answered (a request that fits nowhere is refused and sent again)
        prompt, output = workload.prompt_tokens[first_measured:], workload.output_tokens[first_measured:]
        fits = np.zeros(prompt.size, bool)
        for g in scenario.fleet_groups:
            fits |= g.batching.fits(prompt, output)
        if not fits.any():
            return _never_fits(scenario.fleet_groups[0].batching, prompt, output)
        g = scenario.fleet_groups[0]
        pol = g.batching
        if pol.policy == "llm_static" and pol.max_queue_delay_ms is None:
            a = workload.arrival_s
            if (a.size // pol.max_batch_size) * pol.max_batch_size <= first_measured:
                return "server.batching.max_batch_size", (
                    f"no measured request would ever be dispatched: {a.size} requests arrive "
                    f"({a.size - first_measured} after the warm-up) and batches wait for {pol.max_batch_size}; lower "
                    "max_batch_size, lengthen the run or set max_queue_delay_ms")
        return None


def _step_stats(scenario, arrival_s: np.ndarray):
    """Returns the StepStats a streaming LLM run hands its engine steps to (sim.replica.step_stats), or None for
    records (or when the measured window's end, the last arrival, is not past its start)."""
    if not scenario.streaming or arrival_s.size == 0:
        return None
    from .replica.step_stats import StepStats

    start = scenario.warmup_s if scenario.warmup_s > 0 else float(arrival_s[0])
    end = float(arrival_s[-1])
    if not end > start:
        return None
    kv = [g.batching.kv_cache_tokens for g in scenario.fleet_groups for _ in range(g.replicas)]
    windows = None
    if scenario.outputs.window_s is not None:  # busy time per window, as window_rows adds it from step rows
        from .windows import WindowStats

        windows = WindowStats(scenario.outputs.window_s, max(scenario.duration_s or end, 1e-9), scenario.total_replicas,
                              None, sketches=False)
    return StepStats(start, end, np.asarray(kv), exact=False, windows=windows)


def _never_fits(pol, prompt: np.ndarray, output: np.ndarray) -> tuple[str, str]:
    """Returns (key path, message) for LLM requests none of which can ever run."""
    if pol.policy == "llm_static":
        need = int((prompt + output).min())
        return ("server.batching.kv_cache_tokens", f"{pol.kv_cache_tokens} tokens hold no measured request: the "
                f"smallest needs {need} (prompt + output); raise kv_cache_tokens to at least {need}")
    last_kv = prompt + output - 1
    blocks_needed = int((-(-last_kv // pol.block_size)).min())
    if blocks_needed > pol.kv_blocks:
        return ("server.batching.kv_cache_tokens",
                f"{pol.kv_cache_tokens} tokens ({pol.kv_blocks} blocks of {pol.block_size}) hold no measured request: "
                f"the smallest needs {blocks_needed} blocks (prompt + output - 1 = {int(last_kv.min())} tokens); "
                f"raise kv_cache_tokens to at least {blocks_needed * pol.block_size}")
    return ("server.batching.max_num_batched_tokens",
            f"{pol.max_num_batched_tokens} is below every measured request's prompt + output - 1 "
            f"(smallest {int(last_kv.min())}); without chunked prefill a (re)prefill must fit in one step: raise it "
            "or set chunked_prefill: true")


BATCH, LLM = BatchKind(), LlmKind()


def engine_kind(scenario) -> EngineKind:
    """Returns the engine kind of the scenario's replicas (every group has the same kind: sim.checks.check)."""
    return LLM if scenario.is_llm else BATCH
