"""Run folders: ``results/runs/<run_id>/`` with params, metrics and provenance, one owner at a time.

    results/runs/<run_id>/
        params.json        the run's settings (RunConfig.settings()), written at start
        metrics.json       per-epoch and final metrics + environment (versions, git commit, seed); epochs
                           are counted from 1 everywhere (``epochs_from: 1``), as the terminal counts them
        train.ipynb        the executed notebook (papermill writes it; see notebooks/03_train.ipynb)
        checkpoints/       last.pth, prev.pth (model, optimiser, epoch) and model.pth (final weights)
        .lock              who owns the folder now (pid, host); empty when nobody does

The life of a run:

- a run that trained nothing (no checkpoint, no epoch logged) never blocks its id: starting it again starts
  afresh;
- an unfinished run is continued with ``resume=True`` (same settings) or moved aside with ``overwrite=True``;
- a finished run is never overwritten silently: starting it again raises, ``overwrite=True`` moves the old
  folder aside (``<run_id>.old-<time>``, never deleted);
- one process owns a run folder at a time (:class:`RunLock`, an OS lock released when the process dies).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import BOOKKEEPING, RunConfig, auto_run_id, config_diff
from .fileio import (FileLock, LockHeldError, atomic_write_json, read_json, relative_to_repo, remove_stale_temp_files,
                     repo_root, writable_folder)
from .provenance import environment_info

__all__ = ["runs_dir", "EPOCHS_FROM", "read_metrics", "Run", "RunLock", "RunLockedError", "start_run", "open_run",
           "load_run", "run_state", "is_running", "is_finished", "has_weights", "unique_run_id", "resolve_run",
           "runs_table", "latest_run"]


def runs_dir(runs_root: str | os.PathLike | None = None) -> Path:
    """Where runs live: ``runs_root`` when given, else ``results/runs`` of the repository."""
    return Path(runs_root) if runs_root else repo_root() / "results" / "runs"


EPOCHS_FROM = 1   # epoch numbers in metrics.json and checkpoints: the first trained epoch is epoch 1


def read_metrics(path: str | os.PathLike) -> dict[str, Any]:
    """A run's ``metrics.json`` (``{}`` when there is none), in today's format: a record written before epochs
    were counted from 1 (no ``epochs_from``) has its epoch numbers (rows, ``best_epoch``, ``resumed_from_epoch``)
    raised by one when read, so every reader sees one convention."""
    path = Path(path)
    m = read_json(path) if path.is_file() else {}
    if not isinstance(m, dict) or not m or m.get("epochs_from") == EPOCHS_FROM:
        return m
    for row in m.get("epochs") or []:
        if isinstance(row, dict) and isinstance(row.get("epoch"), int):
            row["epoch"] += 1
    final = m.get("final")
    for key in ("best_epoch", "resumed_from_epoch"):   # resumed_from_epoch: the first epoch that session trained
        if isinstance(final, dict) and isinstance(final.get(key), int):
            final[key] += 1
    m["epochs_from"] = EPOCHS_FROM
    return m


# --------------------------------------------------------------------------------------------------- lock
class RunLockedError(RuntimeError):
    """Another live process owns the run folder."""


_HELD: dict[Path, "RunLock"] = {}  # the locks this process holds, by folder: a process may reopen its own run


class RunLock:
    """The :class:`~tsamlib.runs.fileio.FileLock` on ``<run>/.lock``: one process owns a run folder at a time; a
    lock whose recorded owner is gone is taken over with a message. A process may reopen a run it holds."""

    def __init__(self, folder: str | os.PathLike, what: str = "training"):
        self.folder, self.what = Path(folder).resolve(), what
        self._lock = FileLock(self.folder / ".lock", what)

    @property
    def file(self) -> Path:
        return self._lock.file

    def acquire(self) -> "RunLock":
        if self.folder in _HELD:
            return _HELD[self.folder]
        try:
            stale = self._lock.acquire()
        except LockHeldError as e:
            owner = e.owner
            raise RunLockedError(
                f"run {relative_to_repo(self.folder)} is in use by pid {owner.get('pid', '?')} on "
                f"{owner.get('host', '?')} ({owner.get('what', '?')} since {owner.get('since', '?')}): wait for it "
                "to finish or stop that process; a second process may not write to the same run.") from None
        if stale.get("pid"):
            print(f"run {self.folder.name}: taking over a stale lock (pid {stale['pid']} on {stale.get('host')} "
                  f"is gone; it was {stale.get('what', '?')} since {stale.get('since', '?')}).", flush=True)
        _HELD[self.folder] = self
        return self

    def release(self) -> None:
        if self._lock.fd is None:
            return
        self._lock.release()
        _HELD.pop(self.folder, None)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


# ----------------------------------------------------------------------------------------------- record
@dataclass
class Run:
    """An open run folder. ``metrics`` is kept in memory and saved atomically by :meth:`save`."""

    run_id: str
    path: Path
    params: dict[str, Any]
    metrics: dict[str, Any]
    lock: RunLock | None = field(default=None, repr=False)

    def __fspath__(self) -> str:
        """A run is its folder wherever a path is taken (``evaluate(run)``, ``Path(run)``)."""
        return str(self.path)

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    def save(self) -> None:
        atomic_write_json(self.path / "metrics.json", self.metrics)

    def note(self, **fields: Any) -> None:
        """Record ``fields`` in ``metrics.json`` (the launch, the model's size, the notebook) and save."""
        self.metrics.update(fields)
        self.save()

    def log_epoch(self, row: dict[str, Any]) -> None:
        """Replace or append the row of ``row["epoch"]`` and save."""
        epochs = [r for r in self.metrics["epochs"] if r["epoch"] != row["epoch"]] + [row]
        self.metrics["epochs"] = sorted(epochs, key=lambda r: r["epoch"])
        self.save()

    def finish(self, final: dict[str, Any]) -> None:
        self.metrics.update(final=final, finished=True, finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        self.save()

    def close(self) -> None:
        """Give up ownership of the folder (the process exit does it too)."""
        if self.lock is not None:
            self.lock.release()


def is_finished(run_dir: str | os.PathLike) -> bool:
    """``metrics.json`` says ``finished: true``."""
    m = Path(run_dir) / "metrics.json"
    return m.is_file() and bool(read_json(m).get("finished"))


def is_running(run_dir: str | os.PathLike) -> bool:
    """A live process owns the run folder now (its ``.lock`` is held): it trains, resumes or writes an evaluation."""
    lock = Path(run_dir).resolve() / ".lock"
    if lock.parent in _HELD:
        return True
    return FileLock(lock, "").held()


def has_weights(run_dir: str | os.PathLike) -> bool:
    """The final weights ``checkpoints/model.pth`` are there (they are git-ignored: a clone has none)."""
    return (Path(run_dir) / "checkpoints" / "model.pth").is_file()


def run_state(run_dir: str | os.PathLike) -> str:
    """``"new"`` (no record), ``"empty"`` (started, nothing trained), ``"unfinished"``, ``"finished"`` or
    ``"finished-no-weights"`` (finished, but ``model.pth`` is missing, as in a fresh clone)."""
    path = Path(run_dir)
    if not (path / "metrics.json").is_file():
        return "new"
    if is_finished(path):
        return "finished" if has_weights(path) else "finished-no-weights"
    trained = read_metrics(path / "metrics.json").get("epochs") or any((path / "checkpoints").glob("*.pth"))
    return "unfinished" if trained else "empty"


def unique_run_id(cfg: RunConfig, runs_root: str | os.PathLike | None = None) -> str:
    """:func:`tsamlib.config.auto_run_id`, with ``-2``, ``-3``... when that folder already exists."""
    base, root = auto_run_id(cfg), runs_dir(runs_root)
    rid, n = base, 1
    while (root / rid).exists():
        n += 1
        rid = f"{base}-{n}"
    return rid


def _move_aside(path: Path) -> Path:
    old = path.with_name(f"{path.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
    path.rename(old)
    print(f"run {path.name}: the old folder was moved aside to {relative_to_repo(old)} (not deleted).")
    return old


def _check_id(run_id: str) -> None:
    if not run_id or any(c in run_id for c in "/\\") or run_id.startswith("."):
        raise ValueError(f"run_id={run_id!r} must be a plain folder name (no slashes, not starting with '.').")


def start_run(run_id: str, params: dict[str, Any], runs_root: str | os.PathLike | None = None,
              resume: bool = False, overwrite: bool = False) -> Run:
    """Create (or, with ``resume``, reopen) ``runs_root/run_id``, take its lock and record params and environment.

    Check the settings before calling this (:func:`tsamlib.training.run.begin_run` does): the folder is created here."""
    _check_id(run_id)
    path = writable_folder(runs_dir(runs_root) / run_id, "set runs_root (CLI: --runs-root) to a folder you can write")
    lock = RunLock(path).acquire()
    try:
        state = run_state(path)
        if overwrite and state != "new":
            lock.release()
            _move_aside(path)
            path.mkdir()
            lock, state = RunLock(path).acquire(), "new"
        if state == "finished":
            raise FileExistsError(f"run {relative_to_repo(path)} is finished; choose another run_id (or None for a "
                                  "new one), or pass overwrite=True (the old run is moved aside, not deleted).")
        if state == "finished-no-weights":
            raise FileExistsError(f"run {relative_to_repo(path)} is finished but its weights "
                                  "(checkpoints/model.pth, never committed) are missing: pass overwrite=True to "
                                  "train it again (the old folder is moved aside), or choose another run_id.")
        if state == "unfinished" and not resume:
            raise FileExistsError(f"run {relative_to_repo(path)} exists and is unfinished: pass resume=True to "
                                  "continue it from its last checkpoint, overwrite=True to start afresh (the old "
                                  "folder is moved aside), or choose another run_id.")
        if state == "empty":
            print(f"run {run_id}: an earlier start trained nothing (no checkpoint): starting afresh.")
        remove_stale_temp_files(path)
        remove_stale_temp_files(path / "checkpoints")
        if state == "unfinished":  # resume
            old = read_json(path / "params.json")
            changed = config_diff(old, params, ignore=BOOKKEEPING)
            if changed:
                raise ValueError(f"cannot resume {relative_to_repo(path)} with different settings (recorded, "
                                 f"given): {changed}; resume with the recorded ones or use another run_id.")
            metrics = read_metrics(path / "metrics.json")
            metrics.setdefault("resumed_at", []).append(time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        else:
            metrics = dict(run_id=run_id, started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), finished=False,
                           epochs_from=EPOCHS_FROM, epochs=[], params=params)
        metrics["environment"] = environment_info()
        atomic_write_json(path / "params.json", params)
        run = Run(run_id, path, params, metrics, lock)
        run.save()
        return run
    except BaseException:
        lock.release()
        raise


def open_run(run_dir: str | os.PathLike) -> Run:
    """Open an existing run folder to read it (evaluation and prediction take its lock only to write)."""
    path = Path(run_dir)
    if not (path / "params.json").is_file():
        raise FileNotFoundError(f"{path} is not a run folder (no params.json); runs live in results/runs/<run_id>/ "
                                "(list them with `python -m tsamlib runs`).")
    return Run(path.name, path, read_json(path / "params.json"), read_metrics(path / "metrics.json"))


def resolve_run(run: str | os.PathLike, runs_root: str | os.PathLike | None = None) -> Path:
    """A run folder from a run id (``k4-fdiv8-...``, looked up in ``runs_root``) or a path to the folder."""
    for p in (runs_dir(runs_root) / str(run), Path(run)):
        if (p / "params.json").is_file():
            return p
    have = [f for f in ("model.safetensors", "config.json") if (Path(run) / f).is_file()]
    if Path(run).is_dir() and have:
        lacks = [f for f in ("model.safetensors", "config.json") if f not in have]
        raise FileNotFoundError(f"{run} holds {have[0]} but no {lacks[0]}: a package folder holds both (python -m "
                                "tsamlib checkpoint convert writes them), a run folder params.json.")
    raise FileNotFoundError(f"no run {str(run)!r}: neither {relative_to_repo(runs_dir(runs_root) / str(run))} nor "
                            f"{run} is a run folder; `python -m tsamlib runs` lists the runs.")


def load_run(run: str | os.PathLike, runs_root: str | os.PathLike | None = None) -> Run:
    """An existing run, by id (looked up in ``runs_root``) or folder path, opened to read (:func:`open_run`)."""
    return open_run(resolve_run(run, runs_root))


# ---------------------------------------------------------------------------------------------- listing
_TABLE_COLUMNS = ["run_id", "dataset", "preset", "n_frames", "shift_depth", "f_div", "audio", "arch", "epochs",
                  "status", "top1", "date"]


def runs_table(runs_root: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per run folder: run_id, status, top1/top5, date (start), path, then one column per setting."""
    root = runs_dir(runs_root)
    recs = []
    for d in sorted(p for p in root.iterdir() if (p / "params.json").is_file()) if root.is_dir() else []:
        try:
            params = read_json(d / "params.json")
            metrics = read_metrics(d / "metrics.json")
            for name, got in (("params.json", params), ("metrics.json", metrics)):
                if not isinstance(got, dict):
                    raise ValueError(f"{name} holds a JSON {type(got).__name__}, not an object")
        except (ValueError, OSError) as e:   # listed with the reason; the other runs are listed as usual
            recs.append(dict(run_id=d.name, status=f"unreadable: {e}", path=relative_to_repo(d)))
            continue
        final = metrics.get("final") or {}
        state = run_state(d)
        if state in ("empty", "unfinished") and is_running(d):
            state = "running"
        recs.append(dict(run_id=d.name, status=state, top1=final.get("top1"), top5=final.get("top5"),
                         date=(metrics.get("started_at") or "")[:10], epochs_done=len(metrics.get("epochs", [])),
                         path=relative_to_repo(d),  # runs recorded before the presets existed: "tsamlib"
                         **{k: v for k, v in {"preset": "tsamlib", **params}.items() if k != "epochs_done"}))
    df = pd.DataFrame(recs)
    if df.empty:
        return pd.DataFrame(columns=_TABLE_COLUMNS)
    first = [c for c in _TABLE_COLUMNS if c in df.columns]
    return df[first + [c for c in df.columns if c not in first]].sort_values(["date", "run_id"]).reset_index(drop=True)


def latest_run(runs_root: str | os.PathLike | None = None) -> Path:
    """The most recently finished run that has its weights (what notebook 04 evaluates by default)."""
    root = runs_dir(runs_root)
    done = [d for d in root.iterdir() if run_state(d) == "finished"] if root.is_dir() else []
    if not done:
        raise FileNotFoundError(f"no finished run with weights in {relative_to_repo(root)}: train one with "
                                "notebooks/03_train.ipynb (weights are not committed, so a fresh clone has none).")
    return max(done, key=lambda d: (d / "checkpoints" / "model.pth").stat().st_mtime)
