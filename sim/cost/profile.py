"""Cost model from measured profile files (`python -m profiler.profile`), fitted by sim.fitting.

YAML: `cost_model: {profile: profiles/x.yaml}` (or a list of files measured on the same device, dtype and
model, merged), optional `fit: auto|affine|piecewise|table` (default: the family chosen by
cross-validation), `max_batch_size` (default: the largest measured), and `measured_noise: true` to
replay the measured spread of step times per batch size instead of a deterministic step.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional, Union

import numpy as np
from pydantic import Field, PrivateAttr, model_validator

from ..errors import ScenarioError
from ..fitting import FitReport, predict_ms
from . import REGISTRY
from .base import CostModel, Draws


@REGISTRY.register
class ProfileCost(CostModel):
    kind: Literal["profile"] = "profile"
    profile: Union[str, list[str]] = Field(description="profile file(s), relative to the scenario file")
    fit: Literal["auto", "affine", "piecewise", "table"] = Field(
        default="auto", description="cost-model family; auto: chosen by cross-validation (see servesim fit)")
    max_batch_size: Optional[int] = Field(default=None, ge=1, description="default: the largest measured batch")
    measured_noise: bool = Field(default=False, description="replay the measured step-time spread per batch size")
    _loaded: Optional[tuple] = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _one_noise(self):
        if self.measured_noise and self.noise is not None:
            raise ValueError("give either 'noise' (lognormal cv) or 'measured_noise: true', not both")
        if isinstance(self.profile, list) and not self.profile:
            raise ValueError("'profile' needs at least one file")
        return self

    @property
    def paths(self) -> list[str]:
        return [self.profile] if isinstance(self.profile, str) else list(self.profile)

    def with_base_dir(self, base: Path) -> "ProfileCost":
        """Returns a copy whose relative profile paths are resolved against `base` (the scenario's folder)."""
        fixed = [p if Path(p).is_absolute() else str((base / p).resolve()) for p in self.paths]
        return self.model_copy(update={"profile": fixed[0] if isinstance(self.profile, str) else fixed})

    def load(self):
        """Loads, merges and fits the profile(s); returns (Profile, FitReport). Raises ScenarioError."""
        if self._loaded is None:
            from ..profiles import load_profile, merge_profiles, refit

            profs = [load_profile(p) for p in self.paths]
            for prof, path in zip(profs, self.paths):
                if prof.mode != "batch":
                    raise ScenarioError(path, "mode", "an llm profile prices engine steps: use it as "
                                        "cost_model: {kind: llm, profile: ...} with an LLM policy")
            prof = merge_profiles(profs, self.paths)
            report: FitReport = refit(prof)
            if self.fit != "auto":
                report.chosen = self.fit
            self._loaded = (prof, report)
        return self._loaded

    @property
    def measured_limit(self) -> int:
        prof, _ = self.load()
        return int(max(p.batch_size for p in prof.points))

    def batch_limit(self) -> int:
        return self.max_batch_size or self.measured_limit

    def compute_s(self, batch_size):
        prof, report = self.load()
        fam = report.best
        # below the smallest measured batch the fit is not extrapolated (a line could go negative): flat
        k = np.maximum(np.asarray(batch_size, dtype=float), min(p.batch_size for p in prof.points))
        return predict_ms(fam.family, fam.params, k) / 1000.0

    def is_noisy(self) -> bool:
        return self.measured_noise or self.noise is not None

    def jitter(self, rng: np.random.Generator):
        if not self.measured_noise:
            return super().jitter(rng)
        prof, _ = self.load()
        pts = [p for p in prof.points if p.ratio_quantiles]
        if not pts:
            raise ScenarioError(self.paths[0], "points", "measured_noise needs ratio_quantiles in the profile points")
        sizes = np.array([p.batch_size for p in pts], dtype=float)
        limit = self.batch_limit()
        # each batch size replays the spread of the nearest measured batch size (in log scale)
        nearest = [pts[int(np.argmin(np.abs(np.log(sizes) - np.log(k))))].ratio_quantiles for k in range(1, limit + 1)]
        tables = [nearest[0]] + nearest
        draws = Draws(lambda n: rng.random(n))

        def factor(k: int) -> float:
            q = tables[k]
            pos = draws.next() * (len(q) - 1)
            i = int(pos)
            if i >= len(q) - 1:
                return q[-1]
            return q[i] + (pos - i) * (q[i + 1] - q[i])

        return factor
