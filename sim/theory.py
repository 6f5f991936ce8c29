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


def md1_wait_cdf(rate_rps: float, service_s: float, t_s: float) -> float:
    """M/D/1 waiting-time CDF P(Wq <= t) (Erlang 1909 / Crommelin):
    (1 - rho) sum_{k=0}^{floor(t/D)} (lambda (k D - t))^k / k! e^{-lambda (k D - t)}.

    The sum alternates in sign; in double precision it is exact enough up to t/D of about 25 (refused beyond)."""
    if t_s / service_s > 25:
        raise ValueError("t/D beyond 25: the alternating sum needs high-precision arithmetic")
    rho = rate_rps * service_s
    terms = []
    for k in range(int(t_s / service_s) + 1):
        x = rate_rps * (k * service_s - t_s)
        terms.append(x ** k / math.factorial(k) * math.exp(-x))
    return (1 - rho) * math.fsum(terms)


def md1_latency_quantile_s(rate_rps: float, service_s: float, p: float) -> float:
    """Returns the p-quantile of M/D/1 time in system (wait + D), by bisection on md1_wait_cdf."""
    if p <= 1 - rate_rps * service_s:
        return service_s  # an atom at zero wait
    lo, hi = 0.0, 25 * service_s
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if md1_wait_cdf(rate_rps, service_s, mid) < p else (lo, mid)
    return (lo + hi) / 2 + service_s


def erlang_c(servers: int, offered_erlangs: float) -> float:
    """Returns Erlang's C formula: the probability that an arrival waits in an M/M/c queue."""
    c, a = servers, offered_erlangs
    if a >= c:
        return 1.0
    term, total = 1.0, 1.0  # a^k / k!, summed for k < c
    for k in range(1, c):
        term *= a / k
        total += term
    last = term * a / c / (1 - a / c)  # a^c / c! * c / (c - a)
    return last / (total + last)


def mmc_mean_wait_s(rate_rps: float, mean_service_s: float, servers: int) -> float:
    """M/M/c mean waiting time in queue: C(c, a) / (c mu - lambda), a = lambda / mu."""
    mu = 1.0 / mean_service_s
    if rate_rps >= servers * mu:
        return math.inf
    return erlang_c(servers, rate_rps / mu) / (servers * mu - rate_rps)


def md1k_blocking(rho: float, waiting: int) -> float:
    """Returns the blocking probability of M/D/1 with room for `waiting` requests besides the one in service
    (M/D/1/N with N = waiting + 1), from the chain embedded at departures: P_block = 1 - 1/(pi_0 + rho),
    pi the distribution of the number a departure leaves behind (0..N-1)."""
    n = waiting + 1
    a = _poisson_pmf(rho, n + 1)  # arrivals during one service
    P = np.zeros((n, n))
    for i in range(n):
        base = max(i - 1, 0)  # from 0 the server idles until an arrival, then serves it
        for k in range(n):
            j = base + k
            if j >= n - 1:
                P[i, n - 1] += 1.0 - a[:k].sum()
                break
            P[i, j] += a[k]
    A = np.vstack([(P - np.eye(n)).T, np.ones(n)])
    b = np.zeros(n + 1)
    b[-1] = 1.0
    pi = np.linalg.lstsq(A, b, rcond=None)[0]
    return float(1.0 - 1.0 / (pi[0] + rho))


def cobham_waits_s(rates_rps: list[float], mean_s: list[float], second_moment_s2: list[float]) -> list[float]:
    """Returns the mean queue wait (seconds) of each class of an M/G/1 queue with non-preemptive priority,
    classes listed from the highest priority down (Cobham, 1954): W_k = W0 / ((1 - s_{k-1})(1 - s_k)), with
    W0 = sum(lambda_i E[S_i^2]) / 2 the mean residual work found in service and s_k the load of classes 1..k."""
    w0 = sum(lam * m2 for lam, m2 in zip(rates_rps, second_moment_s2)) / 2
    out, above = [], 0.0
    for lam, m in zip(rates_rps, mean_s):
        upto = above + lam * m
        if upto >= 1:
            raise ValueError(f"classes up to this one load the server {upto:.3g} >= 1: their wait is unbounded")
        out.append(w0 / ((1 - above) * (1 - upto)))
        above = upto
    return out


def mmc_priority_waits_s(rates_rps: list[float], mean_service_s: float, servers: int) -> list[float]:
    """Returns the mean queue wait (seconds) of each class of an M/M/c queue with non-preemptive priority and one
    service rate for every class, classes listed from the highest priority down (Cobham, 1954):
    W_k = C(c, lambda / mu) / (c mu (1 - s_{k-1})(1 - s_k)), s_k = sum_{i <= k} lambda_i / (c mu)."""
    mu, c = 1.0 / mean_service_s, servers
    total = sum(rates_rps)
    wait_any = erlang_c(c, total / mu)
    out, above = [], 0.0
    for lam in rates_rps:
        upto = above + lam / (c * mu)
        if upto >= 1:
            raise ValueError(f"classes up to this one load the servers {upto:.3g} >= 1: their wait is unbounded")
        out.append(wait_any / (c * mu * (1 - above) * (1 - upto)))
        above = upto
    return out


def mmck_blocking(rate_rps: float, mean_service_s: float, servers: int, capacity: int) -> float:
    """Returns the blocking probability of M/M/c/K (K = servers + waiting room): the stationary probability of K
    in the truncated birth-death chain, which an arrival sees (PASTA)."""
    a, c = rate_rps * mean_service_s, servers
    p = [1.0]
    for n in range(1, capacity + 1):
        p.append(p[-1] * a / min(n, c))
    return p[-1] / sum(p)


def finite_source_mmc(clients: int, servers: int, mean_think_s: float, mean_service_s: float) -> dict:
    """Returns the finite-source M/M/c//N (machine-repairman) solution: throughput_rps X = sum p_n min(n, c) mu
    and the mean response time response_s = N / X - Z, from the birth-death chain with birth rate (N - n) / Z
    and death rate min(n, c) mu in state n (requests at the server)."""
    n_, c, z, mu = clients, servers, mean_think_s, 1.0 / mean_service_s
    p = [1.0]
    for n in range(1, n_ + 1):
        p.append(p[-1] * ((n_ - n + 1) / z) / (min(n, c) * mu))
    total = sum(p)
    x = sum(pn / total * min(n, c) * mu for n, pn in enumerate(p))
    return {"throughput_rps": x, "response_s": n_ / x - z}
