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
:func:`index_folder`) each return the DataFrame and write the CSV; probe workers end with the process that
started them (Ctrl-C, SIGTERM, SIGKILL). :func:`check_manifest` checks a manifest before training and raises
:class:`ManifestError` listing every problem (columns, labels, class list, duplicates, split names, empty splits).
"""
from __future__ import annotations

import difflib
import math
import os
import re
import signal
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from .fileio import atomic_path, relative_to_repo

__all__ = [
    "COLUMNS", "SPLITS", "VIDEO_EXTENSIONS", "IMAGE_EXTENSIONS", "normalize_split", "probe_video",
    "probe_many", "build_manifest", "write_manifest", "read_manifest", "summarize_manifest",
    "ManifestError", "check_manifest", "single_thread",
    "index_kinetics400", "index_something_v1", "index_list", "index_folder",
]

COLUMNS = ["path", "label", "label_name", "split", "n_frames", "fps", "duration", "has_audio", "problem"]
SPLITS = ("train", "valid", "test")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")  # frames of a frame folder (tsamlib.video reads the same)
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


_DECORD_PREFIX = re.compile(r"^\[[^\]]*\]\s*(\S+:\d+:\s*)?")  # "[20:44:35] /src/video_reader.cc:83: "


def _short(err: BaseException, limit: int = 60, with_type: bool = False) -> str:
    """First line of an exception message, trimmed, without decord's '[time] file.cc:123:' prefix.

    PyAV's ``OSError`` gives its ``strerror`` (the message without the long file name); ``with_type``
    puts the exception's class name first ("DECORDError: ..."). Shared with :mod:`tsamlib.video`."""
    if isinstance(err, OSError) and err.strerror:
        text = str(err.strerror)
    else:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        text = _DECORD_PREFIX.sub("", lines[0]) if lines else ""
    if with_type:
        text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return (text or type(err).__name__)[:limit]


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


_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "DECORD_NUM_THREADS")


def single_thread() -> None:
    """One thread per library in this (worker) process: the OpenMP/MKL/OpenBLAS/decord/numba thread variables
    are set to 1, and torch gets ``torch.set_num_threads(1)`` if it is already imported.

    Imports neither torch nor numba. ``NUMBA_NUM_THREADS`` is set only while numba is not yet imported: numba
    reads it at import, and raises on its next compilation if it changes after its threads have started."""
    for var in _THREAD_VARS:
        os.environ[var] = "1"
    if "numba" not in sys.modules:
        os.environ["NUMBA_NUM_THREADS"] = "1"
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def _init_worker(main_pid: int | None = None) -> None:
    """Probe worker set-up: one thread per library (:func:`single_thread`); SIGINT ignored (the parent alone
    handles Ctrl-C and ends the workers); the worker dies with its parent, even when the parent is killed by
    SIGTERM or SIGKILL."""
    single_thread()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    if not _die_with_parent():  # not Linux: poll the parent instead
        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(0.5)
            os._exit(1)
        threading.Thread(target=watch, name="tsam-probe-parent-watch", daemon=True).start()
    if main_pid is not None and not _pid_alive(main_pid):  # the parent died before the death signal was set
        os._exit(1)


def _die_with_parent() -> bool:
    """Linux: ask the kernel to SIGKILL this process when its parent dies (``prctl(PR_SET_PDEATHSIG)``)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) == 0  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _end_pool(ex: ProcessPoolExecutor) -> None:
    """Stop a pool now: cancel queued probes, terminate (then kill) the workers and reap them."""
    procs = list((getattr(ex, "_processes", None) or {}).values())
    ex.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(3)
        if p.is_alive():
            p.kill()
            p.join(1)


@contextmanager
def _probe_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A process pool of probe workers that never outlives its caller: a normal exit waits for the probes;
    an exception (KeyboardInterrupt on Ctrl-C, BrokenProcessPool, ...) ends the workers at once."""
    ex = ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(os.getpid(),))
    try:
        yield ex
        ex.shutdown(wait=True)
    except BaseException:
        _end_pool(ex)
        raise


def _probe_isolated(path: str) -> dict:
    """Probe one file in its own process: used after a worker crashed (e.g. a decoder segfault)."""
    try:
        with _probe_pool(1) as ex:
            return ex.submit(probe_video, path).result()
    except BrokenProcessPool:
        return _result(problem="probe crashed the worker process")


def probe_many(paths: Sequence[str | os.PathLike], workers: int | None = None, desc: str = "probe") -> list[dict]:
    """Probe ``paths`` in a process pool (one thread per worker) with a progress bar, results in order.

    Interrupting (Ctrl-C) or killing the calling process ends the worker processes too."""
    from tqdm.auto import tqdm
    paths = [str(p) for p in paths]
    workers = min(4, os.cpu_count() or 1) if workers is None else max(1, int(workers))
    if workers == 1 or len(paths) < 2:
        return [probe_video(p) for p in tqdm(paths, desc=desc, unit="file", disable=not paths)]
    results: list[dict] = []
    chunk = max(1, min(16, len(paths) // (workers * 8)))
    with tqdm(total=len(paths), desc=desc, unit="file") as bar:
        try:
            with _probe_pool(workers) as ex:
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
        print(f"manifest written: {relative_to_repo(out)}")
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



# ------------------------------------------------------------------------------------------- checking
class ManifestError(ValueError):
    """A manifest that training cannot use; the message names the file and lists every problem found."""


_REQUIRED = ("path", "label", "split")  # what tsamlib.data.read_table needs in a DataFrame
_INDEX_HINT = "`python -m tsamlib index ...`"


def _int_label(v, float_text: bool) -> int | None:
    """``v`` as an int label, or None when it is not a whole number (NaN, text, 1.5, True)."""
    if isinstance(v, (bool, np.bool_)):
        return None
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return int(v) if math.isfinite(v) and float(v).is_integer() else None
    if isinstance(v, str):
        try:
            return int(v.strip())
        except ValueError:
            if not float_text:
                return None
        try:
            f = float(v)
        except ValueError:
            return None
        return int(f) if math.isfinite(f) and f.is_integer() else None
    return None


def _examples(items: Sequence[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f", ... ({len(items)} in all)" if len(items) > n else "")


def _show(v) -> str:
    return repr(v) if isinstance(v, str) else str(v)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _suggest_split(name: str) -> str | None:
    try:
        return normalize_split(name)
    except ValueError:
        close = difflib.get_close_matches(str(name).strip().lower(), list(_SPLIT_ALIASES), n=1, cutoff=0.6)
        return _SPLIT_ALIASES[close[0]] if close else None


def check_manifest(manifest, required_splits: Sequence[str] = ("train", "valid")) -> dict:
    """Check a manifest (CSV path or DataFrame) before training; raise :class:`ManifestError` listing every problem.

    Accepts what the loaders (:func:`tsamlib.data.read_table`, ``video_dataloaders``) accept and rejects what
    would fail later or train silently on the wrong thing: missing columns (a CSV needs all of ``COLUMNS``, a
    DataFrame ``path, label, split``), no rows, labels that are not whole numbers, negative labels (-1, "unknown",
    is allowed in the test split only), labels not numbered 0..n_classes-1 without gaps, a label with two names
    or a name with two labels, the same path twice in one split, split names other than train/valid/test, and a
    split of ``required_splits`` without usable rows. Rows with a non-empty ``problem`` are not errors: they
    are excluded (counted and shown in the summary).

    Returns ``dict(manifest, n_rows, rows, n_classes, classes, n_excluded, excluded_reasons, excluded)``:
    ``rows`` = usable rows per split (train, valid, test), ``classes`` = names indexed by label,
    ``excluded_reasons`` = reason -> count, ``excluded`` = up to 5 excluded rows as ``dict(path, split, problem)``.
    A missing CSV raises ``FileNotFoundError``.
    """
    is_csv = not isinstance(manifest, pd.DataFrame)
    where = str(Path(manifest).absolute()) if is_csv else "(DataFrame)"
    problems: list[str] = []
    if is_csv:
        csv_path = Path(where)
        if not csv_path.is_file():
            raise FileNotFoundError(f"Manifest {csv_path} does not exist: build it with {_INDEX_HINT}.")
        try:  # the raw text, read like read_manifest does, so that every problem can be reported
            raw = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
            raise ManifestError(f"Manifest {where} cannot be read as a CSV ({_short(e, 200)}): rebuild it with "
                                f"{_INDEX_HINT}.") from None
        needed = COLUMNS
    else:
        raw = manifest.reset_index(drop=True)
        needed = list(_REQUIRED)
    row_name = (lambda i: f"line {i + 2}") if is_csv else (lambda i: f"row {i}")

    missing = [c for c in needed if c not in raw.columns]
    if missing:
        problems.append(f"columns {missing} are missing (a manifest {'CSV' if is_csv else 'DataFrame'} needs "
                        f"{', '.join(needed)}): rebuild the manifest with {_INDEX_HINT}.")
    if len(raw) == 0:
        problems.append(f"the manifest has no rows: rebuild it with {_INDEX_HINT} on a folder that holds the videos.")

    n = len(raw)
    paths = raw["path"].astype(str).tolist() if "path" in raw else [""] * n
    if is_csv:
        folder = Path(where).parent
        paths = [p if os.path.isabs(p) else os.path.normpath(folder / p) for p in paths]
    splits = (raw["split"].fillna("").astype(str) if "split" in raw else pd.Series([""] * n)).tolist()
    problem = (raw["problem"].fillna("").astype(str) if "problem" in raw else pd.Series([""] * n)).tolist()
    has_names = "label_name" in raw
    names = raw["label_name"].fillna("").astype(str).tolist() if has_names else None

    labels: list[int | None] = [None] * n
    if "label" in raw:
        labels = [_int_label(v, float_text=is_csv) for v in raw["label"]]
        bad = [i for i, lab in enumerate(labels) if lab is None]
        if bad:
            shown = [f"{row_name(i)}: {_show(raw['label'].iloc[i])}" for i in bad]
            problems.append(f"label is not a whole number in {_plural(len(bad), 'row')} ({_examples(shown)}): "
                            "label holds the class index 0..n_classes-1 (class names go in label_name).")
        neg = [i for i, lab in enumerate(labels)
               if lab is not None and lab < 0 and not (lab == -1 and splits[i] == "test")]
        if neg:
            shown = [f"{row_name(i)}: {labels[i]} (split {splits[i]!r})" for i in neg]
            problems.append(f"negative label in {_plural(len(neg), 'row')} ({_examples(shown)}): labels are class "
                            "indices 0..n_classes-1; -1 (label unknown) is allowed in the test split only. "
                            "Give these rows their class index, or drop them.")

    # the class list: labels 0..n-1 without gaps, one name per label and one label per name
    known = [i for i, lab in enumerate(labels) if lab is not None and lab >= 0]
    pairs = Counter((labels[i], names[i] if has_names else str(labels[i])) for i in known)
    by_label: dict[int, list[str]] = {}
    by_name: dict[str, list[int]] = {}
    for (lab, name), _ in sorted(pairs.items()):
        by_label.setdefault(lab, []).append(name)
        by_name.setdefault(name, []).append(lab)
    if has_names:
        for lab, ns in by_label.items():
            if len(ns) > 1:
                shown = [f"{nm!r} ({_plural(pairs[(lab, nm)], 'row')})" for nm in ns]
                problems.append(f"label {lab} has {len(ns)} names: {', '.join(shown)}: one class has one name; "
                                "fix label_name (or the label) of the wrong rows.")
        for nm, labs in by_name.items():
            if len(labs) > 1:
                shown = [f"{lab} ({_plural(pairs[(lab, nm)], 'row')})" for lab in labs]
                problems.append(f"class name {nm!r} has {len(labs)} labels: {', '.join(shown)}: one class has one "
                                "label; fix the label (or label_name) of the wrong rows.")
    n_classes = len(by_label)
    if by_label and max(by_label) != n_classes - 1:
        outside = sorted(lab for lab in by_label if lab >= n_classes)
        gaps = sorted(set(range(max(by_label) + 1)) - set(by_label))
        rows_out = sum(c for (lab, _), c in pairs.items() if lab >= n_classes)
        which = f"label {outside[0]}" if len(outside) == 1 else f"labels {_examples([str(x) for x in outside], 5)}"
        problems.append(f"{which} ({_plural(rows_out, 'row')}) {'is' if len(outside) == 1 else 'are'} "
                        f"outside 0..{n_classes - 1} for the {n_classes} classes found "
                        f"(unused labels: {_examples([str(g) for g in gaps], 5)}); the model would get a "
                        f"{max(by_label) + 1}-class head. Number the classes 0..{n_classes - 1} without gaps "
                        "(e.g. by sorted class name).")

    # duplicates: the same clip twice in a split
    keys = Counter(zip(paths, splits))
    dupes = {k: c for k, c in keys.items() if c > 1}
    if dupes:
        extra = sum(c - 1 for c in dupes.values())
        shown = [f"{p} ({s}, {c}x)" for (p, s), c in dupes.items()]
        problems.append(f"{_plural(extra, 'duplicate row')} (same path and split more than once; "
                        f"{_plural(len(dupes), 'clip')}), e.g. {_examples(shown)}: keep one row per clip and split "
                        "(df.drop_duplicates(['path', 'split'])).")

    # split names and usable rows per split
    if "split" in raw:
        for name, count in Counter(splits).items():
            if name in SPLITS:
                continue
            guess = _suggest_split(name)
            hint = f"; did you mean {guess!r}?" if guess else "."
            problems.append(f"split {name!r} ({_plural(count, 'row')}): accepted are {', '.join(SPLITS)}{hint} "
                            f"Rename these values (the loaders ignore other splits).")
    usable = Counter(s for s, q in zip(splits, problem) if q == "")
    total = Counter(splits)
    if n and "split" in raw:
        for split in required_splits:
            if usable[split]:
                continue
            if total[split]:
                reasons = Counter(q.split(":")[0] for s, q in zip(splits, problem) if s == split)
                why = ", ".join(f"{r!r} x{c}" for r, c in reasons.most_common(3))
                problems.append(f"no usable {split} rows: all {total[split]} have a problem ({why}); fix or replace "
                                f"those files and re-probe them with {_INDEX_HINT}.")
            else:
                problems.append(f"no usable {split} rows: no row has split {split!r}; give some clips this split "
                                f"(`python -m tsamlib index folder ... --valid-fraction 0.2` makes a valid split).")

    if problems:
        listed = "\n".join(f"  {k}. {p}" for k, p in enumerate(problems, 1))
        raise ManifestError(f"Manifest {where} has {_plural(len(problems), 'problem')}:\n{listed}")
    if is_csv:
        try:
            df = read_manifest(where)  # what the loaders will see; the raw checks above should make this pass
        except ValueError as e:
            raise ManifestError(f"Manifest {where} has 1 problem:\n  1. {e}") from None
    else:
        df = raw
    excluded = [i for i, q in enumerate(problem) if q != ""]
    names_by_label = {lab: ns[0] for lab, ns in by_label.items()}
    return dict(
        manifest=where, n_rows=len(df),
        rows={s: int(usable[s]) for s in SPLITS},
        n_classes=n_classes, classes=[names_by_label[i] for i in range(n_classes)],
        n_excluded=len(excluded),
        excluded_reasons=dict(Counter(problem[i].split(":")[0] for i in excluded).most_common()),
        excluded=[dict(path=paths[i], split=splits[i], problem=problem[i]) for i in excluded[:5]],
    )


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
