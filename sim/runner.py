"""Run a scenario: generate arrivals, simulate each replication, summarise; write outputs atomically."""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from .engine import simulate
from .metrics import request_frame, summarize
from .rng import component_rng
from .scenario import Scenario, check


OUTPUT_FILES = frozenset({"summary.json", "scenario.json", "requests.parquet", "latency_cdf.png", "batch_size.png",
                          "queue_length.png", "llm_latency_cdf.png", "kv_cache.png"})


@dataclass
class Result:
    """What `run` returns: the summary dict, the per-batch logs, and the per-request DataFrame (lazily built)."""

    scenario: Scenario
    summary: dict
    logs: list = field(repr=False)  # BatchLog per replication (LlmLog for LLM policies)

    @cached_property
    def requests(self) -> pd.DataFrame:
        """One row per request of every replication; times in seconds."""
        if self.scenario.is_llm:
            from .llm_metrics import request_frame as llm_frame
            return llm_frame(self.logs)
        return request_frame(self.logs)

    def write(self, out_dir: str | Path, *, records: bool | None = None, plots: bool | None = None) -> list[Path]:
        """Writes summary.json (+ requests.parquet, PNG plots) into out_dir; returns the files written.

        Everything is first written to a temporary folder beside out_dir; only when all of it succeeded
        are the files moved in, and output files of an earlier run that this run did not produce are
        removed, so out_dir never mixes two runs or holds a half-written output.
        """
        out = Path(out_dir)
        records = self.scenario.outputs.records if records is None else records
        plots = self.scenario.outputs.plots if plots is None else plots
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.servesim-", dir=out.parent))
        try:
            (tmp / "summary.json").write_text(json.dumps(_jsonable(self.summary), indent=2) + "\n")
            (tmp / "scenario.json").write_text(self.scenario.model_dump_json(indent=2) + "\n")
            if records:
                self.requests.to_parquet(tmp / "requests.parquet", index=False)
            if plots:
                from .plots import write_llm_plots, write_plots
                (write_llm_plots if self.scenario.is_llm else write_plots)(self, tmp)
            out.mkdir(exist_ok=True)
            new = {f.name for f in tmp.iterdir()}
            for stale in OUTPUT_FILES - new:
                (out / stale).unlink(missing_ok=True)
            written = []
            for f in sorted(tmp.iterdir()):
                os.replace(f, out / f.name)
                written.append(out / f.name)
            return written
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


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


def simulate_replication(scenario: Scenario, replication: int = 0):
    """Runs one independent replication of the scenario; returns its BatchLog (LlmLog for LLM policies)."""
    arr_rng = component_rng(scenario.seed, replication, "workload.arrival")
    arrivals = scenario.workload.arrival.arrival_times_s(arr_rng, **scenario.horizon())
    if scenario.is_llm:
        from .llm_engine import simulate_continuous, simulate_static
        from .sizes import sample_pair

        wl = scenario.workload
        if wl.tokens_from_trace:
            prompt, output = (x[: arrivals.size] for x in wl.arrival.load_tokens())
        else:
            prompt, output = sample_pair(wl.prompt_tokens, wl.output_tokens, wl.token_correlation,
                                         component_rng(scenario.seed, replication, "workload.tokens"), arrivals.size)
        engine = simulate_continuous if scenario.server.batching.policy == "continuous" else simulate_static
        return engine(scenario.server.batching, scenario.cost_model, arrivals, prompt, output)
    noise_rng = component_rng(scenario.seed, replication, "cost_model.noise")
    return simulate(scenario.rule, scenario.cost_model, arrivals, replicas=scenario.server.replicas, noise_rng=noise_rng)


def run(scenario: Scenario, source: str = "<scenario>") -> Result:
    """Simulates every replication of `scenario`; returns a Result (summary dict + per-request DataFrame).

    Raises ScenarioError (naming `source`) for input that passes the schema but cannot be simulated."""
    check(scenario, source)
    logs = [simulate_replication(scenario, r) for r in range(scenario.replications)]
    if scenario.is_llm:
        from .llm_metrics import summarize_llm
        return Result(scenario=scenario, summary=summarize_llm(scenario, logs, source), logs=logs)
    return Result(scenario=scenario, summary=summarize(scenario, logs, source), logs=logs)
