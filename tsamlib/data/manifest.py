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
problem (columns, labels, class list, duplicates, split names, empty splits).

Rows as the loaders use them: :func:`read_table` (absolute paths, class names), :func:`usable_rows` (the rows a
run uses). Rows with a ``problem`` are never used; in audio runs with ``missing_audio="drop"`` (the authors' choice)
rows whose ``has_audio`` is False are left out too. :func:`usable_rows` returns both the rows and the excluded ones
with their reasons, so the loaders can count and report them (``dls.excluded``).
"""
from __future__ import annotations

import difflib
import math
import os
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from ..runs.fileio import atomic_path, relative_to_repo
from .probe import probe_many, short_error

__all__ = ["COLUMNS", "SPLITS", "SPLIT_ALIASES", "REQUIRED", "NO_AUDIO_DROPPED", "typed_manifest", "normalize_split",
           "build_manifest", "write_manifest", "read_manifest", "summarize_manifest", "ManifestError", "check_manifest",
           "read_table", "manifest_vocab", "usable_rows", "split_rows"]

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
    out = typed_manifest(df)

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
            raise ManifestError(f"Manifest {where} cannot be read as a CSV ({short_error(e, 200)}): rebuild it with "
                                f"{_INDEX_HINT}.") from None
        needed = COLUMNS
    else:
        raw = manifest.reset_index(drop=True)
        needed = list(REQUIRED)
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
