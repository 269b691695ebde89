"""Audio frame: waveform -> 3-channel log-mel spectrogram (report section 2.2), with a disk cache.

- Waveform: decoded with PyAV (:func:`tsamlib.data.decode.decode_audio`) from a ``.wav`` with the video's stem
  beside it (the report's layout) when present, else from the video file's own audio track; mixed to mono with FFmpeg's
  standard down-mix matrix and resampled to `sr` (default 22050 Hz, librosa's default; 16 kHz would
  leave more empty mel bands with 224 bands on a 25 ms window). decord's AudioReader is not used:
  on these files it returns NaN samples for 5.1 audio and for resampled stereo.
  No audio track (or no decodable sample) -> documented fallback: a silent waveform as long as the
  video, and ``has_audio=False``.
- Spectrogram: three log-mel spectrograms, windows 25/50/100 ms and hops 10/25/50 ms
  (``n_fft`` = window, hop = hop, in samples), ``log(mel + eps)``. With 224 bands the lowest mel
  filters are narrower than one FFT bin of the short window, so some rows are constant
  (librosa's "empty filters" warning is expected and silenced).
- Image: each channel is resized (bilinear) to the frame size ``(H, W)`` (rows = mel bands, low
  frequencies first; columns = time) and standardised per channel (zero mean, unit std; a constant
  channel, e.g. silence, becomes all zeros, never NaN).
- Training augmentation: a random crop of up to ``max_shift`` = (1 s, 1 s) at the start and end
  (the report's ``random_shift_waveform``), applied to the spectrogram columns (same seconds in
  all channels). This equals cropping the waveform up to one hop and edge padding, and lets the
  cache hold the full-clip spectrogram.
- Cache (:class:`MelCache`): the full-clip log-mels (float16, before resize) in ``cache_dir``, keyed by (absolute
  path, mtime, size, parameter hash); written atomically (temp file + ``os.replace``). The cache never
  makes a good clip fail: an unreadable entry (truncated, garbage, wrong keys or shapes) is recomputed
  from the video and rewritten (one warning per file); when the cache cannot be written (disk full,
  read-only folder) the process warns once and goes on without writing it.
- Prepared log-mels: ``python -m tsamlib prepare`` writes the full-clip log-mels of chosen settings into each frame
  folder as ``mels-<hash>.npz`` (the cache's content; ``<hash>``: :meth:`AudioFrame.params`), so the first read of a
  prepared clip computes nothing. An :class:`AudioFrame` reads the file of its own settings first (``prepared_hits``);
  a prepared folder without it (other ``n_mels``, front end, rate...) is computed from the folder's ``.wav`` and the
  cache as any clip, counted in ``prepared_misses`` with one warning per process naming the ``prepare --mels`` value
  that adds the file.
- Front ends: the above is :class:`TsamlibFrontend` (the default); :class:`AuthorsFrontend` is the authors' one
  (github:aav-antonov/TSAM, ``lib/dataset/audio.py``), ``AudioFrame(frontend="authors")`` (``audio_frontend`` of a
  run; the ``"authors"`` preset):
  `load_waveform_authors` (channel 0 at the file's own rate, 16-bit like their ffmpeg ``.wav``),
  `authors_log_mels` (torchaudio ``MelSpectrogram`` with ``n_fft=4800``, computed with librosa) and
  `authors_audio_image` (bilinear resize to ``(H, W)``, no normalisation).
"""
from __future__ import annotations

import hashlib
import io
import json
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from ..runs.fileio import atomic_path
from .decode import decode_audio, prefetch

__all__ = ["DEFAULT_SR", "Waveform", "audio_source", "load_waveform", "log_mels", "mels_to_image", "log_mel_3ch",
           "random_crop_seconds", "MelCache", "AudioFrame", "AUTHORS_N_FFT", "load_waveform_authors",
           "authors_log_mels", "authors_mels_to_image", "authors_audio_image", "Frontend", "TsamlibFrontend",
           "AuthorsFrontend", "FRONTENDS", "AUDIO_FRONTENDS", "params_hash", "read_mels_file", "write_mels_file",
           "PREPARED_MELS_GLOB", "MelsMissingError"]

DEFAULT_SR = 22050


class Waveform(NamedTuple):
    wave: np.ndarray      # float32 (n,) mono, or (channels, n) with mono=False
    sr: int
    has_audio: bool
    source: str           # file the samples came from ("" when silent)


def audio_source(path: Path) -> Path:
    """The `.wav` beside the video (same stem) when present, else the video file itself."""
    wav = path.with_suffix(".wav") if not path.is_dir() else path.parent / (path.name + ".wav")
    return wav if wav.is_file() and wav != path else path


def load_waveform(path: str | Path, sr: int = DEFAULT_SR, mono: bool = True) -> Waveform:
    """Decode the audio of a video (or its `.wav` twin) as float32 at `sr` Hz; silent if no track."""
    import av
    src = audio_source(Path(path))
    if src.is_dir():
        return Waveform(np.zeros(sr, np.float32), sr, False, "")
    chunks, _, duration = decode_audio(
        src, lambda st: av.AudioResampler(format="fltp", layout="mono" if mono else st.layout.name, rate=sr))
    if chunks is None:  # no audio track: silent, as long as the video
        n = max(1, int(round(duration * sr)))
        return Waveform(np.zeros((n,) if mono else (1, n), np.float32), sr, False, "")
    if not chunks or sum(ch.shape[1] for ch in chunks) == 0:
        return Waveform(np.zeros(sr if mono else (1, sr), np.float32), sr, False, "")
    wave = np.concatenate(chunks, axis=1).astype(np.float32)
    wave = np.nan_to_num(wave, nan=0.0, posinf=0.0, neginf=0.0)
    return Waveform(wave[0] if mono else wave, sr, True, str(src))


def log_mels(wave: np.ndarray, sr: int, n_mels: int = 224, windows_ms=(25, 50, 100),
             hops_ms=(10, 25, 50), eps: float = 1e-6) -> list[np.ndarray]:
    """One `log(mel + eps)` spectrogram `(n_mels, frames)` per (window, hop) pair, float32."""
    import librosa
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"expected a mono waveform (n,), got shape {wave.shape}")
    out = []
    for win, hop in zip(windows_ms, hops_ms):
        n_fft, hop_len = int(round(sr * win / 1000)), int(round(sr * hop / 1000))
        x = wave if len(wave) >= n_fft else np.pad(wave, (0, n_fft - len(wave)))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ee]mpty filters.*")
            m = librosa.feature.melspectrogram(y=x, sr=sr, n_fft=n_fft, hop_length=hop_len,
                                               n_mels=n_mels, power=2.0)
        out.append(np.log(m + eps).astype(np.float32))
    return out


def random_crop_seconds(duration: float, max_shift=(1.0, 1.0),
                        rng: np.random.Generator | None = None) -> tuple[float, float]:
    """Seconds to cut at the start and the end; each at most a quarter of the clip."""
    rng = rng if rng is not None else np.random.default_rng()
    lim = [min(m, duration / 4) for m in max_shift]
    return float(rng.uniform(0, lim[0])), float(rng.uniform(0, lim[1]))


def mels_to_image(mels: list[np.ndarray], size=(224, 224), hops_ms=(10, 25, 50),
                  crop_s: tuple[float, float] = (0.0, 0.0), normalize: bool = True) -> torch.Tensor:
    """Crop `crop_s` seconds off each end, resize each channel to `size`, standardise: `(3, H, W)`."""
    chans = []
    for m, hop in zip(mels, hops_ms):
        m = torch.as_tensor(np.asarray(m, dtype=np.float32))
        a = int(crop_s[0] * 1000 / hop)
        b = max(a + 1, m.shape[1] - int(crop_s[1] * 1000 / hop))
        m = m[:, a:b]
        chans.append(F.interpolate(m[None, None], size=tuple(size), mode="bilinear", align_corners=False)[0, 0])
    x = torch.stack(chans)
    if normalize:
        mu, sd = x.mean((1, 2), keepdim=True), x.std((1, 2), keepdim=True)
        x = torch.where(sd > 1e-5, (x - mu) / sd.clamp_min(1e-5), torch.zeros_like(x))
    return x.float().contiguous()


def log_mel_3ch(wave: np.ndarray, sr: int, n_mels: int = 224, size=(224, 224), windows_ms=(25, 50, 100),
                hops_ms=(10, 25, 50), eps: float = 1e-6, normalize: bool = True) -> torch.Tensor:
    """The audio frame: float32 `(3, H, W)` log-mel image of a mono waveform."""
    return mels_to_image(log_mels(wave, sr, n_mels, windows_ms, hops_ms, eps), size, hops_ms,
                         normalize=normalize)


# --- The authors' front end (github:aav-antonov/TSAM, lib/dataset/audio.py), reproduced with librosa ---------------

AUTHORS_N_FFT = 4800


def load_waveform_authors(path: str | Path, pcm16: bool = True, silent_sr: int = DEFAULT_SR) -> Waveform:
    """Channel 0 of the audio at the file's own sample rate, as the authors read it (no down-mix, no resampling).

    The authors extract ``ffmpeg -i video.mp4 video.wav`` (16-bit PCM, source rate and channels kept) and read it
    with ``torchaudio.load`` (int16 / 32768), keeping ``waveform[0]``. Source: the ``.wav`` beside the video when
    present (decoded as stored), else the video's first audio track decoded with PyAV; with ``pcm16`` that track is
    rounded to 16 bits (x * 32768, round half to even, clipped) as FFmpeg's default ``.wav`` encoder does. A video
    without an audio track (or without a decodable sample) gives what `load_waveform` gives: a silent waveform as
    long as the video at `silent_sr` Hz, ``has_audio=False`` (the authors drop such clips from the dataset instead).
    """
    import av
    src = audio_source(Path(path))
    if src.is_dir():
        return Waveform(np.zeros(silent_sr, np.float32), silent_sr, False, "")
    # a sample-format change only: the input's rate and channels are kept
    chunks, sr, duration = decode_audio(src, lambda st: av.AudioResampler(format="fltp"))
    if chunks is None:  # no audio track: silent, as long as the video
        return Waveform(np.zeros(max(1, int(round(duration * silent_sr))), np.float32), silent_sr, False, "")
    if not chunks or sum(ch.shape[1] for ch in chunks) == 0:
        return Waveform(np.zeros(silent_sr, np.float32), silent_sr, False, "")
    wave = np.concatenate([ch[0] for ch in chunks]).astype(np.float32)   # channel 0
    wave = np.nan_to_num(wave, nan=0.0, posinf=0.0, neginf=0.0)
    if pcm16 and src.suffix.lower() != ".wav":
        wave = np.clip(np.rint(wave * 32768.0), -32768, 32767).astype(np.float32) / np.float32(32768.0)
    return Waveform(wave, sr, True, str(src))


def authors_log_mels(wave: np.ndarray, sr: int, n_mels: int = 224, windows_ms=(25, 50, 100), hops_ms=(10, 25, 50),
                     n_fft: int = AUTHORS_N_FFT, eps: float = 1e-6) -> list[np.ndarray]:
    """``log(MelSpectrogram(sr, n_fft, win_length, hop_length, n_mels)(wave) + eps)`` per (window, hop), float32.

    torchaudio's definition as the authors configure it: window and hop in samples ``int(round(ms * sr / 1000))``
    at the file's rate, FFT size `n_fft` for every channel; periodic Hann window of ``win_length`` zero-padded to
    `n_fft` (centred); ``center=True`` with reflect padding of ``n_fft // 2``; power 2; HTK mel filters without
    normalisation on the bins ``linspace(0, sr // 2, n_fft // 2 + 1)`` with edges 0 and ``sr // 2`` (torchaudio's
    ``sample_rate // 2``: the same as ``sr / 2`` for even rates). A wave shorter than ``n_fft // 2 + 1`` samples,
    which torch cannot reflect-pad, is zero-padded at the end to that length; ``win_length > n_fft`` (rates above
    48 kHz with 100 ms windows) raises ValueError, as torch.stft does.
    """
    import librosa
    x = np.asarray(wave, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected a mono waveform (n,), got shape {x.shape}")
    if n_fft % 2:
        raise ValueError(f"n_fft must be even (the filter bank assumes it), got {n_fft}")
    if len(x) < n_fft // 2 + 1:
        x = np.pad(x, (0, n_fft // 2 + 1 - len(x)))
    half = int(sr) // 2
    # librosa's bins are k * sr' / n_fft = linspace(0, sr' / 2, n_fft // 2 + 1): sr' = 2 * (sr // 2) gives torchaudio's
    fb = librosa.filters.mel(sr=2 * half, n_fft=n_fft, n_mels=n_mels, fmin=0.0, fmax=float(half), htk=True,
                             norm=None, dtype=np.float32)
    out = []
    for win_ms, hop_ms in zip(windows_ms, hops_ms):
        win_length = int(round(win_ms * sr / 1000))
        hop_length = int(round(hop_ms * sr / 1000))
        if win_length > n_fft:
            raise ValueError(f"window {win_ms} ms = {win_length} samples at {sr} Hz is longer than n_fft={n_fft}")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*too large for input signal.*")
            spec = librosa.stft(x, n_fft=n_fft, hop_length=hop_length, win_length=win_length, window="hann",
                                center=True, pad_mode="reflect")
        power = np.abs(spec) ** 2
        out.append(np.log(fb @ power + np.float32(eps)).astype(np.float32))
    return out


def authors_mels_to_image(mels: list[np.ndarray], size=(224, 224), antialias: bool = False) -> np.ndarray:
    """Each log-mel resized to `size` as ``torchvision.transforms.Resize((H, W))`` does on a tensor, stacked.

    Bilinear, ``align_corners=False``; ``antialias=False`` is what torchvision < 0.17 (the authors' time) did for
    tensors (>= 0.17 defaults to True). Rows are mel bands (lowest first), columns time; channel order follows
    `mels`; no normalisation. Returns float32 ``(len(mels), H, W)``.
    """
    chans = []
    for m in mels:
        t = torch.as_tensor(np.asarray(m, dtype=np.float32))[None, None]
        r = F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False, antialias=antialias)
        chans.append(r[0, 0])
    return torch.stack(chans).numpy().astype(np.float32)


def authors_audio_image(wave: np.ndarray, sr: int, size=(224, 224), n_mels: int = 224, windows_ms=(25, 50, 100),
                        hops_ms=(10, 25, 50), n_fft: int = AUTHORS_N_FFT, eps: float = 1e-6,
                        antialias: bool = False) -> np.ndarray:
    """The authors' audio frame: float32 ``(3, H, W)``, channels 25/10, 50/25, 100/50 ms, not normalised."""
    mels = authors_log_mels(wave, sr, n_mels, windows_ms, hops_ms, n_fft, eps)
    return authors_mels_to_image(mels, size, antialias)


# ----------------------------------------------------------------------------------------------- front ends
@dataclass(frozen=True)
class Frontend:
    """The log-mel settings a front end computes with; a front end turns a clip into its full-clip log-mels
    (:meth:`full_mels`) and names what they depend on (:meth:`params`). ``normalize``: its image is z-scored."""
    n_mels: int = 224
    sr: int = DEFAULT_SR
    windows_ms: tuple = (25, 50, 100)
    hops_ms: tuple = (10, 25, 50)
    eps: float = 1e-6
    name: ClassVar[str]
    normalize: ClassVar[bool]

    def params(self) -> dict:
        """What the full-clip log-mels depend on (hashed into the cache key and the prepared file's name)."""
        return dict(n_mels=self.n_mels, sr=self.sr, windows_ms=_listed(self.windows_ms),
                    hops_ms=_listed(self.hops_ms), eps=self.eps, v=1)

    def full_mels(self, path) -> tuple[list[np.ndarray], bool]:
        """The log-mels (one ``(n_mels, frames)`` array per window) of the whole clip ``path``, and ``has_audio``."""
        raise NotImplementedError


class TsamlibFrontend(Frontend):
    """This library's front end: `load_waveform` (mono mix at `sr`), `log_mels` (``n_fft`` = window), per-channel
    z-score of the image."""
    name = "tsamlib"
    normalize = True

    def full_mels(self, path) -> tuple[list[np.ndarray], bool]:
        w = load_waveform(path, self.sr)
        return log_mels(w.wave, w.sr, self.n_mels, self.windows_ms, self.hops_ms, self.eps), w.has_audio


class AuthorsFrontend(Frontend):
    """The authors' front end: `load_waveform_authors` (channel 0 at the file's own rate; `sr` only for the silent
    waveform of a clip without sound), `authors_log_mels` (``n_fft`` 4800), no normalisation (raw log values)."""
    name = "authors"
    normalize = False

    def params(self) -> dict:
        p = {k: v for k, v in super().params().items() if k != "sr"}   # the file's own rate, channel 0
        return p | dict(frontend="authors", n_fft=AUTHORS_N_FFT)

    def full_mels(self, path) -> tuple[list[np.ndarray], bool]:
        w = load_waveform_authors(path, silent_sr=self.sr)
        return authors_log_mels(w.wave, w.sr, self.n_mels, self.windows_ms, self.hops_ms, eps=self.eps), w.has_audio


def _listed(v):
    return list(v) if isinstance(v, tuple) else v


FRONTENDS = {f.name: f for f in (TsamlibFrontend, AuthorsFrontend)}   # a run's audio_frontend -> its class
AUDIO_FRONTENDS = tuple(FRONTENDS)


# ----------------------------------------------------------------------------------------------- stored log-mels
PREPARED_MELS_GLOB = "mels-*.npz"   # prepared log-mels inside a frame folder, one file per settings


def params_hash(params: dict) -> str:
    """Short hash of log-mel settings (:meth:`AudioFrame.params`): the cache key's and the prepared file's."""
    return hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]


def read_mels_file(f: Path, n_mels: int | None = None) -> tuple[list[np.ndarray], bool]:
    """Full-clip log-mels and ``has_audio`` of a cache entry or a prepared ``mels-*.npz``, checked: raises on anything
    but three finite ``(n_mels, frames)`` arrays and a boolean (FileNotFoundError when ``f`` is missing)."""
    z = np.load(f, allow_pickle=False)
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ValueError("not an .npz archive")
    with z:
        mels, has_audio = [np.asarray(z[f"m{i}"], dtype=np.float32) for i in range(3)], z["has_audio"]
    if has_audio.shape != () or has_audio.dtype != np.bool_:
        raise ValueError(f"has_audio {has_audio.dtype}{has_audio.shape}")
    for i, m in enumerate(mels):
        if m.ndim != 2 or m.shape[1] < 1 or (n_mels is not None and m.shape[0] != n_mels):
            raise ValueError(f"m{i} has shape {m.shape}, expected ({n_mels}, frames)")
        if not np.isfinite(m).all():
            raise ValueError(f"m{i} has non-finite values")
    return mels, bool(has_audio)


def write_mels_file(f: Path, mels: list[np.ndarray], has_audio: bool, params: dict | None = None) -> None:
    """Write full-clip log-mels (float16) atomically: a reader never sees half a file. ``params`` (the settings)
    are stored beside them as JSON text."""
    extra = {} if params is None else {"params": np.array(json.dumps(params, sort_keys=True))}
    with atomic_path(f) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, has_audio=np.array(has_audio), **{f"m{i}": m.astype(np.float16) for i, m in enumerate(mels)},
                 **extra)


# ----------------------------------------------------------------------------------------------- the cache
class MelCache:
    """Full-clip log-mels on disk, keyed by (path, mtime, size, parameters); counts hits and misses.

    Unreadable entries are misses (``healed`` counts those rewritten); ``writable`` turns False, after one
    warning, when an entry cannot be written (full disk, read-only folder): the cache is then only read."""
    def __init__(self, cache_dir: str | Path, params: dict):
        self.dir = Path(cache_dir)
        self.n_mels = params.get("n_mels")
        self.params_hash = params_hash(params)
        self.hits = self.misses = self.healed = 0
        self.writable, self._warned = True, set()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            self._disable(e, self.dir)

    def key(self, path: str | Path) -> str:
        p = Path(path).resolve()
        src = audio_source(p)
        st = src.stat()
        raw = f"{p}|{src}|{st.st_mtime_ns}|{st.st_size}|{self.params_hash}"
        return hashlib.sha1(raw.encode()).hexdigest()

    def file(self, path: str | Path) -> Path:
        k = self.key(path)
        return self.dir / k[:2] / f"{k}.npz"

    def _read(self, f: Path) -> tuple[list[np.ndarray], bool]:
        """Entry ``f``, checked (raises on anything but a valid entry)."""
        return read_mels_file(f, self.n_mels)

    def load(self, path, f: Path | None = None) -> tuple[list[np.ndarray], bool] | None:
        """Cached mels of ``path`` (``f``: its cache file, when already known), or None on a miss."""
        f = f if f is not None else self.file(path)
        try:
            got = self._read(f)
        except FileNotFoundError:
            self.misses += 1
            return None
        except Exception as e:               # truncated, garbage, wrong keys/shapes: recompute (and overwrite)
            self.misses += 1
            if f not in self._warned:
                self._warned.add(f)
                warnings.warn(f"mel cache entry {f} (of {path}) is unreadable ({type(e).__name__}: {e}); "
                              "recomputing it from the video" + (" and rewriting it" if self.writable else ""),
                              stacklevel=3)
            self.healed += self.writable
            return None
        self.hits += 1
        return got

    def _disable(self, e: OSError, f: Path) -> None:
        if self.writable:
            warnings.warn(f"mel cache {self.dir} cannot be written ({f}: {type(e).__name__}: {e}); training goes on "
                          "without writing the cache in this process (free space, or pass another cache_dir)",
                          stacklevel=4)
        self.writable = False

    def save(self, path, mels: list[np.ndarray], has_audio: bool, f: Path | None = None) -> bool:
        """Write the entry atomically; False (after one warning per process) when the cache cannot be written."""
        if not self.writable:
            return False
        f = f if f is not None else self.file(path)
        try:
            write_mels_file(f, mels, has_audio)                # atomic: parallel workers never read half a file
        except OSError as e:                  # full disk, read-only folder, quota: go on without the cache
            self._disable(e, f)
            return False
        return True


# ----------------------------------------------------------------------------------------------- the audio frame
class MelsMissingError(ValueError):
    """Clips in memory (shards) without the log-mels of a run's audio settings: the run's to fix, not the clip's."""


@dataclass
class AudioFrame:
    """Path -> `(3, H, W)` audio frame and `has_audio`, with optional cache and train-time crop.

    ``frontend``: :class:`TsamlibFrontend` ("tsamlib") or :class:`AuthorsFrontend` ("authors"), built from these
    settings. The training crop is the same for both. The cache key holds the front end and its parameters.

    A prepared frame folder's ``mels-<hash>.npz`` of these settings is read before the cache (``prepared_hits``);
    a prepared folder without it is computed as any clip (``prepared_misses``, one warning per process)."""
    size: tuple = (224, 224)
    n_mels: int = 224
    sr: int = DEFAULT_SR
    windows_ms: tuple = (25, 50, 100)
    hops_ms: tuple = (10, 25, 50)
    eps: float = 1e-6
    max_shift: tuple = (1.0, 1.0)
    cache_dir: str | None = None
    frontend: str = "tsamlib"
    cache: MelCache | None = field(default=None, init=False, repr=False)
    prepared_hits: int = field(default=0, init=False, repr=False)
    prepared_misses: int = field(default=0, init=False, repr=False)
    _warned: set = field(default_factory=set, init=False, repr=False, compare=False)   # keys of the warnings given

    def __post_init__(self):
        if self.frontend not in AUDIO_FRONTENDS:
            raise ValueError(f"frontend={self.frontend!r}: choose one of {list(AUDIO_FRONTENDS)}.")
        if self.cache_dir is not None:
            self.cache = MelCache(self.cache_dir, self.params())

    @cached_property
    def front(self) -> Frontend:
        """The front end of these settings."""
        return FRONTENDS[self.frontend](self.n_mels, self.sr, self.windows_ms, self.hops_ms, self.eps)

    def params(self) -> dict:
        """What the cached log-mels depend on (hashed into the cache key)."""
        return self.front.params()

    def spec(self) -> str:
        """These settings as ``prepare --mels`` names them: ``FRONTEND:N_MELS``."""
        return f"{self.frontend}:{self.n_mels}"

    @cached_property
    def prepared_name(self) -> str:
        """File name of these settings' prepared log-mels inside a frame folder: ``mels-<hash of params()>.npz``."""
        return f"mels-{params_hash(self.params())}.npz"

    def save_prepared(self, folder: str | Path, source: str | Path | None = None) -> Path:
        """Compute the full-clip log-mels of ``source`` (default: the clip ``folder`` itself, i.e. its ``.wav``) and
        write them atomically as ``folder / prepared_name``, with :meth:`params` beside them. Returns the file."""
        folder = Path(folder)
        mels, has_audio = self.front.full_mels(folder if source is None else source)
        f = folder / self.prepared_name
        write_mels_file(f, mels, has_audio, self.params())
        return f

    def _prepared(self, path) -> tuple[list[np.ndarray], bool] | None:
        """The prepared log-mels of frame folder ``path`` for these settings, or None (counted and warned once when
        ``path`` is a prepared folder without them or with an unreadable file)."""
        p = Path(path)
        f = p / self.prepared_name
        try:
            got = read_mels_file(f, self.n_mels)
        except (FileNotFoundError, NotADirectoryError):
            if not (p / "prepare.json").is_file():
                return None                          # not a prepared folder (a video, a plain frame folder)
            self.prepared_misses += 1
            self._warn_once("missing", f"prepared clips (e.g. {p}) have no log-mels for these audio settings "
                            f"({self.spec()}, {self.params()}); computing them from each clip's .wav "
                            "(and the mel cache). "
                            f"Add them with: python -m tsamlib prepare MANIFEST --out OUT --mels {self.spec()} "
                            "(same manifest and --out: only the log-mels are written)")
            return None
        except Exception as e:
            self.prepared_misses += 1
            self._warn_once(f, f"prepared log-mels {f} are unreadable ({type(e).__name__}: {e}); computing them "
                            "from the clip's .wav instead (run prepare again to rewrite them)")
            return None
        self.prepared_hits += 1
        return got

    def prefetch(self, path) -> None:
        """Start reading frame folder ``path``'s prepared log-mels of these settings from the disk (when there), so
        that the read in :meth:`full_mels` finds them cached: a loader calls it before decoding the frames."""
        if Path(path).is_dir():
            prefetch([Path(path) / self.prepared_name])

    def _warn_once(self, key, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, stacklevel=4)

    def full_mels(self, path) -> tuple[list[np.ndarray], bool]:
        """Log-mels of the whole clip (a prepared folder's file, else the cache, else computed)."""
        got = self._prepared(path)
        if got is not None:
            return got
        f = self.cache.file(path) if self.cache is not None else None   # key: resolve + stat + hash, once
        got = self.cache.load(path, f) if f is not None else None
        if got is not None:
            return got
        mels, has_audio = self.front.full_mels(path)
        if self.cache is not None:
            self.cache.save(path, mels, has_audio, f)
            mels = [m.astype(np.float16).astype(np.float32) for m in mels]   # same values as a cache hit
        return mels, has_audio

    def stored_mels(self, files: dict[str, bytes], where: str) -> tuple[list[np.ndarray], bool]:
        """The log-mels of these settings among a prepared clip's files held in memory (a shard's sample: file name
        -> bytes); a clip without them raises :class:`MelsMissingError` naming the ``prepare`` that adds them."""
        data = files.get(self.prepared_name)
        if data is None:
            raise MelsMissingError(f"{where}: no log-mels for this run's audio settings ({self.spec()}; it has "
                                   f"{sorted(files) or 'none'}); pack the shards from clips prepared with them: "
                                   f"python -m tsamlib prepare MANIFEST --out OUT --format shards --mels {self.spec()}")
        return read_mels_file(io.BytesIO(data), self.n_mels)

    def __call__(self, path, train: bool = False, rng: np.random.Generator | None = None) -> tuple[torch.Tensor, bool]:
        return self.image(*self.full_mels(path), train=train, rng=rng)

    def image(self, mels: list[np.ndarray], has_audio: bool, train: bool = False,
              rng: np.random.Generator | None = None) -> tuple[torch.Tensor, bool]:
        """A clip's full log-mels as its audio frame (a random crop in training), and ``has_audio``."""
        crop = (0.0, 0.0)
        if train and has_audio:
            duration = mels[0].shape[1] * self.hops_ms[0] / 1000
            crop = random_crop_seconds(duration, self.max_shift, rng)
        return mels_to_image(mels, self.size, self.hops_ms, crop, normalize=self.front.normalize), has_audio
