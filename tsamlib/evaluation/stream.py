"""A video file classified as a stream, frame by frame, with a causal run: ``predict VIDEO --run RUN --stream``.

Frames go to :class:`tsamlib.model.online.StreamingTSAM` one at a time, preprocessed as the run's validation data
(centre view, ``img_size``, the run's normalisation); after each, the top classes so far. Which frames:

- ``rate="auto"`` (the default): the run's ``n_frames`` frames at the middle of ``n_frames`` equal segments, the
  spacing the model was trained with; the last step then sees what ``predict`` sees with one clip, so the stream
  ends on the offline answer;
- ``rate="native"``: every frame of the file; a number up to the file's rate: that many frames per second (frames
  of the time ``i / rate``). A frame folder's rate is its ``prepare.json``'s, else 25 (:data:`FOLDER_FPS`). A rate
  that feeds fewer frames than the run's ``n_frames`` is said in a note before the first step.

A run with audio gets, at each step, the log-mel image of the trailing ``audio_window`` seconds of sound (the
columns of the clip's log-mels within ``[t - audio_window, t]``, made into the image as the run's front end does);
the default, 10 s, is a Kinetics clip. The timeline records the rate and window used. On the command line
``--audio-window`` is refused for a run without audio (it would be ignored).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ..config import RunConfig
from ..data.audio import AudioFrame, mels_to_image
from ..data.probe import probe_video
from ..data.video import read_frames, segment_indices
from ..model.online import StreamingTSAM
from .specs import ViewsSpec
from .views import load_model, resolve_source, run_vocab

__all__ = ["AUDIO_WINDOW", "RATE", "StreamStep", "stream_times", "stream_video"]


FOLDER_FPS = 25.0   # a frame folder without prepare.json: the rate assumed for its frames' times
RATE = "auto"   # which frames are fed unless told: n_frames frames spaced as in training
AUDIO_WINDOW = 10.0   # seconds of sound behind each frame's audio image, unless told (a Kinetics clip)
_CHUNK = 16         # frames decoded together (a file is opened and sought once per chunk)


def _folder_fps(path: Path) -> float:
    """A frame folder's frames per second: from its ``prepare.json`` (``prepare`` writes it), else
    :data:`FOLDER_FPS`."""
    import json
    try:
        return float(json.loads((path / "prepare.json").read_text())["fps"])
    except (OSError, ValueError, KeyError, TypeError):
        return FOLDER_FPS


@dataclass
class StreamStep:
    """One step of a stream: the time of its frame, the frame's index in the file, the top classes so far and the
    class probabilities (softmax of the stream's logits)."""

    time: float
    frame: int
    top: list[tuple[str, float]]
    probs: torch.Tensor


def stream_times(n_frames_in_video: int, fps: float, n_frames: int, rate: str | float = RATE) -> np.ndarray:
    """The frame indices a stream feeds, in order (see the module's doc for ``rate``)."""
    if rate == "auto":
        return segment_indices(n_frames_in_video, n_frames, "valid")
    if rate == "native":
        return np.arange(n_frames_in_video)
    try:
        rate = float(rate)
    except (TypeError, ValueError):
        rate = math.nan
    if not 0 < rate <= fps:
        raise ValueError(f"rate={rate}: 'auto', 'native' or a number of frames per second above 0 and at most the "
                         f"video's own {fps:g} (more would feed the same frames again; 'native' feeds every frame).")
    times = np.arange(0, n_frames_in_video / fps, 1 / rate)
    return np.minimum(np.floor(times * fps + 1e-6).astype(np.int64), n_frames_in_video - 1)


def _audio_window(af: AudioFrame, mels: list[np.ndarray], t: float, window: float, frontend: str) -> torch.Tensor:
    """The audio image of ``[t - window, t]``: the clip's log-mel columns there, resized as the front end does."""
    duration = mels[0].shape[1] * af.hops_ms[0] / 1000
    crop = (max(0.0, t - window), max(0.0, duration - t))
    return mels_to_image(mels, af.size, af.hops_ms, crop, normalize=frontend == "tsamlib")


@torch.no_grad()
def stream_video(run: str | os.PathLike, video: str | os.PathLike, rate: str | float = RATE, k: int = 3,
                 audio_window: float = AUDIO_WINDOW, model: torch.nn.Module | None = None,
                 verbose: bool = True) -> Iterator[StreamStep]:
    """Yield a :class:`StreamStep` per frame of ``video`` fed to the run's model as a stream (module doc).
    ``verbose``: a note, before the first step, when ``rate`` feeds fewer frames than the run's ``n_frames``."""
    path = Path(video)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such video file or frame folder.")
    if not audio_window > 0:
        raise ValueError(f"audio_window={audio_window}: a positive number of seconds.")
    if not (isinstance(k, int) and k >= 1):
        raise ValueError(f"k={k!r}: the number of top classes to report, 1 or more.")
    run = resolve_source(run)
    if model is None:
        model, cfg, vocab = load_model(run)
    else:
        from ..runs.folder import open_run
        cfg = RunConfig.of(open_run(run).params)
        vocab = run_vocab(cfg)
    stream, spec = StreamingTSAM(model), ViewsSpec.of(cfg)
    tfm = spec.test_transform()
    info = probe_video(path, backend=spec.video_backend)   # the run's decoder, as in training
    n, fps = int(info["n_frames"]), _folder_fps(path) if path.is_dir() else float(info["fps"])
    if n < 1:
        raise ValueError(f"{path}: no frame could be read ({info.get('problem') or 'empty'}).")
    fps = fps if fps > 0 and math.isfinite(fps) else FOLDER_FPS
    af = spec.audio_frame()
    mels = af.full_mels(path)[0] if af is not None else None
    rng = np.random.default_rng(0)
    indices = stream_times(n, fps, spec.n_frames, rate)
    if verbose and len(indices) < spec.n_frames:   # the model never sees as many frames as it was trained on
        print(f"note: rate {rate} feeds {len(indices)} of the {n} frames of {path.name} ({fps:g} fps), fewer than "
              f"the run's n_frames={spec.n_frames}: raise the rate (--rate), or use 'auto' (n_frames frames spaced "
              "as in training).", flush=True)
    for start in range(0, len(indices), _CHUNK):   # one decoder opening per chunk, not per frame
        chunk = indices[start:start + _CHUNK]
        # (len(chunk), 3, S, S): one centre view each
        frames = tfm(read_frames(path, chunk, backend=spec.video_backend), rng)
        for index, frame in zip(chunk, frames):
            t = (index + 1) / fps                                 # the frame has been shown by then
            audio = _audio_window(af, mels, t, audio_window, spec.audio_frontend) if af is not None else None
            probs = F.softmax(stream.step(frame, audio).float(), dim=1)[0]
            top = probs.topk(min(k, len(vocab)))
            yield StreamStep(t, int(index), [(vocab[int(i)], float(p)) for p, i in zip(top.values, top.indices)],
                             probs)
