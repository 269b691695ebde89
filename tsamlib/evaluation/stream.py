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

A live source (:func:`stream_live`: ``-`` for stdin, a named pipe, a URL such as ``rtsp://`` or ``http://``, a
capture device, or with ``follow`` a file still being written in a streamable container such as MPEG-TS) is read by
a thread as its frames arrive (:func:`tsamlib.data.decode.live_frames`), its frames chosen by their timestamps:
``rate="auto"``: the run's ``n_frames`` frames per the median length of its training clips (:func:`live_rate`, the
spacing it was trained with), ``"native"``: every frame, a number: that many per second. The chosen frames wait
for the model in a queue of ``queue_size``; when the model falls behind, the **oldest** waiting frame is dropped
(a live source does not wait: the steps stay near the present instead of falling further behind) and counted
(``LiveStream.dropped``). No frame for ``stall_timeout`` seconds raises :class:`SourceStalled`. A run with audio is
refused: the live sound is not read, and a silent audio image would be evidence the model never saw.
"""
from __future__ import annotations

import math
import os
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ..config import RunConfig
from ..data.audio import AudioFrame, mels_to_image
from ..data.datasets import dataset_manifest
from ..data.decode import VideoReadError, live_frames, short_error
from ..data.manifest import read_table
from ..data.probe import probe_video
from ..data.video import read_frames, segment_indices
from ..model.online import StreamingTSAM
from .specs import ViewsSpec
from .views import load_model, resolve_source, run_vocab

__all__ = ["AUDIO_WINDOW", "RATE", "StreamStep", "stream_times", "stream_video", "STALL_TIMEOUT", "LIVE_QUEUE",
           "SourceStalled", "LatestFrames", "LiveStream", "is_live_source", "live_rate", "stream_live"]


FOLDER_FPS = 25.0   # a frame folder without prepare.json: the rate assumed for its frames' times
RATE = "auto"   # which frames are fed unless told: n_frames frames spaced as in training
AUDIO_WINDOW = 10.0   # seconds of sound behind each frame's audio image, unless told (a Kinetics clip)
_CHUNK = 16         # frames decoded together (a file is opened and sought once per chunk)
STALL_TIMEOUT = 10.0   # seconds without a frame before a live source is said to have stalled
LIVE_QUEUE = 32        # chosen frames of a live source waiting for the model, at most
CLIP_SECONDS = 10.0    # a run's training clip length when its manifest has no durations (a Kinetics clip)


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


def _load(run: str | os.PathLike, model: torch.nn.Module | None) -> tuple[torch.nn.Module, RunConfig, list[str]]:
    """The run's model (``model`` when given: a model already loaded from it), settings and class names."""
    run = resolve_source(run)
    if model is not None:
        from ..runs.folder import open_run
        cfg = RunConfig.of(open_run(run).params)
        return model, cfg, run_vocab(cfg)
    return load_model(run)


def _step(stream: StreamingTSAM, frame: torch.Tensor, audio: torch.Tensor | None, t: float, index: int,
          vocab: list[str], k: int) -> StreamStep:
    """Feed one preprocessed frame; the step with the top ``k`` classes so far."""
    probs = F.softmax(stream.step(frame, audio).float(), dim=1)[0]
    top = probs.topk(min(k, len(vocab)))
    return StreamStep(t, index, [(vocab[int(i)], float(p)) for p, i in zip(top.values, top.indices)], probs)


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
    model, cfg, vocab = _load(run, model)
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
            yield _step(stream, frame, audio, t, int(index), vocab, k)


# ----------------------------------------------------------------------------------------------- live sources
class SourceStalled(RuntimeError):
    """A live source that gave no frame for its stall timeout (the message names it and what was read)."""


def is_live_source(source: str | os.PathLike) -> bool:
    """True for a source read as it arrives: ``-`` (stdin), ``pipe:N``, a URL (``scheme://``), or a path that is
    neither a regular file nor a folder (a named pipe, a capture device). A regular file is taken as finished
    unless told (``stream_live``, ``--live``: a file still being written)."""
    text = str(source)
    if text == "-" or text.startswith("pipe:") or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
        return True
    path = Path(text)
    return path.exists() and not path.is_file() and not path.is_dir()


def live_rate(cfg: RunConfig) -> tuple[float, float]:
    """The frames per second that space the run's ``n_frames`` over its training clips' median duration (the
    spacing it was trained with), and that duration (:data:`CLIP_SECONDS` when the manifest gives none)."""
    import pandas as pd
    try:
        table = read_table(dataset_manifest(cfg.dataset))
        seconds = pd.to_numeric(table.loc[table["split"] == "train", "duration"], errors="coerce")
        seconds = float(seconds[seconds > 0].median())
    except (OSError, KeyError, ValueError):
        seconds = math.nan
    seconds = seconds if seconds > 0 and math.isfinite(seconds) else CLIP_SECONDS
    return cfg.n_frames / seconds, seconds


class LatestFrames:
    """The queue between a live source's reader thread and the model. ``put`` never waits: when ``size`` items
    wait already, the oldest is dropped and counted (``dropped``). ``get(timeout)`` raises TimeoutError when the
    reader has shown no sign of life (a ``put`` or a ``touch``: a frame read but not chosen) for ``timeout`` s."""

    def __init__(self, size: int):
        if not (isinstance(size, int) and size >= 1):
            raise ValueError(f"queue_size={size!r}: the number of frames that may wait for the model, 1 or more.")
        self.items, self.size, self.dropped = deque(), size, 0
        self.ready, self.seen = threading.Condition(), time.monotonic()

    def touch(self) -> None:
        with self.ready:
            self.seen = time.monotonic()

    def put(self, item) -> None:
        with self.ready:
            if len(self.items) >= self.size:
                self.items.popleft()
                self.dropped += 1
            self.items.append(item)
            self.seen = time.monotonic()
            self.ready.notify()

    def get(self, timeout: float):
        with self.ready:
            while not self.items:
                left = self.seen + timeout - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"nothing for {timeout:g} s")
                self.ready.wait(left)
            return self.items.popleft()


class LiveStream:
    """The steps of a live source (module doc), iterated once, and its counts so far: ``read`` frames decoded,
    ``fed`` to the model, ``dropped`` (chosen, but the model fell behind), ``seconds`` of the source read;
    ``ended``: True once the source ended (a stall raises :class:`SourceStalled` instead)."""

    def __init__(self, run: str | os.PathLike, source: str | os.PathLike, rate: str | float = RATE, k: int = 3,
                 stall_timeout: float = STALL_TIMEOUT, queue_size: int = LIVE_QUEUE,
                 model: torch.nn.Module | None = None):
        if not (isinstance(k, int) and k >= 1):
            raise ValueError(f"k={k!r}: the number of top classes to report, 1 or more.")
        if not stall_timeout > 0:
            raise ValueError(f"stall_timeout={stall_timeout}: a positive number of seconds.")
        self.model, self.cfg, self.vocab = _load(run, model)
        if self.cfg.audio:   # refused, not streamed with silence: a silent image is evidence the model never saw
            raise ValueError(f"run {Path(run).name} has audio (audio=True): a live source is streamed without its "
                             "sound; save the stream to a file and stream that, or use a run without audio.")
        auto, self.clip_seconds = live_rate(self.cfg)   # the manifest read once
        if rate == "auto":
            self.rate: float | None = auto
        elif rate == "native":
            self.rate = None
        else:
            self.rate = float(rate) if isinstance(rate, (int, float)) else math.nan
            if not (self.rate > 0 and math.isfinite(self.rate)):
                raise ValueError(f"rate={rate!r}: 'auto', 'native' or a positive number of frames per second.")
        self.source, self.k, self.stall_timeout = str(source), k, stall_timeout
        self.queue = LatestFrames(queue_size)
        self.read = self.fed = 0
        self.seconds, self.ended = 0.0, False
        self._stop = threading.Event()

    @property
    def dropped(self) -> int:
        return self.queue.dropped

    def summary(self) -> str:
        why = " (the model fell behind the source: the oldest waiting frames were dropped)" if self.dropped else ""
        return (f"{self.read} frames read ({self.seconds:.2f} s), {self.fed} fed to the model, {self.dropped} "
                f"dropped{why}")

    def _read(self) -> None:
        """The reader thread: every decoded frame a sign of life, the chosen ones queued; then None, or the error."""
        follow = Path(self.source).is_file()   # a regular file taken as live: one still being written
        frames = live_frames(self.source, self.rate, timeout=self.stall_timeout + 1, follow=follow)
        try:
            for index, t, rgb in frames:
                if self._stop.is_set():   # the consumer is gone (a stall, an error, a break)
                    return
                self.read, self.seconds = index + 1, t
                if rgb is None:
                    self.queue.touch()
                else:
                    self.queue.put((index, t, rgb))
            self.queue.put(None)
        except Exception as e:   # said by the consumer, in its thread
            self.queue.put(e)
        finally:
            frames.close()

    def _error(self, e: Exception) -> Exception:
        if type(e).__name__ == "ExitError":   # PyAV's read timeout: the network source stopped sending
            return SourceStalled(f"{self.source}: no data for {self.stall_timeout:g} s: the source stalled "
                                 f"({self.summary()})")
        if isinstance(e, VideoReadError):
            return e
        return VideoReadError(f"{self.source}: cannot read it as a live video ({short_error(e, 200, True)}; "
                              f"{self.summary()})")

    def __iter__(self) -> Iterator[StreamStep]:
        threading.Thread(target=self._read, daemon=True, name=f"live {self.source}").start()
        stream, tfm = StreamingTSAM(self.model), ViewsSpec.of(self.cfg).test_transform()
        rng = np.random.default_rng(0)
        try:
            while True:
                try:
                    item = self.queue.get(self.stall_timeout)
                except TimeoutError:
                    raise SourceStalled(f"{self.source}: no frame for {self.stall_timeout:g} s: the source stalled "
                                        f"({self.summary()}); raise --stall-timeout for a source slow to start"
                                        ) from None
                if item is None:
                    self.ended = True
                    return
                if isinstance(item, Exception):
                    raise self._error(item)
                index, t, rgb = item
                with torch.no_grad():   # not around the yield: the caller's code is not ours to change
                    step = _step(stream, tfm(torch.from_numpy(rgb[None]), rng)[0], None, t, index, self.vocab, self.k)
                self.fed += 1
                yield step
        finally:
            self._stop.set()


def stream_live(run: str | os.PathLike, source: str | os.PathLike, rate: str | float = RATE, k: int = 3,
                stall_timeout: float = STALL_TIMEOUT, queue_size: int = LIVE_QUEUE,
                model: torch.nn.Module | None = None) -> LiveStream:
    """The run's model on a live source, a :class:`StreamStep` per chosen frame as it arrives (module doc):
    iterate the returned :class:`LiveStream`; its ``summary()`` says what was read, fed and dropped."""
    return LiveStream(run, source, rate, k, stall_timeout, queue_size, model)
