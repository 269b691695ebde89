"""The disk cache of full-clip log-mels (:class:`MelCache`), used by :class:`tsamlib.audio.AudioFrame`.

Entries are keyed by (absolute path, the audio source's mtime and size, a hash of the front end's parameters), so
spectrograms of different front ends (``audio_frontend="tsamlib"`` / ``"authors"``) or settings never mix.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np

from .fileio import atomic_path

__all__ = ["MelCache"]


class MelCache:
    """Full-clip log-mels on disk, keyed by (path, mtime, size, parameters); counts hits and misses.

    Unreadable entries are misses (``healed`` counts those rewritten); ``writable`` turns False, after one
    warning, when an entry cannot be written (full disk, read-only folder): the cache is then only read."""
    def __init__(self, cache_dir: str | Path, params: dict):
        self.dir = Path(cache_dir)
        self.n_mels = params.get("n_mels")
        self.params_hash = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
        self.hits = self.misses = self.healed = 0
        self.writable, self._warned = True, set()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            self._disable(e, self.dir)

    def key(self, path: str | Path) -> str:
        from .audio import _audio_source  # here: tsamlib.audio imports this module
        p = Path(path).resolve()
        src = _audio_source(p)
        st = src.stat()
        raw = f"{p}|{src}|{st.st_mtime_ns}|{st.st_size}|{self.params_hash}"
        return hashlib.sha1(raw.encode()).hexdigest()

    def file(self, path: str | Path) -> Path:
        k = self.key(path)
        return self.dir / k[:2] / f"{k}.npz"

    def _read(self, f: Path) -> tuple[list[np.ndarray], bool]:
        """Entry ``f``, checked (raises on anything but a valid entry)."""
        z = np.load(f, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError("not an .npz archive")
        with z:
            mels, has_audio = [np.asarray(z[f"m{i}"], dtype=np.float32) for i in range(3)], z["has_audio"]
        if has_audio.shape != () or has_audio.dtype != np.bool_:
            raise ValueError(f"has_audio {has_audio.dtype}{has_audio.shape}")
        for i, m in enumerate(mels):
            if m.ndim != 2 or m.shape[1] < 1 or (self.n_mels is not None and m.shape[0] != self.n_mels):
                raise ValueError(f"m{i} has shape {m.shape}, expected ({self.n_mels}, frames)")
            if not np.isfinite(m).all():
                raise ValueError(f"m{i} has non-finite values")
        return mels, bool(has_audio)

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
            with atomic_path(f) as tmp, open(tmp, "wb") as fh:   # parallel workers never read half a file
                np.savez(fh, has_audio=np.array(has_audio),
                         **{f"m{i}": m.astype(np.float16) for i, m in enumerate(mels)})
        except OSError as e:                  # full disk, read-only folder, quota: go on without the cache
            self._disable(e, f)
            return False
        return True
