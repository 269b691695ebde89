"""Prepared datasets: every usable clip of a manifest as a folder of JPEG frames plus a ``.wav`` and the log-mels of
the audio frame, which load fast.

``python -m tsamlib prepare IN_MANIFEST --out OUT`` (or :func:`prepare_dataset`) writes, per usable clip::

    OUT/<class>/<stem>/00001.jpg, 00002.jpg, ...   frames, short side <= ``short_side`` (never upscaled), RGB
    OUT/<class>/<stem>/mels-<hash>.npz              full-clip log-mels of each ``mels`` setting (float16)
    OUT/<class>/<stem>/prepare.json                 what was done (source, fps, frame count, layout and parameters)
    OUT/<class>/<stem>.wav                          the audio, 16-bit PCM at the source rate, all channels
    OUT/manifest.csv                                the manifest columns plus ``source`` (the original path)

Two frame layouts (``layout``):

- ``"tsamlib"`` (the default): decord frames, short side ``short_side`` (bilinear, never upscaled), PIL JPEG at
  ``quality``, names ``00001.jpg`` (5 digits or more), ``fps`` as described below;
- ``"authors"``: what the authors' ``video2frames.py`` makes with ``ffmpeg -i VIDEO -vf "scale=-1:256,fps=10" -q:v 0
  %06d.jpg`` (:mod:`tsamlib.data.extract`, through PyAV: no ffmpeg program needed): frames chosen by FFmpeg's
  ``fps`` filter at ``fps`` (10 by default from the command line; None keeps every frame), ``height`` pixels high
  with the aspect kept (bicubic, up or down), JPEG from FFmpeg's encoder at ``-q:v 0``, names ``000001.jpg``.
  Video files only. The ``"authors"`` run preset is meant to train on it.

Why JPEG at short side 256 and the native rate is the default: ``results/benchmarks/data_layouts.md`` (of the
layouts measured that fit on a disk it reads fastest; ``fps=10`` reads as fast in about a third of the frame bytes).

The log-mels (``mels``: ``"FRONTEND:N_MELS"`` settings, default ``tsamlib:64`` for the default layout, the run
defaults, and ``authors:224`` for the authors' layout, their config) are what :class:`tsamlib.data.audio.AudioFrame`
reads first, so the first read of a prepared clip computes no spectrogram; a run with other audio settings computes
them from the ``.wav`` (counted, warned once). A rerun with other ``mels`` only adds the missing files.

The frame folder is the layout :func:`tsamlib.data.video.load_clip` reads (``list_frames``: sorted ``.jpg`` names,
numbered from 1 with zero padding to at least 5 digits, so name order is frame order); the ``.wav`` sits where
:func:`tsamlib.data.audio.audio_source` looks for a frame folder's sound (``<folder>.wav``), so no video is opened for
the audio. A clip without an audio track gets no ``.wav`` (``has_audio`` False). ``<class>`` is the label name
(``_unlabelled`` for label -1); two clips with the same class and stem get a short hash of their source path
appended to the stem.

Frames are decoded by the loaders' readers (:mod:`tsamlib.data.decode`: decord, so frame ``i`` is the same frame,
PyAV when decord fails; a frame-folder source with PIL). ``fps="native"`` keeps every frame; a number ``N`` keeps
the frame shown at each time ``k / N`` (frames repeat when ``N`` is above the source rate).

Resumable: each clip is written to a temporary folder ``OUT/<class>/.<stem>.prepare-tmp`` and renamed when complete;
a rerun skips complete clips (made with the same layout and parameters, recorded in ``prepare.json``: a clip recorded
without a layout is a ``"tsamlib"`` one) and removes temporary folders a killed run left. One
``prepare`` at a time per ``OUT`` (a lock file makes a second one fail). Clips are converted in worker processes
(one thread each, ending with the parent: :mod:`tsamlib.data.workers`). Rows whose input has a problem, and clips
that fail to decode, stay in the output manifest with their ``problem``; the printed summary counts them.

``read_manifest`` keeps the manifest columns only (``source`` is dropped, not rejected); read the CSV with pandas
to see ``source``.
"""
from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import shutil
from collections import Counter
from concurrent.futures import as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from ..runs.fileio import atomic_path, exclusive_lock, relative_to_repo, writable_folder
from .decode import AudioError, decode_audio, short_error, video_readers
from .workers import run_alone, worker_pool

__all__ = ["TMP_SUFFIX", "META_NAME", "LAYOUTS", "AUTHORS_FPS", "AUTHORS_HEIGHT", "AUTHORS_QSCALE", "AUTHORS_DIGITS",
           "DEFAULT_MELS", "Prepared", "prepare_dataset", "prepare_clip", "clip_destinations", "remove_temp_folders",
           "write_prepared_manifest", "parse_mels"]

TMP_SUFFIX = ".prepare-tmp"
META_NAME = "prepare.json"
_VERSION = 1
LAYOUTS = ("tsamlib", "authors")
# the authors' video2frames.py: ffmpeg -i VIDEO -vf "scale=-1:256,fps=10" -q:v 0 "<frames>/<id>/%06d.jpg"
AUTHORS_FPS = 10.0        # their --fps default
AUTHORS_HEIGHT = 256      # scale=-1:256
AUTHORS_QSCALE = 0        # -q:v 0
AUTHORS_DIGITS = 6        # frames_tmpl "{:06d}.jpg" of their Kinetics-400 data config (from 1: ffmpeg's start number)
# log-mels written by default: the run defaults (RunConfig.n_mels 64, front end "tsamlib") for the default layout,
# the authors' config (n_mels 224, their front end) for theirs
DEFAULT_MELS = {"tsamlib": ("tsamlib:64",), "authors": ("authors:224",)}

_OUT_FIX = "choose another output folder (prepare --out)"
# write errors that are the output disk's (a full disk must not mark good clips bad)
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


@dataclass
class Prepared:
    """What :func:`prepare_dataset` did: the output manifest, its table and the work counts."""
    manifest: Path
    table: pd.DataFrame
    converted: int = 0
    skipped: int = 0
    mels_added: int = 0
    failed: int = 0
    carried: int = 0
    removed_temp: int = 0
    problems: dict = field(default_factory=dict)

    def summary(self) -> str:
        """One paragraph: counts of work done and problems by reason."""
        usable = self.table["problem"] == ""
        ok = int(usable.sum())
        added = f", {self.mels_added} of them given new log-mels" if self.mels_added else ""
        lines = [f"prepared {len(self.table)} clips: {ok} usable ({self.converted} converted, {self.skipped} "
                 f"already complete{added}), {self.failed} failed to convert, {self.carried} had a problem in the "
                 f"input; {int((usable & ~self.table['has_audio'].astype(bool)).sum())} usable without audio"]
        if self.removed_temp:
            lines.append(f"removed {self.removed_temp} incomplete temporary folder(s) of an interrupted run")
        for reason, n in self.problems.items():
            lines.append(f"  problem {reason!r}: {n}")
        bad = self.table.loc[self.table["problem"] != "", ["source", "problem"]]
        for src, prob in bad.head(10).itertuples(index=False):
            lines.append(f"    {src}: {prob}")
        if len(bad) > 10:
            lines.append(f"    ... and {len(bad) - 10} more (see the problem column)")
        lines.append(f"manifest written: {relative_to_repo(self.manifest)}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- layout
_UNSAFE = re.compile(r"[/\\\x00]")


def _safe_name(name: str) -> str:
    """A folder name from a class name: no slashes or NULs, no leading dot, never empty."""
    s = _UNSAFE.sub("_", str(name).strip())
    s = s.lstrip(".")
    return s or "_unnamed"


def _stem(path: str) -> str:
    p = Path(path)
    return p.name if p.is_dir() else p.stem


def clip_destinations(df: pd.DataFrame, out: str | os.PathLike) -> list[Path]:
    """Frame folder of each row: ``out/<class>/<stem>``; clashing names get ``-<hash of the source>`` appended."""
    out = Path(out).absolute()
    classes = [_safe_name(n) if n else ("_unlabelled" if lab < 0 else str(lab))
               for lab, n in zip(df["label"].astype(int), df["label_name"].astype(str))]
    names = [_safe_name(_stem(p)) for p in df["path"]]
    keys = Counter(zip(classes, names))
    dest = []
    for c, n, src in zip(classes, names, df["path"]):
        if keys[(c, n)] > 1:
            n = f"{n}-{hashlib.sha1(str(src).encode()).hexdigest()[:8]}"
        dest.append(out / c / n)
    return dest


def _temp_of(dest: Path) -> Path:
    return dest.parent / f".{dest.name}{TMP_SUFFIX}"


def _wav_of(dest: Path) -> Path:
    return dest.parent / (dest.name + ".wav")  # where tsamlib.data.audio.audio_source looks for a frame folder


def remove_temp_folders(out: str | os.PathLike) -> int:
    """Remove the temporary clip folders a killed run left under ``out/<class>/``; returns how many."""
    n = 0
    for d in Path(out).glob(f"*/.*{TMP_SUFFIX}"):
        if d.is_dir():
            shutil.rmtree(d, ignore_errors=True)
            n += 1
    return n


# ----------------------------------------------------------------------------------------------- one clip
def _params(short_side: int, fps: float | None, quality: int, layout: str = "tsamlib",
            height: int = AUTHORS_HEIGHT) -> dict:
    """What a clip's frames depend on, recorded in ``prepare.json`` (a rerun with other values makes the clip again)."""
    rate = "native" if fps is None else float(fps)
    if layout == "authors":
        return dict(layout="authors", height=int(height), fps=rate, qscale=AUTHORS_QSCALE,
                    names=f"%0{AUTHORS_DIGITS}d.jpg", version=_VERSION)
    return dict(layout="tsamlib", short_side=int(short_side), fps=rate, quality=int(quality), version=_VERSION)


def parse_mels(specs) -> tuple[str, ...]:
    """``mels`` settings checked and normalised: ``"FRONTEND:N_MELS"`` strings (or (frontend, n_mels) pairs); ``None``,
    ``"none"`` or an empty list: none. Raises ValueError naming ``--mels`` and the expected form."""
    from .audio import AUDIO_FRONTENDS
    if specs is None or (isinstance(specs, str) and specs.strip().lower() == "none"):
        return ()
    if isinstance(specs, str):
        specs = [specs]
    if [str(x).strip().lower() for x in specs] == ["none"]:
        return ()
    if any(str(x).strip().lower() == "none" for x in specs):
        raise ValueError(f"--mels {' '.join(map(str, specs))}: 'none' stands alone (store no log-mels); drop it or "
                         "the other values")
    out = []
    for spec in specs:
        frontend, _, n = (spec if isinstance(spec, str) else f"{spec[0]}:{spec[1]}").strip().partition(":")
        try:
            n_mels = int(n)
        except ValueError:
            n_mels = -1
        if frontend not in AUDIO_FRONTENDS or not 8 <= n_mels <= 512:
            raise ValueError(f"--mels {spec!r}: expected FRONTEND:N_MELS with FRONTEND one of {list(AUDIO_FRONTENDS)} "
                             "and N_MELS in 8..512 (a run's audio_frontend and n_mels, e.g. tsamlib:64 or "
                             "authors:224), or 'none'")
        if f"{frontend}:{n_mels}" not in out:
            out.append(f"{frontend}:{n_mels}")
    return tuple(out)


def _audio_frames(mels: tuple[str, ...]) -> list:
    from .audio import AudioFrame
    return [AudioFrame(n_mels=int(sp.split(":")[1]), frontend=sp.split(":")[0]) for sp in mels]


def _write_mels(folder: Path, source: Path | None, mels: tuple[str, ...], only_missing: bool = False) -> dict:
    """The log-mels of each setting into ``folder`` (from ``source``, default the clip ``folder``'s own ``.wav``):
    ``{file name: settings}`` of those written."""
    done = {}
    for af in _audio_frames(mels):
        if only_missing and (folder / af.prepared_name).is_file():
            continue
        af.save_prepared(folder, source)
        done[af.prepared_name] = af.params()
    return done


def _target_size(h: int, w: int, short_side: int) -> tuple[int, int]:
    """(H, W) with the short side at most ``short_side`` (aspect kept, never upscaled); ``short_side`` 0: as is."""
    s = min(h, w)
    if short_side <= 0 or s <= short_side:
        return h, w
    return max(1, int(round(h * short_side / s))), max(1, int(round(w * short_side / s)))


def _selection(n_src: int, src_fps: float, fps: float | None) -> np.ndarray:
    """Source frame index of each output frame: all frames (native) or the frame shown at each ``k / fps``."""
    if fps is None or not (src_fps > 0) or not math.isfinite(src_fps):
        return np.arange(n_src, dtype=np.int64)
    n_out = max(1, int(round(n_src * fps / src_fps)))
    idx = np.floor(np.arange(n_out) * src_fps / fps + 1e-6).astype(np.int64)
    return np.clip(idx, 0, n_src - 1)


def _read_frames(reader: type, path: Path, fps: float | None) -> tuple[Iterator[np.ndarray], int, float]:
    """The frames ``reader`` decodes from ``path`` at ``fps`` (streamed), how many, and the source rate."""
    video = reader(path)
    if not video.has_video:
        raise ValueError("no video stream")
    n, src_fps = len(video), video.fps
    if n == 0:
        raise ValueError(video.empty)
    sel = _selection(n, src_fps, fps)
    return video.iter_frames(sel), len(sel), src_fps


def _write_frames(frames: Iterator[np.ndarray], n: int, tmp: Path, short_side: int, quality: int) -> int:
    from PIL import Image
    width = max(5, len(str(n)))
    k = 0
    for k, arr in enumerate(frames, 1):
        im = Image.fromarray(np.ascontiguousarray(arr))
        h, w = _target_size(im.height, im.width, short_side)
        if (h, w) != (im.height, im.width):
            im = im.resize((w, h), Image.BILINEAR)
        im.save(tmp / f"{k:0{width}d}.jpg", quality=quality)
    return k


def _write_audio(source: Path, wav: Path) -> tuple[bool, str]:
    """Audio of ``source`` (or its ``.wav`` twin) to ``wav`` as 16-bit PCM, source rate and channels.

    Returns (has_audio, problem): no track or no sample -> (False, ""); a track that cannot be decoded at all ->
    (False, "cannot decode audio: ..."); samples before a broken tail are kept, as the loader keeps them."""
    import av
    import soundfile

    from .audio import audio_source
    src = audio_source(source)
    if src.is_dir():
        return False, ""
    channels = []

    def packed_s16(st):
        channels.append(len(st.layout.channels))
        return av.AudioResampler(format="s16", layout=st.layout.name, rate=int(st.rate))
    try:
        chunks, rate, _ = decode_audio(src, packed_s16)
    except Exception as e:
        cause = e.__cause__ if isinstance(e, AudioError) and e.__cause__ else e   # the library's, without the path
        return False, f"cannot decode audio: {short_error(cause)}"
    if not chunks:
        return False, ""
    data = np.concatenate([ch.reshape(-1) for ch in chunks]).astype(np.int16)
    if data.size == 0:
        return False, ""
    data = data[: data.size - data.size % channels[0]].reshape(-1, channels[0])   # packed s16: interleaved channels
    soundfile.write(str(wav), data, rate, subtype="PCM_16", format="WAV")
    return True, ""


def _complete(dest: Path, params: dict) -> dict | None:
    """The ``prepare.json`` of a finished clip made with ``params`` whose frames and ``.wav`` are all there, else
    None (the clip is made again). Parameters recorded without a layout are the default layout's."""
    try:
        meta = json.loads((dest / META_NAME).read_text())
    except (OSError, ValueError):
        return None
    recorded = meta.get("params")
    if isinstance(recorded, dict) and "layout" not in recorded:
        recorded = dict(layout="tsamlib", **recorded)       # written before layouts existed
    if recorded != params or bool(meta.get("has_audio")) != _wav_of(dest).is_file():
        return None
    n_jpg = sum(1 for f in os.scandir(dest) if f.name.endswith(".jpg"))
    return meta if n_jpg == meta.get("n_frames") else None


def _fail(problem: str) -> dict:
    return dict(n_frames=0, fps=math.nan, duration=math.nan, has_audio=False, problem=problem, status="failed")


class _Unusable(Exception):
    """A clip that cannot be converted; the message is its ``problem``."""


def _authors_frames(source: Path, tmp: Path, fps: float | None, height: int) -> tuple[int, float]:
    from .extract import extract_frames
    return extract_frames(source, tmp, fps=fps, height=height, qscale=AUTHORS_QSCALE, digits=AUTHORS_DIGITS)


def _tsamlib_frames(source: Path, tmp: Path, fps: float | None, short_side: int, quality: int):
    """``write(reader)``: the frames ``reader`` decodes, resized and saved with PIL: (frames written, source fps)."""
    def write(reader) -> tuple[int, float]:
        frames, n_sel, src_fps = _read_frames(reader, source, fps)
        return _write_frames(frames, n_sel, tmp, short_side, quality), src_fps
    return write


def _frame_writers(source: Path, tmp: Path, fps: float | None, layout: str, short_side: int, quality: int,
                   height: int) -> list:
    """The ways to write ``source``'s frames into ``tmp`` (each ``() -> (frames written, source fps)``), in the order
    they are tried: the authors' extraction, or PIL over each reader of the source."""
    if layout == "authors":
        return [lambda: _authors_frames(source, tmp, fps, height)]
    write = _tsamlib_frames(source, tmp, fps, short_side, quality)
    return [lambda r=r: write(r) for r in video_readers(source)]


def _write_any(writers: list, tmp: Path) -> tuple[int, float]:
    """(frames written, source fps) of the first of ``writers`` that succeeds, each failure's files removed before
    the next; :class:`_Unusable` naming every failure when none does. A full disk raises at once."""
    errors = []
    for writer in writers:
        try:
            return writer()
        except Exception as e:
            if _disk_error(e):   # the disk's, not the clip's: stop, mark nothing bad
                raise
            errors.append(short_error(e, 120, with_type=True))
            for f in tmp.iterdir():
                f.unlink()
    raise _Unusable(f"cannot decode: {' / '.join(errors)}"[:200])


def _add_missing_mels(dest: Path, meta: dict, mels: tuple[str, ...]) -> dict:
    """A complete clip ``dest``: the log-mels of ``mels`` it lacks written (and recorded in its ``prepare.json``)."""
    added = _write_mels(dest, None, mels, only_missing=True)
    if added:
        meta["mels"] = dict(meta.get("mels") or {}) | added
        with atomic_path(dest / META_NAME) as t:
            Path(t).write_text(json.dumps(meta, indent=1))
    return dict(n_frames=meta["n_frames"], fps=meta["fps"], duration=meta["duration"],
                has_audio=_wav_of(dest).is_file(), problem="", status="mels" if added else "skipped")


def _finish(source: Path, dest: Path, tmp: Path, n: int, out_fps: float, params: dict, mels: tuple[str, ...]
            ) -> dict:
    """Frames written into ``tmp``: add the ``.wav``, the log-mels and ``prepare.json``, then move the clip to
    ``dest`` (replacing one made with other parameters)."""
    if n == 0:
        raise _Unusable("zero frames")
    has_audio, problem = _write_audio(source, tmp / "audio.wav")
    if problem:
        raise _Unusable(problem)
    # the log-mels of the .wav written (a clip without audio: the silent frame its folder gives)
    written = _write_mels(tmp, tmp / "audio.wav" if has_audio else tmp, mels)
    duration = n / out_fps if out_fps > 0 else math.nan
    meta = dict(source=str(source), n_frames=n, fps=out_fps, duration=duration, has_audio=has_audio,
                params=params, mels=written)
    (tmp / META_NAME).write_text(json.dumps(meta, indent=1))
    wav = _wav_of(dest)
    if dest.exists():                       # made with other parameters: replace it
        shutil.rmtree(dest)
    if has_audio:
        os.replace(tmp / "audio.wav", wav)
    else:
        wav.unlink(missing_ok=True)
    os.replace(tmp, dest)                   # the clip is complete once its folder has its final name
    return dict(n_frames=n, fps=out_fps, duration=duration, has_audio=has_audio, problem="", status="converted")


def prepare_clip(source: str | os.PathLike, dest: str | os.PathLike, short_side: int = 256,
                 fps: float | None = None, quality: int = 90, layout: str = "tsamlib", height: int = AUTHORS_HEIGHT,
                 mels=()) -> dict:
    """Convert one clip to ``dest`` (frame folder, with the log-mels of each ``mels`` setting) and ``dest.wav``;
    never raises but for a full disk.

    Returns ``dict(n_frames, fps, duration, has_audio, problem, status)`` with status "converted", "skipped"
    (already complete with the same parameters), "mels" (complete, the missing log-mels added) or "failed"
    (``problem`` says why; nothing is left at ``dest``)."""
    source, dest = Path(source), Path(dest)
    params = _params(short_side, fps, quality, layout, height)
    mels = parse_mels(mels)
    try:
        meta = _complete(dest, params)
        if meta is not None:
            return _add_missing_mels(dest, meta, mels)
        tmp = _temp_of(dest)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            n, src_fps = _write_any(_frame_writers(source, tmp, fps, layout, short_side, quality, height), tmp)
            return _finish(source, dest, tmp, n, src_fps if fps is None else float(fps), params, mels)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except _Unusable as e:
        return _fail(str(e))
    except Exception as e:
        if _disk_error(e):
            raise
        return _fail(f"prepare failed: {type(e).__name__}: {short_error(e)}")


def _disk_error(e: BaseException) -> bool:
    """A write that failed because of the output disk (full, over quota, read-only), whatever the clip."""
    return isinstance(e, OSError) and e.errno in DISK_ERRNOS


def _prepare_job(job: tuple) -> dict:
    return prepare_clip(*job)


def _run_jobs(jobs: list[tuple], workers: int) -> list[dict]:
    """:func:`prepare_clip` over ``jobs`` in a process pool with a progress bar; results in job order."""
    from ..runs.progress import progress
    results: list[dict | None] = [None] * len(jobs)
    with progress(total=len(jobs), desc="prepare", unit="clip", disable=not jobs) as bar:
        if workers == 1 or len(jobs) < 2:
            for i, job in enumerate(jobs):
                results[i] = _prepare_job(job)
                bar.update()
            return results
        try:
            with worker_pool(workers) as ex:
                futures = {ex.submit(_prepare_job, job): i for i, job in enumerate(jobs)}
                for fut in as_completed(futures):
                    results[futures[fut]] = fut.result()
                    bar.update()
        except BrokenProcessPool:  # a decoder crashed a worker: finish the rest one process per clip
            for i, job in enumerate(jobs):
                if results[i] is None:
                    results[i] = run_alone(_prepare_job, job, _fail("decoding crashed the worker process"))
                    bar.update()
    return results


# ----------------------------------------------------------------------------------------------- dataset
def write_prepared_manifest(df: pd.DataFrame, csv_path: str | os.PathLike) -> Path:
    """Write the manifest columns plus ``source`` (absolute) atomically; paths under the CSV's folder become
    relative."""
    from .manifest import write_manifest
    return write_manifest(df.assign(source=df["source"].astype(str).map(os.path.abspath).to_numpy()), csv_path,
                          extra_columns=["source"], fix=_OUT_FIX)


def _check_settings(layout: str, quality: int, fps: float | None, height: int) -> None:
    """ValueError naming the option when a setting of :func:`prepare_dataset` is out of range."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} (--layout): choose one of {list(LAYOUTS)}")
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be positive (or None for the native rate), got {fps}")
    if not (isinstance(height, (int, np.integer)) and height >= 1):
        raise ValueError(f"height={height!r} (--height): the frame height in pixels must be a positive integer, "
                         f"e.g. {AUTHORS_HEIGHT}")


def _refuse_frame_folders(src: pd.DataFrame) -> None:
    """The authors' layout converts video files only: ValueError when usable rows are frame folders."""
    folders = [p for p, prob in zip(src["path"], src["problem"]) if prob == "" and Path(p).is_dir()]
    if folders:
        raise ValueError(f"layout 'authors' (--layout authors / --height) converts video files, as the authors' "
                         f"ffmpeg command does; {len(folders)} usable row(s) are frame folders "
                         f"(e.g. {folders[0]}): prepare them with the default layout")


def _run_into(out: Path, jobs: list[tuple], workers: int) -> list[dict]:
    """:func:`_run_jobs`; a full output disk becomes an OSError that names ``out`` and what to do."""
    try:
        return _run_jobs(jobs, workers)
    except OSError as e:
        if not _disk_error(e):
            raise
        raise OSError(e.errno, f"{os.strerror(e.errno)} while writing prepared clips into {out}: free space (or "
                      "choose another --out) and run prepare again; the clips finished so far are kept and "
                      "skipped, no clip was marked bad") from None


def _output_table(src: pd.DataFrame, dest: list[Path], todo: list[int], results: list[dict]
                  ) -> tuple[pd.DataFrame, Counter]:
    """The output manifest's rows (``path`` the frame folder, ``source`` the input path) and the count of each
    clip status."""
    table = src.copy()
    table["source"] = table["path"]
    table["path"] = [str(d) for d in dest]
    for c, v in (("n_frames", 0), ("fps", math.nan), ("duration", math.nan), ("has_audio", False)):
        table.loc[table["problem"] != "", c] = v
    status = Counter()
    for i, r in zip(todo, results):
        for c in ("n_frames", "fps", "duration", "has_audio", "problem"):
            table.at[i, c] = r[c]
        status[r["status"]] += 1
    return table, status


def prepare_dataset(manifest: str | os.PathLike, out: str | os.PathLike, short_side: int = 256,
                    fps: float | None = None, quality: int = 90, workers: int | None = None,
                    verbose: bool = True, layout: str = "tsamlib", height: int = AUTHORS_HEIGHT,
                    mels="default") -> Prepared:
    """Convert every usable clip of ``manifest`` into ``out`` (see the module docstring); write ``out/manifest.csv``.

    ``fps`` None keeps every frame (native rate); ``layout`` "tsamlib" (``short_side``, ``quality``) or "authors"
    (``height``; the authors' extraction is ``layout="authors", fps=AUTHORS_FPS``); ``mels``: log-mel settings
    (``"FRONTEND:N_MELS"``, a list of them, "none", or "default": :data:`DEFAULT_MELS` of the layout); ``workers``
    defaults to the number of cores. Returns a :class:`Prepared` with the table written and the counts; prints the
    summary when ``verbose``."""
    from .manifest import read_manifest
    _check_settings(layout, quality, fps, height)
    mels = parse_mels(DEFAULT_MELS[layout] if isinstance(mels, str) and mels == "default" else mels)
    src = read_manifest(manifest)
    if layout == "authors":
        _refuse_frame_folders(src)
    out = writable_folder(Path(out).absolute(), _OUT_FIX)
    workers = (os.cpu_count() or 1) if workers is None else max(1, int(workers))
    with exclusive_lock(out / ".prepare.lock", f"preparing into {out}", wait=False):
        removed = remove_temp_folders(out)
        dest = clip_destinations(src, out)
        todo = [i for i in range(len(src)) if src["problem"].iat[i] == ""]
        jobs = [(src["path"].iat[i], str(dest[i]), int(short_side), fps, int(quality), layout, int(height), mels)
                for i in todo]
        table, status = _output_table(src, dest, todo, _run_into(out, jobs, workers))
        csv = write_prepared_manifest(table, out / "manifest.csv")
    bad = table["problem"] != ""
    res = Prepared(manifest=csv, table=table, converted=status["converted"],
                   skipped=status["skipped"] + status["mels"], mels_added=status["mels"], failed=status["failed"],
                   carried=len(src) - len(todo), removed_temp=removed,
                   problems=dict(Counter(p.split(":")[0] for p in table.loc[bad, "problem"]).most_common()))
    if verbose:
        print(res.summary())
    return res
