"""Fitting the LLM step-cost model to measured prefill and decode steps (numpy only: the profiler uses it
on GPU hosts without simpy or pydantic)."""
from __future__ import annotations

import numpy as np


def features(phase: str, batch: float, tokens: float, context: float) -> list[float]:
    """Returns the LLM cost model's features of one step:
    [1, prefill tokens, prefill attention pairs, prefill chunks (sequences), decode seqs, decode context].
    A prefill point of `batch` sequences is `batch` chunks of `tokens` each, starting at position 0."""
    if phase == "prefill":
        return [1.0, batch * tokens, batch * tokens * (tokens + 1) / 2, batch, 0.0, 0.0]
    return [1.0, 0.0, 0.0, 0.0, batch, batch * context]


COEFS = ("base_ms", "prefill_token_ms", "prefill_attention_ms", "prefill_seq_ms", "decode_seq_ms", "decode_context_ms")


def nnls_fit(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Returns non-negative coefficients minimising relative squared error (small active-set loop)."""
    w = 1 / y
    active = list(range(X.shape[1]))
    coef = np.zeros(X.shape[1])
    while active:
        sol, *_ = np.linalg.lstsq(X[:, active] * w[:, None], y * w, rcond=None)
        if (sol >= 0).all():
            coef[:] = 0
            coef[active] = sol
            return coef
        active.pop(int(np.argmin(sol)))
    return coef


def fit_llm(points: list[dict]) -> dict:
    """Fits COEFS to measured medians; returns {coefficients, max_error, loo_error}."""
    X = np.array([features(p["phase"], p["batch"], p["tokens"], p["context"]) for p in points])
    y = np.array([p["median_ms"] for p in points])
    coef = nnls_fit(X, y)
    err = np.abs(X @ coef / y - 1)
    loo = []
    for i in range(len(points)):
        keep = np.arange(len(points)) != i
        c = nnls_fit(X[keep], y[keep])
        loo.append(abs(float(X[i] @ c) / y[i] - 1))
    return {"coefficients": dict(zip(COEFS, map(float, coef))), "max_error": float(err.max()),
            "mean_error": float(err.mean()), "loo_error": float(np.mean(loo))}
