"""Points of a sweep stored by the hash of what they computed, so an interrupted sweep resumes.

A point's hash covers the resolved scenario (every default filled in, less `outputs` and `plan`, which change
no result) with each referenced file replaced by the SHA-256 of its contents (a trace or profile edited in place
is a different point; the same file moved is not), plus the summary format version and the results version
(bumped whenever the simulator computes anything differently), so points of other code are never reused. Each point is written to `points/<hash>.json` atomically (a temporary
file renamed), so a SIGKILL leaves either the whole point or nothing."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Optional

from ..errors import ScenarioError

SUMMARY_FORMAT = "servesim-summary"
SUMMARY_VERSION = 3          # bump when summary.json's keys or their meaning change
RESULTS_VERSION = 2          # bump when the simulator computes any result differently (part of every point's hash)
POINT_FORMAT = "servesim-point"
_FILE_KEYS = ("path", "profile", "paths", "model_stats_from")


def _file_digest(path: str) -> Optional[str]:
    p = Path(path)
    if not p.is_file():
        return None
    h = hashlib.sha256()
    with p.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _contents_not_paths(node: Any, key: str = "") -> Any:
    if isinstance(node, dict):
        return {k: _contents_not_paths(v, k) for k, v in sorted(node.items())}
    if isinstance(node, list):
        return [_contents_not_paths(v, key) for v in node]
    if isinstance(node, str) and key in _FILE_KEYS:
        return _file_digest(node) or node
    return node


def scenario_hash(scenario) -> str:
    """Returns the hex SHA-256 of the resolved scenario with referenced files by content, and the summary
    version: equal hashes, equal results."""
    # what `servesim run` writes and what `plan` looks for change no result: left out
    resolved = scenario.model_dump(mode="json", exclude={"outputs", "plan"})
    data = {"scenario": _contents_not_paths(resolved), "summary": [SUMMARY_FORMAT, SUMMARY_VERSION],
            "results": RESULTS_VERSION}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class PointStore:
    """`DIR/points/`: one JSON file per finished point."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def path(self, digest: str) -> Path:
        return self.folder / f"{digest}.json"

    def load(self, digest: str) -> Optional[dict]:
        """Returns the stored point, None when absent; raises ScenarioError for a point of another version."""
        p = self.path(digest)
        try:
            point = json.loads(p.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None  # unreadable (cannot happen with atomic writes, but never trust it): recompute
        summary = point.get("summary") or {}
        if point.get("format") != POINT_FORMAT or summary.get("version") != SUMMARY_VERSION:
            raise ScenarioError(str(p), "version", f"a point of another servesim version (summary version "
                                f"{summary.get('version')!r}, this one writes {SUMMARY_VERSION}); sweep into a new "
                                "--out folder, or remove its points/ folder to recompute")
        return point

    def save(self, digest: str, values: dict, summary: dict, timing: dict) -> None:
        """Writes the point atomically."""
        self.folder.mkdir(parents=True, exist_ok=True)
        point = {"format": POINT_FORMAT, "hash": digest, "values": values, "summary": summary, "timing": timing}
        tmp = self.folder / f".{digest}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(point, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, self.path(digest))
