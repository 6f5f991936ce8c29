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


def predict_step_ms(coefficients: dict, phase: str, batch: float, tokens: float, context: float) -> float:
    """Returns the fitted time in ms of one step (see `features`) under `coefficients` (COEFS -> ms)."""
    return float(sum(coefficients[k] * x for k, x in zip(COEFS, features(phase, batch, tokens, context))))


def nnls_fit(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Returns non-negative coefficients minimising relative squared error (Lawson-Hanson active set)."""
    w = 1 / y
    A, b = X * w[:, None], y * w
    n = A.shape[1]
    x = np.zeros(n)
    passive = np.zeros(n, bool)
    for _ in range(3 * n):
        grad = A.T @ (b - A @ x)
        if passive.all() or grad[~passive].max(initial=0) <= 1e-12 * max(1.0, np.abs(grad).max()):
            break
        passive[np.argmax(np.where(passive, -np.inf, grad))] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(A[:, passive], b, rcond=None)[0]
            if (z[passive] > 0).all():
                x = z
                break
            neg = passive & (z <= 0)
            alpha = np.min(x[neg] / (x[neg] - z[neg]))
            x = x + alpha * (z - x)
            passive &= x > 1e-15
            x[~passive] = 0.0
    return x


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
