"""Records (`--write`) or checks the golden outputs of every case in tests/golden/cases.py: summary.json (its
numbers and texts), the request table, the step (or batch) table, windows and autoscaler lives, per case one
JSON and one compressed .npz in tests/golden/data/. `python -m tests.golden.record` lists the cases that differ.

The goldens pin the outputs of the simulator as it was before the single simulation core (issue 17): the
core must reproduce each within 1e-9 relative (test_golden.py); a case that changes on purpose is re-recorded
with the reason in the commit."""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

import sim

from .cases import cases

DATA = Path(__file__).resolve().parent / "data"
# summary keys that describe the code rather than the simulated run
SKIP_KEYS = {"format", "version", "scenario_hash"}


def run_case(raw: dict, base: Path):
    """Returns (summary, arrays) of one case: arrays named req.*, step.*, win.*, life.*."""
    scenario = sim.validate(raw, "<golden>", base)
    result = sim.run(scenario)
    arrays: dict = {}
    if not scenario.streaming:
        frame = result.requests
        for col in frame.columns:
            arrays[f"req.{col}"] = _column(frame[col])
        for rep, log in enumerate(result.logs):
            for key, values in steps(log).items():
                arrays[f"step.{rep}.{key}"] = values
            for key, values in lives(getattr(log, "scaling", None)).items():
                arrays[f"life.{rep}.{key}"] = values
    if scenario.outputs.window_s is not None:
        w = result.windows
        for col in w.columns:
            arrays[f"win.{col}"] = _column(w[col])
    summary = {k: v for k, v in json.loads(json.dumps(_plain(result.summary))).items() if k not in SKIP_KEYS}
    return summary, arrays


def _column(series) -> np.ndarray:
    if str(series.dtype) in ("category", "object"):
        return series.astype(str).to_numpy().astype("U")
    return series.to_numpy()


def steps(log) -> dict:
    """Returns the log's step (LLM) or batch (request-level) table, ordered by replica and start time, so that
    the order the engine wrote rows in does not matter."""
    if hasattr(log, "step_start_s"):
        cols = {"start_s": log.step_start_s, "dur_s": log.step_s, "prefill": log.step_prefill_tokens,
                "decode": log.step_decode_tokens, "slots": log.step_decode_slots, "kv": log.step_kv_used,
                "running": log.step_running, "waiting": log.step_waiting, "replica": log.step_replica}
        for extra in ("step_count", "step_kv_peak"):
            if getattr(log, extra, None) is not None:
                cols[extra] = getattr(log, extra)
    else:
        cols = {"start_s": log.dispatch_s, "end_s": log.completion_s, "size": log.size, "replica": log.replica,
                "dur_s": log.step_s}
    cols = {k: np.asarray(v) for k, v in cols.items() if v is not None}
    rep = cols.get("replica")
    order = np.lexsort((cols["dur_s"], cols["start_s"], rep)) if rep is not None and rep.size == cols["start_s"].size else \
        np.argsort(cols["start_s"], kind="stable")
    return {k: v[order] if v.size == order.size else v for k, v in cols.items()}


def lives(scaling) -> dict:
    if not scaling:
        return {}
    lv = np.asarray(scaling["lives"], float).reshape(-1, 4)
    lv = lv[np.lexsort((lv[:, 1], lv[:, 0]))] if lv.size else lv
    return {"lives": lv, "counts": np.asarray([scaling["decisions"], scaling["scale_ups"], scaling["scale_downs"]],
                                             float)}


def _plain(x):
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return v if math.isfinite(v) else repr(v)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def differences(name: str, summary: dict, arrays: dict, rel: float = 1e-9) -> list[str]:
    """Returns what differs between a case's outputs and its recorded golden (empty: equal within `rel`)."""
    want_summary = json.loads((DATA / f"{name}.json").read_text())
    with np.load(DATA / f"{name}.npz") as z:
        want = {k: z[k] for k in z.files}
    out = compare_values(want_summary, summary, "summary", rel)
    for key in sorted(set(want) | set(arrays)):
        if key not in arrays:
            out.append(f"{key}: missing")
            continue
        if key not in want:
            continue  # a column the core adds (as summary keys: new ones may be added)
        a, b = want[key], np.asarray(arrays[key])
        if a.shape != b.shape:
            out.append(f"{key}: shape {b.shape}, golden {a.shape}")
        elif a.dtype.kind in "fc":
            bad = ~np.isclose(b.astype(float), a, rtol=rel, atol=0, equal_nan=True)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                out.append(f"{key}: {int(bad.sum())} of {a.size} differ, first at {i}: {b.flat[i]!r} vs {a.flat[i]!r}")
        elif not np.array_equal(a, b):
            i = int(np.flatnonzero(a != b)[0])
            out.append(f"{key}: differs first at {i}: {b.flat[i]!r} vs {a.flat[i]!r}")
    return out


def compare_values(want, got, path: str, rel: float) -> list[str]:
    if isinstance(want, dict) and isinstance(got, dict):
        out = []
        for k in sorted(set(want) | set(got)):
            if k not in got:
                out.append(f"{path}.{k}: missing")
            elif k in want:
                out += compare_values(want[k], got[k], f"{path}.{k}", rel)
            # keys the core adds are allowed (the issue: new keys may be added)
        return out
    if isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            return [f"{path}: {len(got)} items, golden {len(want)}"]
        return [d for i, (a, b) in enumerate(zip(want, got)) for d in compare_values(a, b, f"{path}.{i}", rel)]
    if isinstance(want, bool) or isinstance(got, bool) or not isinstance(want, (int, float)) \
            or not isinstance(got, (int, float)):
        return [] if want == got else [f"{path}: {got!r}, golden {want!r}"]
    if math.isclose(want, got, rel_tol=rel, abs_tol=1e-300) or want == got:
        return []
    return [f"{path}: {got!r}, golden {want!r}"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="record the goldens (overwrites tests/golden/data)")
    ap.add_argument("names", nargs="*", help="cases to record or check (default: all)")
    args = ap.parse_args(argv)
    DATA.mkdir(exist_ok=True)
    failed = 0
    for name, (raw, base) in cases().items():
        if args.names and name not in args.names:
            continue
        summary, arrays = run_case(raw, base)
        if args.write:
            (DATA / f"{name}.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
            np.savez_compressed(DATA / f"{name}.npz", **arrays)
            n = arrays.get("req.request_id", np.empty(0)).size
            print(f"{name}: {n} request rows, {len(arrays)} arrays")
        else:
            diff = differences(name, summary, arrays)
            failed += bool(diff)
            print(f"{name}: {'ok' if not diff else 'DIFFERS'}")
            for line in diff[:10]:
                print("   ", line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
