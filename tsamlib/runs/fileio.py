"""Where things live in the repository, and file writes that readers never see half done.

:func:`atomic_path` is the one temp-file-then-replace write used for run JSON, manifests, the mel cache,
checkpoints and synthetic clips. The temporary file sits beside the target as ``.<stem>.<random>.tmp<suffix>``;
it is removed on any error, and :func:`remove_stale_temp_files` clears those a killed process left behind.
Files are created with the permissions of the process umask, like ``open(path, "w")`` would.
:class:`FileLock` is the one lock (a run folder's, a dataset being written); :func:`exclusive_lock` holds it
for a block.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

__all__ = ["repo_root", "mel_cache_dir", "relative_to_repo", "atomic_path", "atomic_write_json", "read_json",
           "remove_stale_temp_files", "FileLock", "LockHeldError", "exclusive_lock", "NotWritableError",
           "writable_folder", "writable_file", "naming_unwritable"]


def repo_root() -> Path:
    """The repository root (the folder holding ``tsamlib/``), wherever the notebook runs from."""
    return Path(__file__).resolve().parents[2]


def mel_cache_dir() -> Path:
    """The shared on-disk cache of log-mel spectrograms (``data/cache/mel``)."""
    return repo_root() / "data" / "cache" / "mel"


def relative_to_repo(path: str | os.PathLike) -> str:
    """``path`` relative to the repository root when it lies under it (for printing and records), else as is."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(repo_root()))
    except ValueError:
        return str(p)


# ------------------------------------------------------------------------------------- folders one cannot write
_UNWRITABLE = {errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
               errno.EROFS: "the file system is read-only", errno.ENOSPC: "no space left on the device",
               errno.EDQUOT: "over the disk quota", errno.EFBIG: "the file is too large for the file system"}
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class NotWritableError(OSError):
    """A folder or file the process may not write: the message names it, why, and what to change."""

    def __init__(self, path: str | os.PathLike, reason: str, fix: str):
        super().__init__(f"cannot write {relative_to_repo(path)}: {reason}; {fix}")
        self.path = Path(path)

    def __str__(self) -> str:   # the sentence, also when errno/strerror are set (a full disk keeps its errno)
        return self.args[0]


@contextmanager
def naming_unwritable(fix: str, path: str | os.PathLike | None = None) -> Iterator[None]:
    """Turn a write refused by permissions or a read-only file system into :class:`NotWritableError` naming
    ``path`` (or, when None, the file refused) and ``fix``; other errors pass unchanged."""
    try:
        yield
    except NotWritableError:
        raise
    except OSError as e:
        if e.errno not in _UNWRITABLE:
            raise
        raise NotWritableError(path or e.filename or "?", _UNWRITABLE[e.errno], fix) from None


def writable_folder(path: str | os.PathLike, fix: str) -> Path:
    """``path`` as a folder this process can write: created with its parents when missing, and a file made and
    removed in it; otherwise :class:`NotWritableError` naming the folder and ``fix`` (e.g. "choose another --out")."""
    path = Path(path)
    clash = next((p for p in [path, *path.parents] if p.exists() and not p.is_dir()), None)
    if clash is not None:
        raise NotWritableError(clash, "a file is there, not a folder", fix)
    with naming_unwritable(fix, path):
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-test.")
        os.close(fd)
        os.unlink(probe)
    return path


def writable_file(path: str | os.PathLike, fix: str = "give the path of a file") -> Path:
    """``path`` as a destination for a file: nothing there yet, or a regular file (replaced whole); a folder, a
    device (``/dev/full``), a pipe or a socket there is :class:`NotWritableError` naming it and ``fix``, before any
    work is done."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode     # follows a link: what a write would reach
    except (FileNotFoundError, NotADirectoryError):   # nothing there (a file above it is the folder check's to say)
        return path
    except OSError as e:
        raise NotWritableError(path, e.strerror or str(e), fix) from None
    if not stat.S_ISREG(mode):
        kind = ("a folder" if stat.S_ISDIR(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a file")
        raise NotWritableError(path, f"it is {kind}, not a regular file", fix)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path`` (same suffix) to write to; on success it replaces ``path``
    (``os.replace``, after an fsync when asked), on any error it is removed. Readers never see a half file."""
    path = writable_file(path, "write it elsewhere")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; a plain open() would honour the umask
    os.close(fd)
    try:
        yield Path(tmp)
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        size = os.path.getsize(tmp)
        os.replace(tmp, path)
        if os.path.getsize(path) != size:   # the bytes landed: never "written" for a file that is not whole
            raise OSError(errno.EIO, f"{path} holds {os.path.getsize(path)} bytes after the write of {size}")
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        if e.errno in _NO_SPACE and not isinstance(e, NotWritableError):   # a full disk names the file it stopped
            full = NotWritableError(path, e.strerror or _UNWRITABLE[e.errno], "free some space or write it "
                                    "elsewhere; nothing was written")
            full.errno, full.strerror = e.errno, e.strerror   # still a full disk to whoever reads errno/strerror
            raise full from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temp_files(folder: str | os.PathLike, stem: str | None = None) -> list[Path]:
    """Remove temporary files that :func:`atomic_path` left in ``folder`` when its process was killed
    (only those of ``stem`` when given). Call it where one process owns the folder (a locked run)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pattern = f".{stem}.*.tmp*" if stem else ".*.tmp*"
    removed = []
    for p in folder.glob(pattern):
        if p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write JSON through :func:`atomic_path` with an fsync: never a half-written file."""
    with atomic_path(path, fsync=True) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=_jsonable)
    return Path(path)


def _jsonable(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """Read a JSON file; a broken one raises ValueError naming the file."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); it was not written by tsamlib or was cut short.") from e


class LockHeldError(RuntimeError):
    """Another live process holds the lock; ``owner`` is what it recorded (pid, host, what, since)."""

    def __init__(self, lock_file: Path, owner: dict[str, Any]):
        super().__init__(f"{lock_file} is held by pid {owner.get('pid', '?')} on {owner.get('host', '?')}")
        self.lock_file, self.owner = lock_file, owner


class FileLock:
    """The one lock of tsamlib: an exclusive ``flock`` on ``lock_file`` (created if missing) that records its owner
    (pid, host, ``what``, since) in the file. The OS drops it when the holder dies, even if it is killed, so a
    record left behind names a holder that is gone (:meth:`acquire` returns it); releasing empties the file."""

    def __init__(self, lock_file: str | os.PathLike, what: str):
        self.file, self.what, self.fd = Path(lock_file), what, None

    def acquire(self, wait: bool = False) -> dict[str, Any]:
        """Take the lock and return the record of a holder that died holding it (empty when none). When another
        process holds it: :class:`LockHeldError` naming it, or with ``wait`` block until it is free."""
        fd = os.open(self.file, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            owner = _read_owner(fd)
            os.close(fd)
            raise LockHeldError(self.file, owner) from None
        stale = _read_owner(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(dict(pid=os.getpid(), host=socket.gethostname(), what=self.what,
                                      since=time.strftime("%Y-%m-%dT%H:%M:%S%z"))).encode(), 0)
        self.fd = fd
        return stale

    def held(self) -> bool:
        """Another live process holds the lock now (probed read-only: a missing file is not created)."""
        try:
            fd = os.open(self.file, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)

    def release(self) -> None:
        if self.fd is None:
            return
        os.ftruncate(self.fd, 0)  # an empty lock file: nobody holds it
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None


def _read_owner(fd: int) -> dict[str, Any]:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (ValueError, OSError):
        return {}


@contextmanager
def exclusive_lock(lock_file: str | os.PathLike, what: str, wait: bool = True) -> Iterator[None]:
    """Hold the :class:`FileLock` on ``lock_file`` for the block. When another process holds it: with ``wait``, say
    so (``what`` names what that process is doing) and wait; without, raise ``RuntimeError`` naming it and the lock
    file."""
    lock = FileLock(lock_file, what)
    try:
        lock.acquire()
    except LockHeldError:
        if not wait:
            raise RuntimeError(f"another process is {what} (lock {lock.file})") from None
        print(f"waiting for another process {what} (lock {relative_to_repo(lock.file)})", flush=True)
        lock.acquire(wait=True)
    try:
        yield
    finally:
        lock.release()
