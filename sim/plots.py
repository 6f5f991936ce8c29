"""PNG plots of a run: latency CDF, batch-size histogram, queue length over time (LLM: latency CDFs, KV cache)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .metrics import queue_length_series
from .report import fmt_sig, time_unit

LOG_DECADES = 2.0        # data spanning more than this many decades get a log x axis
MARKER_REACH = 2.0       # a marker (SLO) at most this factor beyond the data's range widens the axis to show it ...
MARKER_REACH_LOG = 10.0  # ... on a log axis, where widening costs less room


@dataclass
class CdfAxis:
    """The x axis of a CDF plot: range in ms, scale, display unit, and which markers fit on it."""

    lo_ms: float
    hi_ms: float
    log: bool
    unit: str                     # "ms" or "s"
    div_ms: float                 # ms per display unit (1 or 1000)
    inside: list = field(default_factory=list)      # (label, value_ms) drawn as vertical lines
    above: list = field(default_factory=list)       # (label, value_ms) beyond the right edge: annotated there
    below: list = field(default_factory=list)       # (label, value_ms) left of a log axis: annotated at the left edge
    note_y: float = 0.45          # height (fraction of requests) for edge annotations, below the curve's right part

    def label(self, what: str) -> str:
        """Returns the axis label naming the unit, e.g. 'TTFT (s)' or 'latency (ms, log scale)'."""
        return f"{what} ({self.unit}{', log scale' if self.log else ''})"


def cdf_axis(values_ms, markers=()) -> CdfAxis:
    """Returns the CdfAxis for a CDF of `values_ms` (ms) with optional (label, value_ms) markers such as SLO targets.

    The range follows the data, up to 1.1 x its 99.9th percentile, so a far-away marker cannot squeeze the curve;
    a marker within MARKER_REACH (MARKER_REACH_LOG on a log axis) of that range widens it, one further away is
    listed in `above` (or `below`) to be annotated at the edge. The axis is logarithmic when the data span more
    than LOG_DECADES decades, and in seconds when its right end reaches 10,000 ms.
    """
    v = np.asarray(values_ms, float)
    v = v[np.isfinite(v)]
    markers = [(lab, float(m)) for lab, m in markers if m is not None and np.isfinite(m)]
    if v.size == 0 or v.max() <= 0:
        hi = max([m for _, m in markers if m > 0] + [float(v.max()) if v.size else 0.0], default=0.0) * 1.1 or 1.0
        unit, div = time_unit(hi)
        return CdfAxis(0.0, hi, False, unit, div, inside=[(lab, m) for lab, m in markers if 0 <= m <= hi])
    hi = float(np.quantile(v, 0.999)) * 1.1
    pos = v[v > 0]
    lo_data = float(np.quantile(pos, 0.001))
    log = hi / lo_data > 10 ** LOG_DECADES
    lo = lo_data / 1.25 if log else 0.0
    reach = MARKER_REACH_LOG if log else MARKER_REACH
    inside, above, below = [], [], []
    for lab, m in sorted(markers, key=lambda x: x[1]):
        if lo <= m <= hi:
            inside.append((lab, m))
        elif m > hi and m <= hi * reach:
            inside.append((lab, m))
            hi = m * 1.05
        elif m > hi:
            above.append((lab, m))
        elif log and m > 0 and m >= lo / reach:
            inside.append((lab, m))
            lo = m / 1.25
        else:
            below.append((lab, m))
    unit, div = time_unit(hi)
    # the CDF is monotone: right of x_band (the last quarter of the axis) it lies at or above F(x_band), so text
    # placed lower there stays clear of it
    x_band = lo * (hi / lo) ** 0.75 if log else 0.75 * hi
    note_y = min(0.45, max(0.08, float(np.mean(v <= x_band)) - 0.1))
    return CdfAxis(lo, hi, log, unit, div, inside, above, below, note_y)


def peaks(t, y, points: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """Returns (t, y) thinned to at most `points` points, each the largest y of its run of steps (at the run's
    first t): taking every k-th step instead would hide short spikes of the queue."""
    t, y = np.asarray(t), np.asarray(y)
    if t.size <= points:
        return t, y
    k = -(-t.size // points)
    starts = np.arange(0, t.size, k)
    return t[starts], np.maximum.reduceat(y, starts)


def _plain(ax) -> None:
    """Plain tick labels on both axes: no hidden offset ('+1e3') or scientific multiplier ('x1e6')."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, ScalarFormatter

    for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
        if scale == "log":
            lo, hi = sorted(axis.get_view_interval())
            if lo > 0 and hi / lo < 1e4:  # up to 4 decades, 1-2-5 ticks; beyond, decades only
                axis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
            axis.set_major_formatter(FuncFormatter(lambda x, _: fmt_sig(x, 3)))
            axis.set_minor_formatter(NullFormatter())
        elif isinstance(axis.get_major_formatter(), ScalarFormatter):
            axis.get_major_formatter().set_useOffset(False)
            axis.get_major_formatter().set_scientific(False)


def _cdf(ax, x_ms, axis: CdfAxis, points: int = 4000, **kw) -> None:
    x = np.sort(np.asarray(x_ms, float)) / axis.div_ms
    if x.size:
        # a few thousand order statistics draw the same curve as 10^6 and keep legend placement fast
        idx = np.unique(np.linspace(0, x.size - 1, min(points, x.size)).round().astype(np.int64))
        ax.plot(x[idx], (idx + 1) / x.size, **kw)


def _apply_cdf_axis(ax, axis: CdfAxis, what: str, marker_style: dict | None = None) -> None:
    """Sets the range, scale and unit label, draws the markers that fit and annotates those that do not."""
    from matplotlib.transforms import blended_transform_factory

    d = axis.div_ms
    if axis.log:
        ax.set_xscale("log")
    ax.set_xlim(axis.lo_ms / d, axis.hi_ms / d)
    ax.set_xlabel(axis.label(what))
    style = {"color": "red", "lw": 1}
    style.update(marker_style or {})
    for lab, m in axis.inside:
        ax.axvline(m / d, **style)
        ax.text(m / d, 0.5, f" {lab} {fmt_sig(m / d, 3)} {axis.unit}", color=style["color"], rotation=90, fontsize=8)
    edge = blended_transform_factory(ax.transAxes, ax.transData)
    # stacked down from note_y, which cdf_axis chose below the curve's last quarter
    box = {"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1}
    for i, (lab, m) in enumerate(axis.above):
        unit, div = time_unit(m)
        ax.text(0.99, axis.note_y - 0.08 * i, f"{lab} {fmt_sig(m / div, 3)} {unit} →", transform=edge, ha="right",
                va="center", color=style["color"], fontsize=8, bbox=box)
    # a CDF's upper left is empty: notes for markers left of the axis go there
    for i, (lab, m) in enumerate(axis.below):
        unit, div = time_unit(m)
        ax.text(0.01, 0.95 - 0.08 * i, f"← {lab} {fmt_sig(m / div, 3)} {unit}", transform=edge, ha="left",
                va="center", color=style["color"], fontsize=8, bbox=box)
    _plain(ax)


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
    lat_ms = measured["latency_s"].to_numpy() * 1000
    slo_marks = [(f"SLO {q}", c.get("target_ms")) for q, c in ((s.get("slo") or {}).get("targets") or {}).items()]
    axis = cdf_axis(lat_ms, slo_marks)
    if lat_ms.size:
        _cdf(ax, lat_ms, axis, lw=1.6, label="latency")
        _cdf(ax, measured["queue_wait_s"].to_numpy() * 1000, axis, lw=1.2, ls="--", label="queue wait")
    lat = s.get("latency_s") or {}
    for q, style in (("p50", ":"), ("p99", "-.")):
        v = lat.get(q)
        if v is not None and v == v and axis.lo_ms <= v * 1000 <= axis.hi_ms:
            x = v * 1000 / axis.div_ms
            ax.axvline(x, color="grey", ls=style, lw=1)
            ax.text(x, 0.02, f" {q} {fmt_sig(x, 3)} {axis.unit}", rotation=90, va="bottom", fontsize=8)
    _apply_cdf_axis(ax, axis, "latency")
    ax.set_ylabel("fraction of requests")
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    if lat_ms.size:
        ax.legend(loc="best", framealpha=0.9)  # "best" avoids the curves and the marker labels
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
    b = s.get("batch_size") or {}
    ax.set_title(f"{name}: batch sizes (mean {fmt_sig(b.get('mean'), 3)}, max {fmt_sig(b.get('max'), 6)})")
    ax.grid(alpha=0.3, axis="y")
    _plain(ax)
    paths.append(_save(fig, out_dir / "batch_size.png"))

    fig, ax = plt.subplots(figsize=(7, 4.2))
    t, q = queue_length_series(log)
    ax.plot(t, q, lw=1)
    if result.scenario.warmup_s > 0:
        ax.axvspan(0, result.scenario.warmup_s, color="grey", alpha=0.2, label="warm-up (not measured)")
        ax.legend(loc="upper left", framealpha=0.9)
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("requests waiting")
    ax.set_title(f"{name}: queue length over time (replication 0)")
    ax.grid(alpha=0.3)
    _plain(ax)
    paths.append(_save(fig, out_dir / "queue_length.png"))
    cols = df[df["replication"] == 0]
    done = cols["completion_s"].to_numpy()
    paths.append(write_replica_plot(result, out_dir, cols["replica"].to_numpy(), cols["arrival_s"].to_numpy(),
                                    np.where(np.isnan(done), np.inf, done)))
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
    from matplotlib.ticker import MaxNLocator

    s = result.summary
    name = result.scenario.name
    df = result.requests
    m = df[(df["arrival_s"] >= result.scenario.warmup_s) & df["finish_s"].notna()]
    targets = (s.get("slo") or {}).get("targets") or {}
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    for ax, col, label in zip(axes, ("ttft_s", "tpot_s", "e2e_s"), ("TTFT", "TPOT", "E2E latency")):
        x_ms = m[col].dropna().to_numpy() * 1000
        key = f"{col[:-2]}_p99"
        marks = [("SLO p99", targets[key].get("target_ms"))] if isinstance(targets.get(key), dict) else []
        axis = cdf_axis(x_ms, marks)
        _cdf(ax, x_ms, axis, lw=1.6)
        _apply_cdf_axis(ax, axis, label)
        ax.set_ylim(0, 1.01)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fraction of requests")
    fig.suptitle(f"{name}: {s['requests']} requests, {fmt_sig(s.get('output_tokens_per_s'))} output tokens/s"
                 + ("" if s["stable"] else " (UNSTABLE)"), fontsize=11)
    paths = [_save(fig, out_dir / "llm_latency_cdf.png")]

    log = result.logs[0]
    # one engine's steps: in a fleet, replica 0's (replicas.png shows them all)
    one = log.step_replica == 0 if log.step_replica is not None else np.ones(log.step_s.size, bool)
    many = log.replica_kv_tokens is not None and log.replica_kv_tokens.size > 1
    # three panels rather than two lines on one axis: the waiting queue can be 100 times the running batch
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
    t = log.step_start_s[one]
    cap = int(log.replica_kv_tokens[0]) if log.replica_kv_tokens is not None else max(log.kv_capacity_tokens, 1)
    running, waiting = log.step_running[one], log.step_waiting[one]
    ax1.plot(*peaks(t, log.step_kv_used[one] * 100 / cap), lw=1)
    ax1.set_ylabel(f"KV cache used\n(% of {cap:,} tokens)")
    ax1.set_ylim(0, 105)
    ax2.plot(*peaks(t, running), lw=1, color="C0", label="running")
    ax2.set_ylabel("running\n(sequences in the step)")
    ax3.plot(*peaks(t, waiting), lw=1, color="C1", label="waiting")
    ax3.set_ylabel("waiting\n(requests not admitted)" + ("\n(shared queue)" if many and
                                                         result.scenario.server.router.policy == "shared_queue" else ""))
    ax3.set_xlabel("simulated time (s)")
    for ax, counts in ((ax2, running), (ax3, waiting)):
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(0, max(1, int(counts.max(initial=0))) * 1.05)  # an all-zero series still gets a 0..1 axis
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.3)
        _plain(ax)
    ax1.set_title(f"{name}: KV cache and sequences at each engine step (replication 0"
                  + (f", replica 0 of {log.replica_kv_tokens.size})" if many else ")"))
    paths.append(_save(fig, out_dir / "kv_cache.png"))
    done = np.where(log.finished, log.finish_s, np.inf)
    where = log.routed if log.routed is not None else log.replica
    kv = None
    if log.step_replica is not None:
        kv = (log.step_start_s, log.step_kv_fraction() * 100, log.step_replica)
    paths.append(write_replica_plot(result, out_dir, where, log.arrival_s, done, kv))
    return paths


def write_replica_plot(result, out_dir: Path, replica: np.ndarray, arrival_s: np.ndarray, departure_s: np.ndarray,
                       kv=None, points: int = 300) -> Path:
    """Writes replicas.png: outstanding requests per replica over time (and, for LLM replicas, KV use),
    replication 0, each value the mean over one of `points` time bins. More than 8 replicas are drawn as the
    fleet's min, median and max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = result.scenario.fleet_groups
    labels = [f"{g.name} {i}" if len(groups) > 1 else f"replica {i}" for g in groups for i in range(g.replicas)]
    c = len(labels)
    ok = replica >= 0
    t_end = float(np.nanmax(np.where(np.isfinite(departure_s), departure_s, arrival_s))) if arrival_s.size else 1.0
    edges = np.linspace(0.0, max(t_end, 1e-9), points + 1)
    grid = (edges[:-1] + edges[1:]) / 2
    series = np.zeros((c, points))
    for i in range(c):
        mine = ok & (replica == i)
        area = _area(np.sort(arrival_s[mine]), edges) - _area(np.sort(departure_s[mine]), edges)
        series[i] = np.diff(area) / np.diff(edges)  # time-average over each bin: instants flicker too fast to read
    panels = 2 if kv is not None else 1
    fig, axes = plt.subplots(panels, 1, figsize=(9, 3.4 * panels), sharex=True, squeeze=False)
    ax = axes[0][0]
    _lines(ax, grid, series, labels)
    ax.set_ylabel("outstanding requests\n(queued + running,\nmean per bin)")
    if kv is not None:
        t, pct, rep = kv
        ax2 = axes[1][0]
        kv_series = np.zeros((c, points))
        for i in range(c):
            mine = rep == i
            if mine.any():
                at = np.searchsorted(t[mine], grid, side="right") - 1
                kv_series[i] = np.where(at >= 0, pct[mine][np.clip(at, 0, None)], 0.0)
        _lines(ax2, grid, kv_series, labels)
        ax2.set_ylabel("KV cache used (%)")
        ax2.set_ylim(0, 105)
    axes[-1][0].set_xlabel("simulated time (s)")
    for row in axes:
        row[0].grid(alpha=0.3)
        _plain(row[0])
    router = result.scenario.server.router.policy
    ax.set_title(f"{result.scenario.name}: {c} replica(s), router {router} (replication 0)")
    return _save(fig, out_dir / "replicas.png")


def _area(times: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Returns, at each edge t, the sum over sorted `times` of max(t - time, 0) (infinite times add nothing)."""
    times = times[np.isfinite(times)]
    k = np.searchsorted(times, edges, side="right")
    prefix = np.concatenate([[0.0], np.cumsum(times)])
    return k * edges - prefix[k]


def _lines(ax, grid: np.ndarray, series: np.ndarray, labels: list[str]) -> None:
    if series.shape[0] <= 8:
        for row, label in zip(series, labels):
            ax.plot(grid, row, lw=0.9, label=label)
        ax.legend(loc="upper left", fontsize=7, ncol=min(4, series.shape[0]), framealpha=0.9)
        return
    lo, med, hi = np.percentile(series, [0, 50, 100], axis=0)
    ax.fill_between(grid, lo, hi, alpha=0.3, label=f"min..max of {series.shape[0]} replicas")
    ax.plot(grid, med, lw=1, label="median replica")
    ax.legend(loc="upper left", fontsize=8, framealpha=0.9)


def plot_windows(frame, scenario, path: Path) -> Path:
    """Writes windows.png: per window of the run (replication 0), p50 and p99 latency with their intervals,
    throughput and utilisation, and SLO attainment when the scenario has a target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = frame[frame["replication"] == 0].sort_values("window")
    hours = scenario.outputs.window_s >= 3600 or f["end_s"].max() >= 4 * 3600
    div, unit = (3600.0, "h") if hours else (1.0, "s")
    mid = (f["start_s"] + f["end_s"]).to_numpy() / 2 / div
    has_slo = f["slo_attainment"].notna().any()
    fig, axes = plt.subplots(3 if has_slo else 2, 1, figsize=(8, 7.5 if has_slo else 5.6), sharex=True)
    ax = axes[0]
    p99 = f["latency_p99_s"].to_numpy()
    lat_unit, div_ms = time_unit(float(np.nanmax(p99)) * 1000 if np.isfinite(p99).any() else 1.0)
    for q, style in (("p50", "-"), ("p99", "-")):
        y = f[f"latency_{q}_s"].to_numpy() * 1000 / div_ms
        ax.plot(mid, y, style, marker="o", ms=3, lw=1.4, label=q)
        lo, hi = f[f"latency_{q}_lo_s"].to_numpy(), f[f"latency_{q}_hi_s"].to_numpy()
        ok = np.isfinite(lo) & np.isfinite(hi)
        if ok.any():
            ax.fill_between(mid[ok], lo[ok] * 1000 / div_ms, hi[ok] * 1000 / div_ms, alpha=0.25)
    ax.set_ylabel(f"latency ({lat_unit})")
    ax.legend(loc="upper left", framealpha=0.9)
    ax.grid(alpha=0.3)
    ax.set_title(f"{scenario.name}: per {fmt_sig(scenario.outputs.window_s, 4)} s window (replication 0)")
    ax = axes[1]
    ax.plot(mid, f["throughput_rps"], marker="o", ms=3, lw=1.4, label="throughput")
    ax.set_ylabel("requests/s")
    ax.set_ylim(bottom=0)
    ax2 = ax.twinx()
    ax2.plot(mid, f["utilization"], color="C2", lw=1.2, ls="--", label="utilisation")
    ax2.set_ylabel("utilisation")
    ax2.set_ylim(0, max(1.05, float(f["utilization"].max()) * 1.05))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", framealpha=0.9)
    ax2.legend(loc="upper right", framealpha=0.9)
    if has_slo:
        ax = axes[2]
        ax.plot(mid, f["slo_attainment"] * 100, marker="o", ms=3, lw=1.4, color="C3")
        ax.set_ylabel("SLO attainment (%)")
        ax.set_ylim(min(90.0, float(f["slo_attainment"].min()) * 100 - 2), 100.5)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel(f"time ({unit})")
    return _save(fig, path)
