"""Text tables and plots of a profile's fit (numpy + matplotlib only: the profiler uses it on GPU hosts)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from .fitting import predict_ms
from .llm_fit import COEFS, predict_step_ms


def plot_formats() -> dict[str, str]:
    """Returns the file suffixes (without the dot) matplotlib can write, with their descriptions."""
    from matplotlib.backend_bases import FigureCanvasBase

    return dict(FigureCanvasBase.get_supported_filetypes())


def check_plot_path(path) -> Path:
    """Returns `path` as a Path once it is known to be writable as a plot (a suffix matplotlib can write,
    an existing folder a file can be created in); raises ValueError saying what is wrong otherwise.
    Call it before any work, so that a bad --plot costs nothing."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{p} is a folder; give a file name such as {p / 'fit.png'}")
    try:
        formats = plot_formats()
    except ImportError:
        raise ValueError("plotting needs matplotlib: pip install matplotlib") from None
    suffix = p.suffix.lower().lstrip(".")
    if suffix not in formats:
        got = f"the suffix .{suffix} is not" if suffix else "a file name without a suffix is not"
        raise ValueError(f"{p}: {got} a format matplotlib can write; allowed: "
                         + ", ".join(f".{s}" for s in sorted(formats)))
    folder = p.parent
    if not folder.is_dir():
        raise ValueError(f"{p}: the folder {folder} does not exist")
    try:  # the only reliable test (permissions, read-only or virtual file systems): create a file there
        fd, probe = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".probe", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ValueError(f"{p}: cannot write in {folder} ({exc.strerror or exc})") from None
    return p


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    """Writes `fig` to `path` in the format its suffix names, via a temporary file and a rename (a reader
    never sees half a file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    try:
        fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".").lower() or "png")
        tmp.replace(path)
    finally:
        _pyplot().close(fig)
        if tmp.exists():
            tmp.unlink()


def plot_fit(path: Path, points: list[dict], fit: dict, title: str) -> None:
    """Writes a plot (format from the suffix) of measured medians (p10-p90 error bars) with every fitted
    family's curve."""
    plt = _pyplot()
    k = np.array([p["batch_size"] for p in points], float)
    med = np.array([p["median_ms"] for p in points])
    lo = med - np.array([p.get("p10_ms") or p["median_ms"] for p in points])
    hi = np.array([p.get("p90_ms") or p["median_ms"] for p in points]) - med
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
    _save(fig, path)


def format_table(points: list[dict], fit: dict) -> str:
    """Returns the per-batch-size table: measured median and p99, throughput, fitted ms and error, then
    the chosen family and why it was chosen."""
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
    reason = fit.get("reason")  # absent from fits stored by older versions
    rows.append(f"fit: {fam}" + (f": {reason}" if reason else ""))
    rows.append(f"     {fams}")
    return "\n".join(rows)


def _llm_length(p: dict) -> int:
    """The length a step's cost grows with: the prompt of a prefill, the context of a decode."""
    return int(p["tokens"] if p["phase"] == "prefill" else p["context"])


def format_llm_table(points: list[dict], fit: dict) -> str:
    """Returns the per-step table of an LLM profile (phase, batch, prompt or context length, measured
    median ms, fitted ms, error %), then the fitted coefficients and the worst and leave-one-out error."""
    coef = fit["coefficients"]
    rows = [f"{'phase':>8} {'batch':>5} {'prompt/ctx':>10} {'median ms':>10} {'fitted ms':>10} {'error %':>8}"]
    for p in points:
        f = predict_step_ms(coef, p["phase"], p["batch"], p["tokens"], p["context"])
        rows.append(f"{p['phase']:>8} {p['batch']:>5} {_llm_length(p):>10} {p['median_ms']:>10.4g} {f:>10.4g} "
                    f"{100 * (f / p['median_ms'] - 1):>+8.1f}")
    rows.append("fit: " + ", ".join(f"{k}={coef[k]:.4g}" for k in COEFS if k in coef)
                + f"; worst {100 * fit['max_error']:.1f}%, leave-one-out {100 * fit['loo_error']:.1f}%")
    return "\n".join(rows)


def plot_llm_fit(path: Path, points: list[dict], fit: dict, title: str) -> None:
    """Writes a plot (format from the suffix) of an LLM profile: step ms against batch size, one panel per
    phase and one colour per prompt (prefill) or context (decode) length; measured medians as markers
    (p10-p90 bars), the fitted cost model as lines."""
    plt = _pyplot()
    coef = fit["coefficients"]
    phases = [ph for ph in ("prefill", "decode") if any(p["phase"] == ph for p in points)]
    fig, axes = plt.subplots(1, len(phases), figsize=(6 * len(phases), 4.2), squeeze=False)
    for ax, phase in zip(axes[0], phases):
        pts = [p for p in points if p["phase"] == phase]
        lengths = sorted({_llm_length(p) for p in pts})
        colours = plt.cm.viridis(np.linspace(0, 0.9, len(lengths)))
        batches = np.array([p["batch"] for p in pts], float)
        grid = np.unique(np.round(np.geomspace(batches.min(), batches.max(), 60)))
        for length, colour in zip(lengths, colours):
            mine = sorted((p for p in pts if _llm_length(p) == length), key=lambda p: p["batch"])
            b = np.array([p["batch"] for p in mine], float)
            med = np.array([p["median_ms"] for p in mine])
            lo = med - np.array([p.get("p10_ms") or p["median_ms"] for p in mine])
            hi = np.array([p.get("p90_ms") or p["median_ms"] for p in mine]) - med
            ax.errorbar(b, med, yerr=[lo, hi], fmt="o", ms=4, capsize=2, color=colour,
                        label=f"{'prompt' if phase == 'prefill' else 'context'} {length}")
            tokens, context = (length, 0) if phase == "prefill" else (1, length)
            ax.plot(grid, [predict_step_ms(coef, phase, k, tokens, context) for k in grid], color=colour, lw=1.2)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch (sequences)")
        ax.set_ylabel("step time (ms)")
        ax.set_title(f"{phase}: measured median (markers), fitted (lines)", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle(f"{title}: worst {100 * fit['max_error']:.1f}%, leave-one-out {100 * fit['loo_error']:.1f}%",
                 fontsize=10)
    fig.tight_layout()
    _save(fig, path)
