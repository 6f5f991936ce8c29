"""Markov-modulated Poisson arrivals (bursts): a hidden state i in which requests arrive at rates_rps[i];
the state lasts an exponential time of mean mean_sojourn_s[i], then jumps to one of the other states
uniformly at random; or, with `generator`, a full rate matrix Q (off-diagonal q_ij >= 0, rows summing to 0).

The process starts in its stationary state distribution, so it is stationary from t = 0. Closed forms for
tests: the long-run rate sum(pi_i lambda_i), and the index of dispersion of counts over long windows,
IDC = 1 + 2 pi Lambda D Lambda 1 / rate, D = (1 pi - Q)^-1 - 1 pi (the deviation matrix)."""
from __future__ import annotations

from typing import Literal, Optional

import numpy as np
from pydantic import Field, PrivateAttr, model_validator

from . import REGISTRY
from .modulated import TimeVaryingArrivals


@REGISTRY.register
class MmppArrivals(TimeVaryingArrivals):
    process: Literal["mmpp"] = "mmpp"
    rates_rps: list[float] = Field(min_length=2, max_length=64, description="arrival rate in each state, requests/s")
    mean_sojourn_s: Optional[list[float]] = Field(default=None, description="mean time in each state, seconds "
                                                  "(then jumps to another state uniformly)")
    generator: Optional[list[list[float]]] = Field(default=None, description="full rate matrix Q instead of "
                                                   "mean_sojourn_s (per second; rows sum to 0)")
    _state: Optional[int] = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _shape(self):
        m = len(self.rates_rps)
        if any(not (0 <= r <= 1e9) for r in self.rates_rps) or max(self.rates_rps) <= 0:
            raise ValueError("rates_rps must be >= 0 (at most 1e9) with at least one above 0")
        if (self.mean_sojourn_s is None) == (self.generator is None):
            raise ValueError("give exactly one of mean_sojourn_s (a list, one per state) or generator (a matrix)")
        if self.mean_sojourn_s is not None:
            if len(self.mean_sojourn_s) != m:
                raise ValueError(f"mean_sojourn_s needs {m} values, one per rate; got {len(self.mean_sojourn_s)}")
            if any(not (s > 0) for s in self.mean_sojourn_s):
                raise ValueError("every mean_sojourn_s must be > 0")
        else:
            q = np.asarray(self.generator, float)
            if q.shape != (m, m):
                raise ValueError(f"generator must be {m} x {m} (one row and column per rate)")
            off = q[~np.eye(m, dtype=bool)]
            if (off < 0).any() or np.abs(q.sum(axis=1)).max() > 1e-9 * max(1.0, np.abs(q).max()) or (np.diag(q) >= 0).any():
                raise ValueError("generator needs off-diagonal entries >= 0, a negative diagonal, and rows summing to 0")
        return self

    def q_matrix(self) -> np.ndarray:
        """Returns the generator Q (per second)."""
        if self.generator is not None:
            return np.asarray(self.generator, float)
        m = len(self.rates_rps)
        leave = 1.0 / np.asarray(self.mean_sojourn_s, float)
        q = np.repeat((leave / (m - 1))[:, None], m, axis=1)
        np.fill_diagonal(q, -leave)
        return q

    def stationary(self) -> np.ndarray:
        """Returns the stationary distribution pi of the state (pi Q = 0, sum 1)."""
        q = self.q_matrix()
        m = q.shape[0]
        a = np.vstack([q.T, np.ones(m)])
        b = np.zeros(m + 1)
        b[-1] = 1.0
        return np.linalg.lstsq(a, b, rcond=None)[0]

    @property
    def rate_rps(self) -> float:
        return float(self.stationary() @ np.asarray(self.rates_rps, float))

    def idc(self) -> float:
        """Returns the limiting index of dispersion of counts, Var N(t) / E N(t) as t grows."""
        q, pi, lam = self.q_matrix(), self.stationary(), np.asarray(self.rates_rps, float)
        m = q.shape[0]
        one_pi = np.outer(np.ones(m), pi)
        dev = np.linalg.inv(one_pi - q) - one_pi
        mean = pi @ lam
        return float(1 + 2 * (pi * lam) @ dev @ lam / mean)

    def _path_uniform(self, rng, t0, t1, leave, m):
        """The state path over [t0, t1) when every jump goes to another state uniformly, drawn in blocks:
        the next state is the current one plus a uniform offset in 1..m-1 (mod m)."""
        starts, ends, states, t, s = [], [], [], t0, self._state
        per_s = float(np.mean(leave))
        while t < t1:
            k = int(max(16, (t1 - t) * per_s * 1.2))
            seq = (s + np.concatenate([[0], np.cumsum(rng.integers(1, m, k - 1))])) % m
            d = rng.exponential(1.0 / leave[seq])
            b = t + np.cumsum(d)
            n = int(np.searchsorted(b, t1, side="left")) + 1  # sojourns that start before t1
            n = min(n, k)
            begin = np.concatenate([[t], b[:n - 1]])
            starts.append(begin)
            ends.append(np.minimum(b[:n], t1))
            states.append(seq[:n])
            t, s = float(b[n - 1]), int(seq[n - 1])
            if t < t1:
                s = int((s + rng.integers(1, m)) % m)
        return np.concatenate(starts), np.concatenate(ends), np.concatenate(states), s

    def window(self, rng, t0, t1):
        """Arrivals in [t0, t1): the state path (exponential sojourns), then Poisson counts in each sojourn."""
        q = self.q_matrix()
        m = q.shape[0]
        lam = np.asarray(self.rates_rps, float)
        if self._state is None or t0 == 0.0:
            self._state = int(rng.choice(m, p=self.stationary()))  # a stationary start
        leave = -np.diag(q)
        if self.generator is None:
            starts, ends, states, s = self._path_uniform(rng, t0, t1, leave, m)
        else:
            jump = q / leave[:, None]
            np.fill_diagonal(jump, 0.0)
            starts, ends, states, t, s = [], [], [], t0, self._state
            while t < t1:  # one iteration per sojourn: sojourns are few next to arrivals
                d = rng.exponential(1.0 / leave[s])
                starts.append(t)
                ends.append(min(t + d, t1))
                states.append(s)
                t += d
                if t < t1:
                    s = int(rng.choice(m, p=jump[s]))
        self._state = s  # the window ends inside this state's sojourn (memoryless: the rest is a fresh draw)
        starts, ends, states = np.asarray(starts), np.asarray(ends), np.asarray(states)
        counts = rng.poisson(lam[states] * (ends - starts))
        at = np.repeat(starts, counts) + rng.random(counts.sum()) * np.repeat(ends - starts, counts)
        return np.sort(at)
