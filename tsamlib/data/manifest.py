"""Manifests: one CSV row per clip, probed once, shared by every loader and notebook.

Columns (exactly): ``path, label, label_name, split, n_frames, fps, duration, has_audio, problem``.

- ``path`` is stored relative to the CSV's folder when the clip lies under it (the dataset can move),
  absolute otherwise; :func:`read_manifest` always returns absolute paths.
- ``split`` is "train", "valid" or "test"; ``label`` indexes the sorted (or official) class names,
  -1 where unknown (Kinetics test set).
- ``problem`` is "" for a readable clip, otherwise a short reason ("missing file", "empty file",
  "cannot open: ...", "no video stream", "zero frames", ...). Broken clips stay in the manifest so that
  nothing is dropped silently; loaders filter on ``problem == ""``.

Clips are probed by :mod:`tsamlib.data.probe`; manifests of real datasets are built by :mod:`tsamlib.data.index`.
:func:`check_manifest` checks a manifest before training and raises :class:`ManifestError` listing every
problem (columns, labels, class list, duplicates, split names, empty splits, a single training class, and with
``check_files`` a split whose files are all missing on disk).

Rows as the loaders use them: :func:`read_table` (absolute paths, class names), :func:`usable_rows` (the rows a
run uses). Rows with a ``problem`` are never used; in audio runs with ``missing_audio="drop"`` (the authors' choice)
rows whose ``has_audio`` is False are left out too. :func:`usable_rows` returns both the rows and the excluded ones
with their reasons, so the loaders can count and report them (``dls.excluded``).
"""
from __future__ import annotations

import difflib
import itertools
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from ..runs.fileio import atomic_path, relative_to_repo, writable_folder
from .decode import short_error
from .probe import probe_many

__all__ = ["COLUMNS", "SPLITS", "SPLIT_ALIASES", "REQUIRED", "NO_AUDIO_DROPPED", "HAS_AUDIO_VALUES", "typed_manifest",
           "normalize_split", "read_csv_utf8", "build_manifest", "write_manifest", "read_manifest",
           "summarize_manifest", "ManifestError", "check_manifest", "read_table", "manifest_vocab", "usable_rows",
           "split_rows"]

COLUMNS = ["path", "label", "label_name", "split", "n_frames", "fps", "duration", "has_audio", "problem"]
SPLITS = ("train", "valid", "test")
SPLIT_ALIASES = {"train": "train", "training": "train", "valid": "valid", "val": "valid", "validate": "valid",
                 "validation": "valid", "test": "test", "testing": "test"}


def normalize_split(name: str) -> str:
    """Map split spellings ("val", "validate", "validation", "training", ...) to train/valid/test."""
    key = str(name).strip().lower()
    if key not in SPLIT_ALIASES:
        raise ValueError(f"Unknown split {name!r}: use one of {sorted(SPLIT_ALIASES)}.")
    return SPLIT_ALIASES[key]


# ----------------------------------------------------------------------------------------------- probing


# ------------------------------------------------------------------------------------------- CSV in/out
def build_manifest(records: Iterable[dict], out: str | os.PathLike, workers: int | None = None,
                   verbose: bool = True) -> pd.DataFrame:
    """Probe ``records`` (dicts with path, label, label_name, split), write the CSV to ``out``, print a summary."""
    df = pd.DataFrame(list(records), columns=["path", "label", "label_name", "split"])
    probed = pd.DataFrame(probe_many(df["path"].tolist(), workers=workers),
                          columns=["n_frames", "fps", "duration", "has_audio", "problem"])
    df = typed_manifest(pd.concat([df.reset_index(drop=True), probed], axis=1))
    write_manifest(df, out)
    if verbose:
        print(summarize_manifest(df))
        print(f"manifest written: {relative_to_repo(out)}")
    return df


def typed_manifest(df: pd.DataFrame) -> pd.DataFrame:
    """Columns in order with their dtypes: label/n_frames int, fps/duration float, has_audio bool, text str."""
    df = df[COLUMNS].copy()
    for c in ("path", "label_name", "split", "problem"):
        df[c] = df[c].fillna("").astype(str)
    df["label"] = df["label"].fillna(-1).astype("int64")
    df["n_frames"] = df["n_frames"].fillna(0).astype("int64")
    df["fps"] = df["fps"].astype("float64")
    df["duration"] = df["duration"].astype("float64")
    hv = df["has_audio"]
    df["has_audio"] = hv if hv.dtype == bool else hv.astype(str).str.strip().str.lower().isin(["true", "1", "yes"])
    return df


def write_manifest(df: pd.DataFrame, csv_path: str | os.PathLike, extra_columns: Sequence[str] = (),
                   fix: str = "write the manifest to a folder you can write (index --out)") -> Path:
    """Write ``df`` atomically (temp file + ``os.replace``); paths under the CSV's folder become relative.
    ``extra_columns`` of ``df`` follow the manifest columns as they are; ``fix`` ends the error of a folder that
    cannot be written."""
    csv_path = Path(csv_path).absolute()
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"Cannot write manifest {csv_path}: columns {missing} are missing (need {COLUMNS}).")
    folder = writable_folder(csv_path.parent, fix)
    out = typed_manifest(df)
    for c in extra_columns:
        out[c] = df[c].to_numpy()

    def rel(p: str) -> str:
        ap = Path(os.path.abspath(p))
        return ap.relative_to(folder).as_posix() if ap.is_relative_to(folder) else str(ap)

    out["path"] = out["path"].map(rel)
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        out.to_csv(f, index=False)
    return csv_path


def read_csv_utf8(csv_path: str | os.PathLike, **kwargs) -> pd.DataFrame:
    """``pd.read_csv`` of a UTF-8 file; a file in another encoding (Latin-1 from a spreadsheet, say) raises
    :class:`ManifestError` naming the file, the first line that is not UTF-8 and how to convert it."""
    try:
        return pd.read_csv(csv_path, encoding="utf-8", **kwargs)
    except UnicodeDecodeError:
        for number, line in enumerate(Path(csv_path).read_bytes().splitlines(), 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ManifestError(f"Manifest {csv_path} is not UTF-8: line {number} holds byte "
                                    f"0x{line[e.start]:02x} ({line[max(0, e.start - 20):e.start + 20]!r}); save it "
                                    "as UTF-8 (e.g. `iconv -f latin1 -t utf-8 OLD.csv > NEW.csv`).") from None
        raise


def read_manifest(csv_path: str | os.PathLike) -> pd.DataFrame:
    """Read a manifest: absolute ``path`` strings, label int, has_audio bool, problem "" for fine rows."""
    csv_path = Path(csv_path).absolute()
    if not csv_path.is_file():
        raise FileNotFoundError(f"Manifest {csv_path} does not exist: build it with `python -m tsamlib index ...`.")
    df = read_csv_utf8(csv_path, keep_default_na=False, na_values={"fps": ["", "nan", "NaN"],
                                                                   "duration": ["", "nan", "NaN"]},
                       dtype={"path": str, "label_name": str, "split": str, "problem": str})
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{csv_path} is not a TSAM manifest: columns {missing} are missing (need {COLUMNS}).")
    folder = csv_path.parent
    df["path"] = [p if os.path.isabs(p) else os.path.normpath(folder / p) for p in df["path"]]
    return typed_manifest(df)


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


REQUIRED = ("path", "label", "split")  # the columns read_table needs in a DataFrame
HAS_AUDIO_VALUES = ("true", "false", "1", "0", "yes", "no", "1.0", "0.0")   # lower case; anything else is refused
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
        close = difflib.get_close_matches(str(name).strip().lower(), list(SPLIT_ALIASES), n=1, cutoff=0.6)
        return SPLIT_ALIASES[close[0]] if close else None


@dataclass
class _Rows:
    """A manifest as its checks read it: the raw table and its columns as plain lists (missing ones empty)."""

    where: str
    is_csv: bool
    raw: pd.DataFrame
    paths: list[str]
    splits: list[str]
    problem: list[str]
    names: list[str] | None
    labels: list[int | None]

    def row(self, i: int) -> str:
        return f"line {i + 2}" if self.is_csv else f"row {i}"


def _read_rows(manifest) -> tuple[_Rows, list[str]]:
    """The manifest as :class:`_Rows`, and the columns it needs; FileNotFoundError / ManifestError when it cannot
    be read as a table at all."""
    is_csv = not isinstance(manifest, pd.DataFrame)
    where = str(Path(manifest).absolute()) if is_csv else "(DataFrame)"
    if is_csv:
        if not Path(where).is_file():
            raise FileNotFoundError(f"Manifest {where} does not exist: build it with {_INDEX_HINT}.")
        try:  # the raw text, read like read_manifest does, so that every problem can be reported
            raw = read_csv_utf8(where, dtype=str, keep_default_na=False)
        except (pd.errors.EmptyDataError, pd.errors.ParserError) as e:
            raise ManifestError(f"Manifest {where} cannot be read as a CSV ({short_error(e, 200)}): rebuild it with "
                                f"{_INDEX_HINT}.") from None
    else:
        raw = manifest.reset_index(drop=True)
    n = len(raw)
    text = lambda col: raw[col].fillna("").astype(str).tolist() if col in raw else [""] * n  # noqa: E731
    paths = raw["path"].astype(str).tolist() if "path" in raw else [""] * n
    if is_csv:
        folder = Path(where).parent
        paths = [q if os.path.isabs(q) else os.path.normpath(folder / q) for q in paths]
    labels = [_int_label(v, float_text=is_csv) for v in raw["label"]] if "label" in raw else [None] * n
    rows = _Rows(where, is_csv, raw, paths, text("split"), text("problem"),
                 text("label_name") if "label_name" in raw else None, labels)
    return rows, (COLUMNS if is_csv else list(REQUIRED))


def _check_columns(t: _Rows, needed: Sequence[str]) -> list[str]:
    """Every needed column, and at least one row."""
    problems = []
    missing = [c for c in needed if c not in t.raw.columns]
    if missing:
        problems.append(f"columns {missing} are missing (a manifest {'CSV' if t.is_csv else 'DataFrame'} needs "
                        f"{', '.join(needed)}): rebuild the manifest with {_INDEX_HINT}.")
    if len(t.raw) == 0:
        problems.append(f"the manifest has no rows: rebuild it with {_INDEX_HINT} on a folder that holds the videos.")
    return problems


def _check_label_values(t: _Rows) -> list[str]:
    """Labels are whole numbers, and not negative (-1, unknown, in the test split only)."""
    if "label" not in t.raw:
        return []
    problems = []
    bad = [i for i, lab in enumerate(t.labels) if lab is None]
    if bad:
        shown = [f"{t.row(i)}: {_show(t.raw['label'].iloc[i])}" for i in bad]
        problems.append(f"label is not a whole number in {_plural(len(bad), 'row')} ({_examples(shown)}): "
                        "label holds the class index 0..n_classes-1 (class names go in label_name).")
    neg = [i for i, lab in enumerate(t.labels)
           if lab is not None and lab < 0 and not (lab == -1 and t.splits[i] == "test")]
    if neg:
        shown = [f"{t.row(i)}: {t.labels[i]} (split {t.splits[i]!r})" for i in neg]
        problems.append(f"negative label in {_plural(len(neg), 'row')} ({_examples(shown)}): labels are class "
                        "indices 0..n_classes-1; -1 (label unknown) is allowed in the test split only. "
                        "Give these rows their class index, or drop them.")
    return problems


def _class_list(t: _Rows) -> tuple[Counter, dict[int, list[str]], dict[str, list[int]]]:
    """(label, name) pairs with their row counts, the names of each label and the labels of each name."""
    known = [i for i, lab in enumerate(t.labels) if lab is not None and lab >= 0]
    pairs = Counter((t.labels[i], t.names[i] if t.names is not None else str(t.labels[i])) for i in known)
    by_label: dict[int, list[str]] = {}
    by_name: dict[str, list[int]] = {}
    for (lab, name), _ in sorted(pairs.items()):
        by_label.setdefault(lab, []).append(name)
        by_name.setdefault(name, []).append(lab)
    return pairs, by_label, by_name


def _check_class_names(t: _Rows, pairs: Counter, by_label: dict, by_name: dict) -> list[str]:
    """One name per label and one label per name (when the manifest names its classes)."""
    if t.names is None:
        return []
    problems = []
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
    return problems


def _check_label_range(pairs: Counter, by_label: dict) -> list[str]:
    """Labels numbered 0..n_classes-1 without gaps. In O(rows) memory, whatever the largest label (10**12 too)."""
    n_classes = len(by_label)
    if not by_label or max(by_label) == n_classes - 1:
        return []
    top = max(by_label)
    outside = sorted(lab for lab in by_label if lab >= n_classes)
    gaps = [str(g) for g in itertools.islice((g for g in range(top + 1) if g not in by_label), 5)]
    n_gaps = top + 1 - n_classes
    rows_out = sum(c for (lab, _), c in pairs.items() if lab >= n_classes)
    which = f"label {outside[0]}" if len(outside) == 1 else f"labels {_examples([str(x) for x in outside], 5)}"
    unused = ", ".join(gaps) + (f", ... ({n_gaps} in all)" if n_gaps > len(gaps) else "")
    return [f"{which} ({_plural(rows_out, 'row')}) {'is' if len(outside) == 1 else 'are'} outside "
            f"0..{n_classes - 1} for the {n_classes} classes found (unused labels: {unused}); the model would get a "
            f"{top + 1}-class head. Number the classes 0..{n_classes - 1} without gaps (e.g. by sorted class name)."]


def _check_has_audio(t: _Rows) -> list[str]:
    """``has_audio`` says yes or no: true/false, 1/0, yes/no (any case), never something in between."""
    if "has_audio" not in t.raw:
        return []
    bad = [i for i, v in enumerate(t.raw["has_audio"]) if str(v).strip().lower() not in HAS_AUDIO_VALUES]
    if not bad:
        return []
    shown = [f"{t.row(i)}: {_show(t.raw['has_audio'].iloc[i])}" for i in bad]
    return [f"has_audio is neither true nor false in {_plural(len(bad), 'row')} ({_examples(shown)}): write True or "
            f"False (re-probing with {_INDEX_HINT} fills it in)."]


def _check_duplicates(t: _Rows) -> list[str]:
    """The same clip at most once per split."""
    dupes = {k: c for k, c in Counter(zip(t.paths, t.splits)).items() if c > 1}
    if not dupes:
        return []
    extra = sum(c - 1 for c in dupes.values())
    shown = [f"{q} ({s}, {c}x)" for (q, s), c in dupes.items()]
    return [f"{_plural(extra, 'duplicate row')} (same path and split more than once; {_plural(len(dupes), 'clip')}), "
            f"e.g. {_examples(shown)}: keep one row per clip and split (df.drop_duplicates(['path', 'split']))."]


def _check_splits(t: _Rows, required_splits: Sequence[str]) -> list[str]:
    """Split names train/valid/test only, and usable rows in each required split."""
    if "split" not in t.raw:
        return []
    problems = []
    for name, count in Counter(t.splits).items():
        if name not in SPLITS:
            guess = _suggest_split(name)
            hint = f"; did you mean {guess!r}?" if guess else "."
            problems.append(f"split {name!r} ({_plural(count, 'row')}): accepted are {', '.join(SPLITS)}{hint} "
                            f"Rename these values (the loaders ignore other splits).")
    usable, total = Counter(s for s, q in zip(t.splits, t.problem) if q == ""), Counter(t.splits)
    for split in required_splits if len(t.raw) else ():
        if usable[split]:
            continue
        if total[split]:
            reasons = Counter(q.split(":")[0] for s, q in zip(t.splits, t.problem) if s == split)
            why = ", ".join(f"{r!r} x{c}" for r, c in reasons.most_common(3))
            problems.append(f"no usable {split} rows: all {total[split]} have a problem ({why}); fix or replace "
                            f"those files and re-probe them with {_INDEX_HINT}.")
        else:
            problems.append(f"no usable {split} rows: no row has split {split!r}; give some clips this split "
                            f"(`python -m tsamlib index folder ... --valid-fraction 0.2` makes a valid split).")
    return problems


def _check_train_classes(t: _Rows, required_splits: Sequence[str]) -> list[str]:
    """At least 2 classes among the usable training rows (a classifier of one class learns nothing)."""
    if "train" not in required_splits or "label" not in t.raw:
        return []
    classes = Counter(lab for lab, s, q in zip(t.labels, t.splits, t.problem)
                      if s == "train" and q == "" and lab is not None and lab >= 0)
    if not classes or len(classes) >= 2:   # no usable training row at all: _check_splits says so
        return []
    lab = next(iter(classes))
    name = next((t.names[i] for i, x in enumerate(t.labels) if x == lab), None) if t.names is not None else None
    named = f"label {lab}" + (f" {name!r}" if name not in (None, "", str(lab)) else "")
    return [f"the usable train rows hold 1 class ({named}, {_plural(classes[lab], 'row')}): training needs at least "
            "2 classes; add clips of other classes to the train split (or check the label and split columns)."]


def _missing_on_disk(t: _Rows, required_splits: Sequence[str]) -> tuple[dict[str, list[str]], list[str]]:
    """The usable rows of each required split whose file (or frame folder) is not on disk, and a problem for each
    split where none is (its loader would fail on every clip, after the run folder exists)."""
    missing: dict[str, list[str]] = {}
    usable = Counter()
    for q, s, problem in zip(t.paths, t.splits, t.problem):
        if s in required_splits and problem == "":
            usable[s] += 1
            if not os.path.exists(q):
                missing.setdefault(s, []).append(q)
    problems = [f"no usable {s} rows on disk: all {_plural(len(missing[s]), 'file')} are missing "
                f"({_examples(missing[s])}): restore them, or rebuild the manifest with {_INDEX_HINT} where the "
                "videos are." for s in required_splits if usable[s] and len(missing.get(s, ())) == usable[s]]
    return missing, problems


def check_manifest(manifest, required_splits: Sequence[str] = ("train", "valid"), check_files: bool = False) -> dict:
    """Check a manifest (CSV path or DataFrame) before training; raise :class:`ManifestError` listing every problem.

    Accepts what the loaders (:func:`read_table`, ``video_dataloaders``) accept and rejects what would fail later
    or train silently on the wrong thing, one named check each: missing columns (a CSV needs all of ``COLUMNS``, a
    DataFrame ``path, label, split``) or no rows; labels that are not whole numbers, or negative (-1, "unknown", is
    allowed in the test split only); a label with two names or a name with two labels; labels not numbered
    0..n_classes-1 without gaps; a ``has_audio`` that is neither true nor false; the same path twice in one split;
    split names other than train/valid/test, a split of ``required_splits`` without usable rows, and (when
    ``"train"`` is required) usable training rows of fewer than 2 classes. Rows with a non-empty ``problem`` are not
    errors: they are excluded (counted and shown in the summary).

    ``check_files`` (what :func:`tsamlib.training.run.begin_run` asks): also look on disk for the file of every
    usable row of ``required_splits``. A split whose files are all missing is a problem; when only some are, the
    rows stay (the loaders replace a training clip that fails to load and leave a validation clip out, counted)
    and ``missing`` says how many.

    Returns ``dict(manifest, n_rows, rows, n_classes, classes, n_excluded, excluded_reasons, excluded, missing,
    missing_examples)``: ``rows`` = usable rows per split (train, valid, test), ``classes`` = names indexed by label,
    ``excluded_reasons`` = reason -> count, ``excluded`` = up to 5 excluded rows as ``dict(path, split, problem)``,
    ``missing`` = split -> usable rows whose file is not on disk (``{}`` without ``check_files``),
    ``missing_examples`` = up to 5 of their paths. A missing CSV raises ``FileNotFoundError``.
    """
    t, needed = _read_rows(manifest)
    pairs, by_label, by_name = _class_list(t)
    missing, missing_problems = _missing_on_disk(t, required_splits) if check_files else ({}, [])
    problems = [*_check_columns(t, needed), *_check_label_values(t), *_check_class_names(t, pairs, by_label, by_name),
                *_check_label_range(pairs, by_label), *_check_has_audio(t), *_check_duplicates(t),
                *_check_splits(t, required_splits), *_check_train_classes(t, required_splits), *missing_problems]
    if problems:
        listed = "\n".join(f"  {k}. {q}" for k, q in enumerate(problems, 1))
        raise ManifestError(f"Manifest {t.where} has {_plural(len(problems), 'problem')}:\n{listed}")
    df = t.raw
    if t.is_csv:
        try:
            df = read_manifest(t.where)  # what the loaders will see; the raw checks above should make this pass
        except ValueError as e:
            raise ManifestError(f"Manifest {t.where} has 1 problem:\n  1. {e}") from None
    excluded = [i for i, q in enumerate(t.problem) if q != ""]
    usable = Counter(s for s, q in zip(t.splits, t.problem) if q == "")
    return dict(
        manifest=t.where, n_rows=len(df), rows={s: int(usable[s]) for s in SPLITS},
        n_classes=len(by_label), classes=[by_label[i][0] for i in range(len(by_label))],
        n_excluded=len(excluded),
        excluded_reasons=dict(Counter(t.problem[i].split(":")[0] for i in excluded).most_common()),
        excluded=[dict(path=t.paths[i], split=t.splits[i], problem=t.problem[i]) for i in excluded[:5]],
        missing={s: len(v) for s, v in missing.items()},
        missing_examples=[q for v in missing.values() for q in v][:5],
    )


# ------------------------------------------------------------------------------- rows as the loaders use them
NO_AUDIO_DROPPED = "no audio track (dropped: missing_audio='drop')"


def _truthy(v) -> bool:
    if isinstance(v, str):
        return v.strip().lower() not in ("false", "0", "no", "")
    return bool(v) if not pd.isna(v) else True


def read_table(manifest) -> pd.DataFrame:
    """Manifest (CSV path, read by `tsamlib.data.manifest.read_manifest`, or a DataFrame) with absolute paths."""
    df = manifest.copy() if isinstance(manifest, pd.DataFrame) else read_manifest(manifest)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"manifest lacks columns {missing}; it needs {list(REQUIRED)} (see tsamlib.data.manifest)")
    df["path"] = df["path"].astype(str)
    df["problem"] = df["problem"].fillna("").astype(str) if "problem" in df.columns else ""
    df["has_audio"] = df["has_audio"].map(_truthy) if "has_audio" in df.columns else True
    if "label_name" not in df.columns:
        df["label_name"] = df["label"].astype(str)
    df["label"] = df["label"].astype(int)
    return df.reset_index(drop=True)


def manifest_vocab(df: pd.DataFrame) -> list[str]:
    """Class names indexed by label (labels 0..max; a label without a name is shown as its number)."""
    names = df[df["label"] >= 0].drop_duplicates("label").set_index("label")["label_name"].astype(str)
    return [names.get(i, str(i)) for i in range(int(df["label"].max()) + 1)]


def usable_rows(df: pd.DataFrame, audio: bool = False, missing_audio: str = "silent"
                ) -> tuple[pd.DataFrame, dict[str, dict[str, str]]]:
    """The rows a run uses, and the excluded ones as ``{split: {path: reason}}``: rows with a ``problem``, and in
    audio runs with ``missing_audio="drop"`` rows whose ``has_audio`` is False."""
    if missing_audio not in ("silent", "drop"):
        raise ValueError(f"missing_audio={missing_audio!r}: choose one of ['silent', 'drop'].")
    reason = df["problem"].where(df["problem"].str.len() > 0, "")
    if audio and missing_audio == "drop":
        reason = reason.where((reason.str.len() > 0) | df["has_audio"].astype(bool), NO_AUDIO_DROPPED)
    bad = reason.str.len() > 0
    excluded: dict[str, dict[str, str]] = {}
    for p, q, s in zip(df["path"][bad], reason[bad], df["split"][bad].astype(str)):
        excluded.setdefault(s, {})[p] = q
    return df[~bad], excluded


def split_rows(df: pd.DataFrame, split: str) -> pd.DataFrame:
    """The rows of ``split``; ValueError naming the splits present when there are none."""
    part = df[df["split"] == split]
    if part.empty:
        raise ValueError(f"no usable rows with split {split!r} (splits present: {sorted(df['split'].unique())})")
    return part
