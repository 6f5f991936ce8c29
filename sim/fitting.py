"""Fitting step time against batch size (numpy only: the profiler imports this on machines without simpy).

Families, all fitted to median step times with relative (1/y) weights:
  affine     h(k) = a + b k
  piecewise  h(k) = max(a1 + b1 k, a2 + b2 k): flat-ish while memory-bound, then linear (a convex hinge)
  table      monotone PCHIP interpolation through the measured medians
The family is chosen by leave-one-out cross-validation error (mean |relative error| on held-out batch
sizes); a family whose in-sample error exceeds MAX_FIT_ERROR at any measured point is not chosen, and a
simpler family is kept unless a more complex one cuts the held-out error by more than 1 - SIMPLER_MARGIN.
`choose_family` applies these rules and says which one decided (FitReport.reason).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FAMILIES = ("affine", "piecewise", "table")
MAX_FIT_ERROR = 0.05
# a simpler family wins unless a more complex one cuts the held-out error by more than this factor
SIMPLER_MARGIN = 0.9


def pchip(x: np.ndarray, y: np.ndarray, xq: np.ndarray) -> np.ndarray:
    """Returns the shape-preserving (Fritsch-Carlson) cubic interpolant of (x, y) at xq; flat outside [x0, xn]."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    xq = np.clip(np.asarray(xq, dtype=float), x[0], x[-1])
    if x.size == 1:
        return np.full(xq.shape, y[0])
    h = np.diff(x)
    delta = np.diff(y) / h
    d = np.zeros_like(y)
    if x.size == 2:
        d[:] = delta[0]
    else:
        w1 = 2 * h[1:] + h[:-1]
        w2 = h[1:] + 2 * h[:-1]
        same = delta[:-1] * delta[1:] > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            harm = (w1 + w2) / (w1 / delta[:-1] + w2 / delta[1:])
        d[1:-1] = np.where(same, harm, 0.0)
        d[0] = _end_slope(h[0], h[1], delta[0], delta[1])
        d[-1] = _end_slope(h[-1], h[-2], delta[-1], delta[-2])
    i = np.clip(np.searchsorted(x, xq, side="right") - 1, 0, x.size - 2)
    t = (xq - x[i]) / h[i]
    h00 = (1 + 2 * t) * (1 - t) ** 2
    h10 = t * (1 - t) ** 2
    h01 = t * t * (3 - 2 * t)
    h11 = t * t * (t - 1)
    return h00 * y[i] + h10 * h[i] * d[i] + h01 * y[i + 1] + h11 * h[i] * d[i + 1]


def _end_slope(h0, h1, m0, m1):
    d = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
    if np.sign(d) != np.sign(m0):
        return 0.0
    if np.sign(m0) != np.sign(m1) and abs(d) > abs(3 * m0):
        return 3 * m0
    return d


def _wls(X: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    sw = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(X * sw[:, None], y * sw, rcond=None)
    return coef


def fit_affine(k, y) -> dict:
    """Returns {'a_ms', 'b_ms'} of the relative-error least-squares line a + b k."""
    k, y = np.asarray(k, float), np.asarray(y, float)
    if k.size == 1:
        return {"a_ms": float(y[0]), "b_ms": 0.0}
    a, b = _wls(np.column_stack([np.ones_like(k), k]), y, 1 / y ** 2)
    return {"a_ms": float(a), "b_ms": float(b)}


def fit_piecewise(k, y) -> dict:
    """Returns {'a1_ms','b1_ms','a2_ms','b2_ms'} of max(a1 + b1 k, a2 + b2 k), searched over the kink position."""
    k, y = np.asarray(k, float), np.asarray(y, float)
    w = 1 / y ** 2
    best = None
    if k.size >= 4:
        lo, hi = k.min(), k.max()
        cands = np.unique(np.concatenate([k[1:-1], np.geomspace(max(lo, 1e-9), hi, 120)[1:-1]]))
        for c in cands:
            X = np.column_stack([np.ones_like(k), k, np.maximum(0.0, k - c)])
            coef = _wls(X, y, w)
            if coef[2] < 0:
                continue
            sse = float((w * (X @ coef - y) ** 2).sum())
            if best is None or sse < best[0]:
                best = (sse, c, coef)
    if best is None:  # too few points or no convex kink: a single line
        aff = fit_affine(k, y)
        return {"a1_ms": aff["a_ms"], "b1_ms": aff["b_ms"], "a2_ms": aff["a_ms"], "b2_ms": aff["b_ms"]}
    _, c, (a, b1, d) = best
    return {"a1_ms": float(a), "b1_ms": float(b1), "a2_ms": float(a - d * c), "b2_ms": float(b1 + d)}


def fit_table(k, y) -> dict:
    """Returns {'batch_sizes', 'step_ms'}: the measured medians, interpolated by PCHIP."""
    return {"batch_sizes": [int(v) for v in k], "step_ms": [float(v) for v in y]}


FITTERS = {"affine": fit_affine, "piecewise": fit_piecewise, "table": fit_table}


def predict_ms(family: str, params: dict, k) -> np.ndarray:
    """Returns the fitted step time in ms at batch sizes k."""
    k = np.asarray(k, float)
    if family == "affine":
        return params["a_ms"] + params["b_ms"] * k
    if family == "piecewise":
        return np.maximum(params["a1_ms"] + params["b1_ms"] * k, params["a2_ms"] + params["b2_ms"] * k)
    if family == "table":
        return pchip(np.asarray(params["batch_sizes"], float), np.asarray(params["step_ms"], float), k)
    raise ValueError(f"unknown fit family {family!r}; allowed: {', '.join(FAMILIES)}")


def loo_error(family: str, k, y) -> float:
    """Returns the leave-one-out mean |relative error| of `family` (nan with fewer than 3 points)."""
    k, y = np.asarray(k, float), np.asarray(y, float)
    if k.size < 3:
        return float("nan")
    errs = []
    for i in range(k.size):
        keep = np.arange(k.size) != i
        params = FITTERS[family](k[keep], y[keep])
        errs.append(abs(float(predict_ms(family, params, k[i:i + 1])[0]) / y[i] - 1))
    return float(np.mean(errs))


@dataclass
class FamilyFit:
    family: str
    params: dict
    loo_error: float           # mean |relative error| on held-out batch sizes
    max_error: float           # worst |relative error| at a measured batch size (in-sample)


@dataclass
class FitReport:
    chosen: str
    fits: dict[str, FamilyFit] = field(default_factory=dict)
    reason: str = ""           # which rule chose `chosen`, with the numbers (see choose_family)

    @property
    def best(self) -> FamilyFit:
        return self.fits[self.chosen]

    def to_dict(self) -> dict:
        return {"chosen": self.chosen, "reason": self.reason,
                "families": {n: {"params": f.params, "loo_error": _clean(f.loo_error), "max_error": _clean(f.max_error)}
                             for n, f in self.fits.items()}}


def _clean(x: float):
    return None if x != x else float(x)


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def choose_family(fits: dict[str, FamilyFit]) -> tuple[str, str]:
    """Returns (chosen family, reason): the family with the lowest leave-one-out error among those within
    MAX_FIT_ERROR at every measured point, a simpler one kept unless a more complex one's error is below
    SIMPLER_MARGIN times its own; table when none qualifies. The reason names the deciding rule and numbers."""
    order = [fits[n] for n in FAMILIES if n in fits]  # simple -> complex
    cross_validated = [f for f in order if f.loo_error == f.loo_error]
    ok = [f for f in cross_validated if f.max_error <= MAX_FIT_ERROR]
    limit = f"{MAX_FIT_ERROR:.0%}"

    def misses(f: FamilyFit) -> str:
        return f"misses a measured point by {_pct(f.max_error)} (> {limit})"

    if not cross_validated:
        return "table", ("fewer than 3 batch sizes: no leave-one-out error to compare families by, "
                         "so table interpolates the measured points")
    if not ok:
        return "table", ("no family qualifies (" + "; ".join(f"{f.family} {misses(f)}" for f in cross_validated)
                         + "): table interpolates the measured points")
    chosen = ok[0]
    for f in ok[1:]:
        if f.loo_error < SIMPLER_MARGIN * chosen.loo_error:
            chosen = f
    lowest = min(cross_validated, key=lambda f: f.loo_error)
    parts = []
    if lowest is chosen:
        parts.append(f"{chosen.family} has the lowest leave-one-out error ({_pct(chosen.loo_error)}) and is within "
                     f"{limit} at every measured point (worst {_pct(chosen.max_error)})")
    elif lowest not in ok:
        parts.append(f"{lowest.family} has the lowest leave-one-out error ({_pct(lowest.loo_error)}) but {misses(lowest)}")
    for f in cross_validated:
        if f is chosen or (f is lowest and lowest not in ok):  # already said above
            continue
        if f not in ok:
            parts.append(f"{f.family} {misses(f)}")
        elif f.loo_error < chosen.loo_error:  # only a more complex family that was not enough better
            parts.append(f"{f.family}'s leave-one-out error ({_pct(f.loo_error)}) is below {chosen.family}'s "
                         f"({_pct(chosen.loo_error)}) by less than {1 - SIMPLER_MARGIN:.0%}, so the simpler "
                         f"{chosen.family} is kept")
    if lowest is not chosen:
        parts.append(f"{chosen.family} is within {limit} at every measured point (worst {_pct(chosen.max_error)}; "
                     f"leave-one-out {_pct(chosen.loo_error)})")
    return chosen.family, "; ".join(parts)


def fit_all(k, y) -> FitReport:
    """Fits every family to (batch size, median ms) and chooses one (see choose_family); returns the report."""
    k = np.asarray(k, float)
    y = np.asarray(y, float)
    if k.size == 0:
        raise ValueError("fit_all needs at least one measured batch size")
    order = np.argsort(k)
    k, y = k[order], y[order]
    fits = {}
    for fam in FAMILIES:
        params = FITTERS[fam](k, y)
        max_err = float(np.max(np.abs(predict_ms(fam, params, k) / y - 1)))
        fits[fam] = FamilyFit(fam, params, loo_error(fam, k, y), max_err)
    chosen, reason = choose_family(fits)
    return FitReport(chosen, fits, reason)
