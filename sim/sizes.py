"""Request sizes for LLM workloads: prompt and output token counts.

Each distribution is a small frozen config with `dist` as its name and analytic mean where one exists;
`sample_pair` draws prompt and output lengths together, optionally correlated through a Gaussian
copula (Spearman-like rank correlation `token_correlation`), so either marginal is kept exactly.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

import numpy as np
from pydantic import AliasChoices, ConfigDict, Field, PrivateAttr, model_validator

from .config import StrictModel
from .errors import ScenarioError, shown

MAX_TOKENS = 10_000_000


class _Dist(StrictModel):
    def quantile(self, u: np.ndarray) -> np.ndarray:
        """Returns token counts (int64, >= 1) at uniform quantiles u in (0, 1)."""
        raise NotImplementedError

    @property
    def max_tokens(self) -> Optional[int]:
        """Returns the largest value the distribution can produce (None when unbounded)."""
        return None


class FixedTokens(_Dist):
    dist: Literal["fixed"] = "fixed"
    value: int = Field(ge=1, le=MAX_TOKENS, description="every request's token count")

    def quantile(self, u):
        return np.full(np.shape(u), self.value, dtype=np.int64)

    @property
    def mean(self) -> float:
        return float(self.value)

    @property
    def max_tokens(self):
        return self.value


class UniformTokens(_Dist):
    """Uniform integers in [low, high]; `min`/`max` are accepted for `low`/`high`, as the other
    distributions name their bounds."""

    model_config = ConfigDict(populate_by_name=True)
    dist: Literal["uniform"] = "uniform"
    low: int = Field(ge=1, le=MAX_TOKENS, validation_alias=AliasChoices("low", "min"),
                     description="smallest token count (or `min`)")
    high: int = Field(ge=1, le=MAX_TOKENS, validation_alias=AliasChoices("high", "max"),
                      description="largest token count (or `max`)")

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, data):
        if isinstance(data, dict):
            for name, alias in (("low", "min"), ("high", "max")):
                if name in data and alias in data:
                    raise ValueError(f"give {name} or {alias}, not both")
        return data

    @model_validator(mode="after")
    def _order(self):
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        return self

    def quantile(self, u):
        return np.minimum(self.low + np.floor(u * (self.high - self.low + 1)).astype(np.int64), self.high)

    @property
    def mean(self) -> float:
        return (self.low + self.high) / 2

    @property
    def max_tokens(self):
        return self.high


class LognormalTokens(_Dist):
    dist: Literal["lognormal"] = "lognormal"
    mean: float = Field(gt=0, le=MAX_TOKENS, description="mean of the untruncated lognormal, tokens")
    cv: float = Field(gt=0, le=20, description="coefficient of variation")
    min: int = Field(default=1, ge=1, le=MAX_TOKENS, description="draws below are raised to this")
    max: int = Field(default=MAX_TOKENS, ge=1, le=MAX_TOKENS, description="draws above are cut to this")

    @model_validator(mode="after")
    def _bounds(self):
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) must be >= min ({self.min})")
        # a mean outside [min, max] cannot be the mean of anything clipped to [min, max]
        if not self.min <= self.mean <= self.max:
            raise ValueError(f"mean ({self.mean:g}) must lie within min..max ({self.min}..{self.max})")
        return self

    def quantile(self, u):
        s2 = math.log1p(self.cv ** 2)
        mu = math.log(self.mean) - s2 / 2
        z = _norm_ppf(np.asarray(u, dtype=float))
        return np.clip(np.rint(np.exp(mu + math.sqrt(s2) * z)), self.min, self.max).astype(np.int64)

    @property
    def max_tokens(self):
        return self.max


class EmpiricalTokens(_Dist):
    """Token counts resampled from a file: CSV (a named column) or JSONL (a named field)."""

    dist: Literal["empirical"] = "empirical"
    path: str = Field(description="CSV or JSONL file, relative to the scenario file")
    column: str = Field(description="column (CSV) or field (JSONL) holding token counts")
    _values: Optional[np.ndarray] = PrivateAttr(default=None)

    def with_base_dir(self, base: Path) -> "EmpiricalTokens":
        return self if Path(self.path).is_absolute() else self.model_copy(update={"path": str((base / self.path).resolve())})

    def load(self) -> np.ndarray:
        """Returns the sorted token counts; raises ScenarioError naming the file, row and column."""
        if self._values is None:
            import pandas as pd

            p = Path(self.path)
            if not p.is_file():
                raise ScenarioError(self.path, "", "token-count file not found")
            try:
                df = pd.read_json(p, lines=True) if p.suffix in (".jsonl", ".json") else pd.read_csv(p)
            except Exception as exc:  # pandas raises many types for unreadable files
                raise ScenarioError(self.path, "", f"not a readable CSV/JSONL file ({exc.__class__.__name__})") from None
            if self.column not in df.columns:
                raise ScenarioError(self.path, "", f"no column {self.column!r}; found {', '.join(map(str, df.columns))}")
            vals = pd.to_numeric(df[self.column], errors="coerce").to_numpy(dtype=float)
            bad = np.flatnonzero(~np.isfinite(vals) | (vals < 1) | (vals > MAX_TOKENS) | (vals != np.round(vals)))
            if bad.size:
                # file line numbers, as trace errors give them: a CSV's header is line 1, a JSONL has none
                line = int(bad[0]) + (1 if p.suffix in (".jsonl", ".json") else 2)
                raise ScenarioError(self.path, f"line {line}, column {self.column}",
                                    f"{shown(df[self.column].iloc[bad[0]])} is not a token count in 1..{MAX_TOKENS}")
            if vals.size == 0:
                raise ScenarioError(self.path, "", "holds no token counts")
            self._values = np.sort(vals.astype(np.int64))
        return self._values

    def quantile(self, u):
        v = self.load()
        return v[np.minimum((np.asarray(u) * v.size).astype(np.int64), v.size - 1)]

    @property
    def mean(self) -> float:
        return float(self.load().mean())

    @property
    def max_tokens(self):
        return int(self.load()[-1])


TokenDist = Annotated[Union[FixedTokens, UniformTokens, LognormalTokens, EmpiricalTokens], Field(discriminator="dist")]


def _norm_ppf(u: np.ndarray) -> np.ndarray:
    """Inverse standard normal CDF (Acklam's rational approximation, |error| < 1.2e-9), vectorised."""
    a = [-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02,
         -3.066479806614716e+01, 2.506628277459239e+00]
    b = [-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01,
         -1.328068155288572e+01]
    c = [-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00,
         4.374664141464968e+00, 2.938163982698783e+00]
    d = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00]
    u = np.clip(u, 1e-300, 1 - 1e-16)
    out = np.empty_like(u)
    lo, hi = u < 0.02425, u > 1 - 0.02425
    mid = ~(lo | hi)
    q = np.sqrt(-2 * np.log(u[lo]))
    out[lo] = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    q = u[mid] - 0.5
    r = q * q
    out[mid] = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
    q = np.sqrt(-2 * np.log(1 - u[hi]))
    out[hi] = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    return out


def _norm_cdf(z: np.ndarray) -> np.ndarray:
    from math import erf, sqrt

    return 0.5 * (1 + np.vectorize(erf, otypes=[float])(z / sqrt(2)))


def sample_pair(prompt: TokenDist, output: TokenDist, correlation: float, rng: np.random.Generator,
                n: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns (prompt_tokens, output_tokens) int64 arrays of length n, correlated through a Gaussian copula."""
    if not correlation:
        return prompt.quantile(rng.random(n)), output.quantile(rng.random(n))
    z1 = rng.standard_normal(n)
    z2 = rng.standard_normal(n)
    z2 = correlation * z1 + math.sqrt(1 - correlation ** 2) * z2
    u1 = np.clip(_norm_cdf(z1), 1e-12, 1 - 1e-12)
    u2 = np.clip(_norm_cdf(z2), 1e-12, 1 - 1e-12)
    return prompt.quantile(u1), output.quantile(u2)
