"""Manifest rows as the loaders use them: the table with absolute paths, class names, and the rows a run uses.

Rows with a ``problem`` are never used; in audio runs with ``missing_audio="drop"`` (the authors' choice) rows
whose ``has_audio`` is False are left out too. :func:`usable_rows` returns both the rows and the excluded ones
with their reasons, so the loaders can count and report them (``dls.excluded``).
"""
from __future__ import annotations

import pandas as pd

from .manifest import read_manifest

__all__ = ["REQUIRED", "NO_AUDIO_DROPPED", "read_table", "manifest_vocab", "usable_rows", "split_rows"]

NO_AUDIO_DROPPED = "no audio track (dropped: missing_audio='drop')"

REQUIRED = ("path", "label", "split")


def _truthy(v) -> bool:
    if isinstance(v, str):
        return v.strip().lower() not in ("false", "0", "no", "")
    return bool(v) if not pd.isna(v) else True


def read_table(manifest) -> pd.DataFrame:
    """Manifest (CSV path, read by `tsamlib.manifest.read_manifest`, or a DataFrame) with absolute paths."""
    df = manifest.copy() if isinstance(manifest, pd.DataFrame) else read_manifest(manifest)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"manifest lacks columns {missing}; it needs {list(REQUIRED)} (see tsamlib.manifest)")
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
