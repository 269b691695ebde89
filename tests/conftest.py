"""Shared pytest fixtures: the real Kinetics clips and small broken/odd media files made on the fly.

``kinetics_clips``: folder of the 12 real clips (``$TSAM_KINETICS_CLIPS`` or ``../shared/kinetics-clips``);
tests using it skip when absent. ``make_video`` / ``make_audio_only`` write tiny files with PyAV;
``media_zoo`` is a session-wide dict ``name -> (path, expected)`` of odd and broken files, where
``expected`` has ``ok`` (readable as video), ``has_audio`` and ``n_frames`` (None = don't check).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slow`` run first: with ``-n 2 --dist loadfile`` (``.ci/run``) the longest file starts at once
    on one worker while the other takes the rest, instead of starting last and running alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: otherwise collection order


@pytest.fixture(scope="session")
def kinetics_clips() -> Path:
    """Folder with the 12 real Kinetics clips (videos/, training.txt, validation.txt), or skip."""
    root = Path(os.environ.get("TSAM_KINETICS_CLIPS", REPO_ROOT.parent / "shared" / "kinetics-clips"))
    if not (root / "videos").is_dir():
        pytest.skip(f"real Kinetics clips not found at {root}: set TSAM_KINETICS_CLIPS to their folder")
    return root


def _audio_frame(n: int, sample_rate: int, layout: str, freq: float = 440.0):
    import av
    channels = {"mono": 1, "stereo": 2, "5.1": 6}[layout]
    t = np.arange(n) / sample_rate
    x = np.stack([0.3 * np.sin(2 * np.pi * freq * (1 + 0.1 * c) * t) for c in range(channels)]).astype(np.float32)
    frame = av.AudioFrame.from_ndarray(x, format="fltp", layout=layout)
    frame.sample_rate = sample_rate
    return frame


def make_video(path: str | os.PathLike, n_frames: int = 12, size: tuple[int, int] = (48, 64), fps: int = 12,
               audio: bool = True, sample_rate: int = 16000, layout: str = "mono", seed: int = 0) -> Path:
    """Write a small H.264 .mp4 (random-ish frames) with an optional AAC track; size is (H, W)."""
    import av
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    H, W = size
    with av.open(str(path), "w", format="mp4") as c:
        vs = c.add_stream("libx264", rate=fps)
        vs.width, vs.height = W, H
        vs.pix_fmt = "yuv420p" if H % 2 == 0 and W % 2 == 0 else "yuv444p"
        vs.options = {"threads": "1", "preset": "ultrafast"}
        aus = c.add_stream("aac", rate=sample_rate, layout=layout) if audio else None
        for _ in range(n_frames):
            img = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
            c.mux(vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(vs.encode())
        if aus is not None:
            c.mux(aus.encode(_audio_frame(int(sample_rate * n_frames / fps), sample_rate, layout)))
            c.mux(aus.encode(None))
    return path


def make_audio_only(path: str | os.PathLike, seconds: float = 1.0, sample_rate: int = 16000) -> Path:
    """Write an AAC-only file (.m4a or .mp4): no video stream."""
    import av
    path = Path(path)
    with av.open(str(path), "w", format="mp4") as c:
        aus = c.add_stream("aac", rate=sample_rate, layout="mono")
        c.mux(aus.encode(_audio_frame(int(seconds * sample_rate), sample_rate, "mono")))
        c.mux(aus.encode(None))
    return path


@pytest.fixture(scope="session")
def media_zoo(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """Odd and broken media files: ``name -> (path, dict(ok=, has_audio=, n_frames=))``."""
    d = tmp_path_factory.mktemp("media_zoo")
    zoo: dict[str, tuple[Path, dict]] = {}

    def add(name, path, ok, has_audio, n_frames=None):
        zoo[name] = (Path(path), dict(ok=ok, has_audio=has_audio, n_frames=n_frames))

    add("fine", make_video(d / "fine.mp4"), True, True, 12)
    (d / "empty.mp4").write_bytes(b"")
    add("empty", d / "empty.mp4", False, False)
    (d / "text.mp4").write_text("this is not a video\n" * 20)
    add("text_renamed", d / "text.mp4", False, False)
    data = make_video(d / "full.mp4", n_frames=24).read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    add("truncated", d / "truncated.mp4", False, False)
    add("no_audio", make_video(d / "no_audio.mp4", audio=False), True, False, 12)
    add("audio_only", make_audio_only(d / "audio_only.m4a"), False, True)
    add("three_frames", make_video(d / "three.mp4", n_frames=3), True, True, 3)
    add("odd_size", make_video(d / "odd.mp4", size=(61, 97)), True, True, 12)
    add("portrait", make_video(d / "portrait.mp4", size=(96, 54)), True, True, 12)
    add("surround_48k", make_video(d / "surround.mp4", sample_rate=48000, layout="5.1"), True, True, 12)
    add("audio_8k", make_video(d / "audio8k.mp4", sample_rate=8000), True, True, 12)
    add("unicode_path", make_video(d / "clips ü" / "vidéo 1.mp4"), True, True, 12)
    silent = make_video(d / "wav_beside.mp4", audio=False)
    import soundfile
    soundfile.write(silent.with_suffix(".wav"), np.zeros(16000, np.float32), 16000)
    add("wav_beside", silent, True, True, 12)
    return zoo


class TinyClips:
    """Random 4-frame 32 px clips whose brightness tells the class (3 classes); drawn from the global RNG like
    augmentation, so seeding decides them."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        import torch
        y = i % 3
        return torch.randn(4, 3, 32, 32) * 0.5 + (y - 1) * 0.5, y


def tiny_dls(n_train: int = 24, n_valid: int = 12, bs: int = 8, valid_bs: int = 6):
    """fastai DataLoaders over :class:`TinyClips` (3 classes), for training tests without video files."""
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader
    dls = DataLoaders(DataLoader(TinyClips(n_train), bs=bs, shuffle=True, drop_last=True),
                      DataLoader(TinyClips(n_valid), bs=valid_bs))
    dls.c = 3
    return dls
