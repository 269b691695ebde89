"""Manifests of real datasets: Kinetics-400 (official CSVs), Something-Something V1 (frame folders), the TSAM
authors' list files, and your own videos in one folder per class. Each builder probes every clip in parallel
(:mod:`tsamlib.data.probe`), keeps unreadable ones with their reason in ``problem``, writes the CSV and returns it.
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Sequence

import pandas as pd

from .manifest import SPLIT_ALIASES, SPLITS, build_manifest, normalize_split
from .probe import VIDEO_EXTENSIONS

__all__ = ["index_kinetics400", "index_something_v1", "index_list", "index_folder"]


def _walk_videos(root: Path, extensions: Sequence[str] = VIDEO_EXTENSIONS) -> tuple[dict[str, str], Counter]:
    """Walk ``root`` once: stem -> path for video files, and a count of other files (reported, not used)."""
    found: dict[str, str] = {}
    other: Counter = Counter()
    dupes = 0
    for folder, _, files in os.walk(root):
        for name in files:
            stem, ext = os.path.splitext(name)
            if ext.lower() not in extensions:
                other[ext.lower() or "(no extension)"] += 1
            elif stem in found:
                dupes += 1
            else:
                found[stem] = os.path.join(folder, name)
    if dupes:
        print(f"warning: {dupes} videos under {root} share a name with another; the first found is used")
    return found, other


def _report_other(other: Counter, where: Path) -> None:
    if other:
        kinds = ", ".join(f"{ext} x{n}" for ext, n in other.most_common(8))
        print(f"skipped {sum(other.values())} non-video files under {where}: {kinds}")


def _annotation_files(annotations: dict | str | os.PathLike) -> dict[str, Path]:
    """split -> CSV path; a folder (or dict value that is a folder) is searched for train/val/test CSVs."""
    if not isinstance(annotations, dict):
        annotations = {s: annotations for s in SPLITS}
    files: dict[str, Path] = {}
    for split, where in annotations.items():
        split, where = normalize_split(split), Path(where)
        if where.is_dir():
            names = {"train": ["train"], "valid": ["validate", "val", "valid", "validation"], "test": ["test"]}[split]
            hits = [where / f"{n}.csv" for n in names if (where / f"{n}.csv").is_file()]
            if not hits:
                if len(annotations) < len(SPLITS) or split != "test":
                    raise FileNotFoundError(f"No {split} annotation CSV in {where}: expected one of "
                                            f"{[n + '.csv' for n in names]}.")
                continue
            where = hits[0]
        elif not where.is_file():
            raise FileNotFoundError(f"Kinetics annotation file {where} for split {split!r} does not exist.")
        files[split] = where
    return files


def index_kinetics400(root: str | os.PathLike, annotations: dict | str | os.PathLike, out: str | os.PathLike,
                      workers: int | None = None) -> pd.DataFrame:
    """Kinetics-400 from official CSVs (``label,youtube_id,time_start,time_end,split``).

    ``annotations``: split -> CSV (or folder holding train.csv / validate.csv / test.csv), or one folder.
    Videos ``{youtube_id}_{start:06d}_{end:06d}.mp4`` (or ``{youtube_id}.mp4``) may lie flat in ``root``,
    in per-split or per-class folders. Class index = sorted class names; test rows without label get -1.
    """
    root = Path(root)
    tables = {}
    for split, csv in _annotation_files(annotations).items():
        t = pd.read_csv(csv, dtype={"youtube_id": str}, keep_default_na=False)
        need = {"youtube_id", "time_start", "time_end"}
        if not need <= set(t.columns):
            raise ValueError(f"{csv} lacks columns {sorted(need - set(t.columns))}: expected the official "
                             "Kinetics CSV header label,youtube_id,time_start,time_end,split.")
        tables[split] = t
    classes = sorted({n for t in tables.values() if "label" in t for n in t["label"] if n != ""})
    index = {n: i for i, n in enumerate(classes)}
    found, other = _walk_videos(root)
    _report_other(other, root)
    records = []
    for split, t in tables.items():
        labels = t["label"] if "label" in t else [""] * len(t)
        for name, yid, start, end in zip(labels, t["youtube_id"], t["time_start"], t["time_end"]):
            stem = f"{yid}_{int(start):06d}_{int(end):06d}"
            path = found.get(stem) or found.get(yid) or str(root / f"{stem}.mp4")
            records.append(dict(path=path, label=index.get(name, -1), label_name=name, split=split))
    return build_manifest(records, out, workers=workers)


def index_something_v1(root: str | os.PathLike, annotation_dir: str | os.PathLike, out: str | os.PathLike,
                       workers: int | None = None) -> pd.DataFrame:
    """Something-Something v1: frame folders ``root/<id>/00001.jpg`` and the official ``id;label`` CSVs.

    Reads ``something-something-v1-labels.csv`` (class index = line number), ``-train.csv``,
    ``-validation.csv`` and, when present, ``-test.csv`` (ids only, label -1).
    """
    root, ann = Path(root), Path(annotation_dir)
    labels_file = ann / "something-something-v1-labels.csv"
    if not labels_file.is_file():
        raise FileNotFoundError(f"{labels_file} not found: pass the folder holding the official SSv1 CSVs.")
    classes = [ln.strip() for ln in labels_file.read_text(encoding="utf-8").splitlines() if ln.strip()]
    index = {n: i for i, n in enumerate(classes)}
    records = []
    for split, suffix in (("train", "train"), ("valid", "validation"), ("test", "test")):
        f = ann / f"something-something-v1-{suffix}.csv"
        if not f.is_file():
            if split != "test":
                raise FileNotFoundError(f"{f} not found: the SSv1 {split} annotations are needed.")
            continue
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            vid, _, name = line.strip().partition(";")
            if name and name not in index:
                raise ValueError(f"{f}:{n}: label {name!r} is not in {labels_file.name}.")
            records.append(dict(path=str(root / vid), label=index.get(name, -1), label_name=name, split=split))
    return build_manifest(records, out, workers=workers)


def index_list(root: str | os.PathLike, list_files: dict, out: str | os.PathLike, video_ext: str = ".mp4",
               class_names: Sequence[str] | None = None, workers: int | None = None) -> pd.DataFrame:
    """The TSAM authors' list format: ``id label`` per line (TSM's ``id n_frames label`` also accepted).

    Clips are looked up at ``root/videos/<id><ext>``, ``root/<id><ext>``, then frame folder ``root/<id>``.
    """
    root = Path(root)
    records = []
    for split, lst in list_files.items():
        split, lst = normalize_split(split), Path(lst)
        if not lst.is_file():
            raise FileNotFoundError(f"List file {lst} for split {split!r} does not exist.")
        for n, line in enumerate(lst.read_text(encoding="utf-8").splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2 or not parts[-1].lstrip("-").isdigit():
                raise ValueError(f"{lst}:{n}: expected 'id label' with an integer label, got {line!r}.")
            vid, label = parts[0], int(parts[-1])
            candidates = [root / "videos" / f"{vid}{video_ext}", root / f"{vid}{video_ext}", root / vid]
            path = next((c for c in candidates if c.exists()), candidates[0])
            if class_names is not None and not 0 <= label < len(class_names):
                raise ValueError(f"{lst}:{n}: label {label} out of range for {len(class_names)} class_names.")
            name = class_names[label] if class_names is not None else str(label)
            records.append(dict(path=str(path), label=label, label_name=name, split=split))
    return build_manifest(records, out, workers=workers)


def index_folder(root: str | os.PathLike, out: str | os.PathLike, valid_fraction: float = 0.2, seed: int = 0,
                 extensions: Sequence[str] = VIDEO_EXTENSIONS, workers: int | None = None) -> pd.DataFrame:
    """One folder per class of videos, or ``root/train/<class>`` + ``root/valid|val/<class>`` (+ test).

    Without split folders, each class is split deterministically (``seed``): ``valid_fraction`` of it
    (at least one clip when the class has two or more) goes to "valid".
    """
    import numpy as np
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Dataset folder {root} does not exist.")
    exts = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
    split_dirs = {normalize_split(d.name): d for d in root.iterdir()
                  if d.is_dir() and d.name.lower() in SPLIT_ALIASES}
    groups: dict[tuple[str, str | None], list[str]] = {}
    other: Counter = Counter()
    for split, base in (split_dirs.items() if split_dirs else [(None, root)]):
        for f in base.iterdir():
            if f.is_file():
                other["(file outside class folders)"] += 1
                continue
            if f.name.startswith("."):
                other["(hidden folder)"] += 1
                continue
            found, o = _walk_videos(f, exts)
            other.update(o)
            groups[(f.name, split)] = sorted(found.values())
    _report_other(other, root)
    classes = sorted({c for c, _ in groups})
    if not classes:
        raise ValueError(f"No class folders found under {root}: "
                         "expected root/<class>/<video> or root/train/<class>/...")
    if not any(groups.values()):   # class folders but not one video: no manifest is written
        raise ValueError(f"No videos found under {root} (looked for {', '.join(exts)} in {len(classes)} class "
                         "folders): check the folder, or pass the videos' extension.")
    records = []
    for (name, split), files in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        if split is None:
            order = np.random.default_rng([seed, classes.index(name)]).permutation(len(files))
            n_valid = min(len(files) - 1, max(1, round(valid_fraction * len(files)))) if valid_fraction > 0 else 0
            valid = set(order[:max(n_valid, 0)].tolist())
            splits = ["valid" if i in valid else "train" for i in range(len(files))]
        else:
            splits = [split] * len(files)
        records += [dict(path=f, label=classes.index(name), label_name=name, split=s) for f, s in zip(files, splits)]
    return build_manifest(records, out, workers=workers)
