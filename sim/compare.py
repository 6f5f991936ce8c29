"""`servesim compare DIR DIR...`: finished runs side by side, and their latency CDFs overlaid."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import ScenarioError
from .report import fmt_sig, layout, time_unit

ROWS = (("offered rps", "offered_rps", 1), ("throughput rps", "throughput_rps", 1), ("utilization", "utilization", 1),
        ("mean batch", "batch_size.mean", 1), ("stable", "stable", 1), ("SLO", "slo.met", 1),
        ("SLO attainment", "slo_attainment", 1), ("$/hour", "fleet_cost_per_hour", 1),
        ("$/M requests", "cost_per_million_requests", 1))
LATENCIES = ("latency_s", "ttft_s", "tpot_s", "e2e_s")


def load_runs(dirs: list[str]) -> list[tuple[str, dict]]:
    """Returns (label, summary) per run folder; raises ScenarioError naming a folder without a summary."""
    runs = []
    for d in dirs:
        path = Path(d) / "summary.json"
        if not path.is_file():
            raise ScenarioError(str(path), "", "no summary.json here; compare takes folders written by `servesim run`")
        try:
            runs.append((Path(d).name or d, json.loads(path.read_text())))
        except ValueError as exc:
            raise ScenarioError(str(path), "", f"not a servesim summary ({exc})") from None
    return runs


def _get(summary: dict, dotted: str):
    node = summary
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, (int, float)):
        return fmt_sig(v, 5)
    return str(v)


def format_compare(runs: list[tuple[str, dict]]) -> str:
    """Returns a table with one column per run: latency percentiles (one unit per row), rates, SLO, cost."""
    rows = [["", *(label for label, _ in runs)]]
    for stat in LATENCIES:
        if not any(isinstance(s.get(stat), dict) for _, s in runs):
            continue
        for q in ("p50", "p99"):
            vals = [_get(s, f"{stat}.{q}") for _, s in runs]
            unit, div = time_unit(max((abs(v) * 1000 for v in vals if isinstance(v, (int, float))), default=None))
            rows.append([f"{stat[:-2]} {q} ({unit})"] + ["-" if v is None else fmt_sig(v * 1000 / div, 4) for v in vals])
    for label, key, _ in ROWS:
        vals = [_get(s, key) for _, s in runs]
        if any(v is not None for v in vals):
            rows.append([label] + [_cell(v) for v in vals])
    return "\n".join(layout(rows))


def plot_compare(dirs: list[str], path: Path) -> Optional[Path]:
    """Writes the measured requests' latency CDFs (E2E for LLM runs) of every run with requests.parquet
    into one figure; returns the path, None when no run kept its records."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    curves = []
    for d in dirs:
        f = Path(d) / "requests.parquet"
        scen = Path(d) / "scenario.json"
        if not f.is_file():
            continue
        df = pd.read_parquet(f, columns=None)
        warm = json.loads(scen.read_text()).get("warmup_s", 0.0) if scen.is_file() else 0.0
        lat = df.loc[df["arrival_s"] >= warm, "latency_s"].dropna().to_numpy()
        if lat.size:
            curves.append((Path(d).name, np.sort(lat) * 1000))
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for name, x in curves:
        ax.plot(x, np.arange(1, x.size + 1) / x.size, lw=1.5, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("fraction of requests")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("latency CDFs (measured requests)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
