"""The profile file format's name, version and integrity counts, shared by the writer (profiler/profile.py)
and the reader (sim/profiles.py). Pure Python: the profiler imports it on GPU hosts without pydantic.

Version 2 adds `points_count` (and `llm_points_count` in LLM profiles), written before the lists: a file
cut at an entry boundary is still valid YAML, so only a count stored ahead of the list reveals it.
Version 1 files (no counts) still load.
"""
from __future__ import annotations

FORMAT = "servesim-profile"
VERSION = 2

# list key -> the count field that precedes it; the LLM count is required in mode: llm only
COUNTS = {"points": "points_count", "llm_points": "llm_points_count"}


def with_counts(profile: dict) -> dict:
    """Returns a copy of `profile` at version VERSION with a count field for each list in COUNTS (points
    always, llm_points where present), all placed just before the first of those lists."""
    counts = {"points_count": len(profile.get("points") or [])}
    if "llm_points" in profile:
        counts["llm_points_count"] = len(profile["llm_points"] or [])
    out: dict = {}
    for key, value in profile.items():
        if key in COUNTS.values():
            continue
        if key in COUNTS and counts:
            out.update(counts)
            counts = {}
        out[key] = value
    out.update(counts)  # a profile without lists: the counts (zero) still say so
    out["version"] = VERSION
    return out


def count_problem(raw: dict) -> tuple[str, str] | None:
    """Returns (key, message) when the profile mapping's counts are missing (version >= 2) or disagree
    with the lists it holds (any version); None when they check out or the lists are not lists."""
    version = raw.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= VERSION:
        return None  # not a version this reader knows: the schema check reports it
    for key, count_key in COUNTS.items():
        held = raw.get(key)
        held = [] if held is None else held
        if not isinstance(held, list):
            return None
        required = version >= 2 and (key == "points" or raw.get("mode") == "llm")
        if count_key not in raw:
            if required:
                return count_key, (f"missing: a version {version} profile records how many {key} it holds, "
                                   f"before the list (the file holds {len(held)}); truncated or edited by hand?")
            continue
        said = raw[count_key]
        if isinstance(said, bool) or not isinstance(said, int) or said < 0:
            return count_key, f"must be a whole number >= 0 (got {said!r:.40})"
        if said != len(held):
            return count_key, (f"truncated or edited: {count_key} says {said}, the file holds {len(held)} "
                               f"{key} entries; re-run the profiler or restore the file")
    return None
