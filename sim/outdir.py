"""Output folders: checked before any work, written atomically, and never touching a user's own files.

Every command that writes a folder (`run`, `validate`) goes through `OutputDir`:

1. `prepare(names)` runs before simulating or serving: the path is not empty, not a file, its folder can
   be created and written to, and none of the files about to be written already exists there unless a
   previous servesim run wrote it (listed in the folder's manifest, `.servesim-manifest.json`).
   Temporary folders that killed runs left behind (their process is gone) are removed.
2. `staging()` gives a temporary folder beside the output (same file system, so moves are atomic),
   named after this process, removed on every exit path (SIGTERM is turned into an exception by the CLI).
3. `commit(tmp)` moves the new files in, removes files that an earlier run wrote and this one did not
   (so a folder never mixes two runs), and rewrites the manifest. Other files are never deleted.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator

from .errors import ScenarioError

MANIFEST = ".servesim-manifest.json"
_TAG = ".servesim-"
LEGACY_STALE_S = 600  # temporary folders of older versions carry no process id: removed once this old


class OutputDir:
    """One output folder named by a CLI flag (`flag` appears in error messages)."""

    def __init__(self, path, flag: str = "--out"):
        self.flag = flag
        if path is None or str(path).strip() == "":
            raise ScenarioError(flag, "", "an empty path would write into the current folder; name an output folder")
        self.path = Path(path)

    def owned(self) -> set[str]:
        """Returns the names of the files a previous servesim run wrote into the folder (its manifest)."""
        try:
            data = json.loads((self.path / MANIFEST).read_text())
            return {str(n) for n in data.get("files", []) if "/" not in str(n)}
        except (OSError, ValueError, AttributeError):
            return set()

    def prepare(self, names: Iterable[str]) -> None:
        """Checks that `names` can be written into the folder; raises ScenarioError (naming the flag) before
        any work is done. Creates the folder's parent and removes temporary folders of dead runs."""
        out = self.path
        if out.exists() and not out.is_dir():
            raise ScenarioError(self.flag, "", f"{out} exists and is not a folder")
        blocker = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise ScenarioError(self.flag, "", f"cannot create {out}: {blocker} is a file, not a folder")
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            self.remove_stale_staging()
            probe = tempfile.mkdtemp(prefix=f".{out.name}{_TAG}probe-", dir=out.parent)
            os.rmdir(probe)
            if out.is_dir():
                probe = tempfile.mkstemp(prefix=f"{_TAG}probe-", dir=out)
                os.close(probe[0])
                os.unlink(probe[1])
        except OSError as exc:
            raise ScenarioError(self.flag, "", f"cannot write to {out}: {exc.strerror or exc}") from None
        owned = self.owned()
        foreign = sorted(n for n in names if (out / n).exists() and n not in owned)
        if foreign:
            raise ScenarioError(self.flag, "", f"{out} already holds {', '.join(foreign)}, which servesim did not write "
                                f"(no record in its {MANIFEST}); choose another folder or move those files")

    def remove_stale_staging(self) -> list[Path]:
        """Removes temporary folders beside the output left by runs that were killed; returns them."""
        removed = []
        for p in self.path.parent.glob(f".{self.path.name}{_TAG}*"):
            if not p.is_dir():
                continue
            pid = _pid_of(p.name[len(self.path.name) + len(_TAG) + 1:])
            dead = (not _alive(pid)) if pid is not None else time.time() - p.stat().st_mtime > LEGACY_STALE_S
            if dead:
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
        return removed

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """Yields a fresh temporary folder beside the output, removed afterwards whatever happens."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}{_TAG}{os.getpid()}-", dir=self.path.parent))
        try:
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def commit(self, tmp: Path) -> list[Path]:
        """Moves every file of `tmp` into the folder, removes files a previous run wrote that this one did
        not, records the new set in the manifest; returns the paths written."""
        out = self.path
        out.mkdir(exist_ok=True)
        new = sorted(f.name for f in tmp.iterdir() if f.is_file())
        foreign = sorted(n for n in new if (out / n).exists() and n not in self.owned())
        if foreign:  # appeared while the work ran
            raise ScenarioError(self.flag, "", f"{out} now holds {', '.join(foreign)}, which servesim did not write; "
                                "nothing was overwritten: choose another folder or move those files")
        for stale in self.owned() - set(new):
            (out / stale).unlink(missing_ok=True)
        written = []
        for name in new:
            os.replace(tmp / name, out / name)
            written.append(out / name)
        fd, manifest_tmp = tempfile.mkstemp(prefix=f"{_TAG}manifest-", dir=out)
        with os.fdopen(fd, "w") as fh:
            json.dump({"written_by": "servesim", "files": new}, fh)
        os.replace(manifest_tmp, out / MANIFEST)
        return written


def _pid_of(rest: str):
    head = rest.split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
