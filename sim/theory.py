"""Closed-form and numerically exact queueing results the simulator is checked against.

All times in seconds, rates in requests per second.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np


def md1_mean_latency_s(rate_rps: float, service_s: float) -> float:
    """M/D/1 mean time in system: D + lambda D^2 / (2 (1 - rho))."""
    rho = rate_rps * service_s
    if rho >= 1:
        return math.inf
    return service_s + rate_rps * service_s ** 2 / (2 * (1 - rho))


def mg1_mean_latency_s(rate_rps: float, mean_s: float, second_moment_s2: float) -> float:
    """M/G/1 mean time in system (Pollaczek-Khinchine): E[S] + lambda E[S^2] / (2 (1 - rho))."""
    rho = rate_rps * mean_s
    if rho >= 1:
        return math.inf
    return mean_s + rate_rps * second_moment_s2 / (2 * (1 - rho))


def _poisson_pmf(mean: float, n: int) -> np.ndarray:
    k = np.arange(n)
    logp = -mean + k * math.log(mean) - np.array([math.lgamma(i + 1) for i in k]) if mean > 0 else None
    if logp is None:
        p = np.zeros(n)
        p[0] = 1.0
        return p
    return np.exp(logp)


def bulk_service_mean_latency_s(rate_rps: float, max_batch: int, step_s: Callable[[int], float],
                                states: int | None = None) -> float:
    """Mean time in system of the bulk-service queue M/D^(1,B)/1 (serve min(Q, B) waiting at once,
    deterministic batch time h(k), no waiting for a fuller batch), from the embedded Markov chain at
    batch starts: E[W] = E[Q h(K) + lambda h(K)^2 / 2] / E[K], K = min(Q, B).

    The chain's state is the number waiting Q >= 1 at a batch start; after a batch Q' = Q - K + A with
    A ~ Poisson(lambda h(K)); Q' = 0 means the server idles until the next arrival, which starts a batch of 1.
    """
    if rate_rps * step_s(max_batch) >= max_batch:
        return math.inf
    n = states or max(4 * max_batch, int(20 * rate_rps * step_s(max_batch)) + 4 * max_batch + 200)
    P = np.zeros((n + 1, n + 1))  # states 1..n (index 0 unused)
    for q in range(1, n + 1):
        k = min(q, max_batch)
        pmf = _poisson_pmf(rate_rps * step_s(k), n + 1)
        nxt = q - k + np.arange(n + 1)
        nxt = np.maximum(nxt, 1)
        nxt = np.minimum(nxt, n)
        np.add.at(P[q], nxt, pmf)
        P[q, n] += max(0.0, 1.0 - pmf.sum())
    M = P[1:, 1:]
    # stationary distribution: solve pi (M - I) = 0 with sum(pi) = 1
    A = np.vstack([(M - np.eye(n)).T, np.ones(n)])
    b = np.zeros(n + 1)
    b[-1] = 1.0
    pi = np.linalg.lstsq(A, b, rcond=None)[0]
    q = np.arange(1, n + 1)
    k = np.minimum(q, max_batch)
    h = np.array([step_s(int(x)) for x in k])
    return float((pi * (q * h + rate_rps * h * h / 2)).sum() / (pi * k).sum())
