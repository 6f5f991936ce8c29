"""PNG plots of a run: latency CDF, batch-size histogram, queue length over time."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .metrics import queue_length_series


def write_plots(result, out_dir: Path) -> list[Path]:
    """Writes latency_cdf.png, batch_size.png and queue_length.png (names listed in runner.OUTPUT_FILES)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result.summary
    name = result.scenario.name
    log = result.logs[0]
    df = result.requests
    measured = df[(df["arrival_s"] >= result.scenario.warmup_s) & df["latency_s"].notna()]
    paths = []

    fig, ax = plt.subplots(figsize=(7, 4.2))
    lat_ms = np.sort(measured["latency_s"].to_numpy()) * 1000
    if lat_ms.size:
        ax.plot(lat_ms, np.arange(1, lat_ms.size + 1) / lat_ms.size, lw=1.6, label="latency")
        wait_ms = np.sort(measured["queue_wait_s"].to_numpy()) * 1000
        ax.plot(wait_ms, np.arange(1, wait_ms.size + 1) / wait_ms.size, lw=1.2, ls="--", label="queue wait")
    for q, style in (("p50", ":"), ("p99", "-.")):
        v = s["latency_s"][q]
        if v == v:
            ax.axvline(v * 1000, color="grey", ls=style, lw=1)
            ax.text(v * 1000, 0.02, f" {q} {v * 1000:.3g} ms", rotation=90, va="bottom", fontsize=8)
    if s.get("slo"):
        for q, c in s["slo"]["targets"].items():
            ax.axvline(c["target_ms"], color="red", lw=1)
            ax.text(c["target_ms"], 0.5, f" SLO {q} {c['target_ms']:g} ms", color="red", rotation=90, fontsize=8)
    ax.set_xlabel("milliseconds")
    ax.set_ylabel("fraction of requests")
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(f"{name}: latency CDF ({s['requests']} requests{'' if s['stable'] else ', UNSTABLE'})")
    paths.append(_save(fig, out_dir / "latency_cdf.png"))

    fig, ax = plt.subplots(figsize=(7, 4.2))
    sizes = log.size[log.dispatch_s >= result.scenario.warmup_s]
    if sizes.size:
        top = int(sizes.max())
        counts = np.bincount(sizes, minlength=top + 1)[1:]
        ax.bar(np.arange(1, top + 1), counts / counts.sum(), width=0.9)
    ax.set_xlabel("batch size")
    ax.set_ylabel("fraction of batches")
    ax.set_title(f"{name}: batch sizes (mean {s['batch_size']['mean']:.2f}, max {s['batch_size']['max']})")
    ax.grid(alpha=0.3, axis="y")
    paths.append(_save(fig, out_dir / "batch_size.png"))

    fig, ax = plt.subplots(figsize=(7, 4.2))
    t, q = queue_length_series(log)
    ax.plot(t, q, lw=1)
    if result.scenario.warmup_s > 0:
        ax.axvspan(0, result.scenario.warmup_s, color="grey", alpha=0.2, label="warm-up (not measured)")
        ax.legend(loc="upper left")
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("requests waiting")
    ax.set_title(f"{name}: queue length over time (replication 0)")
    ax.grid(alpha=0.3)
    paths.append(_save(fig, out_dir / "queue_length.png"))
    return paths


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_llm_plots(result, out_dir: Path) -> list[Path]:
    """Writes llm_latency_cdf.png (TTFT, TPOT, E2EL) and kv_cache.png (KV use, running and waiting over time)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result.summary
    name = result.scenario.name
    df = result.requests
    m = df[(df["arrival_s"] >= result.scenario.warmup_s) & df["finish_s"].notna()]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    for ax, col, label in zip(axes, ("ttft_s", "tpot_s", "e2e_s"), ("TTFT", "TPOT", "E2E latency")):
        x = np.sort(m[col].dropna().to_numpy()) * 1000
        if x.size:
            ax.plot(x, np.arange(1, x.size + 1) / x.size, lw=1.6)
        ax.set_xlabel(f"{label} (ms)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fraction of requests")
    fig.suptitle(f"{name}: {s['requests']} requests, {s['output_tokens_per_s']:.4g} output tokens/s"
                 + ("" if s["stable"] else " (UNSTABLE)"), fontsize=11)
    paths = [_save(fig, out_dir / "llm_latency_cdf.png")]

    log = result.logs[0]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True)
    t = log.step_start_s
    every = max(1, t.size // 4000)
    ax1.plot(t[::every], log.step_kv_used[::every] / max(log.kv_capacity_tokens, 1), lw=1)
    ax1.set_ylabel("KV cache used")
    ax1.set_ylim(0, 1.05)
    ax1.grid(alpha=0.3)
    ax2.plot(t[::every], log.step_running[::every], lw=1, label="running")
    ax2.plot(t[::every], log.step_waiting[::every], lw=1, label="waiting")
    ax2.set_ylabel("sequences")
    ax2.set_xlabel("simulated time (s)")
    ax2.legend(loc="upper left")
    ax2.grid(alpha=0.3)
    ax1.set_title(f"{name}: KV cache and sequences over time (replication 0)")
    paths.append(_save(fig, out_dir / "kv_cache.png"))
    return paths
