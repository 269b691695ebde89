"""Manifests: one CSV row per clip, probed once, shared by every loader and notebook.

Columns (exactly): ``path, label, label_name, split, n_frames, fps, duration, has_audio, problem``.

- ``path`` is stored relative to the CSV's folder when the clip lies under it (the dataset can move),
  absolute otherwise; :func:`read_manifest` always returns absolute paths.
- ``split`` is "train", "valid" or "test"; ``label`` indexes the sorted (or official) class names,
  -1 where unknown (Kinetics test set).
- ``problem`` is "" for a readable clip, otherwise a short reason ("missing file", "empty file",
  "cannot open: ...", "no video stream", "zero frames", ...). Broken clips stay in the manifest so that
  nothing is dropped silently; loaders filter on ``problem == ""``.

Probing uses decord's ``VideoReader`` (the reader the training loader uses, so ``n_frames`` agrees with
it) and PyAV for the audio track. decord's ``AudioReader`` raises ``DECORDError: Can't find audio
stream`` on a file without audio and decodes the whole track, so it is not used here. A ``.wav`` next
to the video (same stem, the TSAM authors' layout) also counts as audio. A folder of images (the
Something-Something v1 layout) is probed by counting its frames (fps NaN, no audio).

Builders for real datasets (:func:`index_kinetics400`, :func:`index_something_v1`, :func:`index_list`,
:func:`index_folder`) each return the DataFrame and write the CSV.
"""
from __future__ import annotations

import math
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from .runs import atomic_path

__all__ = [
    "COLUMNS", "SPLITS", "VIDEO_EXTENSIONS", "IMAGE_EXTENSIONS", "normalize_split", "probe_video",
    "probe_many", "build_manifest", "write_manifest", "read_manifest", "summarize_manifest",
    "index_kinetics400", "index_something_v1", "index_list", "index_folder",
]

COLUMNS = ["path", "label", "label_name", "split", "n_frames", "fps", "duration", "has_audio", "problem"]
SPLITS = ("train", "valid", "test")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_SPLIT_ALIASES = {"train": "train", "training": "train", "valid": "valid", "val": "valid", "validate": "valid",
                  "validation": "valid", "test": "test", "testing": "test"}


def normalize_split(name: str) -> str:
    """Map split spellings ("val", "validate", "validation", "training", ...) to train/valid/test."""
    key = str(name).strip().lower()
    if key not in _SPLIT_ALIASES:
        raise ValueError(f"Unknown split {name!r}: use one of {sorted(_SPLIT_ALIASES)}.")
    return _SPLIT_ALIASES[key]


# ----------------------------------------------------------------------------------------------- probing
def _result(n_frames: int = 0, fps: float = math.nan, duration: float = math.nan, has_audio: bool = False,
            problem: str = "") -> dict:
    return dict(n_frames=int(n_frames), fps=float(fps), duration=float(duration), has_audio=bool(has_audio),
                problem=problem)


def _short(err: BaseException, limit: int = 60) -> str:
    """First line of an exception message, trimmed, without decord's '[time] file.cc:123:' prefix."""
    if isinstance(err, OSError) and err.strerror:  # PyAV: message without the (long) file name
        return err.strerror[:limit]
    lines = str(err).strip().splitlines()
    text = lines[0] if lines else type(err).__name__
    if "] " in text and text.startswith("["):
        text = text.split("] ", 1)[1]
    return text[:limit]


def _probe_frame_dir(path: Path) -> dict:
    n = sum(1 for f in os.scandir(path) if f.is_file() and f.name.lower().endswith(IMAGE_EXTENSIONS))
    return _result(n_frames=n, problem="" if n else "empty frame folder")


def _count_frames(path: Path) -> tuple[int, float]:
    """(n_frames, fps) with decord's VideoReader, or PyAV's demuxer where decord is not installed."""
    try:
        import decord
    except ImportError:  # documented fallback: PyAV counts video packets
        import av
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            n = s.frames or sum(1 for p in c.demux(s) if p.size)
            return n, float(s.average_rate or math.nan)
    vr = decord.VideoReader(str(path), num_threads=1)
    n = len(vr)
    if n:
        vr[0]  # the first frame must decode
    return n, float(vr.get_avg_fps())


def probe_video(path: str | os.PathLike) -> dict:
    """``dict(n_frames, fps, duration, has_audio, problem)`` for a video file or frame folder; never raises."""
    p = Path(path)
    try:
        if p.is_dir():
            return _probe_frame_dir(p)
        if not p.exists():
            return _result(problem="missing file")
        if p.stat().st_size == 0:
            return _result(problem="empty file")
        import av
        try:
            with av.open(str(p)) as c:
                n_video, n_audio = len(c.streams.video), len(c.streams.audio)
        except Exception as e:  # text renamed .mp4, truncated file without index, ...
            return _result(problem=f"cannot open: {_short(e)}")
        has_audio = n_audio > 0 or p.with_suffix(".wav").exists()
        if n_video == 0:
            return _result(has_audio=has_audio, problem="no video stream")
        try:
            n, fps = _count_frames(p)
        except Exception as e:
            return _result(has_audio=has_audio, problem=f"cannot decode: {_short(e)}")
        if n == 0:
            return _result(has_audio=has_audio, problem="zero frames")
        duration = n / fps if fps > 0 else math.nan
        return _result(n, fps, duration, has_audio)
    except Exception as e:  # a probe never raises: anything unexpected becomes a problem string
        return _result(problem=f"probe failed: {type(e).__name__}: {_short(e)}")


def _init_worker() -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "DECORD_NUM_THREADS"):
        os.environ[var] = "1"


def _probe_isolated(path: str) -> dict:
    """Probe one file in its own process: used after a worker crashed (e.g. a decoder segfault)."""
    try:
        with ProcessPoolExecutor(1, initializer=_init_worker) as ex:
            return ex.submit(probe_video, path).result()
    except BrokenProcessPool:
        return _result(problem="probe crashed the worker process")


def probe_many(paths: Sequence[str | os.PathLike], workers: int | None = None, desc: str = "probe") -> list[dict]:
    """Probe ``paths`` in a process pool (one thread per worker) with a progress bar, results in order."""
    from tqdm.auto import tqdm
    paths = [str(p) for p in paths]
    workers = min(4, os.cpu_count() or 1) if workers is None else max(1, int(workers))
    if workers == 1 or len(paths) < 2:
        return [probe_video(p) for p in tqdm(paths, desc=desc, unit="file", disable=not paths)]
    results: list[dict] = []
    chunk = max(1, min(16, len(paths) // (workers * 8)))
    with tqdm(total=len(paths), desc=desc, unit="file") as bar:
        try:
            with ProcessPoolExecutor(workers, initializer=_init_worker) as ex:
                for r in ex.map(probe_video, paths, chunksize=chunk):
                    results.append(r)
                    bar.update()
        except BrokenProcessPool:  # a decoder crashed a worker: finish the rest one process per file
            for p in paths[len(results):]:
                results.append(_probe_isolated(p))
                bar.update()
    return results


# ------------------------------------------------------------------------------------------- CSV in/out
def build_manifest(records: Iterable[dict], out: str | os.PathLike, workers: int | None = None,
                   verbose: bool = True) -> pd.DataFrame:
    """Probe ``records`` (dicts with path, label, label_name, split), write the CSV to ``out``, print a summary."""
    df = pd.DataFrame(list(records), columns=["path", "label", "label_name", "split"])
    probed = pd.DataFrame(probe_many(df["path"].tolist(), workers=workers),
                          columns=["n_frames", "fps", "duration", "has_audio", "problem"])
    df = _typed(pd.concat([df.reset_index(drop=True), probed], axis=1))
    write_manifest(df, out)
    if verbose:
        print(summarize_manifest(df))
        print(f"manifest written: {out}")
    return df


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """Columns in order with their dtypes: label/n_frames int, fps/duration float, has_audio bool, text str."""
    df = df[COLUMNS].copy()
    for c in ("path", "label_name", "split", "problem"):
        df[c] = df[c].fillna("").astype(str)
    df["label"] = df["label"].fillna(-1).astype("int64")
    df["n_frames"] = df["n_frames"].fillna(0).astype("int64")
    df["fps"] = df["fps"].astype("float64")
    df["duration"] = df["duration"].astype("float64")
    hv = df["has_audio"]
    df["has_audio"] = hv if hv.dtype == bool else hv.astype(str).str.lower().isin(["true", "1"])
    return df


def write_manifest(df: pd.DataFrame, csv_path: str | os.PathLike) -> Path:
    """Write ``df`` atomically (temp file + ``os.replace``); paths under the CSV's folder become relative."""
    csv_path = Path(csv_path).absolute()
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"Cannot write manifest {csv_path}: columns {missing} are missing (need {COLUMNS}).")
    folder = csv_path.parent
    folder.mkdir(parents=True, exist_ok=True)
    out = _typed(df)

    def rel(p: str) -> str:
        ap = Path(os.path.abspath(p))
        return ap.relative_to(folder).as_posix() if ap.is_relative_to(folder) else str(ap)

    out["path"] = out["path"].map(rel)
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        out.to_csv(f, index=False)
    return csv_path


def read_manifest(csv_path: str | os.PathLike) -> pd.DataFrame:
    """Read a manifest: absolute ``path`` strings, label int, has_audio bool, problem "" for fine rows."""
    csv_path = Path(csv_path).absolute()
    if not csv_path.is_file():
        raise FileNotFoundError(f"Manifest {csv_path} does not exist: build it with `python -m tsamlib index ...`.")
    df = pd.read_csv(csv_path, keep_default_na=False, na_values={"fps": ["", "nan", "NaN"],
                                                                 "duration": ["", "nan", "NaN"]},
                     dtype={"path": str, "label_name": str, "split": str, "problem": str})
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{csv_path} is not a TSAM manifest: columns {missing} are missing (need {COLUMNS}).")
    folder = csv_path.parent
    df["path"] = [p if os.path.isabs(p) else os.path.normpath(folder / p) for p in df["path"]]
    return _typed(df)


def summarize_manifest(df: pd.DataFrame) -> str:
    """Counts per split, per class and split, problems by reason, clips without audio, missing files."""
    ok = df["problem"] == ""
    lines = [f"{len(df)} clips: {int(ok.sum())} ok, {int((~ok).sum())} with problems, "
             f"{int((~df['has_audio']).sum())} without audio"]
    lines.append("per split: " + ", ".join(f"{s}={n}" for s, n in df["split"].value_counts().sort_index().items()))
    if len(df):
        cls = df["label"].astype(str) + " " + df["label_name"]
        table = pd.crosstab(cls.rename("label"), df["split"].rename("split"))
        table.columns.name = None
        lines.append("per class and split:\n" + table.to_string())
    reasons = Counter(p.split(":")[0] for p in df.loc[~ok, "problem"])
    for reason, n in reasons.most_common():
        lines.append(f"  problem {reason!r}: {n}")
    missing = df.loc[df["problem"] == "missing file", "path"].tolist()
    if missing:
        shown = "\n    ".join(missing[:10]) + (f"\n    ... and {len(missing) - 10} more" if len(missing) > 10 else "")
        lines.append(f"  missing files listed in the annotations but absent on disk ({len(missing)}):\n    {shown}")
    return "\n".join(lines)



# ------------------------------------------------------------------------------------------- builders
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
                  if d.is_dir() and d.name.lower() in _SPLIT_ALIASES}
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
