"""Prepared datasets: every usable clip of a manifest as a folder of JPEG frames plus a ``.wav``, which load fast.

``python -m tsamlib prepare IN_MANIFEST --out OUT`` (or :func:`prepare_dataset`) writes, per usable clip::

    OUT/<class>/<stem>/00001.jpg, 00002.jpg, ...   frames, short side <= ``short_side`` (never upscaled), RGB
    OUT/<class>/<stem>/prepare.json                 what was done (source, fps, frame count, parameters)
    OUT/<class>/<stem>.wav                          the audio, 16-bit PCM at the source rate, all channels
    OUT/manifest.csv                                the manifest columns plus ``source`` (the original path)

The frame folder is the layout :func:`tsamlib.data.video.load_clip` reads (``list_frames``: sorted ``.jpg`` names,
numbered from 1 with zero padding to at least 5 digits, so name order is frame order); the ``.wav`` sits where
:func:`tsamlib.data.audio.audio_source` looks for a frame folder's sound (``<folder>.wav``), so no video is opened for
the audio. A clip without an audio track gets no ``.wav`` (``has_audio`` False). ``<class>`` is the label name
(``_unlabelled`` for label -1); two clips with the same class and stem get a short hash of their source path
appended to the stem.

Frames are decoded with decord (the reader the mp4 loader uses, so frame ``i`` is the same frame), PyAV when decord
fails; a frame-folder source is read with PIL. ``fps="native"`` keeps every frame; a number ``N`` keeps the frame
shown at each time ``k / N`` (frames repeat when ``N`` is above the source rate).

Resumable: each clip is written to a temporary folder ``OUT/<class>/.<stem>.prepare-tmp`` and renamed when complete;
a rerun skips complete clips (made with the same parameters) and removes temporary folders a killed run left. One
``prepare`` at a time per ``OUT`` (a lock file makes a second one fail). Clips are converted in worker processes
(one thread each, ending with the parent: :mod:`tsamlib.data.probe`'s pool). Rows whose input has a problem, and clips
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
from .probe import probe_pool, short_error

__all__ = ["TMP_SUFFIX", "META_NAME", "Prepared", "prepare_dataset", "prepare_clip", "clip_destinations",
           "remove_temp_folders", "write_prepared_manifest"]

TMP_SUFFIX = ".prepare-tmp"
META_NAME = "prepare.json"
_CHUNK = 16  # frames decoded per decord call
_VERSION = 1

# write errors that are the output disk's (a full disk must not mark good clips bad)
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


@dataclass
class Prepared:
    """What :func:`prepare_dataset` did: the output manifest, its table and the work counts."""
    manifest: Path
    table: pd.DataFrame
    converted: int = 0
    skipped: int = 0
    failed: int = 0
    carried: int = 0
    removed_temp: int = 0
    problems: dict = field(default_factory=dict)

    def summary(self) -> str:
        """One paragraph: counts of work done and problems by reason."""
        usable = self.table["problem"] == ""
        ok = int(usable.sum())
        lines = [f"prepared {len(self.table)} clips: {ok} usable ({self.converted} converted, {self.skipped} "
                 f"already complete), {self.failed} failed to convert, {self.carried} had a problem in the input; "
                 f"{int((usable & ~self.table['has_audio'].astype(bool)).sum())} usable without audio"]
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
def _params(short_side: int, fps: float | None, quality: int) -> dict:
    return dict(short_side=int(short_side), fps="native" if fps is None else float(fps), quality=int(quality),
                version=_VERSION)


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


def _decord_frames(path: Path, fps: float | None) -> tuple[Iterator[np.ndarray], int, float]:
    import decord
    vr = decord.VideoReader(str(path), num_threads=1)
    n, src_fps = len(vr), float(vr.get_avg_fps())
    if n == 0:
        raise ValueError("zero frames")
    sel = _selection(n, src_fps, fps)

    def gen() -> Iterator[np.ndarray]:
        for a in range(0, len(sel), _CHUNK):
            part = sel[a:a + _CHUNK]
            uniq, inverse = np.unique(part, return_inverse=True)
            batch = vr.get_batch(uniq.tolist()).asnumpy()
            if batch.ndim != 4 or batch.shape[-1] != 3 or batch.shape[0] != len(uniq):
                raise RuntimeError(f"decord returned frames of shape {batch.shape}")
            for j in inverse:
                yield batch[j]
    return gen(), len(sel), src_fps


def _pyav_frames(path: Path, fps: float | None) -> tuple[Iterator[np.ndarray], int, float]:
    """Sequential PyAV decoding (the loader's fallback): frames counted for real, kept as decoded."""
    import av
    frames = []
    with av.open(str(path)) as c:
        if not c.streams.video:
            raise ValueError("no video stream")
        st = c.streams.video[0]
        src_fps = float(st.average_rate or math.nan)
        try:
            for f in c.decode(st):
                frames.append(f.to_ndarray(format="rgb24"))
        except av.error.FFmpegError:
            if not frames:
                raise
    if not frames:
        raise ValueError("no decodable frame")
    sel = _selection(len(frames), src_fps, fps)
    return (frames[i] for i in sel), len(sel), src_fps


def _folder_frames(path: Path, fps: float | None) -> tuple[Iterator[np.ndarray], int, float]:
    from PIL import Image

    from .video import list_frames
    files = list_frames(path)
    sel = _selection(len(files), math.nan, fps)

    def gen() -> Iterator[np.ndarray]:
        for i in sel:
            with Image.open(files[i]) as im:
                yield np.asarray(im.convert("RGB"))
    return gen(), len(sel), math.nan


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
    chunks, rate, channels = [], 0, 0
    try:
        with av.open(str(src)) as c:
            if not c.streams.audio:
                return False, ""
            st = c.streams.audio[0]
            rate, layout = int(st.rate), st.layout.name
            channels = len(st.layout.channels)
            rs = av.AudioResampler(format="s16", layout=layout, rate=rate)
            try:
                for frame in c.decode(st):
                    chunks += [o.to_ndarray() for o in rs.resample(frame)]
            except av.error.FFmpegError:
                if not chunks:
                    raise
            chunks += [o.to_ndarray() for o in rs.resample(None)]
    except Exception as e:
        return False, f"cannot decode audio: {short_error(e)}"
    if not chunks:
        return False, ""
    data = np.concatenate([ch.reshape(-1) for ch in chunks]).astype(np.int16)
    if data.size == 0:
        return False, ""
    data = data[: data.size - data.size % channels].reshape(-1, channels)   # packed s16: interleaved channels
    soundfile.write(str(wav), data, rate, subtype="PCM_16", format="WAV")
    return True, ""


def _complete(dest: Path, params: dict) -> dict | None:
    """The ``prepare.json`` of a finished clip made with ``params`` whose frames and ``.wav`` are all there, else
    None (the clip is made again)."""
    try:
        meta = json.loads((dest / META_NAME).read_text())
    except (OSError, ValueError):
        return None
    if meta.get("params") != params or bool(meta.get("has_audio")) != _wav_of(dest).is_file():
        return None
    n_jpg = sum(1 for f in os.scandir(dest) if f.name.endswith(".jpg"))
    return meta if n_jpg == meta.get("n_frames") else None


def _fail(problem: str) -> dict:
    return dict(n_frames=0, fps=math.nan, duration=math.nan, has_audio=False, problem=problem, status="failed")


def prepare_clip(source: str | os.PathLike, dest: str | os.PathLike, short_side: int = 256,
                 fps: float | None = None, quality: int = 90) -> dict:
    """Convert one clip to ``dest`` (frame folder) and ``dest.wav``; never raises.

    Returns ``dict(n_frames, fps, duration, has_audio, problem, status)`` with status "converted", "skipped"
    (already complete with the same parameters) or "failed" (``problem`` says why; nothing is left at ``dest``)."""
    source, dest = Path(source), Path(dest)
    params = _params(short_side, fps, quality)
    try:
        meta = _complete(dest, params)
        if meta is not None:
            return dict(n_frames=meta["n_frames"], fps=meta["fps"], duration=meta["duration"],
                        has_audio=_wav_of(dest).is_file(), problem="", status="skipped")
        tmp = _temp_of(dest)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            readers = [_folder_frames] if source.is_dir() else [_decord_frames, _pyav_frames]
            errors = []
            n = 0
            src_fps = math.nan
            for reader in readers:
                try:
                    frames, n_sel, src_fps = reader(source, fps)
                    n = _write_frames(frames, n_sel, tmp, short_side, quality)
                    break
                except Exception as e:
                    if _disk_error(e):   # the disk's, not the clip's: stop, mark nothing bad
                        raise
                    errors.append(short_error(e, 120, with_type=True))
                    for f in tmp.iterdir():
                        f.unlink()
            else:
                return _fail(f"cannot decode: {' / '.join(errors)}"[:200])
            if n == 0:
                return _fail("zero frames")
            has_audio, problem = _write_audio(source, tmp / "audio.wav")
            if problem:
                return _fail(problem)
            out_fps = src_fps if fps is None else float(fps)
            duration = n / out_fps if out_fps > 0 else math.nan
            meta = dict(source=str(source), n_frames=n, fps=out_fps, duration=duration, has_audio=has_audio,
                        params=params)
            (tmp / META_NAME).write_text(json.dumps(meta, indent=1))
            wav = _wav_of(dest)
            if dest.exists():                       # made with other parameters: replace it
                shutil.rmtree(dest)
            if has_audio:
                os.replace(tmp / "audio.wav", wav)
            else:
                wav.unlink(missing_ok=True)
            os.replace(tmp, dest)                   # the clip is complete once its folder has its final name
            return dict(n_frames=n, fps=out_fps, duration=duration, has_audio=has_audio, problem="",
                        status="converted")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except Exception as e:
        if _disk_error(e):
            raise
        return _fail(f"prepare failed: {type(e).__name__}: {short_error(e)}")


def _disk_error(e: BaseException) -> bool:
    """A write that failed because of the output disk (full, over quota, read-only), whatever the clip."""
    return isinstance(e, OSError) and e.errno in DISK_ERRNOS


def _prepare_job(job: tuple) -> dict:
    return prepare_clip(*job)


def _prepare_isolated(job: tuple) -> dict:
    """One clip in its own process: used after a worker crashed (e.g. a decoder segfault)."""
    try:
        with probe_pool(1) as ex:
            return ex.submit(_prepare_job, job).result()
    except BrokenProcessPool:
        return _fail("decoding crashed the worker process")


def _run_jobs(jobs: list[tuple], workers: int) -> list[dict]:
    """:func:`prepare_clip` over ``jobs`` in a process pool with a progress bar; results in job order."""
    from ..runs.notebook import progress
    results: list[dict | None] = [None] * len(jobs)
    with progress(total=len(jobs), desc="prepare", unit="clip", disable=not jobs) as bar:
        if workers == 1 or len(jobs) < 2:
            for i, job in enumerate(jobs):
                results[i] = _prepare_job(job)
                bar.update()
            return results
        try:
            with probe_pool(workers) as ex:
                futures = {ex.submit(_prepare_job, job): i for i, job in enumerate(jobs)}
                for fut in as_completed(futures):
                    results[futures[fut]] = fut.result()
                    bar.update()
        except BrokenProcessPool:  # a decoder crashed a worker: finish the rest one process per clip
            for i, job in enumerate(jobs):
                if results[i] is None:
                    results[i] = _prepare_isolated(job)
                    bar.update()
    return results


# ----------------------------------------------------------------------------------------------- dataset
def write_prepared_manifest(df: pd.DataFrame, csv_path: str | os.PathLike) -> Path:
    """Write the manifest columns plus ``source`` atomically; paths under the CSV's folder become relative."""
    from .manifest import COLUMNS, typed_manifest
    csv_path = Path(csv_path).absolute()
    folder = csv_path.parent
    out = typed_manifest(df)

    def rel(p: str) -> str:
        ap = Path(os.path.abspath(p))
        return ap.relative_to(folder).as_posix() if ap.is_relative_to(folder) else str(ap)

    out["path"] = out["path"].map(rel)
    out["source"] = df["source"].astype(str).map(os.path.abspath).to_numpy()
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        out[COLUMNS + ["source"]].to_csv(f, index=False)
    return csv_path


def prepare_dataset(manifest: str | os.PathLike, out: str | os.PathLike, short_side: int = 256,
                    fps: float | None = None, quality: int = 90, workers: int | None = None,
                    verbose: bool = True) -> Prepared:
    """Convert every usable clip of ``manifest`` into ``out`` (see the module docstring); write ``out/manifest.csv``.

    ``fps`` None keeps every frame (native rate); ``workers`` defaults to the number of cores. Returns a
    :class:`Prepared` with the table written and the counts; prints the summary when ``verbose``."""
    from .manifest import read_manifest
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be positive (or None for the native rate), got {fps}")
    src = read_manifest(manifest)
    out = writable_folder(Path(out).absolute(), "choose another output folder (prepare --out)")
    workers = (os.cpu_count() or 1) if workers is None else max(1, int(workers))
    with exclusive_lock(out / ".prepare.lock", f"preparing into {out}", wait=False):
        removed = remove_temp_folders(out)
        dest = clip_destinations(src, out)
        todo = [i for i in range(len(src)) if src["problem"].iat[i] == ""]
        jobs = [(src["path"].iat[i], str(dest[i]), int(short_side), fps, int(quality)) for i in todo]
        try:
            results = _run_jobs(jobs, workers)
        except OSError as e:
            if not _disk_error(e):
                raise
            raise OSError(e.errno, f"{os.strerror(e.errno)} while writing prepared clips into {out}: free space (or "
                          "choose another --out) and run prepare again; the clips finished so far are kept and "
                          "skipped, no clip was marked bad") from None
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
        csv = write_prepared_manifest(table, out / "manifest.csv")
    bad = table["problem"] != ""
    res = Prepared(manifest=csv, table=table, converted=status["converted"], skipped=status["skipped"],
                   failed=status["failed"], carried=len(src) - len(todo), removed_temp=removed,
                   problems=dict(Counter(p.split(":")[0] for p in table.loc[bad, "problem"]).most_common()))
    if verbose:
        print(res.summary())
    return res
