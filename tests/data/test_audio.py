"""Waveforms from video files, 3-channel log-mel frames and the spectrogram cache."""
import os

import numpy as np
import pytest
import torch

from tsamlib.data.audio import (
    DEFAULT_SR,
    AudioFrame,
    load_waveform,
    log_mel_3ch,
    log_mels,
    mels_to_image,
    random_crop_seconds,
)
from tsamlib.data.decode import AudioError


def test_kinetics_waveform_and_mel(kinetics_clips):
    import av
    for p in sorted((kinetics_clips / "videos").glob("*.mp4"))[:4]:
        with av.open(str(p)) as c:
            duration = c.streams.audio[0].duration * c.streams.audio[0].time_base
        w = load_waveform(p)
        assert w.has_audio and w.sr == DEFAULT_SR and w.wave.ndim == 1 and w.wave.dtype == np.float32
        assert abs(len(w.wave) / w.sr - float(duration)) < 0.1, (p.name, len(w.wave) / w.sr, duration)
        assert np.isfinite(w.wave).all() and np.sqrt(np.mean(w.wave ** 2)) > 1e-3, f"{p.name} is silent"
        x = log_mel_3ch(w.wave, w.sr, n_mels=64, size=(64, 48))
        assert x.shape == (3, 64, 48) and x.dtype == torch.float32 and torch.isfinite(x).all()
        assert (x.flatten(1).std(1) > 0.5).all()


def _native(path):
    "Channels, rate and length of the audio track as stored (PyAV, no resampling)."
    import av
    with av.open(str(path)) as c:
        frames = list(c.decode(audio=0))
        return frames[0].layout.nb_channels, frames[0].sample_rate, sum(f.samples for f in frames)


def test_odd_audio_tracks_are_mixed_and_resampled(media_zoo):
    assert _native(media_zoo["surround_48k"][0])[:2] == (6, 48000)
    assert _native(media_zoo["audio_8k"][0])[1] == 8000
    for name in ["surround_48k", "audio_8k", "fine", "unicode_path"]:
        w = load_waveform(media_zoo[name][0])
        assert w.has_audio and w.wave.ndim == 1 and w.sr == DEFAULT_SR, name
        _, rate, n = _native(media_zoo[name][0])
        assert abs(len(w.wave) - n * DEFAULT_SR / rate) < 0.01 * len(w.wave), (name, len(w.wave), n, rate)
        assert np.sqrt(np.mean(w.wave ** 2)) > 0.05, name
    w = load_waveform(media_zoo["surround_48k"][0], sr=16000, mono=False)
    assert w.wave.shape[0] == 6 and abs(w.wave.shape[1] - 16000) < 2500


def test_no_audio_track_gives_silent_frame(media_zoo):
    w = load_waveform(media_zoo["no_audio"][0])
    assert not w.has_audio and abs(len(w.wave) - DEFAULT_SR) < 0.15 * DEFAULT_SR and not w.wave.any()
    x = log_mel_3ch(w.wave, w.sr, n_mels=32, size=(32, 32))
    assert torch.isfinite(x).all() and (x == 0).all()


def test_wav_beside_video_is_preferred(media_zoo):
    path = media_zoo["wav_beside"][0]
    w = load_waveform(path)
    assert w.has_audio and w.source.endswith(".wav")


@pytest.mark.parametrize("name", ["empty", "text_renamed"])
def test_broken_audio_raises(media_zoo, name):
    with pytest.raises(AudioError, match=media_zoo[name][0].name):
        load_waveform(media_zoo[name][0])


def test_log_mels_use_window_and_hop_lengths():
    sr, wave = 16000, np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    mels = log_mels(wave, sr, n_mels=40)
    assert [m.shape for m in mels] == [(40, 1 + 16000 // 160), (40, 1 + 16000 // 400), (40, 1 + 16000 // 800)]
    assert abs(float(log_mels(np.zeros(100, np.float32), sr, 40)[0].max()) - np.log(1e-6)) < 1e-4


def test_train_crop_changes_frame_within_limits():
    wave = np.random.default_rng(1).standard_normal(5 * 16000).astype(np.float32)
    mels = log_mels(wave, 16000, n_mels=32)
    full = mels_to_image(mels, (32, 32))
    assert torch.equal(full, mels_to_image(mels, (32, 32), crop_s=(0, 0)))
    assert not torch.allclose(full, mels_to_image(mels, (32, 32), crop_s=(0.7, 0.4)))
    for seed in range(50):
        a, b = random_crop_seconds(5.0, (1.0, 1.0), np.random.default_rng(seed))
        assert 0 <= a <= 1 and 0 <= b <= 1
        a, b = random_crop_seconds(2.0, (1.0, 1.0), np.random.default_rng(seed))
        assert a <= 0.5 and b <= 0.5


def test_cache_hits_and_keys(media_zoo, tmp_path):
    path = media_zoo["fine"][0]
    af = AudioFrame(size=(32, 32), n_mels=32, cache_dir=tmp_path)
    x1, h1 = af(path)
    assert (af.cache.hits, af.cache.misses) == (0, 1)
    x2, _ = af(path)
    assert (af.cache.hits, af.cache.misses) == (1, 1)
    assert torch.allclose(x1, AudioFrame(size=(32, 32), n_mels=32)(path)[0], atol=0.02)   # float16 storage
    assert torch.allclose(x1, x2) and h1
    xt, _ = af(path, train=True, rng=np.random.default_rng(0))      # training crop still works from cache
    assert af.cache.hits == 2 and xt.shape == (3, 32, 32)
    other = AudioFrame(size=(32, 32), n_mels=40, cache_dir=tmp_path)  # other parameters: miss
    other(path)
    assert (other.cache.hits, other.cache.misses) == (0, 1)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))      # file changed: miss
    af(path)
    assert af.cache.misses == 2
    assert not list(tmp_path.rglob("*.tmp")) and len(list(tmp_path.rglob("*.npz"))) == 3
