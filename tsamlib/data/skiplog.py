"""Samples that failed to load, counted across DataLoader worker processes, so none is lost silently.

A :class:`SkipLog` is a small folder of marker files (one per failed path, first reason wins) and event logs
(one line per failed use), shared by the main process and its workers. Folders are ``<tmp>/tsam-skips-<pid>-*``,
removed by the process that made them; those of killed processes are removed when the next `SkipLog` is made
(:func:`remove_stale_skip_logs`).
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
import warnings
import weakref
from pathlib import Path

from .workers import pid_alive

__all__ = ["SkipLog", "remove_stale_skip_logs"]

_SKIP_PREFIX = "tsam-skips-"
_SKIP_DIR = re.compile(rf"{_SKIP_PREFIX}(\d+)-[^/]+$")


def remove_stale_skip_logs(tmp_dir: str | Path | None = None, legacy_age_s: float = 86400.0) -> list[Path]:
    """Remove ``tsam-skips-<pid>-*`` folders of this user in `tmp_dir` (default: the temp dir) whose process is
    gone (killed before it could clean up). Folders of the old unnamed form are removed after `legacy_age_s`."""
    root = Path(tmp_dir) if tmp_dir is not None else Path(tempfile.gettempdir())
    removed = []
    try:
        entries = list(root.glob(f"{_SKIP_PREFIX}*"))
    except OSError:
        return removed
    uid = os.getuid() if hasattr(os, "getuid") else None
    for d in entries:
        try:
            st = d.lstat()
            if not d.is_dir() or d.is_symlink() or (uid is not None and st.st_uid != uid):
                continue
            m = _SKIP_DIR.match(d.name)
            if m:
                if int(m.group(1)) == os.getpid() or pid_alive(int(m.group(1))):
                    continue
            elif time.time() - st.st_mtime < legacy_age_s:
                continue
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
        except OSError:
            continue
    return removed


class SkipLog:
    """Samples that failed to load, shared by all workers through marker files in a folder.

    ``action`` says what became of a failed sample (in the warnings). Without `directory`, the folder is
    ``<tmp>/tsam-skips-<pid>-*``, removed when the log is garbage-collected or the process exits; folders left
    by killed processes are removed here (:func:`remove_stale_skip_logs`)."""
    def __init__(self, directory: str | Path | None = None, action: str = "replaced by another sample",
                 hint: str = "dls.skipped()"):
        if directory is None:
            remove_stale_skip_logs()
        self.dir = Path(directory) if directory else Path(tempfile.mkdtemp(prefix=f"{_SKIP_PREFIX}{os.getpid()}-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.action, self.hint = action, hint
        self._bad: dict[str, str] | None = None
        self._reported: set[str] = set()
        if directory is None:   # only the creating process removes the folder
            weakref.finalize(self, _remove_if_owner, self.dir, os.getpid())

    def _marker(self, path: str) -> Path:
        return self.dir / f"{hashlib.sha1(path.encode()).hexdigest()[:20]}.skip"

    def record(self, path: str, reason: str) -> None:
        """Count one failed use of `path` (replaced or left out); remember its reason once (first writer wins)."""
        reason = " ".join(str(reason).split())[:500]
        try:
            fd = os.open(self._marker(path), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(f"{path}\t{reason}\n")
        except FileExistsError:
            pass
        with open(self.dir / f"events-{os.getpid()}.log", "a", encoding="utf-8") as f:
            f.write(path + "\n")
        self.bad()[path] = reason

    def bad(self) -> dict[str, str]:
        """Paths already known to fail (read once per process, then kept up to date)."""
        if self._bad is None:
            self._bad = self.skipped()
        return self._bad

    def skipped(self) -> dict[str, str]:
        """All failed paths seen by any process, with their reason."""
        out = {}
        for m in sorted(self.dir.glob("*.skip")):
            line = m.read_text(encoding="utf-8").rstrip("\n")
            if "\t" in line:
                p, r = line.split("\t", 1)
                out[p] = r
        return out

    def n_events(self) -> int:
        """Number of times a requested sample failed and was replaced or left out (all processes)."""
        return sum(len(f.read_text(encoding="utf-8").splitlines()) for f in self.dir.glob("events-*.log"))

    def report_new(self) -> None:
        """Warn (in the calling process) once for each newly failed path."""
        for p, r in self.skipped().items():
            if p not in self._reported:
                self._reported.add(p)
                warnings.warn(f"skipped {p}: {r} ({self.action}; see {self.hint})", stacklevel=2)


def _remove_if_owner(d: Path, pid: int) -> None:
    if os.getpid() == pid:
        shutil.rmtree(d, ignore_errors=True)
