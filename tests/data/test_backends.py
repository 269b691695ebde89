"""Every video backend gives PyAV's frames, pixel for pixel, on the 12 real clips; what each reader does on the
files it cannot seek in; ``auto``'s choice.

The reference is :class:`~tsamlib.data.decode.PyAVVideo`: the whole file decoded in order, every frame kept.
"""
from __future__ import annotations

import numpy as np
import pytest

from tsamlib.data import decode
from tsamlib.data.video import load_clip, segment_indices


def _readers():
    out = [decode.PyAVSeek]
    for name, reader in (("decord", decode.DecordVideo), ("torchcodec", decode.TorchCodecVideo)):
        why = decode.backend_missing(name)
        out.append(pytest.param(reader, marks=pytest.mark.skipif(bool(why), reason=f"{name} not usable: {why}")))
    return out


@pytest.fixture(scope="module")
def clips(kinetics_clips):
    return sorted((kinetics_clips / "videos").glob("*.mp4"))


@pytest.mark.slow
@pytest.mark.parametrize("reader", _readers(), ids=lambda r: r.name)
def test_each_backend_gives_the_in_order_frames_on_the_real_clips(reader, clips):
    rng = np.random.default_rng(0)
    for clip in clips:
        ref = decode.PyAVVideo(clip)
        video = reader(clip)
        assert len(video) == len(ref), clip.name
        n = len(ref)
        assert video.fps == pytest.approx(ref.fps), clip.name
        for idx in (segment_indices(n, 16, "train", rng), rng.integers(0, n, 12),   # sorted, random, backwards,
                    np.arange(n)[::-9], np.array([n - 1, 0, n - 1, 5])):           # repeated: each as asked
            np.testing.assert_array_equal(video.frames(idx), ref.frames(idx), err_msg=f"{clip.name} {idx}")
    whole = np.arange(len(ref))
    np.testing.assert_array_equal(np.stack(list(reader(clip).iter_frames(whole))), ref.frames(whole))


def test_seeking_pyav_decodes_less_than_the_whole_file(clips, monkeypatch):
    """Frames past the last one asked for are never decoded, and only the asked ones are converted to RGB."""
    import av
    converted = []
    real = av.VideoFrame.to_ndarray

    def counting(self, *a, **k):
        converted.append(self.pts)
        return real(self, *a, **k)
    monkeypatch.setattr(av.VideoFrame, "to_ndarray", counting)
    clip = clips[0]
    video = decode.PyAVSeek(clip)
    video.frames(np.array([3, 10, 3]))
    assert converted == [video.pts[3], video.pts[10]]


def test_pyav_falls_back_to_the_in_order_decode_when_an_asked_frame_does_not_come_out(clips, monkeypatch):
    """An asked frame that the seeking reader does not get (a broken tail: packets whose frames do not decode):
    the read still succeeds, through the in-order reader, with its real count."""
    def lost(self, targets):
        raise decode.VideoReadError(f"{self.path}: frame at pts {targets[-1]} did not decode (seeking)")
    monkeypatch.setattr(decode.PyAVSeek, "_decode", lost)
    frames, idx = load_clip(clips[0], 8, "valid", backend="pyav")
    np.testing.assert_array_equal(frames.numpy(), decode.PyAVVideo(clips[0]).frames(idx))


def test_auto_takes_the_first_importable_backend_and_says_so_once(monkeypatch, capsys):
    missing = {"decord": "ModuleNotFoundError: No module named 'decord'"}
    monkeypatch.setattr(decode, "backend_missing", lambda b: missing.get(b, ""))
    monkeypatch.setattr(decode, "_said", set())
    assert decode.resolve_backend("auto") == "torchcodec"
    assert decode.resolve_backend("auto") == "torchcodec"
    out = capsys.readouterr().out
    assert out.count("video_backend='auto': videos are read with torchcodec (decord: ModuleNotFoundError") == 1
    missing["torchcodec"] = "RuntimeError: Could not load libtorchcodec"
    with pytest.raises(ModuleNotFoundError, match="FFmpeg 4 to 9 installed on the system"):
        decode.resolve_backend("torchcodec")
    assert decode.file_readers("pyav") == (decode.PyAVSeek, decode.PyAVVideo)
