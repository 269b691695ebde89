"""Dataset names: the synthetic datasets that notebook 01 builds under ``data/<name>/``, or a manifest path.

    dataset_manifest("default")                      # data/default/manifest.csv (error naming 01 when missing)
    dataset_manifest("default", build_missing=True)  # builds it first when missing (notebook 03 does this)
    dataset_manifest("my_videos.csv")                # any manifest CSV (python -m tsamlib index ...)
"""
from __future__ import annotations

import os
from pathlib import Path

from ..runs.fileio import relative_to_repo, repo_root
from .synthetic import KINDS, make_synthetic_dataset, outdated

__all__ = ["dataset_dir", "build_dataset", "dataset_manifest"]


def dataset_dir(kind: str) -> Path:
    """Where notebook 01 writes the synthetic dataset ``kind``: ``data/<kind>/``."""
    return repo_root() / "data" / kind


def build_dataset(kind: str, seed: int = 0, n_per_class: int | None = None, workers: int | None = 2) -> Path:
    """Build (or find, when already built with the same parameters) the synthetic dataset ``kind`` under
    ``data/<kind>/`` exactly as notebook 01 does; return its manifest path. mini-something has no sound."""
    root = make_synthetic_dataset(dataset_dir(kind), kind=kind, seed=seed, n_per_class=n_per_class,
                                  workers=workers, audio=kind != "mini-something")
    return root / "manifest.csv"


def dataset_manifest(dataset: str | os.PathLike, build_missing: bool = False) -> Path:
    """The manifest of a synthetic dataset's name (``data/<name>/manifest.csv``) or of a manifest path.

    A synthetic dataset that is missing raises FileNotFoundError naming notebook 01, or is built first with
    ``build_missing=True`` (deterministic: the same generator and seed as notebook 01)."""
    if str(dataset) in KINDS:
        path = dataset_dir(str(dataset)) / "manifest.csv"
        missing = not path.is_file()
        stale = None if missing else outdated(path.parent)   # "written by an older generator", "left incomplete"
        why = "is missing" if missing else stale and f"was {stale}"
        if why:
            where = relative_to_repo(path if missing else path.parent)
            if not build_missing:
                raise (FileNotFoundError if missing else FileExistsError)(
                    f"{where} {why} ({str(dataset)!r}): build it with notebooks/01_build_datasets.ipynb or "
                    f"`python -m tsamlib synth --kind {dataset} --out data/{dataset}`.")
            print(f"{where} {why}: building the synthetic {str(dataset)!r} dataset now (deterministic, seed 0, the "
                  "same generator as notebook 01) ...", flush=True)
            build_dataset(str(dataset))
        return path
    path = Path(dataset)
    if not path.is_file():
        raise FileNotFoundError(f"dataset={str(dataset)!r} is neither a synthetic dataset ({', '.join(KINDS)}) "
                                "nor an existing manifest CSV; build one with `python -m tsamlib index ...`.")
    return path
