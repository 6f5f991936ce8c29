"""Measured profiles: the versioned YAML files `python -m profiler.profile` writes, loaded and checked.

Format `servesim-profile`, version 2 (see profiler/profile.py for the writer):
    format, version, [mode], created_utc, model{name, params, ...}, device{kind, name, ...}, dtype, settings{...},
    max_batch_size, search{...}, points_count, [llm_points_count],
    points[{batch_size, samples, median_ms, p90_ms, p99_ms, std_ms, ratio_quantiles, ...}], [llm_points[...]],
    fit{chosen, reason, families} or llm_fit{coefficients, ...}, warnings[]
The counts precede the lists so that a file cut at an entry boundary (still valid YAML) is refused rather
than loaded with fewer points; version 1 files (no counts) are still read.
Profiles measured on different devices, dtypes or models are never merged.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .config import read_yaml_mapping
from .errors import ScenarioError
from .fitting import FAMILIES, FitReport, fit_all
from .profile_format import FORMAT, VERSION, count_problem


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ProfileModel(_Open):
    name: str
    params: int = Field(ge=0)
    args: dict[str, Any] = Field(default_factory=dict)
    flops_per_item: Optional[float] = Field(default=None, ge=0)
    flops_per_batch: Optional[float] = Field(default=None, ge=0)
    bytes_per_item: Optional[float] = Field(default=None, ge=0)
    bytes_per_batch: Optional[float] = Field(default=None, ge=0)


class ProfileDevice(_Open):
    kind: str
    name: str


class ProfilePoint(_Open):
    batch_size: int = Field(ge=1)
    samples: int = Field(ge=1)
    median_ms: float = Field(gt=0)
    p90_ms: Optional[float] = Field(default=None, gt=0)
    p99_ms: Optional[float] = Field(default=None, gt=0)
    std_ms: Optional[float] = Field(default=None, ge=0)
    ratio_quantiles: Optional[list[float]] = None

    @field_validator("ratio_quantiles")
    @classmethod
    def _quantiles(cls, v):
        if v is not None:
            if len(v) < 2 or any(b < a for a, b in zip(v, v[1:])) or v[0] <= 0:
                raise ValueError("must be at least 2 positive, non-decreasing values (sample / median)")
        return v


class LlmPoint(_Open):
    phase: Literal["prefill", "decode"]
    batch: int = Field(ge=1)
    tokens: int = Field(ge=1)
    context: int = Field(ge=0)
    samples: int = Field(ge=1)
    median_ms: float = Field(gt=0)


class Profile(_Closed):
    format: str
    version: int
    mode: Literal["batch", "llm"] = "batch"
    created_utc: str
    model: ProfileModel
    device: ProfileDevice
    dtype: str
    settings: dict[str, Any] = Field(default_factory=dict)
    max_batch_size: int = Field(ge=1)
    search: Optional[dict[str, Any]] = None
    points_count: Optional[int] = Field(default=None, ge=0)       # version 2: checked by load_profile
    llm_points_count: Optional[int] = Field(default=None, ge=0)
    points: list[ProfilePoint] = Field(default_factory=list, validate_default=True)
    llm_points: list[LlmPoint] = Field(default_factory=list, validate_default=True)
    llm_fit: Optional[dict[str, Any]] = None
    fit: Optional[dict[str, Any]] = None
    warnings: list[str] = Field(default_factory=list)

    @field_validator("points")
    @classmethod
    def _batch_points(cls, v, info):
        if info.data.get("mode", "batch") == "batch" and not v:
            raise ValueError("a batch profile needs at least one measured batch size")
        return v

    @field_validator("llm_points")
    @classmethod
    def _llm_points(cls, v, info):
        if info.data.get("mode") == "llm" and len(v) < 6:
            raise ValueError("an llm profile needs at least 6 measured steps (prefill and decode)")
        return v

    @field_validator("format")
    @classmethod
    def _format(cls, v):
        if v != FORMAT:
            raise ValueError(f"expected {FORMAT!r}: this is not a servesim profile")
        return v

    @field_validator("version")
    @classmethod
    def _version(cls, v):
        if v > VERSION:
            raise ValueError(f"version {v} was written by a newer servesim; this one reads up to {VERSION}")
        if v < 1:
            raise ValueError("must be >= 1")
        return v

    def table(self) -> tuple[np.ndarray, np.ndarray]:
        """Returns (batch sizes, median step ms), sorted by batch size."""
        k = np.array([p.batch_size for p in self.points], dtype=float)
        y = np.array([p.median_ms for p in self.points], dtype=float)
        order = np.argsort(k, kind="stable")
        return k[order], y[order]

    def identity(self) -> tuple:
        """What must match for two profiles' measurements to be merged: device, software, dtype, model, settings."""
        dev = self.device.model_extra or {}
        return (self.device.kind, self.device.name, dev.get("cpu_threads") if self.device.kind == "cpu" else None,
                dev.get("torch"), self.dtype, self.model.name,
                tuple(sorted((k, str(v)) for k, v in self.model.args.items())),
                bool(self.settings.get("compile")), bool(self.settings.get("cuda_graphs")))


def load_profile(path: str | Path) -> Profile:
    """Reads and checks one profile file; raises ScenarioError naming the file and key path."""
    src = str(path)
    raw = read_yaml_mapping(path, "profile")
    if raw.get("format") == FORMAT:
        # before the schema: a truncated file's first symptom may be "needs at least one point"
        problem = count_problem(raw)
        if problem:
            raise ScenarioError(src, *problem)
    try:
        prof = Profile.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        raise ScenarioError(src, loc, f"{msg} (got {err.get('input')!r:.60})") from None
    sizes = [pt.batch_size for pt in prof.points]
    if prof.mode == "llm":
        return prof
    if len(set(sizes)) != len(sizes):
        raise ScenarioError(src, "points", "a batch size is listed twice")
    if max(sizes) > prof.max_batch_size:
        raise ScenarioError(src, "max_batch_size", f"{prof.max_batch_size} is below the largest measured batch {max(sizes)}")
    return prof


def merge_profiles(profiles: list[Profile], sources: list[str]) -> Profile:
    """Returns one profile holding every point of `profiles`; refuses profiles of different devices,
    dtypes, models or modes. A batch size measured in several files keeps the sample-weighted mean median;
    LLM steps are pooled (the fit weighs a step measured twice twice)."""
    if len(profiles) == 1:
        return profiles[0]
    first = profiles[0]
    for prof, src in zip(profiles[1:], sources[1:]):
        if prof.mode != first.mode:
            raise ScenarioError(src, "mode", f"{prof.mode} cannot be mixed with {sources[0]} (mode {first.mode}): "
                                "give profiles of one mode")
        if prof.identity() != first.identity():
            def describe(p):
                dev = p.device.model_extra or {}
                return (f"{p.device.name} ({p.device.kind}, {dev.get('cpu_threads')} threads, torch {dev.get('torch')}), "
                        f"{p.dtype}, model {p.model.name} {dict(p.model.args)}, compile={bool(p.settings.get('compile'))}, "
                        f"cuda_graphs={bool(p.settings.get('cuda_graphs'))}")
            a, b = describe(first), describe(prof)
            raise ScenarioError(src, "", f"cannot be mixed with {sources[0]}: measured on {b}, not {a}; "
                                "one replica group needs profiles of one device, dtype and model")
    by_size: dict[int, list[ProfilePoint]] = {}
    for prof in profiles:
        for pt in prof.points:
            by_size.setdefault(pt.batch_size, []).append(pt)
    points = []
    for size in sorted(by_size):
        pts = by_size[size]
        if len(pts) == 1:
            points.append(pts[0])
            continue
        n = sum(p.samples for p in pts)
        med = sum(p.median_ms * p.samples for p in pts) / n
        best = max(pts, key=lambda p: p.samples)
        points.append(best.model_copy(update={"samples": n, "median_ms": med}))
    llm_points = [pt for prof in profiles for pt in prof.llm_points]
    return first.model_copy(update={"points": points, "points_count": len(points), "llm_points": llm_points,
                                    "llm_points_count": len(llm_points) if first.mode == "llm" else None,
                                    "max_batch_size": max(p.max_batch_size for p in profiles),
                                    "fit": None, "llm_fit": None})


def refit(profile: Profile) -> FitReport:
    """Returns the fit of every family to the profile's medians (see sim.fitting); batch profiles only
    (an LLM profile's steps are fitted by sim.llm_fit.fit_llm)."""
    if profile.mode != "batch":
        raise ValueError(f"refit fits batch profiles; this is a {profile.mode} profile (use sim.llm_fit.fit_llm)")
    k, y = profile.table()
    return fit_all(k, y)


__all__ = ["FAMILIES", "FORMAT", "VERSION", "Profile", "load_profile", "merge_profiles", "refit"]
