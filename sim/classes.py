"""Request classes (`workload.classes`): each request belongs to one class, drawn by the classes' shares
from its own stream; a class has a priority (1 is the highest, as in Triton) and may have its own SLO
(and, for LLMs, its own token sizes). `class_sections` gives the summary's `classes: {NAME: {...}}`.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .stats import scalar_ci, slo_verdict, with_ci


def priority_levels(classes) -> list[int]:
    """Returns each class's priority level: 0 for the highest priority present, 1 for the next, ..."""
    distinct = sorted({c.priority for c in classes})
    return [distinct.index(c.priority) for c in classes]


class ClassDraws:
    """The class of each request id, drawn by share in blocks from `rng` (the same ids get the same classes
    whether they are drawn at once, for arrivals known ahead, or one by one, for closed-loop clients)."""

    BLOCK = 4096

    def __init__(self, classes, rng: np.random.Generator):
        p = np.array([c.share for c in classes], float)
        self.p = p / p.sum()
        self.rng = rng
        self.of: list[int] = []
        self.levels = priority_levels(classes)
        self.level: list[int] = []  # per request id, its class's priority level

    base = 0  # ids below were forgotten (a streaming run: forget_below)

    def upto(self, n: int) -> np.ndarray:
        """Returns the classes of request ids base..n-1 (int16; base is 0 unless a stream forgot some)."""
        while self.base + len(self.of) < n:
            block = self.rng.choice(self.p.size, size=self.BLOCK, p=self.p).tolist()
            self.of += block
            self.level += [self.levels[c] for c in block]
        return np.asarray(self.of[:n - self.base], np.int16)

    def forget_below(self, n: int) -> None:
        """Drops ids below n (a streaming run has routed them): memory stays bounded by the requests in flight."""
        k = min(max(n - self.base, 0), len(self.of))
        del self.of[:k]
        del self.level[:k]
        self.base += k


class LevelOf:
    """Request id -> priority level from ClassDraws that may forget ids already routed (`scale`: 2 where each
    priority has a queue of delayed requests beside it, timeout_action delay)."""

    def __init__(self, draws: ClassDraws, scale: int = 1):
        self.draws, self.scale = draws, scale

    def __getitem__(self, sid: int) -> int:
        d = self.draws
        if sid >= d.base + len(d.level):
            d.upto(sid + 1)
        return d.level[sid - d.base] * self.scale


def class_sections(classes, reps: list[dict], slo_of: Callable[[object], dict]) -> dict:
    """Returns {class name: section} for the measured requests of every replication.

    Each rep is a dict: `cls` (class per measured request), `values` ({summary key: per-request seconds,
    NaN where not served}), `rejected`/`timed_out` (bool per measured request), `completed` (count per class
    finishing in the measured window), `span_s` (that window). `slo_of(klass)` returns the targets (ms by
    summary key and percentile) that apply to a class: its own, else the scenario's. A section has the top
    level's per-request keys: requests, rejected, timed_out, offered_rps, throughput_rps, each value key with
    confidence intervals, and slo/slo_attainment when targets apply."""
    out = {}
    span = sum(r["span_s"] for r in reps)
    for ci, klass in enumerate(classes):
        sel = [r["cls"] == ci for r in reps]
        measured = sum(int(s.sum()) for s in sel)
        rejected = sum(int(r["rejected"][s].sum()) for r, s in zip(reps, sel))
        timed_out = sum(int(r["timed_out"][s].sum()) for r, s in zip(reps, sel))
        keys = list(reps[0]["values"])
        served = [s & np.isfinite(r["values"][keys[0]]) for r, s in zip(reps, sel)]
        n = sum(int(s.sum()) for s in served)
        sec = {"share": klass.share, "priority": klass.priority, "requests": n,
               "rejected": {"count": rejected, "fraction": rejected / measured if measured else 0.0},
               "timed_out": {"count": timed_out, "fraction": timed_out / measured if measured else 0.0},
               "unserved": measured - n - rejected - timed_out,
               "offered_rps": measured / span if span > 0 else math.nan}
        completed = [r["completed"][ci] for r in reps]
        sec["throughput_rps"] = sum(completed) / span if span > 0 else math.nan
        sec["throughput_rps_ci95"] = scalar_ci([c / r["span_s"] for c, r in zip(completed, reps)], sec["throughput_rps"])
        full = {}
        for key in keys:
            full[key] = [r["values"][key][s] for r, s in zip(reps, sel)]
            vals = [v[np.isfinite(v)] for v in full[key]]
            sec[key] = with_ci(vals) if sum(v.size for v in vals) else None
        targets = slo_of(klass)
        if targets:
            sec.update(_class_slo(targets, sec, full, keys[0]))
        out[klass.name] = sec
    return out


def _class_slo(targets: dict, sec: dict, full: dict, served_key: str) -> dict:
    """Returns slo {targets, met} and slo_attainment for one class: a request attains when it was served and
    every key is within its top percentile's target (a NaN TPOT, one output token, has nothing to miss);
    unserved, rejected and timed-out requests are misses. `full[key]` holds per replication the values of
    every measured request of the class (NaN where not served)."""
    checks, limits = class_checks(targets, sec, served_key)
    within, sizes = [], []
    for i, served in enumerate(full[served_key]):
        ok = np.isfinite(served)
        for key, limit in limits.items():
            v = full[key][i]
            ok &= (v <= limit) | (np.isnan(v) if key == "tpot_s" else False)
        within.append(float(ok.sum()) / served.size if served.size else math.nan)
        sizes.append(served.size)
    pooled = sum(w * m for w, m in zip(within, sizes) if m) / max(sum(sizes), 1)
    return {"slo": {"targets": checks, "met": all(c["met"] for c in checks.values())},
            "slo_attainment": pooled, "slo_attainment_ci95": scalar_ci([w for w in within if not math.isnan(w)], pooled)}


def class_checks(targets: dict, sec: dict, served_key: str) -> tuple[dict, dict]:
    """Returns (verdict per target, the limit in s each key's top percentile sets) for one class's section."""
    checks, limits = {}, {}
    for key, by_q in targets.items():
        for q, ms in by_q.items():
            stats = sec.get(key)
            name = q if key == "latency_s" else f"{key.removesuffix('_s')}_{q}"
            if stats is None or stats[q] != stats[q]:
                # no value: nobody was served (a miss), or no answer had a second token (TPOT: nothing to miss)
                none_served = sec[served_key] is None
                checks[name] = {"target_ms": ms, "achieved_ms": None, "met": not none_served,
                                "verdict": "missed" if none_served else "n/a"}
                continue
            checks[name] = slo_verdict(ms, stats[q], stats["ci95"].get(q))
        top = max(by_q, key=lambda q: -1 if q == "mean" else int(q[1:]))
        limits[key] = by_q[top] / 1000
    return checks, limits


def top_targets(slo) -> dict:
    """Returns a request-level Slo's targets as {"latency_s": {percentile: ms}} ({} when none)."""
    t = slo.targets_ms() if slo is not None else {}
    return {"latency_s": t} if t else {}


def llm_targets(slo) -> dict:
    """Returns an LLM Slo's targets as {"ttft_s": {"p99": ms}, "tpot_s": {...}} ({} when none)."""
    out: dict = {}
    if slo is not None and slo.ttft_p99_ms is not None:
        out["ttft_s"] = {"p99": slo.ttft_p99_ms}
    if slo is not None and slo.tpot_p99_ms is not None:
        out["tpot_s"] = {"p99": slo.tpot_p99_ms}
    return out


def pick_slo(klass, scenario_slo, targets: Callable) -> dict:
    """Returns the class's own targets, else the scenario's."""
    own = targets(getattr(klass, "slo", None))
    return own if own else targets(scenario_slo)


__all__ = ["ClassDraws", "class_sections", "llm_targets", "pick_slo", "priority_levels", "top_targets"]
