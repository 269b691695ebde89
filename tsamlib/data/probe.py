"""Probing video files (frames, fps, duration, audio, or the reason a file is unusable), in parallel worker
processes (:mod:`tsamlib.data.workers`: one thread each, ending with the process that started them).

Probing uses decord's ``VideoReader`` (the reader the training loader uses, so ``n_frames`` agrees with it; PyAV's
demuxer where the backend is PyAV) and
PyAV for the audio track. decord's ``AudioReader`` raises ``DECORDError: Can't find audio stream`` on a file
without audio and decodes the whole track, so it is not used here. A ``.wav`` next to the video (same stem, the
TSAM authors' layout) also counts as audio. A folder of images (the Something-Something v1 layout) is probed by
counting its frames (fps NaN, no audio).
"""
from __future__ import annotations

import math
import os
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from pathlib import Path
from typing import Sequence

from .decode import FRAME_EXTENSIONS, DecordVideo, file_readers, resolve_backend, short_error
from .workers import run_alone, worker_pool

__all__ = ["VIDEO_EXTENSIONS", "probe_video", "probe_many"]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp")


def _result(n_frames: int = 0, fps: float = math.nan, duration: float = math.nan, has_audio: bool = False,
            problem: str = "") -> dict:
    return dict(n_frames=int(n_frames), fps=float(fps), duration=float(duration), has_audio=bool(has_audio),
                problem=problem)


def _probe_frame_dir(path: Path) -> dict:
    n = sum(1 for f in os.scandir(path) if f.is_file() and f.name.lower().endswith(FRAME_EXTENSIONS))
    return _result(n_frames=n, problem="" if n else "empty frame folder")


def _count_frames(path: Path, backend: str = "auto") -> tuple[int, float]:
    """(n_frames, fps) with decord's VideoReader, or PyAV's demuxer where the backend is PyAV."""
    if file_readers(backend)[0] is DecordVideo:
        video = DecordVideo(path)
    else:  # PyAV counts video packets: decoding the whole file only to count would be slower than training reads
        import av
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            n = s.frames or sum(1 for p in c.demux(s) if p.size)
            return n, float(s.average_rate or math.nan)
    n = len(video)
    if n:
        video.reader[0]  # the first frame must decode
    return n, video.fps


def probe_video(path: str | os.PathLike, backend: str = "auto") -> dict:
    """``dict(n_frames, fps, duration, has_audio, problem)`` for a video file or frame folder, its frames counted by
    ``backend``'s reader; never raises (``backend`` is checked by :func:`probe_many`)."""
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
            return _result(problem=f"cannot open: {short_error(e)}")
        has_audio = n_audio > 0 or p.with_suffix(".wav").exists()
        if n_video == 0:
            return _result(has_audio=has_audio, problem="no video stream")
        try:
            n, fps = _count_frames(p, backend)
        except Exception as e:
            return _result(has_audio=has_audio, problem=f"cannot decode: {short_error(e)}")
        if n == 0:
            return _result(has_audio=has_audio, problem="zero frames")
        duration = n / fps if fps > 0 else math.nan
        return _result(n, fps, duration, has_audio)
    except Exception as e:  # a probe never raises: anything unexpected becomes a problem string
        return _result(problem=f"probe failed: {type(e).__name__}: {short_error(e)}")


def probe_many(paths: Sequence[str | os.PathLike], workers: int | None = None, desc: str = "probe",
               backend: str = "auto") -> list[dict]:
    """Probe ``paths`` in a process pool (one thread per worker) with a progress bar, results in order.

    ``backend`` is resolved here, once (an unusable one raises before any file is probed). Interrupting (Ctrl-C) or
    killing the calling process ends the worker processes too."""
    from ..runs.progress import progress
    probe = partial(probe_video, backend=resolve_backend(backend))
    paths = [str(p) for p in paths]
    workers = min(4, os.cpu_count() or 1) if workers is None else max(1, int(workers))
    if workers == 1 or len(paths) < 2:
        return [probe(p) for p in progress(paths, desc=desc, unit="file", disable=not paths)]
    results: list[dict] = []
    chunk = max(1, min(16, len(paths) // (workers * 8)))
    with progress(total=len(paths), desc=desc, unit="file") as bar:
        try:
            with worker_pool(workers) as ex:
                for r in ex.map(probe, paths, chunksize=chunk):
                    results.append(r)
                    bar.update()
        except BrokenProcessPool:  # a decoder crashed a worker: finish the rest one process per file
            for p in paths[len(results):]:
                results.append(run_alone(probe, p, _result(problem="probe crashed the worker process")))
                bar.update()
    return results
