"""The authors' audio front end (github:aav-antonov/TSAM): channel-0 loading and torchaudio's MelSpectrogram."""
import numpy as np
import pytest
from conftest import make_video

from tsamlib.data.audio import DEFAULT_SR, authors_audio_image, authors_log_mels, load_waveform, load_waveform_authors


def _reference_log_mels(x: np.ndarray, sr: int, n_mels: int, windows_ms, hops_ms, n_fft: int,
                        eps: float = 1e-6) -> list[np.ndarray]:
    """torchaudio.transforms.MelSpectrogram(sr, n_fft, win_length, hop_length, n_mels) then log(x + eps), in numpy.

    Own framing with reflect padding, periodic Hann window zero-padded to n_fft (centred), rfft, power 2, HTK mel
    filters (mel = 2595 log10(1 + f / 700), triangles, no normalisation) on bins linspace(0, sr // 2, n_fft // 2 + 1)
    with edges 0 and sr // 2; float64 throughout.
    """
    x = np.asarray(x, dtype=np.float64)
    n_bins = n_fft // 2 + 1
    freqs = np.linspace(0.0, sr // 2, n_bins)
    mel_lo = 2595.0 * np.log10(1.0 + 0.0 / 700.0)
    mel_hi = 2595.0 * np.log10(1.0 + (sr // 2) / 700.0)
    edges = 700.0 * (10.0 ** (np.linspace(mel_lo, mel_hi, n_mels + 2) / 2595.0) - 1.0)
    fb = np.zeros((n_mels, n_bins))
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        rise = (freqs - lo) / (mid - lo)
        fall = (hi - freqs) / (hi - mid)
        fb[m] = np.maximum(0.0, np.minimum(rise, fall))
    padded = np.pad(x, n_fft // 2, mode="reflect")
    out = []
    for win_ms, hop_ms in zip(windows_ms, hops_ms):
        win = int(round(win_ms * sr / 1000))
        hop = int(round(hop_ms * sr / 1000))
        hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win) / win)
        window = np.zeros(n_fft)
        left = (n_fft - win) // 2
        window[left:left + win] = hann
        n_frames = 1 + len(x) // hop
        frames = np.stack([padded[t * hop:t * hop + n_fft] for t in range(n_frames)])
        power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
        out.append(np.log(fb @ power.T + eps))
    return out


def _chirp_noise(sr: int, seconds: float = 1.2, seed: int = 0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    f0 = 100.0
    f1 = 0.4 * sr
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * seconds))
    noise = 0.02 * np.random.default_rng(seed).standard_normal(len(t))
    return (0.5 * np.sin(phase) + noise).astype(np.float32)


@pytest.mark.parametrize("sr", [16000, 44100, 11025])
def test_authors_log_mels_match_numpy_reference(sr):
    x = _chirp_noise(sr)
    windows_ms = (25, 50, 100)
    hops_ms = (10, 25, 50)
    got = authors_log_mels(x, sr)
    ref = _reference_log_mels(x, sr, 224, windows_ms, hops_ms, 4800)
    for g, r, hop in zip(got, ref, hops_ms):
        assert g.dtype == np.float32 and g.shape == r.shape
        assert g.shape == (224, 1 + len(x) // int(round(hop * sr / 1000)))
        assert np.isfinite(g).all() and g.std() > 1.0
        # |difference of logs| <= 1e-4 <=> mel power (+ eps) equal to 1e-4 relative
        np.testing.assert_allclose(g, r, rtol=0, atol=1e-4)


def test_authors_log_mels_short_and_too_long_window():
    x = _chirp_noise(16000, seconds=0.05)            # 800 samples: shorter than n_fft // 2 + 1
    mels = authors_log_mels(x, 16000)
    assert all(m.shape[0] == 224 and np.isfinite(m).all() for m in mels)
    with pytest.raises(ValueError, match="longer than n_fft"):
        authors_log_mels(_chirp_noise(96000, seconds=0.2), 96000)


def test_authors_audio_image_shape_and_values():
    x = _chirp_noise(16000, seconds=1.5)
    img = authors_audio_image(x, 16000, size=(224, 160))
    assert isinstance(img, np.ndarray) and img.dtype == np.float32 and img.shape == (3, 224, 160)
    assert np.isfinite(img).all()
    mels = authors_log_mels(x, 16000)
    for c, m in zip(img, mels):                   # bilinear: convex combinations of the log-mels, not standardised
        assert m.min() - 1e-5 <= c.min() and c.max() <= m.max() + 1e-5
        assert c.max() - c.min() > 0.5 * (m.max() - m.min())
    same = authors_audio_image(x, 16000, size=(224, mels[2].shape[1]))
    np.testing.assert_allclose(same[2], mels[2], atol=1e-5)   # identity resize keeps the values


def _native_channels(path) -> tuple[np.ndarray, int]:
    """All channels (channels, n) as decoded (fltp), at the stored rate."""
    import av
    with av.open(str(path)) as c:
        frames = list(c.decode(audio=0))
    return np.concatenate([f.to_ndarray() for f in frames], axis=1), frames[0].sample_rate


def test_channel0_at_native_rate_from_stereo_mp4(tmp_path):
    path = make_video(tmp_path / "stereo.mp4", n_frames=12, size=(32, 32), sample_rate=44100, layout="stereo")
    native, rate = _native_channels(path)
    assert native.shape[0] == 2 and rate == 44100
    w = load_waveform_authors(path)
    assert w.has_audio and w.sr == 44100 and w.wave.ndim == 1 and w.wave.dtype == np.float32
    assert w.source == str(path) and len(w.wave) == native.shape[1]
    np.testing.assert_allclose(w.wave, native[0], atol=0.6 / 32768)      # channel 0, rounded to 16 bits
    assert np.all(w.wave * 32768 == np.round(w.wave * 32768))
    mix = native.mean(0)
    assert np.abs(w.wave - mix).max() > 0.05 and np.abs(w.wave - native[1]).max() > 0.05
    raw = load_waveform_authors(path, pcm16=False)
    np.testing.assert_array_equal(raw.wave, native[0])


def test_channel0_of_wav_beside_video(tmp_path):
    import soundfile
    video = make_video(tmp_path / "clip.mp4", n_frames=6, size=(32, 32), audio=False)
    sr = 22050
    t = np.arange(sr) / sr
    left = 0.4 * np.sin(2 * np.pi * 330 * t)
    right = 0.3 * np.sin(2 * np.pi * 1234 * t + 1.0)
    soundfile.write(video.with_suffix(".wav"), np.stack([left, right], 1), sr, subtype="PCM_16")
    stored, _ = soundfile.read(video.with_suffix(".wav"), dtype="int16")
    w = load_waveform_authors(video)
    assert w.has_audio and w.sr == sr and w.source.endswith(".wav")
    np.testing.assert_array_equal(w.wave, stored[:, 0].astype(np.float32) / 32768)   # torchaudio.load: int16 / 2**15
    assert np.abs(w.wave - stored.mean(1) / 32768).max() > 0.1


def test_no_audio_track_like_default_loader(tmp_path):
    path = make_video(tmp_path / "silent.mp4", n_frames=12, size=(32, 32), audio=False)
    w = load_waveform_authors(path)
    d = load_waveform(path)
    assert not w.has_audio and w.sr == DEFAULT_SR and w.source == ""
    assert w.wave.shape == d.wave.shape and not w.wave.any()
    img = authors_audio_image(w.wave, w.sr, size=(32, 32))
    assert img.shape == (3, 32, 32) and np.allclose(img, np.log(1e-6))
