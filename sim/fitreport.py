"""Text table and plot of a profile's fit (numpy + matplotlib only: the profiler uses it on GPU hosts)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .fitting import predict_ms


def plot_fit(path: Path, points: list[dict], fit: dict, title: str) -> None:
    """Writes a PNG of measured medians (p10-p90 error bars) with every fitted family's curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = np.array([p["batch_size"] for p in points], float)
    med = np.array([p["median_ms"] for p in points])
    lo = med - np.array([p.get("p10_ms", p["median_ms"]) for p in points])
    hi = np.array([p.get("p90_ms", p["median_ms"]) for p in points]) - med
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.errorbar(k, med, yerr=[lo, hi], fmt="o", ms=4, capsize=3, label="measured median (p10-p90)")
    grid = np.unique(np.round(np.geomspace(k.min(), k.max(), 200)))
    for fam, res in fit["families"].items():
        chosen = fam == fit["chosen"]
        ax.plot(grid, predict_ms(fam, res["params"], grid), lw=2 if chosen else 1, ls="-" if chosen else "--",
                label=f"{fam}{' (chosen)' if chosen else ''}: LOO {100 * (res['loo_error'] or 0):.1f}%")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("step time (ms)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)  # then rename: a reader never sees half a PNG
    plt.close(fig)
    tmp.replace(path)


def format_table(points: list[dict], fit: dict) -> str:
    """Returns the per-batch-size table: measured median and p99, throughput, fitted ms and error."""
    fam = fit["chosen"]
    params = fit["families"][fam]["params"]
    rows = [f"{'batch':>6} {'median ms':>10} {'p99 ms':>9} {'items/s':>11} {'fitted ms':>10} {'error %':>8} {'n':>4} {'cv %':>6}"]
    for p in points:
        f = float(predict_ms(fam, params, [p["batch_size"]])[0])
        rows.append(f"{p['batch_size']:>6} {p['median_ms']:>10.4g} {p.get('p99_ms') or float('nan'):>9.4g} "
                    f"{p['batch_size'] / p['median_ms'] * 1000:>11.5g} {f:>10.4g} {100 * (f / p['median_ms'] - 1):>+8.2f} "
                    f"{p['samples']:>4} {100 * (p.get('cv') or 0):>6.1f}")
    fams = ", ".join(f"{n} LOO {100 * (r['loo_error'] or 0):.2f}% / worst {100 * r['max_error']:.2f}%"
                     for n, r in fit["families"].items())
    rows.append(f"fit: {fam} (chosen by leave-one-out cross-validation); {fams}")
    return "\n".join(rows)
