"""Video clips: TSN segment sampling and frame decoding.

A clip is ``T`` frames taken from ``T`` equal segments of a video (TSN / TSM protocol):

- ``"train"``: one random frame inside each segment;
- ``"valid"``: the centre frame of each segment;
- ``"test"``: ``n_clips`` evenly offset clips; clip ``i`` takes the frame at relative offset
  ``(i + 0.5) / n_clips`` inside each segment (``n_clips=1`` equals ``"valid"``).

:func:`view_indices` gives every clip of a test protocol at once, also the TSM family's samplings
(:data:`SAMPLINGS`): TSM's centre clip, the "twice" sample of TSM and mmaction2 (the centre clip and the
clip at the segments' starts) and TSM's dense sample (I3D-style: frames ``64 // T`` apart, 10 clips);
:func:`load_views` decodes them with one read.

Videos with fewer than ``T`` frames repeat frames, still in temporal order.

Sources are video files (read through decord, ``num_threads=1``, only the needed frames) or
folders of JPEG frames (Something-Something V1 layout ``<id>/00001.jpg``; read with PIL).
When decord fails on a file (its frame count can be wrong at the tail of a broken file, some
frame sizes trip its colour conversion), the file is decoded again with PyAV, frames are counted
for real and the indices are sampled again from that count. Frames come back as a uint8 tensor
of shape ``(T, H, W, 3)`` (RGB, channels last, as decoders give them).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .probe import IMAGE_EXTENSIONS as FRAME_EXTENSIONS  # one definition (probe: no torch import)
from .probe import short_error

__all__ = ["VideoReadError", "segment_indices", "is_frame_folder", "list_frames", "count_frames",
           "read_frames", "load_clip", "load_views", "view_indices", "FRAME_EXTENSIONS", "prefetch", "SAMPLINGS"]

MODES = ("train", "valid", "test")
# How the clips of a test protocol are placed (view_indices): ours, TSM's centre clip, TSM's and mmaction2's
# "twice" sample (2 clips), TSM's dense sample (I3D-style, 10 clips in the TSM test).
SAMPLINGS = ("segments", "tsm", "twice", "dense")
DENSE_SPAN = 64   # TSM's dense sample spans 64 frames: T frames 64 // T apart


class VideoReadError(RuntimeError):
    """A video file or frame folder that cannot be decoded (message names the file and the cause)."""


def segment_indices(n_frames_in_video: int, n_segments: int, mode: str = "valid",
                    rng: np.random.Generator | None = None, clip_index: int = 0,
                    n_clips: int = 1) -> np.ndarray:
    """Frame indices (int64, non-decreasing) of one clip of `n_segments` frames, TSN-style."""
    n, t = int(n_frames_in_video), int(n_segments)
    if n < 1:
        raise ValueError(f"a video needs at least one frame, got n_frames_in_video={n}")
    if t < 1:
        raise ValueError(f"n_segments must be >= 1, got {t}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "train":
        rng = rng if rng is not None else np.random.default_rng()
        offsets = rng.random(t)                       # uniform position inside each segment
    elif mode == "valid":
        offsets = np.full(t, 0.5)
    else:
        if not 0 <= clip_index < n_clips:
            raise ValueError(f"clip_index {clip_index} not in [0, {n_clips})")
        offsets = np.full(t, (clip_index + 0.5) / n_clips)
    # segment s covers [s*n/t, (s+1)*n/t); floor of a position in it is a frame of that segment
    idx = np.floor((np.arange(t) + offsets) * n / t).astype(np.int64)
    return np.clip(idx, 0, n - 1)


def view_indices(n_frames_in_video: int, n_segments: int, n_clips: int = 1, sampling: str = "segments"
                 ) -> np.ndarray:
    """Frame indices ``(n_clips, T)`` of every test clip of a video, as ``sampling`` places them:

    - ``"segments"``: clip ``i`` at offset ``(i + 0.5) / n_clips`` in each segment (``"test"`` of
      :func:`segment_indices`);
    - ``"tsm"``: TSM's test clip (``n_clips=1``): the centre of each segment, ``int(tick / 2 + tick * s)`` with
      ``tick = n / T``; a video of at most T frames gives its first frame T times, as theirs;
    - ``"twice"``: TSM's and mmaction2's ``twice_sample`` (``n_clips=2``): the centre clip, then the clip at each
      segment's start, ``int(tick * s)``;
    - ``"dense"``: TSM's dense sample: T frames ``64 // T`` apart (modulo the length), the ``n_clips`` clips
      starting at ``linspace(0, max(1, n - 63) - 1, n_clips)`` (integers).
    """
    n, t = int(n_frames_in_video), int(n_segments)
    if n < 1 or t < 1 or n_clips < 1:
        raise ValueError(f"view_indices needs n_frames_in_video, n_segments and n_clips >= 1, got {n}, {t}, {n_clips}")
    if sampling == "segments":
        return np.stack([segment_indices(n, t, "test", clip_index=i, n_clips=n_clips) for i in range(n_clips)])
    tick, s = n / float(t), np.arange(t)
    if sampling == "tsm" or sampling == "twice":
        want = 1 if sampling == "tsm" else 2
        if n_clips != want:
            raise ValueError(f"sampling={sampling!r} has {want} clip{'s' * (want > 1)}, got n_clips={n_clips}")
        centre = np.array([int(tick / 2.0 + tick * x) for x in s]) if n > t or sampling == "twice" else np.zeros(t)
        clips = [centre] + ([np.array([int(tick * x) for x in s])] if sampling == "twice" else [])
        return np.clip(np.stack(clips), 0, n - 1).astype(np.int64)
    if sampling == "dense":
        if t > DENSE_SPAN:
            raise ValueError(f"dense sampling spans {DENSE_SPAN} frames: it takes at most {DENSE_SPAN} frames per "
                             f"clip, got {t}")
        stride, last = DENSE_SPAN // t, max(1, 1 + n - DENSE_SPAN) - 1
        starts = np.linspace(0, last, num=n_clips, dtype=int)
        return np.stack([(s * stride + a) % n for a in starts]).astype(np.int64)
    raise ValueError(f"sampling={sampling!r}: choose one of {list(SAMPLINGS)}")


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


def _check_file(path: Path) -> None:
    if not path.exists():
        raise VideoReadError(f"{path}: no such file (check the manifest's path column)")
    if path.stat().st_size == 0:
        raise VideoReadError(f"{path}: empty file (0 bytes); re-download or drop it")


def _decord_reader(path: Path):
    import decord
    return decord.VideoReader(str(path), num_threads=1)


def count_frames(path: str | Path) -> int:
    """Number of frames decord reports (file) or number of images (folder)."""
    path = Path(path)
    if is_frame_folder(path):
        return len(list_frames(path))
    _check_file(path)
    try:
        return len(_decord_reader(path))
    except Exception as e:
        raise VideoReadError(f"{path}: cannot open video ({short_error(e, 300, with_type=True)})") from e


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


def _read_folder(frames: list[Path], indices: np.ndarray) -> torch.Tensor:
    """Decode ``frames[i]`` for each index into one uint8 array (T, H, W, 3): RGB images are not converted (a
    copy), and each frame is written straight into the clip (no ``np.stack``), about half the time of doing both.
    The files are :func:`prefetch`-ed first."""
    from PIL import Image
    prefetch(frames[i] for i in np.unique(indices))
    out = None
    for j, i in enumerate(indices):
        with Image.open(frames[i]) as im:
            a = np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
        if out is None:
            out = np.empty((len(indices), *a.shape), dtype=np.uint8)
        if a.shape != out.shape[1:]:
            (h0, w0), (h, w) = out.shape[1:3], a.shape[:2]
            raise VideoReadError(f"{frames[0].parent}: frames of different sizes ({frames[indices[0]].name}: "
                                 f"{w0}x{h0}, {frames[i].name}: {w}x{h}); re-extract the frames at one size")
        out[j] = a
    return torch.from_numpy(out)


def _pyav_frames(path: Path) -> list[np.ndarray]:
    """Decode every decodable frame with PyAV (stops quietly at a broken tail)."""
    import av
    frames = []
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise VideoReadError(f"{path}: no video stream (audio-only file?)")
            try:
                for f in c.decode(video=0):
                    frames.append(f.to_ndarray(format="rgb24"))
            except av.error.FFmpegError:
                if not frames:
                    raise
    except VideoReadError:
        raise
    except Exception as e:
        raise VideoReadError(f"{path}: cannot decode video ({short_error(e, 300, with_type=True)})") from e
    if not frames:
        raise VideoReadError(f"{path}: video stream holds no decodable frame")
    return frames


def _decord_clip(path: Path, sample) -> tuple[torch.Tensor, np.ndarray]:
    vr = _decord_reader(path)
    n = len(vr)
    idx = sample(n)
    uniq, inverse = np.unique(idx, return_inverse=True)   # decode each frame once
    batch = vr.get_batch(uniq.tolist()).asnumpy()
    if batch.ndim != 4 or batch.shape[-1] != 3 or batch.shape[0] != len(uniq):
        raise RuntimeError(f"decord returned frames of shape {batch.shape}")
    return torch.from_numpy(batch[inverse]), idx


def load_clip(path: str | Path, n_segments: int, mode: str = "valid", rng: np.random.Generator | None = None,
              clip_index: int = 0, n_clips: int = 1, sample=None) -> tuple[torch.Tensor, np.ndarray]:
    """Sample and decode one clip: uint8 frames `(T, H, W, 3)` and the frame indices used. ``sample`` (frame count
    -> indices) replaces the TSN sampling of ``mode`` (:func:`load_views`)."""
    path = Path(path)
    if sample is None:
        sample = lambda n: segment_indices(n, n_segments, mode, rng=rng, clip_index=clip_index,  # noqa: E731
                                           n_clips=n_clips)
    if is_frame_folder(path):
        frames = list_frames(path)
        idx = sample(len(frames))
        return _read_folder(frames, idx), idx
    _check_file(path)
    try:
        return _decord_clip(path, sample)
    except Exception as e:
        decord_error = short_error(e, 300, with_type=True)
    try:
        frames = _pyav_frames(path)       # fallback: real frame count, decoded sequentially
    except VideoReadError as e:
        raise VideoReadError(f"{e} [decord: {decord_error}]") from None
    idx = sample(len(frames))
    return torch.from_numpy(np.stack([frames[i] for i in idx])), idx


def load_views(path: str | Path, n_segments: int, n_clips: int = 1, sampling: str = "segments"
               ) -> tuple[torch.Tensor, np.ndarray]:
    """Every test clip of :func:`view_indices`, decoded in one read (each frame once): uint8 frames
    ``(n_clips, T, H, W, 3)`` and their indices ``(n_clips, T)``. A file decord fails on is read with PyAV, as in
    :func:`load_clip`."""
    sample = lambda n: view_indices(n, n_segments, n_clips, sampling).reshape(-1)   # noqa: E731
    frames, idx = load_clip(path, n_segments, sample=sample)
    return frames.view(n_clips, n_segments, *frames.shape[1:]), idx.reshape(n_clips, n_segments)


def read_frames(path: str | Path, indices) -> torch.Tensor:
    """Decode the given frame indices (clamped to the real frame count) as uint8 `(T, H, W, 3)`."""
    idx, path = np.asarray(indices, dtype=np.int64), Path(path)
    if idx.ndim != 1 or idx.size == 0:
        raise ValueError(f"indices must be a non-empty 1-d list, got {indices!r}")
    clamp = lambda n: np.clip(idx, 0, n - 1)
    if is_frame_folder(path):
        frames = list_frames(path)
        return _read_folder(frames, clamp(len(frames)))
    _check_file(path)
    try:
        return _decord_clip(path, clamp)[0]
    except Exception:
        frames = _pyav_frames(path)
    return torch.from_numpy(np.stack([frames[i] for i in clamp(len(frames))]))
