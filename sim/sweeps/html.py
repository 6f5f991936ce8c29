"""report.html for sweeps and plans: one self-contained file that works offline.

Figures are inline SVG from matplotlib (glyphs as paths: no font or network needed), the page's CSS and the
table-sorting script are inline too. Sections: the throughput-latency curve across batch sizes (one line per
policy, p50 and p99 with their interval bands, the SLO line, the sweet spot), cost against p99 with the
Pareto front, an SLO-attainment heat map over two grid axes, a sortable table of every point, the scenario and
the provenance."""
from __future__ import annotations

import datetime as dt
import html
import io
import json
import math
from typing import Optional

import numpy as np
import pandas as pd

from .. import __version__

CSS = """body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1180px;
color:#1d2430;padding:0 16px}h1{font-size:22px}h2{font-size:17px;margin-top:30px;border-bottom:1px solid #dde;
padding-bottom:4px}figure{margin:8px 0}svg{max-width:100%;height:auto}table{border-collapse:collapse;font-size:12px}
th,td{padding:3px 8px;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}th{cursor:pointer;
background:#f3f5f9;position:sticky;top:0}th.sorted-asc::after{content:" \\25B2"}th.sorted-desc::after{content:" \\25BC"}
td:first-child,th:first-child{text-align:left}.note{color:#555}.bad{color:#b00020}.ok{color:#0a7a30}
pre{background:#f6f8fa;padding:10px;overflow:auto;font-size:12px}.wrap{overflow:auto;max-height:560px}"""

# sorts a table by the clicked column (numbers numerically, "-" last); `?sort=N` or `#sort=N` sorts on load
JS = """(function(){function key(td){var t=td.getAttribute('data-v');if(t===null)t=td.textContent;
var x=parseFloat(t);return isNaN(x)?[1,t]:[0,x]}
function sortBy(table,col,dir){var tb=table.tBodies[0],rows=Array.prototype.slice.call(tb.rows);
rows.sort(function(a,b){var x=key(a.cells[col]),y=key(b.cells[col]);if(x[0]!==y[0])return x[0]-y[0];
return (x[1]<y[1]?-1:x[1]>y[1]?1:0)*dir});rows.forEach(function(r){tb.appendChild(r)});
Array.prototype.forEach.call(table.tHead.rows[0].cells,function(th,i){th.className=i===col?(dir>0?'sorted-asc':'sorted-desc'):''});
table.setAttribute('data-sorted',col+':'+dir)}
document.querySelectorAll('table.sortable').forEach(function(table){
Array.prototype.forEach.call(table.tHead.rows[0].cells,function(th,i){th.addEventListener('click',function(){
var cur=table.getAttribute('data-sorted');sortBy(table,i,cur===i+':1'?-1:1)})})});
var m=/[?#&]sort=(\\d+)/.exec(location.search+location.hash);if(m){var t=document.querySelector('table.sortable');
if(t)sortBy(t,parseInt(m[1],10),1)}})();"""


def _svg(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    # no metadata: the page then names no outside address at all (only the xmlns identifiers of SVG itself)
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Creator": None, "Date": None, "Format": None,
                                                                   "Type": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "path"  # glyphs as paths: no fonts needed to view it
    import matplotlib.pyplot as plt
    return plt


def _latency_stat(table: pd.DataFrame) -> str:
    return "latency_s" if "latency_s.p99" in table.columns else "e2e_s" if "e2e_s.p99" in table.columns else ""


def _slo_target_ms(slo: dict, stat: str, q: str) -> Optional[float]:
    if stat == "latency_s":
        return slo.get(f"latency_{q}_ms")
    return slo.get("ttft_p99_ms") if q == "p99" and stat == "ttft_s" else None


def _along_key(keys: list[str]) -> Optional[str]:
    """The grid key that runs along each line: the arrival rate (a latency-load curve per configuration),
    else the batch size, else the first key."""
    for suffix in ("rate_rps", "speedup", "max_batch_size"):
        for k in keys:
            if k.endswith(suffix):
                return k
    return keys[0] if keys else None


def throughput_latency(table: pd.DataFrame, keys: list[str], slo: dict) -> str:
    """Returns the SVG of latency against throughput, one line per configuration of the other grid keys."""
    stat = _latency_stat(table)
    along = _along_key(keys)
    if not stat or along is None:
        return ""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.5, 4.8))
    others = [k for k in keys if k != along]
    groups = table.groupby(others, sort=False) if others else [((), table)]
    for i, (vals, g) in enumerate(groups):
        g = g.sort_values(along)
        label = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in zip(others, vals if isinstance(vals, tuple) else (vals,)))
        color = f"C{i % 10}"
        x = g["throughput_rps"].to_numpy()
        for q, style in (("p50", ":"), ("p99", "-")):
            y = g[f"{stat}.{q}"].to_numpy() * 1000
            ax.plot(x, y, style, color=color, marker="o", ms=3, lw=1.4, label=(label or "all") if q == "p99" else None)
            lo, hi = g[f"{stat}.{q}.ci_lo"].to_numpy() * 1000, g[f"{stat}.{q}.ci_hi"].to_numpy() * 1000
            if np.isfinite(lo).any():
                ax.fill_between(x, lo, hi, color=color, alpha=0.15, lw=0)
        bad = ~g["stable"].to_numpy(bool)
        if bad.any():  # latencies of an unstable run grow with its length: marked, not to be read
            ax.plot(x[bad], g[f"{stat}.p99"].to_numpy()[bad] * 1000, "x", color="k", ms=7,
                    label="unstable" if i == 0 else None)

    target = _slo_target_ms(slo, stat, "p99")
    if target:
        ax.axhline(target, color="#b00020", ls="--", lw=1)
        ax.text(ax.get_xlim()[0], target, f" SLO p99 {target:g} ms", color="#b00020", va="bottom", fontsize=8)
        ok = table[(table.get("slo_met", True) == True) & table["stable"]]  # noqa: E712
        if len(ok):
            best = ok.loc[ok["throughput_rps"].idxmax()]
            ax.plot([best["throughput_rps"]], [best[f"{stat}.p99"] * 1000], marker="*", ms=16, color="#f0a000",
                    mec="k", zorder=5, label="sweet spot (most throughput meeting the SLO)")
    ax.set_yscale("log")
    ax.set_xlabel("throughput (requests/s)")
    ax.set_ylabel(f"{stat[:-2]} latency (ms, log)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2 if len(ax.get_legend_handles_labels()[0]) > 8 else 1, loc="upper left")
    ax.set_title(f"latency vs throughput, one line per configuration along {along.split('.')[-1]}; "
                 "p99 solid, p50 dotted, 95% bands", fontsize=10)
    return _svg(fig)


def pareto(table: pd.DataFrame) -> str:
    """Returns the SVG of p99 latency against cost per million requests, the Pareto front drawn."""
    stat = _latency_stat(table)
    if not stat or "cost_per_million_requests" not in table or not table["cost_per_million_requests"].notna().any():
        return ""
    d = table[table["cost_per_million_requests"].notna() & table["stable"]]
    if d.empty:
        return ""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    x, y = d["cost_per_million_requests"].to_numpy(), d[f"{stat}.p99"].to_numpy() * 1000
    ax.scatter(x, y, s=18, color="#667", label="points (stable)")
    order = np.argsort(x)
    front, best = [], math.inf
    for i in order:
        if y[i] < best:
            front.append(i)
            best = y[i]
    ax.plot(x[front], y[front], "-o", color="#d04000", ms=5, lw=1.5, label="Pareto front")
    ax.set_xlabel("cost ($ per million requests)")
    ax.set_ylabel(f"{stat[:-2]} p99 (ms)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title("cost against tail latency")
    return _svg(fig)


def heatmap(table: pd.DataFrame, keys: list[str]) -> str:
    """Returns the SVG of SLO attainment over the first two grid axes (other keys: their worst point)."""
    if len(keys) < 2 or "slo_attainment" not in table:
        return ""
    a, b = keys[0], keys[1]
    pivot = table.pivot_table(index=a, columns=b, values="slo_attainment", aggfunc="min")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.2 + 0.8 * pivot.shape[1], 1.2 + 0.5 * pivot.shape[0]))
    im = ax.imshow(pivot.to_numpy(), cmap="RdYlGn", vmin=0.9, vmax=1.0, aspect="auto")
    ax.set_xticks(range(pivot.shape[1]), [str(c) for c in pivot.columns], fontsize=8, rotation=45)
    ax.set_yticks(range(pivot.shape[0]), [str(i) for i in pivot.index], fontsize=8)
    for (i, j), v in np.ndenumerate(pivot.to_numpy()):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.1%}", ha="center", va="center", fontsize=7)
    ax.set_xlabel(b.split(".")[-1])
    ax.set_ylabel(a.split(".")[-1])
    fig.colorbar(im, ax=ax, label="SLO attainment (0.9 .. 1)")
    ax.set_title("SLO attainment" + (" (worst over the other keys)" if len(keys) > 2 else ""))
    return _svg(fig)


def _table_html(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for _, r in frame.iterrows():
        cells = []
        for v in r:
            if isinstance(v, (float, np.floating)):
                cells.append(f'<td data-v="{float(v)!r}">{"-" if not np.isfinite(v) else f"{v:.6g}"}</td>')
            else:
                cells.append(f"<td>{html.escape(str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="wrap"><table class="sortable" id="points"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _page(title: str, sections: list[tuple[str, str]], scenario: dict, provenance: dict) -> str:
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
             f"<meta name=viewport content='width=device-width,initial-scale=1'><style>{CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    for head, body in sections:
        if body:
            parts.append(f"<h2>{html.escape(head)}</h2>{body}")
    parts.append("<h2>Scenario</h2><pre>" + html.escape(json.dumps(scenario, indent=2)) + "</pre>")
    parts.append("<h2>Provenance</h2><pre>" + html.escape(json.dumps(provenance, indent=2)) + "</pre>")
    parts.append(f"<script>{JS}</script></body></html>")
    return "".join(parts)


def provenance(scenario_path: str, extra: dict) -> dict:
    """Returns what produced a report: servesim version, scenario file, profiles used, date (UTC)."""
    return {"servesim": __version__, "scenario": str(scenario_path),
            "created_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), **extra}


def sweep_report(table: pd.DataFrame, keys: list[str], slo: dict, scenario: dict, prov: dict) -> str:
    """Returns report.html for a sweep."""
    shown = table.drop(columns=["point"])
    sections = [("Latency against throughput", throughput_latency(table, keys, slo)),
                ("Cost against p99", pareto(table)),
                ("SLO attainment", heatmap(table, keys)),
                (f"Every point ({len(table)}; click a column to sort)", _table_html(shown))]
    return _page(f"servesim sweep: {scenario.get('name', '')}", sections, scenario, prov)


def plan_report(result: dict, keys: list[str], scenario: dict, prov: dict) -> str:
    """Returns report.html for a plan: the ranked configurations, their rate and cost, and the choice."""
    rows = []
    for c in result["configs"]:
        rows.append({**{k: c["values"].get(k) for k in keys}, "max_rate_rps": c["max_rate_rps"],
                     "min_rate_rps": c["min_rate_rps"], "cost_per_hour": c["cost_per_hour"],
                     "cost_per_million_requests": c["cost_per_million_requests"], "note": c["note"]})
    frame = pd.DataFrame(rows).astype({"max_rate_rps": float, "min_rate_rps": float, "cost_per_hour": float,
                                        "cost_per_million_requests": float})
    chart = ""
    if frame["max_rate_rps"].notna().any():
        plt = _plt()
        fig, ax = plt.subplots(figsize=(7.5, 0.6 + 0.32 * len(frame)))
        labels = [", ".join(f"{k.split('.')[-1]}={c['values'].get(k)}" for k in keys) or "scenario"
                  for c in result["configs"]]
        ax.barh(range(len(frame)), frame["max_rate_rps"].fillna(0), color="#4a7bd0")
        ax.set_yticks(range(len(frame)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("largest rate meeting the SLO with 95% confidence (rps)")
        ax.grid(alpha=0.3, axis="x")
        chart = _svg(fig)
    slo = ", ".join(f"{k} {v:g}" for k, v in result["slo"].items())
    choice = ""
    if "target_rate_rps" in result:
        best = result.get("best")
        who = ", ".join(f"{k}={v}" for k, v in (best or {}).get("values", {}).items()) or "the scenario"
        choice = (f"<p>At {result['target_rate_rps']:g} rps: <b>{html.escape(who if best else 'nothing meets the SLO')}"
                  f"</b>. {html.escape(result.get('why', ''))}</p>")
    sections = [("Plan", f"<p>SLO: {html.escape(slo)}; {html.escape(result['rule'])}.</p>{choice}"),
                ("Largest rate per configuration", chart),
                (f"Configurations ({len(frame)}; ranked by cost per million requests; click to sort)",
                 _table_html(frame))]
    return _page(f"servesim plan: {scenario.get('name', '')}", sections, scenario, prov)
