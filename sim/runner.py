"""Run a scenario: generate each replication's workload, check it can be measured, simulate, summarise;
write outputs atomically into a folder (sim.outdir)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from .errors import ScenarioError
from .kinds import engine_kind
from .outdir import OutputDir
from .rng import component_rng
from .checks import check, scenario_warnings
from .scenario import Scenario, blame

def output_names(scenario: Scenario, records: bool, plots: bool) -> list[str]:
    """Returns the file names a run of `scenario` writes into its output folder."""
    windows = scenario.outputs.window_s is not None
    names = ["summary.json", "scenario.json"] + (["windows.parquet"] if windows else [])
    names += ["windows.png"] if windows and plots else []
    if scenario.streaming:  # no per-request records to write or plot
        return names
    return names + (["requests.parquet"] if records else []) + (list(engine_kind(scenario).plots) if plots else [])


@dataclass
class Result:
    """What `run` returns: the summary dict, the per-batch logs, and the per-request DataFrame (lazily built)."""

    scenario: Scenario
    summary: dict
    logs: list = field(repr=False)  # BatchLog per replication (LlmLog for LLM policies)
    window_list: Optional[list] = field(default=None, repr=False)  # streaming: windows.parquet's rows

    @cached_property
    def windows(self) -> pd.DataFrame:
        """One row per window (outputs.window_s) and replication: sim.windows."""
        rows = (self.window_list if self.window_list is not None
                else engine_kind(self.scenario).window_rows(self.scenario, self.logs))
        return pd.DataFrame(rows)

    @cached_property
    def requests(self) -> pd.DataFrame:
        """One row per request of every replication; times in seconds."""
        if self.scenario.streaming:
            raise ValueError("a streaming run keeps no per-request records (outputs.streaming): its summary and "
                             "windows hold what it measured")
        return engine_kind(self.scenario).request_frame(self.logs, self.scenario)

    def write(self, out_dir, *, records: Optional[bool] = None, plots: Optional[bool] = None) -> list[Path]:
        """Writes summary.json, scenario.json (+ requests.parquet, PNG plots) into out_dir; returns the
        files written. Raises ScenarioError when the folder cannot be written or holds files of the same
        names that servesim did not write (see sim.outdir: nothing half-written, no user file touched)."""
        records = self.scenario.outputs.records if records is None else records
        plots = self.scenario.outputs.plots if plots is None else plots
        out = out_dir if isinstance(out_dir, OutputDir) else OutputDir(out_dir)
        out.prepare(output_names(self.scenario, records, plots))
        streaming = self.scenario.streaming  # statistics only: sim.sinks
        with out.staging() as tmp:
            (tmp / "summary.json").write_text(json.dumps(_jsonable(self.summary), indent=2) + "\n")
            (tmp / "scenario.json").write_text(self.scenario.model_dump_json(indent=2) + "\n")
            if self.scenario.outputs.window_s is not None:
                self.windows.to_parquet(tmp / "windows.parquet", index=False)
                if plots:
                    from .plots import plot_windows

                    plot_windows(self.windows, self.scenario, tmp / "windows.png")
            if records and not streaming:
                self.requests.to_parquet(tmp / "requests.parquet", index=False)
            if plots and not streaming:
                engine_kind(self.scenario).write_plots(self, tmp)
            return out.commit(tmp)


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return v if math.isfinite(v) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


@dataclass
class Workload:
    """One replication's requests: sorted arrival times (s) and, for LLM scenarios, token counts."""

    arrival_s: Optional[np.ndarray]  # None for closed-loop clients: they send as they are answered
    prompt_tokens: Optional[np.ndarray] = None
    output_tokens: Optional[np.ndarray] = None
    clients: Optional[object] = None  # closed loop: the sim.clients.ClientLoop that sends the requests
    classes: Optional[np.ndarray] = None  # class index per request (workload.classes)
    levels: Optional[list] = None  # priority level per request (0: highest)
    tokens: Optional[object] = None  # closed-loop LLM clients: tokens(n0, n1) -> (prompt, output) of ids n0..n1-1


def generate_workload(scenario: Scenario, replication: int = 0) -> Workload:
    """Returns the requests of one replication, drawn from the scenario's own random streams (for closed-loop
    clients: the source that will send them, a fresh one per call)."""
    wl = scenario.workload
    draws = None
    if wl.classes:
        from .classes import ClassDraws

        draws = ClassDraws(wl.classes, component_rng(scenario.seed, replication, "workload.classes"))
    if wl.clients is not None:
        from .clients import ClientLoop

        from .stages import Stages, has_stages

        stages = Stages(scenario.server, scenario.seed, replication) if has_stages(scenario.server) else None
        loop = ClientLoop(wl.clients, component_rng(scenario.seed, replication, "workload.clients.think"),
                          scenario.closed_requests(), scenario.duration_s, draws, stages)
        tokens = _TokenDraws(scenario, replication, draws) if engine_kind(scenario).needs_tokens else None
        return Workload(None, clients=loop, tokens=tokens)
    arr_rng = component_rng(scenario.seed, replication, "workload.arrival")
    arrivals = wl.arrival.arrival_times_s(arr_rng, **scenario.horizon())
    cls = draws.upto(arrivals.size) if draws is not None else None
    levels = draws.level[:arrivals.size] if draws is not None else None
    if not engine_kind(scenario).needs_tokens:
        return Workload(arrivals, classes=cls, levels=levels)
    prompt, output = _tokens(scenario, replication, arrivals.size, cls)
    return Workload(arrivals, prompt, output, classes=cls, levels=levels)


class _TokenDraws:
    """Token counts of request ids drawn block by block as closed-loop clients send (the streams of `_tokens`:
    one for every request, or one per class that gives sizes of its own)."""

    def __init__(self, scenario: Scenario, replication: int, draws):
        self.scenario, self.draws = scenario, draws
        wl = scenario.workload
        self.per_class = draws is not None and any(c.prompt_tokens or c.output_tokens for c in wl.classes)
        names = [c.name for c in wl.classes] if self.per_class else [None]
        self.rngs = [component_rng(scenario.seed, replication, f"workload.tokens.{n}" if n else "workload.tokens")
                     for n in names]

    def __call__(self, n0: int, n1: int) -> tuple[np.ndarray, np.ndarray]:
        from .sizes import sample_pair

        wl = self.scenario.workload
        if not self.per_class:
            return sample_pair(wl.prompt_tokens, wl.output_tokens, wl.token_correlation, self.rngs[0], n1 - n0)
        cls = self.draws.upto(n1)[n0:n1]
        prompt, output = np.empty(n1 - n0, np.int64), np.empty(n1 - n0, np.int64)
        for i, c in enumerate(wl.classes):
            idx = np.flatnonzero(cls == i)
            prompt[idx], output[idx] = sample_pair(c.prompt_tokens or wl.prompt_tokens, c.output_tokens or wl.output_tokens,
                                                   wl.token_correlation, self.rngs[i], idx.size)
        return prompt, output


def _tokens(scenario: Scenario, replication: int, n: int, cls: Optional[np.ndarray]) -> tuple:
    """Returns (prompt_tokens, output_tokens) of n requests: from the trace, or drawn (per class where classes
    give sizes of their own, each class from its own stream)."""
    from .sizes import sample_pair

    wl = scenario.workload
    if wl.tokens_from_trace:
        return wl.arrival.tokens_for(n)
    if cls is None or not any(c.prompt_tokens or c.output_tokens for c in wl.classes):
        return sample_pair(wl.prompt_tokens, wl.output_tokens, wl.token_correlation,
                           component_rng(scenario.seed, replication, "workload.tokens"), n)
    prompt, output = np.empty(n, np.int64), np.empty(n, np.int64)
    for i, c in enumerate(wl.classes):
        idx = np.flatnonzero(cls == i)
        prompt[idx], output[idx] = sample_pair(c.prompt_tokens or wl.prompt_tokens, c.output_tokens or wl.output_tokens,
                                               wl.token_correlation,
                                               component_rng(scenario.seed, replication, f"workload.tokens.{c.name}"),
                                               idx.size)
    return prompt, output


def check_runnable(scenario: Scenario, source: str = "<scenario>") -> None:
    """The checks `run` makes before simulating, without keeping the arrivals of a streaming run; raises
    ScenarioError naming the key to change (`servesim check` and sweeps call it)."""
    if scenario.streaming:
        count, last = arrival_extent(scenario, 0)
        streaming_preflight(scenario, count, last, source)
    else:
        preflight(scenario, generate_workload(scenario, 0), source)


def preflight(scenario: Scenario, workload: Workload, source: str = "<scenario>") -> None:
    """Checks, before simulating, that the run will have requests to measure; raises ScenarioError naming
    the key to change. `servesim check` runs it too, so check and run refuse the same scenarios."""
    problem = _unmeasurable(scenario, workload)
    if problem:
        key, message = problem
        raise ScenarioError(blame(source, key, scenario._overrides), key, message)


def _unmeasurable(scenario: Scenario, workload: Workload) -> Optional[tuple[str, str]]:
    """Returns (key path, message) when no measured request could be served, else None."""
    if workload.clients is not None:
        return engine_kind(scenario).unmeasurable(scenario, workload, 0)
    a = workload.arrival_s
    if a.size == 0:
        return "duration_s", "no request arrives within the run: lengthen duration_s"
    last = float(a[-1])
    if scenario.warmup_s > 0 and last < scenario.warmup_s:
        return "warmup_s", (f"{scenario.warmup_s:g} s is after the last arrival ({last:.6g} s): no request is left "
                            "to measure; lower warmup_s or lengthen the run")
    first_measured = int(np.searchsorted(a, scenario.warmup_s, side="left"))
    return engine_kind(scenario).unmeasurable(scenario, workload, first_measured)


def simulate_replication(scenario: Scenario, replication: int = 0, workload: Optional[Workload] = None):
    """Runs one independent replication of the scenario (its workload is generated unless given);
    returns its BatchLog (LlmLog for LLM policies)."""
    wl = workload or generate_workload(scenario, replication)
    return engine_kind(scenario).simulate(scenario, wl, replication)


def run(scenario: Scenario, source: str = "<scenario>") -> Result:
    """Simulates every replication of `scenario`; returns a Result (summary dict + per-request DataFrame).

    Raises ScenarioError (naming `source`) for input that passes the schema but cannot be simulated."""
    check(scenario, source)
    if scenario.streaming and not scenario.is_llm:
        return _run_streaming(scenario, source)
    first = generate_workload(scenario, 0)
    preflight(scenario, first, source)
    kind = engine_kind(scenario)
    logs = [simulate_replication(scenario, r, first if r == 0 else None) for r in range(scenario.replications)]
    from .sweeps.store import SUMMARY_FORMAT, SUMMARY_VERSION, scenario_hash

    summary = {"format": SUMMARY_FORMAT, "version": SUMMARY_VERSION, "scenario_hash": scenario_hash(scenario),
               **kind.summarize(scenario, logs, source)}
    summary["batching"] = scenario.batching_description()
    summary["warnings"] = summary["warnings"] + scenario_warnings(scenario)
    if scenario.outputs.metrics:
        from .sink_metrics import feed, section

        states = [[m.start() for m in scenario.outputs.metrics] for _ in logs]
        for accs, log in zip(states, logs):
            feed(accs, kind.metric_block(scenario, log))
        summary["metrics"] = section(scenario.outputs.metrics, states)
    if scenario.streaming:  # LLM: the engine steps were streamed (sim.replica.step_stats)
        from .sketch import ACCURACY

        summary["streaming"] = {"relative_accuracy": ACCURACY, "percentiles": "ITL from a log-bucket sketch "
                                "(sim.sketch); TTFT, TPOT and E2E exact from per-request columns"}
    result = Result(scenario=scenario, summary=summary, logs=logs)
    if scenario.outputs.window_s is not None:
        summary["windows"] = window_headline(result.windows, scenario)
    return result


def window_headline(frame: pd.DataFrame, scenario: Scenario) -> dict:
    """Returns the summary's `windows` section: the window length and count, and the worst window."""
    by = frame.groupby("window")
    p99 = by["latency_p99_s"].mean()
    out = {"window_s": scenario.outputs.window_s, "windows": int(p99.size), "file": "windows.parquet",
           "worst_p99_s": float(p99.max()) if p99.notna().any() else None,
           "worst_p99_window": int(p99.idxmax()) if p99.notna().any() else None}
    att = by["slo_attainment"].mean()
    if att.notna().any():
        out["min_slo_attainment"] = float(att.min())
        out["min_slo_attainment_window"] = int(att.idxmin())
    return out


def arrival_extent(scenario: Scenario, replication: int = 0) -> tuple[int, float]:
    """Returns (number of arrivals, last arrival time in s) of a replication, from a first pass over its arrival
    stream chunk by chunk (the same draws the run makes, nothing kept): a streaming run then knows where its
    measured window ends before it starts."""
    count, last = 0, 0.0
    rng = component_rng(scenario.seed, replication, "workload.arrival")
    for chunk in scenario.workload.arrival.arrival_chunks(rng, **scenario.horizon()):
        if len(chunk):
            count += len(chunk)
            last = float(chunk[-1])
    return count, last


def streaming_preflight(scenario: Scenario, count: int, last: float, source: str) -> None:
    """preflight's checks for a streaming run, from the arrival stream's extent."""
    if count == 0:
        raise ScenarioError(blame(source, "duration_s", scenario._overrides), "duration_s",
                            "no request arrives within the run: lengthen duration_s")
    if scenario.warmup_s > 0 and last < scenario.warmup_s:
        raise ScenarioError(blame(source, "warmup_s", scenario._overrides), "warmup_s",
                            f"{scenario.warmup_s:g} s is after the last arrival ({last:.6g} s): no request is left to "
                            "measure; lower warmup_s or lengthen the run")


def _stream_replication(scenario: Scenario, rep: int, specs: list, chunks, sink) -> None:
    """Streams one replication's arrival `chunks` into `sink` through the engine that hosts the scenario: the
    shared-queue engine (fixed, or autoscaled identical replicas), or replicas behind a router (sim.fleet.streamed)."""
    srv = scenario.server
    noise = component_rng(scenario.seed, rep, "cost_model.noise")
    shared = srv.router.policy == "shared_queue" or scenario.total_replicas == 1
    q = srv.queue
    classes = scenario.workload.classes
    limited = q.max_queue_size is not None or q.timeout_ms is not None or bool(classes)
    if shared and srv.autoscaler is None and not limited and srv.instances_per_gpu == 1:
        from .engine import simulate_shared

        simulate_shared(specs, None, noise_rng=noise, chunks=chunks, sink=sink)
        return
    if shared and not srv.groups and not limited and srv.instances_per_gpu == 1:
        from .fleet.scaling import simulate_autoscaled

        _, sink.scaling = simulate_autoscaled(specs[0][0], specs[0][1], srv.autoscaler, srv.replicas, None,
                                              end_s=scenario.duration_s, noise_rng=noise, chunks=chunks, sink=sink)
    else:
        from .fleet.streamed import stream_batch_fleet

        sink.scaling = stream_batch_fleet(scenario.fleet_groups, None if shared else srv.router, chunks, sink,
                                          scenario.seed, rep, srv.autoscaler, scenario.scaling_replicas,
                                          scenario.duration_s, q.max_queue_size,
                                          None if q.timeout_ms is None else q.timeout_ms / 1000,
                                          q.timeout_ms is not None and q.timeout_action == "delay",
                                          srv.instances_per_gpu, srv.instance_contention, _class_draws(scenario, rep),
                                          scenario.workload.priority_levels)
    if sink.windows is not None and sink.scaling is not None:
        sink.windows.add_active(sink.scaling["lives"])


def _class_draws(scenario: Scenario, rep: int):
    """Returns the request classes' draws of a replication (sim.classes.ClassDraws), None without classes."""
    if not scenario.workload.classes:
        return None
    from .classes import ClassDraws

    return ClassDraws(scenario.workload.classes, component_rng(scenario.seed, rep, "workload.classes"))


def _class_sinks(scenario: Scenario, last: float, max_batch: int) -> Optional[list]:
    """Returns one sink per request class (its requests only; the SLO its own targets or the scenario's set)."""
    if not scenario.workload.classes:
        return None
    from .classes import pick_slo, top_targets
    from .sinks import StreamingSink

    out = []
    for c in scenario.workload.classes:
        by_q = pick_slo(c, scenario.slo, top_targets).get("latency_s", {})
        top = max(by_q, key=lambda q: -1 if q == "mean" else int(q[1:])) if by_q else None
        out.append(StreamingSink(scenario.total_replicas, scenario.warmup_s, max_batch,
                                 by_q[top] / 1000 if top else None, last_arrival_s=last))
    return out


def _run_streaming(scenario: Scenario, source: str) -> Result:
    """Runs every replication in chunks into fixed-memory sinks (sim.sinks); returns a Result with the summary
    and no per-request logs."""
    from .sinks import StreamingSink
    from .stream_summary import summarize_stream
    from .sweeps.store import SUMMARY_FORMAT, SUMMARY_VERSION, scenario_hash

    groups = scenario.fleet_groups
    specs = [(g.batching.rule(g.cost_model.batch_limit()), g.cost_model) for g in groups for _ in range(g.replicas)]
    targets = scenario.slo.targets_ms() if scenario.slo is not None else {}
    top = max(targets, key=lambda q: -1 if q == "mean" else int(q[1:])) if targets else None
    sinks = []
    for rep in range(scenario.replications):
        count, last = arrival_extent(scenario, rep)
        streaming_preflight(scenario, count, last, source)
        sink = StreamingSink(len(specs), scenario.warmup_s, max(rule.max_batch_size for rule, _ in specs),
                             targets[top] / 1000 if top else None, last_arrival_s=last)
        sink.metric_states = [m.start() for m in scenario.outputs.metrics]
        sink.classes = _class_sinks(scenario, last, sink.batch_sizes.size - 1)
        if scenario.outputs.window_s is not None:
            from .windows import WindowStats

            sink.windows = WindowStats(scenario.outputs.window_s, scenario.duration_s or last, len(specs),
                                       targets[top] / 1000 if top else None, sketches=True)
        chunks = iter(scenario.workload.arrival.arrival_chunks(component_rng(scenario.seed, rep, "workload.arrival"),
                                                               **scenario.horizon()))
        _stream_replication(scenario, rep, specs, chunks, sink)
        sinks.append(sink)
    summary = {"format": SUMMARY_FORMAT, "version": SUMMARY_VERSION, "scenario_hash": scenario_hash(scenario),
               **summarize_stream(scenario, sinks, source)}
    summary["batching"] = scenario.batching_description()
    if scenario.outputs.metrics:
        from .sink_metrics import section

        summary["metrics"] = section(scenario.outputs.metrics, [s.metric_states for s in sinks])
    notes = scenario_warnings(scenario)
    if scenario.outputs.streaming is None:
        notes.append(f"about {scenario._expected_requests:,.0f} requests: too many to keep per-request records, so this "
                     "run streamed (fixed-memory statistics, percentiles within 0.25%; no requests.parquet or plots); "
                     "set outputs.streaming: false to keep records")
    summary["warnings"] = summary["warnings"] + notes
    rows = None
    if scenario.outputs.window_s is not None:
        rows = [{"replication": rep, **r} for rep, sink in enumerate(sinks) for r in sink.windows.rows()]
    result = Result(scenario=scenario, summary=summary, logs=[], window_list=rows)
    if rows is not None:
        summary["windows"] = window_headline(result.windows, scenario)
    return result
