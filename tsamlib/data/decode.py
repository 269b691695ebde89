"""Decoding frames and sound: decord, TorchCodec, PyAV and folders of frames, for the training reads and ``prepare``.

A video reader (one small class per backend) opens one source and gives its frame count (``len``), its average rate
(``fps``, NaN when unknown), chosen frames at once (``frames(indices)``: uint8 ``(k, H, W, 3)``, RGB, channels last)
or one after the other (``iter_frames(indices)``, few in memory at a time). Readers report what they find
(``has_video``, a count of 0) and raise what their library raises; the callers word the errors. :func:`video_readers`
is the one place where a source's readers are chosen: a folder of frames is read with PIL (:class:`FrameFolder`), a
video file with the backend's reader (``video_backend``: :class:`DecordVideo`, :class:`TorchCodecVideo`, or
:class:`PyAVSeek`, each decoding only the frames asked for and what they need) and, when that fails on a file (a
count that is wrong at the tail of a broken file, a frame size that trips a colour conversion), with
:class:`PyAVVideo` (the file decoded in order, its frames counted for real). ``"auto"`` takes the fastest backend
that imports here (:data:`AUTO_ORDER`; decord has no wheels on aarch64 or macOS, TorchCodec needs the system's
FFmpeg libraries, PyAV bundles its own). All of them give the same frames on the real clips
(tests/data/test_backends.py).

:func:`live_frames` reads a live source (a pipe, a URL, a device, a file still being written) with PyAV as its
frames arrive, choosing them by their timestamps. :func:`decode_audio` gives the first audio track of a file through
a PyAV resampler. Imports numpy only (the
decoders on first use): the probe workers load it.
"""
from __future__ import annotations

import importlib
import io
import math
import os
import re
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import numpy as np

from ..config import VIDEO_BACKENDS

__all__ = ["VideoReadError", "AudioError", "FRAME_EXTENSIONS", "short_error", "is_frame_folder", "list_frames",
           "prefetch", "read_images", "FrameFolder", "JpegBytes", "DecordVideo", "PyAVSeek", "PyAVVideo",
           "TorchCodecVideo", "FILE_READERS", "AUTO_ORDER", "VIDEO_BACKENDS",
           "backend_missing", "resolve_backend", "file_readers", "video_readers",
           "AudioTrack", "decode_audio", "live_frames"]

FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")   # the images of a frame folder
CHUNK = 16   # frames per reader call when a whole video is streamed (iter_frames)


class VideoReadError(RuntimeError):
    """A video file or frame folder that cannot be decoded (message names the file and the cause)."""


class AudioError(RuntimeError):
    """An audio track that exists but cannot be decoded (message names the file)."""


_DECORD_PREFIX = re.compile(r"^\[[^\]]*\]\s*(\S+:\d+:\s*)?")  # "[20:44:35] /src/video_reader.cc:83: "


def short_error(err: BaseException, limit: int = 60, with_type: bool = False) -> str:
    """First line of an exception message, trimmed, without decord's '[time] file.cc:123:' prefix.

    PyAV's ``OSError`` gives its ``strerror`` (the message without the long file name); ``with_type``
    puts the exception's class name first ("DECORDError: ...")."""
    if isinstance(err, OSError) and err.strerror:
        text = str(err.strerror)
    else:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        text = _DECORD_PREFIX.sub("", lines[0]) if lines else ""
    if with_type:
        text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return (text or type(err).__name__)[:limit]


# ----------------------------------------------------------------------------------------------- frame folders
def is_frame_folder(path: str | Path) -> bool:
    """True when `path` is a directory (a folder of extracted frames)."""
    return Path(path).is_dir()


def list_frames(folder: str | Path) -> list[Path]:
    """Sorted image files (jpg/jpeg/png) of a frame folder; raises `VideoReadError` when none."""
    folder = Path(folder)
    # scandir + plain strings: a 300-frame folder is listed in about a third of the time Path.iterdir takes
    with os.scandir(folder) as it:
        names = sorted(e.name for e in it if e.name.lower().endswith(FRAME_EXTENSIONS) and e.is_file())
    if not names:
        raise VideoReadError(f"{folder}: frame folder holds no {'/'.join(FRAME_EXTENSIONS)} files")
    return [folder / n for n in names]


def prefetch(files) -> None:
    """Ask the kernel to read ``files`` into the page cache now (``POSIX_FADV_WILLNEED``), all of them at once: files
    not cached yet come from the disk together instead of one after the other (16 JPEGs of a prepared clip: about
    11 instead of 15 ms on this machine's disk), files already cached cost a few microseconds each. Unopenable files
    are left to the read that follows (it names them); a no-op where the system has no ``posix_fadvise``."""
    if not hasattr(os, "posix_fadvise"):
        return
    for f in files:
        try:
            fd = os.open(f, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        except OSError:
            pass
        finally:
            os.close(fd)


def _read_image(file) -> np.ndarray:
    """One image (a path or a binary file object) as RGB uint8 ``(H, W, 3)``; an RGB image is not converted (that
    would copy it)."""
    from PIL import Image
    with Image.open(file) as im:
        return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))


def read_images(files: list[Path], indices: np.ndarray, open_image: Callable = _read_image,
                where: str | None = None) -> np.ndarray:
    """Decode ``files[i]`` for each index into one uint8 array (T, H, W, 3): RGB images are not converted (a copy),
    and each image is written straight into the clip (no ``np.stack``), about half the time of doing both. The files
    are :func:`prefetch`-ed first (``open_image`` other than a path's: ``files`` are already in memory, named by
    ``where``); images of different sizes raise `VideoReadError`."""
    if open_image is _read_image:
        prefetch(files[i] for i in np.unique(indices))
    out = None
    for j, i in enumerate(indices):
        a = open_image(files[i])
        if out is None:
            out = np.empty((len(indices), *a.shape), dtype=np.uint8)
        if a.shape != out.shape[1:]:
            (h0, w0), (h, w) = out.shape[1:3], a.shape[:2]
            first, this = (getattr(files[k], "name", f"frame {k}") for k in (indices[0], i))
            raise VideoReadError(f"{where or files[0].parent}: frames of different sizes ({first}: {w0}x{h0}, "
                                 f"{this}: {w}x{h}); re-extract the frames at one size")
        out[j] = a
    return out


# ----------------------------------------------------------------------------------------------- video readers
def _in_chunks(frames: Callable[[np.ndarray], np.ndarray], indices) -> Iterator[np.ndarray]:
    """``frames(indices)`` CHUNK indices at a time, one frame after the other: few frames in memory at once."""
    for a in range(0, len(indices), CHUNK):
        yield from frames(indices[a:a + CHUNK])


class FrameFolder:
    """A folder of frames (:func:`list_frames`: name order is frame order), read with PIL; no rate."""
    name = "folder"
    has_video = True
    empty = "zero frames"   # never met: list_frames refuses a folder without images
    fps = math.nan

    def __init__(self, path: str | Path):
        self.files = list_frames(path)

    def __len__(self) -> int:
        return len(self.files)

    def frames(self, indices) -> np.ndarray:
        return read_images(self.files, indices)

    def iter_frames(self, indices) -> Iterator[np.ndarray]:
        for i in indices:
            yield _read_image(self.files[i])


class JpegBytes:
    """A prepared clip's frames held in memory (a shard's sample: one encoded image per frame, in order), read with
    PIL as :class:`FrameFolder` reads the same files from a folder; ``where`` names the clip in errors."""
    name = "images-in-memory"
    has_video = True
    empty = "zero frames"
    fps = math.nan

    def __init__(self, images: list[bytes], where: str):
        self.images, self.where = images, where

    def __len__(self) -> int:
        return len(self.images)

    def _open(self, data: bytes) -> np.ndarray:
        return _read_image(io.BytesIO(data))

    def frames(self, indices) -> np.ndarray:
        return read_images(self.images, indices, open_image=self._open, where=self.where)

    def iter_frames(self, indices) -> Iterator[np.ndarray]:
        for i in indices:
            yield self._open(self.images[i])


class DecordVideo:
    """A video file through decord's ``VideoReader`` (one thread): random access, the frame count from the file."""
    name = "decord"
    has_video = True         # decord raises on a file without a video stream
    empty = "zero frames"    # what a count of 0 means: the file says it holds none

    def __init__(self, path: str | Path):
        import decord
        self.reader = decord.VideoReader(str(path), num_threads=1)

    def __len__(self) -> int:
        return len(self.reader)

    @cached_property
    def fps(self) -> float:
        return float(self.reader.get_avg_fps())

    def frames(self, indices) -> np.ndarray:
        uniq, inverse = np.unique(indices, return_inverse=True)   # decode each frame once
        batch = self.reader.get_batch(uniq.tolist()).asnumpy()
        if batch.ndim != 4 or batch.shape[-1] != 3 or batch.shape[0] != len(uniq):
            raise RuntimeError(f"decord returned frames of shape {batch.shape}")
        return batch[inverse]

    def iter_frames(self, indices) -> Iterator[np.ndarray]:
        return _in_chunks(self.frames, indices)


class PyAVSeek:
    """A video file through PyAV, decoding only what the asked frames need. Opening demuxes the video stream once (no
    decoding) for its frames' timestamps and keyframes: the count is the packets'. ``frames`` decodes from the
    keyframe before each asked frame (seeking when a keyframe lies between it and the decoder's place, decoding on
    otherwise) and converts only the asked frames to RGB. A file whose packets lack timestamps, or an asked frame that
    does not come out of the decoder (a broken tail), raises :class:`VideoReadError`: :class:`PyAVVideo` then
    decodes the file in order and counts its frames for real."""
    name = "pyav"
    empty = "zero frames"

    def __init__(self, path: str | Path):
        import av
        self.path, self.fps = str(path), math.nan
        self.pts = self.keys = np.empty(0, dtype=np.int64)
        with av.open(self.path) as c:
            self.has_video = bool(c.streams.video)
            if not self.has_video:
                return
            st = c.streams.video[0]
            self.fps = float(st.average_rate or math.nan)
            packets = [(p.pts, p.is_keyframe) for p in c.demux(st) if p.size]   # the last, empty one flushes
        if any(pts is None for pts, _ in packets):
            raise VideoReadError(f"{path}: video packets without timestamps; cannot seek")
        self.pts = np.sort(np.array([pts for pts, _ in packets], dtype=np.int64))   # presentation order
        self.keys = np.sort(np.array([pts for pts, key in packets if key], dtype=np.int64))
        if len(np.unique(self.pts)) != len(self.pts):
            raise VideoReadError(f"{path}: video packets share timestamps; cannot seek")

    def __len__(self) -> int:
        return len(self.pts)

    def _keyframe(self, pts: int) -> int:
        """Timestamp of the last keyframe at or before ``pts`` (the first frame's when none is)."""
        i = np.searchsorted(self.keys, pts, side="right") - 1
        return int(self.keys[i]) if i >= 0 else int(self.pts[0])

    def _decode(self, targets: np.ndarray) -> Iterator[np.ndarray]:
        """The frames of timestamps ``targets`` (ascending, unique) as RGB arrays, in that order."""
        import av
        with av.open(self.path) as c:
            st = c.streams.video[0]
            decoded, last = None, None          # the decoder's frames since the last seek; the last one's pts
            for t in targets.tolist():
                key = self._keyframe(t)
                if decoded is None or key > last:   # a keyframe lies ahead: seeking beats decoding up to it
                    c.seek(key, stream=st, backward=True, any_frame=False)
                    decoded = c.decode(st)
                for f in decoded:
                    last = f.pts if f.pts is not None else last
                    if f.pts is not None and f.pts >= t:
                        break
                else:
                    f = None
                if f is None or f.pts != t:
                    raise VideoReadError(f"{self.path}: frame at pts {t} did not decode (seeking)")
                yield f.to_ndarray(format="rgb24")

    def frames(self, indices) -> np.ndarray:
        uniq, inverse = np.unique(np.asarray(indices, dtype=np.int64), return_inverse=True)
        return np.stack(list(self._decode(self.pts[uniq])))[inverse]

    def iter_frames(self, indices) -> Iterator[np.ndarray]:
        indices = np.asarray(indices, dtype=np.int64)
        if len(indices) and np.all(np.diff(indices) > 0):   # ascending (a whole video): one pass, few in memory
            return self._decode(self.pts[indices])
        return _in_chunks(self.frames, indices)


class PyAVVideo:
    """A video file decoded in order with PyAV, every frame kept: the real frame count. A decoding error after the
    first frame ends the frames quietly (a broken tail), one before it is raised; ``has_video`` is False (and the
    count 0) for a file without a video stream."""
    name = "pyav-in-order"
    empty = "no decodable frame"   # what a count of 0 means: the stream is there, no frame of it decodes

    def __init__(self, path: str | Path):
        import av
        self.decoded: list[np.ndarray] = []
        self.fps = math.nan
        with av.open(str(path)) as c:
            self.has_video = bool(c.streams.video)
            if not self.has_video:
                return
            st = c.streams.video[0]
            self.fps = float(st.average_rate or math.nan)
            try:
                for f in c.decode(st):
                    self.decoded.append(f.to_ndarray(format="rgb24"))
            except av.error.FFmpegError:
                if not self.decoded:
                    raise

    def __len__(self) -> int:
        return len(self.decoded)

    def frames(self, indices) -> np.ndarray:
        return np.stack([self.decoded[i] for i in indices])

    def iter_frames(self, indices) -> Iterator[np.ndarray]:
        return (self.decoded[i] for i in indices)


class TorchCodecVideo:
    """A video file through TorchCodec's ``VideoDecoder`` (exact seek mode, one FFmpeg thread): random access, the
    frame count from its scan of the file. Needs FFmpeg's libraries (4 to 9) on the system."""
    name = "torchcodec"
    has_video = True         # TorchCodec raises on a file without a video stream
    empty = "zero frames"

    def __init__(self, path: str | Path):
        from torchcodec.decoders import VideoDecoder
        self.decoder = VideoDecoder(str(path), seek_mode="exact", dimension_order="NHWC", num_ffmpeg_threads=1)

    def __len__(self) -> int:
        return len(self.decoder)

    @cached_property
    def fps(self) -> float:
        return float(self.decoder.metadata.average_fps or math.nan)

    def frames(self, indices) -> np.ndarray:
        uniq, inverse = np.unique(indices, return_inverse=True)
        return self.decoder.get_frames_at(uniq.tolist()).data.numpy()[inverse]

    def iter_frames(self, indices) -> Iterator[np.ndarray]:
        return _in_chunks(self.frames, indices)


# each backend's readers of a video file, in the order they are tried: the in-order PyAV decode (real frame count)
# is every backend's last resort, for the files the first one fails on (a broken tail, a wrong count)
FILE_READERS = {"decord": (DecordVideo, PyAVVideo), "torchcodec": (TorchCodecVideo, PyAVVideo),
                "pyav": (PyAVSeek, PyAVVideo)}
# what "auto" takes: the first that imports here. Measured (benchmarks/bench_data.py, data_loading.md) on the real
# clips, two runs, the three are within 10 % of each other (decord 0.99-1.04x, torchcodec 0.93-0.99x PyAV seeking):
# decord stays first, the design card's reader; the in-order PyAV decode is 1.7-2.3x slower than seeking
AUTO_ORDER = ("decord", "torchcodec", "pyav")
_MODULES = {"decord": "decord", "torchcodec": "torchcodec.decoders", "pyav": "av"}
_INSTALL = {"decord": "pip install decord (wheels for Linux x86_64 and Windows only); or choose 'pyav'",
            "torchcodec": "pip install torchcodec, with FFmpeg 4 to 9 installed on the system (e.g. apt install "
                          "ffmpeg, brew install ffmpeg); or choose 'pyav', which bundles its FFmpeg",
            "pyav": "pip install av"}
_said: set[str] = set()


@lru_cache(maxsize=None)
def backend_missing(backend: str) -> str:
    """Why ``backend``'s library cannot be imported here ("" when it can); checked once per process."""
    try:
        importlib.import_module(_MODULES[backend])
    except Exception as e:   # ImportError; OSError or RuntimeError: a wheel whose shared libraries (FFmpeg) do not load
        return short_error(e, 200, with_type=True)
    return ""


def resolve_backend(backend: str = "auto") -> str:
    """The backend ``backend`` names: ``"auto"`` is the first of :data:`AUTO_ORDER` that imports (said once per
    process when that is not the first). An unknown name raises ValueError, a library not installed
    ModuleNotFoundError naming the fix."""
    if backend not in VIDEO_BACKENDS:
        raise ValueError(f"video_backend={backend!r}: choose one of {list(VIDEO_BACKENDS)}")
    if backend == "auto":
        usable = [b for b in AUTO_ORDER if not backend_missing(b)]
        backend = usable[0] if usable else AUTO_ORDER[-1]
        if backend != AUTO_ORDER[0] and "auto" not in _said:
            _said.add("auto")
            skipped = "; ".join(f"{b}: {backend_missing(b)}" for b in AUTO_ORDER[:AUTO_ORDER.index(backend)])
            print(f"video_backend='auto': videos are read with {backend} ({skipped})")
    why = backend_missing(backend)
    if why:
        raise ModuleNotFoundError(f"video_backend={backend!r} is not installed ({why}): {_INSTALL[backend]}")
    return backend


def file_readers(backend: str = "auto") -> tuple[type, ...]:
    """A video file's readers for ``backend``, in the order they are tried (:data:`FILE_READERS`)."""
    return FILE_READERS[resolve_backend(backend)]


def video_readers(path: str | Path, backend: str = "auto") -> tuple[type, ...]:
    """The readers to try on ``path``, in order: a frame folder's, else :func:`file_readers` of ``backend``."""
    return (FrameFolder,) if is_frame_folder(path) else file_readers(backend)


# ----------------------------------------------------------------------------------------------- live sources
def live_frames(source: str, rate: float | None = None, timeout: float = 10.0,
                follow: bool = False) -> Iterator[tuple[int, float, np.ndarray]]:
    """The frames of ``source`` (anything PyAV opens: a pipe, ``-`` for stdin, a URL, a device) as they arrive:
    ``(index, time, rgb)`` for every decoded frame, ``index`` its place among them, ``time`` the moment it stopped
    being shown (its end, seconds from the first frame's start), ``rgb`` uint8 ``(H, W, 3)`` for a chosen frame, None
    for the others (not converted). ``rate`` None: every frame is chosen; else the frame on screen at each time
    ``k / rate`` (from their timestamps, not from a count known in advance; a frame on screen at several of those
    times comes once). ``follow``: a
    regular file still being written is read on at its end (FFmpeg's ``follow``) rather than ended there.
    ``timeout``: seconds PyAV waits on a network read before it gives up (``av.error.ExitError``); a pipe's read
    blocks until its writer writes or closes."""
    import av
    # follow: the file's end is never reached, so no seeking to it for a duration estimate (that read blocks)
    # probesize 32: the stream's first packets suffice, rather than 5 s of it before the first frame comes out
    options = {"probesize": "32", **({"follow": "1", "skip_estimate_duration_from_pts": "1"} if follow else {})}
    with av.open("pipe:0" if source == "-" else source, options=options, timeout=timeout) as c:
        if not c.streams.video:
            raise VideoReadError(f"{source}: no video stream")
        st = c.streams.video[0]
        spacing = 1 / float(st.average_rate or st.guessed_rate or 25)   # a frame's duration when it has none
        start, end, k = None, 0.0, 0
        for index, f in enumerate(c.decode(st)):
            d = float(f.duration * f.time_base) if f.duration and f.time_base else spacing
            t = f.time if f.time is not None else end + (start or 0.0)   # no timestamp: right after the last one
            start = t if start is None else start
            end = t - start + d
            chosen = rate is None or k / rate < end - 1e-6 * d   # on screen at k / rate (as stream_times' floor)
            while rate is not None and k / rate < end - 1e-6 * d:
                k += 1
            yield index, end, f.to_ndarray(format="rgb24") if chosen else None


# ----------------------------------------------------------------------------------------------- audio
class AudioTrack(NamedTuple):
    chunks: list[np.ndarray] | None   # resampled chunks (channels, n) as PyAV gives them; None: no audio track
    rate: int                         # their sample rate (0 without a track)
    duration: float                   # the container's duration in s when there is no track (else 0)


def _duration(c) -> float:
    if c.duration:
        return c.duration / 1e6
    for s in c.streams.video:
        if s.duration and s.time_base:
            return float(s.duration * s.time_base)
    return 1.0


def decode_audio(src: Path, make_resampler: Callable) -> AudioTrack:
    """The first audio track of file ``src`` through ``make_resampler(stream)`` (a PyAV ``AudioResampler``). What
    decoded before a broken tail is kept; a missing or undecodable file raises :class:`AudioError` (from the
    library's error)."""
    import av
    if not src.exists():
        raise AudioError(f"{src}: no such file")
    chunks: list[np.ndarray] = []
    rate = 0

    def take(frames) -> None:
        nonlocal rate
        for o in frames:
            if o is not None:
                rate = rate or o.sample_rate
                chunks.append(o.to_ndarray())

    try:
        with av.open(str(src)) as c:
            if not c.streams.audio:
                return AudioTrack(None, 0, _duration(c))
            st = c.streams.audio[0]
            rs = make_resampler(st)
            try:
                for frame in c.decode(st):
                    take(rs.resample(frame))
            except av.error.FFmpegError:
                if not chunks:
                    raise          # keep what decoded before a broken tail
            take(rs.resample(None))
            return AudioTrack(chunks, int(rate or st.rate), 0.0)
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise AudioError(f"{src}: cannot decode audio ({type(e).__name__}: {e})") from e
