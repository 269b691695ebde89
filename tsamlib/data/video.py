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

Sources are video files (read through decord, ``num_threads=1``, only the needed frames; PyAV alone where decord
does not import or ``backend="pyav"``) or
folders of JPEG frames (Something-Something V1 layout ``<id>/00001.jpg``; read with PIL), both by the readers of
:mod:`tsamlib.data.decode`. When decord fails on a file (its frame count can be wrong at the tail of a broken file, some
frame sizes trip its colour conversion), the file is decoded again with PyAV, frames are counted
for real and the indices are sampled again from that count. Frames come back as a uint8 tensor
of shape ``(T, H, W, 3)`` (RGB, channels last, as decoders give them).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .decode import JpegBytes, VideoReadError, is_frame_folder, short_error, video_readers

__all__ = ["segment_indices", "count_frames", "read_frames", "load_clip", "load_views", "view_indices", "SAMPLINGS",
           "DENSE_SPAN"]

MODES = ("train", "valid", "test")
# How the clips of a test protocol are placed (view_indices): ours, TSM's centre clip, TSM's and mmaction2's
# "twice" sample (2 clips), TSM's dense sample (I3D-style, 10 clips in the TSM test).
SAMPLINGS = ("segments", "tsm", "twice", "dense")
DENSE_SPAN = 64   # TSM's dense sample spans 64 frames: T frames 64 // T apart


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


def _check_file(path: Path) -> None:
    if not path.exists():
        raise VideoReadError(f"{path}: no such file (check the manifest's path column)")
    if path.stat().st_size == 0:
        raise VideoReadError(f"{path}: empty file (0 bytes); re-download or drop it")


def count_frames(path: str | Path, backend: str = "auto") -> int:
    """Number of frames the first reader of ``path`` reports: decord's count or PyAV's (file), or the images
    (folder)."""
    path = Path(path)
    first = video_readers(path, backend)[0]
    if is_frame_folder(path):
        return len(first(path))
    _check_file(path)
    try:
        return len(first(path))
    except Exception as e:
        raise VideoReadError(f"{path}: cannot open video ({short_error(e, 300, with_type=True)})") from e


def _fallback(reader: type, path: Path):
    """``reader(path)``, the last of a file's readers, whose failure is the read's: every error a `VideoReadError`
    naming the file."""
    try:
        video = reader(path)
    except ImportError:   # a missing library is the installation's error, not the file's
        raise
    except Exception as e:
        raise VideoReadError(f"{path}: cannot decode video ({short_error(e, 300, with_type=True)})") from e
    if not video.has_video:
        raise VideoReadError(f"{path}: no video stream (audio-only file?)")
    if not len(video):
        raise VideoReadError(f"{path}: video stream holds {video.empty}")
    return video


def _decoded(path: str | Path, sample, name_failures: bool = True, backend: str = "auto"
             ) -> tuple[torch.Tensor, np.ndarray]:
    """The frames at ``sample(frame count)`` from the first of :func:`~tsamlib.data.decode.video_readers` that
    decodes them, and the indices. When all fail, the last one's error is raised (``name_failures``: with the
    others' after it, ``[decord: ...]``). ``path`` may be a clip already in memory (a
    :class:`~tsamlib.data.decode.JpegBytes`): it is its own reader."""
    if isinstance(path, JpegBytes):
        idx = sample(len(path))
        return torch.from_numpy(path.frames(idx)), idx
    path = Path(path)
    *first, last = video_readers(path, backend)
    if is_frame_folder(path):                      # a frame folder: its errors are the read's
        video = last(path)
        idx = sample(len(video))
        return torch.from_numpy(video.frames(idx)), idx
    _check_file(path)
    failures = []
    for reader in first:
        try:
            video = reader(path)
            idx = sample(len(video))
            return torch.from_numpy(video.frames(idx)), idx
        except Exception as e:
            failures.append(f" [{reader.name}: {short_error(e, 300, with_type=True)}]")
    try:
        video = _fallback(last, path)               # PyAV: real frame count, decoded sequentially
    except VideoReadError as e:
        if not name_failures:
            raise
        raise VideoReadError(f"{e}{''.join(failures)}") from None
    idx = sample(len(video))
    return torch.from_numpy(video.frames(idx)), idx


def load_clip(path: str | Path, n_segments: int, mode: str = "valid", rng: np.random.Generator | None = None,
              clip_index: int = 0, n_clips: int = 1, sample=None, backend: str = "auto"
              ) -> tuple[torch.Tensor, np.ndarray]:
    """Sample and decode one clip: uint8 frames `(T, H, W, 3)` and the frame indices used. ``sample`` (frame count
    -> indices) replaces the TSN sampling of ``mode`` (:func:`load_views`); ``backend`` picks the video files'
    reader (:func:`~tsamlib.data.decode.resolve_backend`)."""
    if sample is None:
        def sample(n: int) -> np.ndarray:
            return segment_indices(n, n_segments, mode, rng=rng, clip_index=clip_index, n_clips=n_clips)
    return _decoded(path, sample, backend=backend)


def load_views(path: str | Path, n_segments: int, n_clips: int = 1, sampling: str = "segments",
               backend: str = "auto") -> tuple[torch.Tensor, np.ndarray]:
    """Every test clip of :func:`view_indices`, decoded in one read (each frame once): uint8 frames
    ``(n_clips, T, H, W, 3)`` and their indices ``(n_clips, T)``. A file decord fails on is read with PyAV, as in
    :func:`load_clip`."""
    def sample(n: int) -> np.ndarray:
        return view_indices(n, n_segments, n_clips, sampling).reshape(-1)
    frames, idx = load_clip(path, n_segments, sample=sample, backend=backend)
    return frames.view(n_clips, n_segments, *frames.shape[1:]), idx.reshape(n_clips, n_segments)


def read_frames(path: str | Path, indices, backend: str = "auto") -> torch.Tensor:
    """Decode the given frame indices (clamped to the real frame count) as uint8 `(T, H, W, 3)`."""
    idx = np.asarray(indices, dtype=np.int64)
    if idx.ndim != 1 or idx.size == 0:
        raise ValueError(f"indices must be a non-empty 1-d list, got {indices!r}")
    return _decoded(path, lambda n: np.clip(idx, 0, n - 1), name_failures=False, backend=backend)[0]
