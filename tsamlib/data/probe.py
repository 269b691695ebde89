"""Probing video files (frames, fps, duration, audio, or the reason a file is unusable), in parallel worker
processes that run one thread each and end with the process that started them (Ctrl-C, SIGTERM, SIGKILL).

Probing uses decord's ``VideoReader`` (the reader the training loader uses, so ``n_frames`` agrees with it) and
PyAV for the audio track. decord's ``AudioReader`` raises ``DECORDError: Can't find audio stream`` on a file
without audio and decodes the whole track, so it is not used here. A ``.wav`` next to the video (same stem, the
TSAM authors' layout) also counts as audio. A folder of images (the Something-Something v1 layout) is probed by
counting its frames (fps NaN, no audio).
"""
from __future__ import annotations

import math
import os
import re
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

__all__ = ["VIDEO_EXTENSIONS", "IMAGE_EXTENSIONS", "probe_video", "probe_many", "probe_pool", "single_thread",
           "short_error", "pid_alive"]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")  # frames of a frame folder (tsamlib.data.video reads the same)


def _result(n_frames: int = 0, fps: float = math.nan, duration: float = math.nan, has_audio: bool = False,
            problem: str = "") -> dict:
    return dict(n_frames=int(n_frames), fps=float(fps), duration=float(duration), has_audio=bool(has_audio),
                problem=problem)


_DECORD_PREFIX = re.compile(r"^\[[^\]]*\]\s*(\S+:\d+:\s*)?")  # "[20:44:35] /src/video_reader.cc:83: "


def short_error(err: BaseException, limit: int = 60, with_type: bool = False) -> str:
    """First line of an exception message, trimmed, without decord's '[time] file.cc:123:' prefix.

    PyAV's ``OSError`` gives its ``strerror`` (the message without the long file name); ``with_type``
    puts the exception's class name first ("DECORDError: ..."). Shared with :mod:`tsamlib.data.video`."""
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
            return _result(problem=f"cannot open: {short_error(e)}")
        has_audio = n_audio > 0 or p.with_suffix(".wav").exists()
        if n_video == 0:
            return _result(has_audio=has_audio, problem="no video stream")
        try:
            n, fps = _count_frames(p)
        except Exception as e:
            return _result(has_audio=has_audio, problem=f"cannot decode: {short_error(e)}")
        if n == 0:
            return _result(has_audio=has_audio, problem="zero frames")
        duration = n / fps if fps > 0 else math.nan
        return _result(n, fps, duration, has_audio)
    except Exception as e:  # a probe never raises: anything unexpected becomes a problem string
        return _result(problem=f"probe failed: {type(e).__name__}: {short_error(e)}")


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
    if main_pid is not None and not pid_alive(main_pid):  # the parent died before the death signal was set
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


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    except OSError:
        return False
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
def probe_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
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
        with probe_pool(1) as ex:
            return ex.submit(probe_video, path).result()
    except BrokenProcessPool:
        return _result(problem="probe crashed the worker process")


def probe_many(paths: Sequence[str | os.PathLike], workers: int | None = None, desc: str = "probe") -> list[dict]:
    """Probe ``paths`` in a process pool (one thread per worker) with a progress bar, results in order.

    Interrupting (Ctrl-C) or killing the calling process ends the worker processes too."""
    from ..runs.notebook import progress
    paths = [str(p) for p in paths]
    workers = min(4, os.cpu_count() or 1) if workers is None else max(1, int(workers))
    if workers == 1 or len(paths) < 2:
        return [probe_video(p) for p in progress(paths, desc=desc, unit="file", disable=not paths)]
    results: list[dict] = []
    chunk = max(1, min(16, len(paths) // (workers * 8)))
    with progress(total=len(paths), desc=desc, unit="file") as bar:
        try:
            with probe_pool(workers) as ex:
                for r in ex.map(probe_video, paths, chunksize=chunk):
                    results.append(r)
                    bar.update()
        except BrokenProcessPool:  # a decoder crashed a worker: finish the rest one process per file
            for p in paths[len(results):]:
                results.append(_probe_isolated(p))
                bar.update()
    return results
