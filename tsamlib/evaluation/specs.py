"""What an evaluation takes, each read once: the run's view settings (:class:`ViewsSpec`, from its RunConfig with
every switch resolved from the preset) and how the videos are read (:class:`Loading`: speed and display, never the
result).

    spec = ViewsSpec.of(cfg)                 # a RunConfig or a run's params.json
    tfm = spec.test_transform(n_crops=3)     # the run's validation view, 3 crops per clip
    af = spec.audio_frame(cache_dir=None)    # None for a run without audio
    score_views(model, cfg, manifest, loading=Loading(batch_size=16, progress=False))
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from ..config import RunConfig
from ..data.audio import DEFAULT_SR, AudioFrame
from ..data.transforms import ClipTransform, norm_stats
from ..runs.fileio import mel_cache_dir

__all__ = ["ViewsSpec", "Loading"]


@dataclass(frozen=True)
class ViewsSpec:
    """The settings of a run that shape its evaluation views: frames, sizes, sound, and the data switches as its
    preset resolves them (``video_norm``, ``valid_view``, ``audio_frontend``, ``missing_audio``)."""

    n_frames: int
    audio: bool
    img_size: int
    resize: int
    n_mels: int
    flip: bool
    preset: str
    video_norm: str
    valid_view: str
    audio_frontend: str
    missing_audio: str
    video_backend: str = "auto"   # what decodes the video files (tsamlib.data.decode.resolve_backend)

    @classmethod
    def of(cls, cfg: RunConfig | Mapping[str, Any]) -> "ViewsSpec":
        """The spec of a :class:`RunConfig` or of a run's recorded ``params.json`` (:meth:`RunConfig.of`)."""
        cfg = RunConfig.of(cfg)
        sw = cfg.switches()
        return cls(n_frames=cfg.n_frames, audio=cfg.audio, img_size=cfg.img_size, resize=cfg.resize,
                   n_mels=cfg.n_mels, flip=cfg.flip, video_backend=cfg.video_backend,
                   **{k: sw[k] for k in ("preset", "video_norm", "valid_view", "audio_frontend", "missing_audio")})

    @property
    def drop_silent(self) -> bool:
        """Whether a video without sound is left out (an audio run with ``missing_audio='drop'``)."""
        return self.audio and self.missing_audio == "drop"

    def switches(self, *names: str) -> dict[str, Any]:
        """``{name: value}`` of the settings ``names`` (for the record written beside the numbers)."""
        values = asdict(self)
        return {k: values[k] for k in names}

    def test_transform(self, n_crops: int = 1, img_size: int | None = None, resize: int | None = None,
                       valid_view: str | None = None, crop_layout: str = "tsamlib") -> ClipTransform:
        """The run's validation view (``n_crops`` per clip), with a protocol's own sizes, view or crop places
        where given."""
        mean, std = norm_stats(self.video_norm)
        return ClipTransform(img_size or self.img_size, resize or self.resize, train=False, n_crops=n_crops,
                             mean=mean, std=std, valid_view=valid_view or self.valid_view, crop_layout=crop_layout)

    def train_transform(self, scales: tuple[float, ...]) -> ClipTransform:
        """The run's training view (random multi-scale crop of ``scales``, the run's flip), no colour change."""
        mean, std = norm_stats(self.video_norm)
        return ClipTransform(self.img_size, self.resize, train=True, flip=self.flip, scales=scales, max_distort=1,
                             mean=mean, std=std)

    def audio_frame(self, size: int | None = None, cache_dir: str | os.PathLike | None = None) -> AudioFrame | None:
        """The run's full-clip audio frame (``size`` pixels square, default ``img_size``), None without audio."""
        if not self.audio:
            return None
        side = size or self.img_size
        return AudioFrame(size=(side, side), n_mels=self.n_mels, sr=DEFAULT_SR, cache_dir=cache_dir,
                          frontend=self.audio_frontend)


@dataclass(frozen=True)
class Loading:
    """How the videos of an evaluation are read and shown; they change the speed, never the result."""

    batch_size: int = 8        # views per batch
    num_workers: int = 0       # loader processes
    cache_dir: str | os.PathLike | None = "default"   # the log-mel cache: "default" is mel_cache_dir(); None: none
    progress: bool = True      # a progress bar over the batches

    def mel_cache(self) -> str | os.PathLike | None:
        """The log-mel cache folder, "default" resolved."""
        return mel_cache_dir() if self.cache_dir == "default" else self.cache_dir
