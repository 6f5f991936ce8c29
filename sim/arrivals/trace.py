"""Trace replay: arrival times from a file (or inline list), e.g. a production request log.

Accepted files: CSV with a header holding either `arrival_s` (seconds) or `TIMESTAMP` (wall-clock
date-times, as in the Azure LLM inference traces). Times are shifted so the first arrival is at 0 and
replayed in time order (an unsorted file is sorted, with a warning). Errors name the file's line
number, counting the header as line 1.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import numpy as np
from pydantic import Field, PrivateAttr, model_validator

from ..errors import ScenarioError, shown
from . import REGISTRY
from .base import ArrivalProcess

TIME_COLUMNS = ("arrival_s", "TIMESTAMP")
TOKEN_COLUMNS = (("prompt_tokens", "output_tokens"), ("ContextTokens", "GeneratedTokens"))


@REGISTRY.register
class TraceArrivals(ArrivalProcess):
    process: Literal["trace"] = "trace"
    path: Optional[str] = Field(default=None, description="CSV file, relative to the scenario file")
    times_s: Optional[list[Annotated[float, Field(ge=0)]]] = Field(default=None, min_length=1,
                                                                   description="inline arrival times in seconds")
    speedup: float = Field(default=1.0, gt=0, description="replay this many times faster (divides times)")
    target_rate_rps: Optional[float] = Field(default=None, gt=0, le=1e9, validation_alias="rate_rps",
                                             description="time-scale the replay to this mean rate (requests/s) "
                                             "instead of giving speedup")
    loop: bool = Field(default=False, description="replay the trace again and again when the run needs more "
                       "requests or time than it holds")
    _times: Optional[np.ndarray] = PrivateAttr(default=None)
    _order: Optional[np.ndarray] = PrivateAttr(default=None)
    _unsorted_at: Optional[int] = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _one_source(self):
        if (self.path is None) == (self.times_s is None):
            raise ValueError("give exactly one of 'path' (a CSV file) or 'times_s' (a list of seconds)")
        if self.target_rate_rps is not None and "speedup" in self.model_fields_set:
            raise ValueError("give either speedup or rate_rps (a target mean rate), not both")
        return self

    def with_base_dir(self, base: Path) -> "TraceArrivals":
        """Returns a copy whose relative `path` is resolved against `base` (the scenario's folder)."""
        if self.path is None or Path(self.path).is_absolute():
            return self
        return self.model_copy(update={"path": str((base / self.path).resolve())})

    def load(self) -> np.ndarray:
        """Returns the replayed arrival times in seconds (sorted, starting at 0); raises ScenarioError on a bad file."""
        if self._times is None:
            t = self._read_file() if self.path is not None else np.asarray(self.times_s, dtype=float)
            back = np.flatnonzero(np.diff(t) < 0)
            self._unsorted_at = int(back[0]) + 1 if back.size else None
            self._order = np.argsort(t, kind="stable")
            t = t[self._order]
            t = (t - t[0]) / self.speedup
            if self.target_rate_rps is not None and t.size > 1 and t[-1] > 0:
                t = t * ((t.size - 1) / t[-1] / self.target_rate_rps)  # (n - 1) / span is the replayed rate
            self._times = t
        return self._times

    def warnings(self) -> list[str]:
        """Returns notices about the trace a user should see (an unsorted file was sorted)."""
        self.load()
        if self._unsorted_at is None:
            return []
        where = (f"line {self._unsorted_at + 2} of {self.path}" if self.path is not None
                 else f"times_s[{self._unsorted_at}]")
        return [f"the trace is not in time order (first at {where}, earlier than the row before it); "
                "it was replayed sorted by time"]

    def load_tokens(self) -> tuple[np.ndarray, np.ndarray]:
        """Returns (prompt_tokens, output_tokens) per request in arrival order, from the trace file's
        prompt_tokens/output_tokens or ContextTokens/GeneratedTokens columns; raises ScenarioError."""
        import pandas as pd

        self.load()
        src = str(self.path or "times_s")
        if self.path is None:
            raise ScenarioError(src, "", "an inline trace has no token counts; use a file with token columns")
        head = pd.read_csv(src, nrows=0)
        cols = next((c for c in TOKEN_COLUMNS if set(c) <= set(head.columns)), None)
        if cols is None:
            raise ScenarioError(src, "", "no token columns; expected " + " or ".join("/".join(c) for c in TOKEN_COLUMNS))
        df = pd.read_csv(src, usecols=list(cols))
        out = []
        for col in cols:
            vals = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
            # zero-token outputs happen in real logs (errors, cancellations): they still produce one step
            bad = np.flatnonzero(~np.isfinite(vals) | (vals < 0) | (vals != np.round(vals)))
            if bad.size:
                raise ScenarioError(src, f"line {int(bad[0]) + 2}, column {col}",
                                    f"{shown(df[col].iloc[bad[0]])} is not a token count (an integer >= 0)")
            out.append(np.maximum(vals.astype(np.int64), 1)[self._order])
        return out[0], out[1]

    def _read_file(self) -> np.ndarray:
        import pandas as pd

        src = str(self.path)
        if not Path(src).is_file():
            raise ScenarioError(src, "", "trace file not found")
        try:
            head = pd.read_csv(src, nrows=0)
            col = next((c for c in TIME_COLUMNS if c in head.columns), None)
            if col is None:
                raise ScenarioError(src, "", f"no time column; expected one of {', '.join(TIME_COLUMNS)}, "
                                    f"found {', '.join(map(str, head.columns)) or 'none'}")
            raw = pd.read_csv(src, usecols=[col])[col]
        except ScenarioError:
            raise
        except Exception as exc:  # pandas raises many types (parser, unicode, empty data) for unreadable files
            raise ScenarioError(src, "", f"not a readable CSV file ({exc.__class__.__name__}: {exc})") from None
        if col == "TIMESTAMP":
            if pd.api.types.is_numeric_dtype(raw):
                raise ScenarioError(src, "column TIMESTAMP", "holds numbers, not date-times; "
                                    "for times in seconds name the column arrival_s")
            try:
                stamps = pd.to_datetime(raw, errors="coerce", utc=True)
            except (ValueError, TypeError) as exc:
                raise ScenarioError(src, "column TIMESTAMP", f"unreadable date-times ({exc})") from None
            bad = np.flatnonzero(stamps.isna().to_numpy())
            if bad.size:
                raise ScenarioError(src, f"line {int(bad[0]) + 2}, column {col}", f"{shown(raw.iloc[bad[0]])} is not a date-time")
            ns = stamps.dt.tz_localize(None).to_numpy().astype("datetime64[ns]").astype(np.int64)
            t = (ns - ns.min()) / 1e9
        else:
            vals = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
            t = vals
            bad = np.flatnonzero(~np.isfinite(vals) | (vals < 0))
            if bad.size:
                raise ScenarioError(src, f"line {int(bad[0]) + 2}, column {col}", f"{shown(raw.iloc[bad[0]])} is not a time in seconds >= 0")
        if t.size == 0:
            raise ScenarioError(src, "", "the trace holds no arrivals")
        return t

    @property
    def rate_rps(self) -> Optional[float]:
        """Returns the replayed mean arrival rate in requests/s (None when the trace spans no time)."""
        return self.offered_rps(self.load())

    def offered_rps(self, times_s: np.ndarray) -> Optional[float]:
        """Returns (arrivals - 1) / span of the replayed times in requests/s; None for a single request or
        requests all at one instant, which have no rate."""
        t = np.asarray(times_s)
        span = float(t[-1] - t[0]) if t.size > 1 else 0.0
        return (t.size - 1) / span if span > 0 else None

    @property
    def var_gap_s2(self) -> float:
        t = self.load()
        return float(np.var(np.diff(t))) if t.size > 2 else 0.0

    def arrival_chunks(self, rng: np.random.Generator, *, requests: int | None = None,
                       until_s: float | None = None):
        """Yields the replay in one chunk (the trace is in memory already)."""
        yield self.arrival_times_s(rng, requests=requests, until_s=until_s)

    def arrival_times_s(self, rng: np.random.Generator, *, requests: int | None = None,
                until_s: float | None = None) -> np.ndarray:
        t = self.load()
        if self.loop and t.size > 1:
            t = self._looped(t, requests, until_s)
        if requests is not None:
            return t[:requests].copy()
        if until_s is None:
            return t.copy()
        return t[: np.searchsorted(t, until_s, side="left")].copy()

    def _looped(self, t: np.ndarray, requests, until_s) -> np.ndarray:
        """Returns the trace repeated back to back (each copy shifted by its span plus one mean gap, so the
        rate stays the trace's own) until it covers the requests or the time asked for."""
        period = float(t[-1]) * t.size / (t.size - 1)
        need = (requests / t.size) if requests is not None else ((until_s or 0.0) / period)
        copies = max(1, int(np.ceil(need)) + (0 if requests is not None else 1))
        return (t[None, :] + period * np.arange(copies)[:, None]).ravel()

    def tokens_for(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Returns the token counts of the first n replayed requests (looping with the times)."""
        prompt, output = self.load_tokens()
        reps = -(-n // prompt.size)
        return np.tile(prompt, reps)[:n], np.tile(output, reps)[:n]
