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
