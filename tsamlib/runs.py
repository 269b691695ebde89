"""Run folders: ``results/runs/<run_id>/`` with params, metrics and provenance, written atomically.

    results/runs/<run_id>/
        params.json        what was asked (the notebook's parameters), written at start
        metrics.json       per-epoch and final metrics + environment (versions, git commit, seed)
        train.ipynb        the executed notebook (papermill writes it; see notebooks/03_train.ipynb)
        checkpoints/       last.pth (model, optimiser, epoch, RNG state) and model.pth (final weights)

A finished run (``metrics.json`` with ``"finished": true``) is never overwritten silently: starting it again
raises, ``overwrite=True`` moves the old folder aside first, ``resume=True`` continues an unfinished one.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

__all__ = ["repo_root", "runs_dir", "mel_cache_dir", "atomic_path", "atomic_write_json", "read_json", "environment_info", "Run", "start_run",
           "open_run", "is_finished", "dataset_manifest", "papermill_output_path", "save_notebook_copy"]

PACKAGES = ("torch", "torchvision", "timm", "fastai", "fastcore", "numpy", "librosa", "decord", "av", "pandas",
            "papermill", "accelerate")


def repo_root() -> Path:
    """The repository root (the folder holding ``tsamlib/``), wherever the notebook runs from."""
    return Path(__file__).resolve().parents[1]


def runs_dir(runs_root: str | os.PathLike | None = None) -> Path:
    """Where runs live: ``runs_root`` when given, else ``results/runs`` of the repository."""
    return Path(runs_root) if runs_root else repo_root() / "results" / "runs"


def mel_cache_dir() -> Path:
    """The shared on-disk cache of log-mel spectrograms (``data/cache/mel``)."""
    return repo_root() / "data" / "cache" / "mel"


@contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path`` (same suffix) to write to; on success it replaces ``path``
    (``os.replace``, after an fsync when asked), on any error it is removed. Readers never see a half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        yield Path(tmp)
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    return json.loads(Path(path).read_text())


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=repo_root(), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def environment_info() -> dict[str, Any]:
    """Package versions, git commit (and whether the tree had changes), Python, platform, device."""
    import torch

    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return dict(git_commit=_git("rev-parse", "HEAD"), git_dirty=bool(status) if status is not None else None,
                python=sys.version.split()[0], platform=platform.platform(), packages=versions,
                device=torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                torch_threads=torch.get_num_threads(), cpu_count=os.cpu_count())


def is_finished(run_dir: str | os.PathLike) -> bool:
    m = Path(run_dir) / "metrics.json"
    return m.is_file() and bool(read_json(m).get("finished"))


@dataclass
class Run:
    """An open run folder. ``metrics`` is kept in memory and saved atomically by :meth:`save`."""

    run_id: str
    path: Path
    params: dict[str, Any]
    metrics: dict[str, Any]

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    def save(self) -> None:
        atomic_write_json(self.path / "metrics.json", self.metrics)

    def log_epoch(self, row: dict[str, Any]) -> None:
        """Replace or append the row of ``row["epoch"]`` and save."""
        epochs = [r for r in self.metrics["epochs"] if r["epoch"] != row["epoch"]] + [row]
        self.metrics["epochs"] = sorted(epochs, key=lambda r: r["epoch"])
        self.save()

    def finish(self, final: dict[str, Any]) -> None:
        self.metrics.update(final=final, finished=True, finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        self.save()


def start_run(run_id: str, params: dict[str, Any], runs_root: str | os.PathLike | None = None,
              resume: bool = False, overwrite: bool = False) -> Run:
    """Create (or, with ``resume``, reopen) ``runs_root/run_id`` and record params and environment."""
    if not run_id or any(c in run_id for c in "/\\") or run_id.startswith("."):
        raise ValueError(f"run_id={run_id!r} must be a plain folder name (no slashes).")
    path = runs_dir(runs_root) / run_id
    if path.exists() and is_finished(path):
        if not overwrite:
            raise FileExistsError(f"run {path} is finished; choose another run_id, or pass overwrite=True "
                                  "(the old run is moved aside, not deleted).")
        path.rename(path.with_name(f"{run_id}.old-{time.strftime('%Y%m%d-%H%M%S')}"))
    elif path.exists() and (path / "metrics.json").exists() and not resume:
        raise FileExistsError(f"run {path} exists and is unfinished: pass resume=True to continue it from its "
                              "last checkpoint, or choose another run_id.")
    path.mkdir(parents=True, exist_ok=True)
    if resume and (path / "metrics.json").exists():
        old = read_json(path / "params.json")
        changed = {k: (old.get(k), v) for k, v in params.items() if k not in ("resume",) and old.get(k) != v}
        if changed:
            raise ValueError(f"cannot resume {path} with different parameters: {changed}")
        metrics = read_json(path / "metrics.json")
        metrics.setdefault("resumed_at", []).append(time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    else:
        metrics = dict(run_id=run_id, started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), finished=False,
                       epochs=[], params=params)
    metrics["environment"] = environment_info()
    atomic_write_json(path / "params.json", params)
    run = Run(run_id, path, params, metrics)
    run.save()
    return run


def open_run(run_dir: str | os.PathLike) -> Run:
    """Open an existing run folder read-only-ish (for evaluation and prediction)."""
    path = Path(run_dir)
    if not (path / "params.json").is_file():
        raise FileNotFoundError(f"{path} is not a run folder (no params.json); runs live in results/runs/<run_id>/.")
    metrics = read_json(path / "metrics.json") if (path / "metrics.json").is_file() else {}
    return Run(path.name, path, read_json(path / "params.json"), metrics)


def dataset_manifest(dataset: str | os.PathLike) -> Path:
    """A generated dataset's name (``data/<name>/manifest.csv``, written by notebook 01) or a manifest path."""
    from .synthetic import KINDS

    if str(dataset) in KINDS:
        path = repo_root() / "data" / str(dataset) / "manifest.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: run notebooks/01_build_datasets.ipynb first, or "
                                    f"`python -m tsamlib synth --kind {dataset} --out data/{dataset}`.")
        return path
    path = Path(dataset)
    if not path.is_file():
        raise FileNotFoundError(f"dataset={str(dataset)!r} is neither a generated dataset ({', '.join(KINDS)}) "
                                "nor an existing manifest CSV; build one with `python -m tsamlib index ...`.")
    return path


def papermill_output_path(injected: str | None = None) -> Path | None:
    """Where papermill writes this executed notebook: ``PAPERMILL_OUTPUT_PATH`` when injected
    (``--inject-paths``), else the output argument of a ``papermill IN OUT`` command that started the kernel."""
    if injected:
        return Path(injected).resolve()
    try:
        import psutil

        for proc in psutil.Process().parents():
            args = proc.cmdline()
            names = [a for a in args if a.endswith(".ipynb")]
            if any(Path(a).name == "papermill" or a.endswith("papermill/__main__.py") or a == "papermill"
                   for a in args) and len(names) >= 2:
                return (Path(proc.cwd()) / names[1]).resolve()
    except Exception:
        return None
    return None


def save_notebook_copy(run: Run, injected: str | None = None) -> Path | None:
    """Copy the executed notebook (as papermill has saved it so far) to ``<run>/train.ipynb``."""
    import shutil

    src = papermill_output_path(injected)
    dst = run.path / "train.ipynb"
    if src is None or not src.is_file():
        print("not run by papermill: save this notebook yourself if you want it beside the run "
              f"({dst}).")
        return None
    if src != dst.resolve():
        shutil.copyfile(src, dst)
    run.metrics["notebook"] = str(dst.relative_to(run.path))
    run.save()
    return dst
