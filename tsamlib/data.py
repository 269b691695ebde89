"""Datasets and fastai DataLoaders for TSAM: clips of T frames, optionally one audio frame.

``video_dataloaders(manifest, ...)`` gives a `TSAMDataLoaders` whose batches are
``(video, label)`` with video float ``(B, T, 3, H, W)``, or ``(video, audio, label)`` with audio
``(B, 1, 3, H, W)``; ``n_inp`` is 1 or 2, so ``Learner(dls, model, loss_func=...)`` calls
``model(video)`` or ``model(video, audio)``.

Bad data is never lost silently:

- manifest rows with a non-empty ``problem`` are excluded and reported when the loaders are made
  (as are rows with ``has_audio == False``: their audio frame is silent);
- a sample that fails to load at run time is replaced by the next loadable one (index + 1, ...),
  reported once per path (a warning in the main process, also with workers) and counted in a small
  log folder shared by all workers: ``dls.skipped()`` (path -> reason), ``dls.n_skipped()``
  (replacements). If every sample fails, a `RuntimeError` says so.

Randomness of a sample depends only on ``(seed, epoch, index)``, so batches are the same for any
``num_workers``; shuffling uses ``random.Random(seed)``.
"""
from __future__ import annotations

import hashlib
import os
import random
import shutil
import tempfile
import warnings
import weakref
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader

from .manifest import read_manifest
from .audio import DEFAULT_SR, AudioFrame
from .transforms import IMAGENET_MEAN, IMAGENET_STD, ClipTransform, denormalize
from .video import load_clip

__all__ = ["read_table", "SkipLog", "VideoDataset", "TSAMDataLoader", "TSAMDataLoaders",
           "video_dataloaders", "manifest_vocab", "clip_views_dataset", "video_views", "views_dataloader", "show_clip_batch"]

REQUIRED = ("path", "label", "split")


def _truthy(v) -> bool:
    if isinstance(v, str): return v.strip().lower() not in ("false", "0", "no", "")
    return bool(v) if not pd.isna(v) else True


def read_table(manifest) -> pd.DataFrame:
    "Manifest (CSV path, read by `tsamlib.manifest.read_manifest`, or a DataFrame) with absolute paths."
    df = manifest.copy() if isinstance(manifest, pd.DataFrame) else read_manifest(manifest)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing: raise ValueError(f"manifest lacks columns {missing}; it needs {list(REQUIRED)} (see tsamlib.manifest)")
    df["path"] = df["path"].astype(str)
    df["problem"] = df["problem"].fillna("").astype(str) if "problem" in df.columns else ""
    df["has_audio"] = df["has_audio"].map(_truthy) if "has_audio" in df.columns else True
    if "label_name" not in df.columns: df["label_name"] = df["label"].astype(str)
    df["label"] = df["label"].astype(int)
    return df.reset_index(drop=True)


class SkipLog:
    "Samples that failed to load, shared by all workers through marker files in a folder."
    def __init__(self, directory: str | Path | None = None):
        self.dir = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="tsam-skips-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self._bad: dict[str, str] | None = None
        self._reported: set[str] = set()
        if directory is None:   # only the creating process removes the folder
            weakref.finalize(self, _remove_if_owner, self.dir, os.getpid())

    def _marker(self, path: str) -> Path:
        return self.dir / f"{hashlib.sha1(path.encode()).hexdigest()[:20]}.skip"

    def record(self, path: str, reason: str) -> None:
        "Count one replacement of `path`; remember its reason once (first writer wins)."
        reason = " ".join(str(reason).split())[:500]
        try:
            fd = os.open(self._marker(path), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            with os.fdopen(fd, "w", encoding="utf-8") as f: f.write(f"{path}\t{reason}\n")
        except FileExistsError: pass
        with open(self.dir / f"events-{os.getpid()}.log", "a", encoding="utf-8") as f: f.write(path + "\n")
        self.bad()[path] = reason

    def bad(self) -> dict[str, str]:
        "Paths already known to fail (read once per process, then kept up to date)."
        if self._bad is None: self._bad = self.skipped()
        return self._bad

    def skipped(self) -> dict[str, str]:
        "All failed paths seen by any process, with their reason."
        out = {}
        for m in sorted(self.dir.glob("*.skip")):
            line = m.read_text(encoding="utf-8").rstrip("\n")
            if "\t" in line:
                p, r = line.split("\t", 1); out[p] = r
        return out

    def n_events(self) -> int:
        "Number of times a requested sample was replaced (all processes)."
        return sum(len(f.read_text(encoding="utf-8").splitlines()) for f in self.dir.glob("events-*.log"))

    def report_new(self) -> None:
        "Warn (in the calling process) once for each newly failed path."
        for p, r in self.skipped().items():
            if p not in self._reported:
                self._reported.add(p)
                warnings.warn(f"skipped {p}: {r} (replaced by another sample; see dls.skipped())", stacklevel=2)


def _remove_if_owner(d: Path, pid: int) -> None:
    if os.getpid() == pid: shutil.rmtree(d, ignore_errors=True)


class VideoDataset(torch.utils.data.Dataset):
    "Items `(video, [audio,] label)` for manifest rows, in `mode` train/valid/test (one item per view)."
    def __init__(self, df: pd.DataFrame, n_frames: int, mode: str, transform: ClipTransform,
                 audio: AudioFrame | None = None, seed: int = 0, log: SkipLog | None = None,
                 views: list[tuple[int, int, int]] | None = None, n_clips: int = 1, replace_bad: bool = True):
        self.df, self.n_frames, self.mode, self.tfm, self.audio = df.reset_index(drop=True), n_frames, mode, transform, audio
        self.seed, self.epoch, self.n_clips, self.replace_bad = seed, 0, n_clips, replace_bad
        self.log = log if log is not None else SkipLog()
        self.views = views if views is not None else [(i, 0, 1) for i in range(len(self.df))]
        self.paths, self.labels = self.df["path"].tolist(), self.df["label"].astype(int).tolist()
        self.n_inp = 2 if audio is not None else 1

    def __len__(self) -> int: return len(self.views)

    def load(self, i: int, rng: np.random.Generator) -> tuple:
        "Load view `i` (raises on a bad file)."
        row, clip, crop = self.views[i]
        path = self.paths[row]
        frames, _ = load_clip(path, self.n_frames, self.mode, rng, clip_index=clip, n_clips=self.n_clips)
        video = self.tfm(frames, rng, crop_index=crop)
        label = torch.tensor(self.labels[row], dtype=torch.long)
        if self.audio is None: return video, label
        spec, _ = self.audio(path, train=self.mode == "train", rng=rng)
        return video, spec[None], label

    def __getitem__(self, i: int) -> tuple:
        rng = np.random.default_rng([self.seed, self.epoch, int(i)])
        if not self.replace_bad: return self.load(i, rng)
        bad = self.log.bad()
        for k in range(len(self)):
            j = (i + k) % len(self)
            path = self.paths[self.views[j][0]]
            if path in bad:
                self.log.record(path, bad[path]); continue
            try: return self.load(j, rng)
            except Exception as e: self.log.record(path, f"{type(e).__name__}: {str(e).replace(path + ': ', '')}")
        raise RuntimeError(f"all {len(self)} samples failed to load; first failures: "
                           f"{list(self.log.skipped().items())[:3]} (check the paths and files in the manifest)")


def _limit_threads() -> None:
    "One thread per worker for torch, OpenMP/BLAS pools and numba (librosa)."
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    except Exception: pass
    try:
        import numba
        numba.set_num_threads(1)
    except Exception: pass


class TSAMDataLoader(DataLoader):
    "fastai DataLoader: new randomness each epoch, skipped samples reported from the main process."
    def before_iter(self):
        super().before_iter()
        self.dataset.epoch += 1

    def wif(self): _limit_threads()

    def after_batch(self, b):
        self.dataset.log.report_new()
        return b

    @property
    def n_inp(self) -> int: return self.dataset.n_inp


class TSAMDataLoaders(DataLoaders):
    "fastai DataLoaders with `vocab`, `c`, `n_inp`, skip reports and a clip `show_batch`."
    @property
    def n_inp(self) -> int: return self.train.dataset.n_inp

    def skipped(self) -> dict[str, str]:
        "Path -> reason for every sample replaced so far (train and valid, all workers)."
        logs = {id(dl.dataset.log): dl.dataset.log for dl in self.loaders}  # train and valid share one log
        return {p: r for log in logs.values() for p, r in log.skipped().items()}

    def n_skipped(self) -> int:
        "Failed load attempts so far, all workers (a bad file met 3 times counts 3)."
        logs = {id(dl.dataset.log): dl.dataset.log for dl in self.loaders}
        return sum(l.n_events() for l in logs.values())

    def show_batch(self, b=None, max_n: int = 4, figsize=None):
        "Frames of each clip in a row (denormalised), then its 3 mel channels; returns the figure."
        if b is None: b = self.train.one_batch()
        return show_clip_batch(b, self.vocab, self.train.dataset.tfm, max_n, figsize,
                               hops=self.train.dataset.audio.hops_ms if self.n_inp == 2 else None,
                               windows=self.train.dataset.audio.windows_ms if self.n_inp == 2 else None)


def show_clip_batch(b, vocab, tfm: ClipTransform, max_n: int = 4, figsize=None, windows=None, hops=None):
    "Matplotlib figure of a batch: one row per sample, T frames then the mel channels."
    import matplotlib.pyplot as plt
    video, label = b[0].cpu(), b[-1].cpu()
    audio = b[1].cpu() if len(b) == 3 else None
    n, t = min(max_n, len(video)), video.shape[1]
    cols = t + (3 if audio is not None else 0)
    fig, axes = plt.subplots(n, cols, figsize=figsize or (1.4 * cols, 1.6 * n), squeeze=False)
    for r in range(n):
        frames = denormalize(video[r], tfm.mean, tfm.std)
        for c in range(t):
            ax = axes[r, c]; ax.imshow(frames[c].permute(1, 2, 0).numpy()); ax.axis("off")
        axes[r, 0].set_title(str(vocab[int(label[r])]), fontsize=8, loc="left")
        if audio is not None:
            for k in range(3):
                ax = axes[r, t + k]
                ax.imshow(audio[r, 0, k].numpy(), origin="lower", aspect="auto", cmap="magma"); ax.axis("off")
                ax.set_title(f"{windows[k]}/{hops[k]} ms", fontsize=8)
    fig.tight_layout()
    return fig


def _audio_frame(audio: bool, img_size: int, n_mels: int, sample_rate: int, cache_dir) -> AudioFrame | None:
    return AudioFrame(size=(img_size, img_size), n_mels=n_mels, sr=sample_rate, cache_dir=cache_dir) if audio else None


def manifest_vocab(df: pd.DataFrame) -> list[str]:
    "Class names indexed by label (labels 0..max; a label without a name is shown as its number)."
    names = df[df["label"] >= 0].drop_duplicates("label").set_index("label")["label_name"].astype(str)
    return [names.get(i, str(i)) for i in range(int(df["label"].max()) + 1)]


def _split(df: pd.DataFrame, split: str) -> pd.DataFrame:
    part = df[df["split"] == split]
    if part.empty: raise ValueError(f"no usable rows with split {split!r} (splits present: {sorted(df['split'].unique())})")
    return part


def video_dataloaders(manifest, n_frames: int = 8, audio: bool = False, img_size: int = 224, resize: int = 256,
                      batch_size: int = 8, num_workers: int = 0, flip: bool = True, n_mels: int = 224,
                      sample_rate: int = DEFAULT_SR, mean=IMAGENET_MEAN, std=IMAGENET_STD, cache_dir=None,
                      seed: int = 0, device=None, train_split: str = "train", valid_split: str = "valid",
                      scales=(1, .875, .75, .66), grayscale_p: float = 0.0) -> TSAMDataLoaders:
    "Train (random segments, multi-scale crop, flip) and valid (centre frames, centre crop) loaders."
    df = read_table(manifest)
    vocab = manifest_vocab(df)
    c = len(vocab)
    bad = df[df["problem"].str.len() > 0]
    if len(bad):
        shown = "; ".join(f"{p} ({q})" for p, q in zip(bad["path"][:5], bad["problem"][:5]))
        warnings.warn(f"excluded {len(bad)} of {len(df)} rows with problems: {shown}{' ...' if len(bad) > 5 else ''}")
    good = df[df["problem"].str.len() == 0]
    tr, va = _split(good, train_split), _split(good, valid_split)
    if audio:
        used = pd.concat([tr, va])
        silent = int((~used["has_audio"].astype(bool)).sum())
        if silent: warnings.warn(f"{silent} of {len(used)} videos have no audio track: their audio frame is silent")
    log = SkipLog()
    af = _audio_frame(audio, img_size, n_mels, sample_rate, cache_dir)
    mk = lambda train: ClipTransform(img_size, resize, train=train, flip=flip, scales=tuple(scales),
                                     grayscale_p=grayscale_p if train else 0.0, mean=tuple(mean), std=tuple(std))
    train_ds = VideoDataset(tr, n_frames, "train", mk(True), af, seed, log)
    valid_ds = VideoDataset(va, n_frames, "valid", mk(False), af, seed, log)
    dls = []
    for ds, shuffle in ((train_ds, True), (valid_ds, False)):
        dl = TSAMDataLoader(ds, bs=batch_size, shuffle=shuffle, drop_last=shuffle and len(ds) >= batch_size,
                            num_workers=num_workers)
        dl.rng = random.Random(seed)
        dls.append(dl)
    res = TSAMDataLoaders(*dls, device=device)
    res.vocab, res.c = vocab, c
    return res


def clip_views_dataset(manifest, split: str = "test", n_clips: int = 1, n_crops: int = 1, n_frames: int = 8,
                       audio: bool = False, img_size: int = 224, resize: int = 256, n_mels: int = 224,
                       sample_rate: int = DEFAULT_SR, mean=IMAGENET_MEAN, std=IMAGENET_STD, cache_dir=None,
                       replace_bad: bool = False) -> VideoDataset:
    """Every (clip, crop) view of every video of `split`: item `v` is view `ds.views[v] = (row, clip, crop)`.

    Average the softmax over the views of a row for the multi-view score. Bad files raise by default
    (a replaced view would be scored as the wrong video)."""
    df = read_table(manifest)
    part = _split(df[df["problem"].str.len() == 0], split)
    views = [(r, c, k) for r in range(len(part)) for c in range(n_clips) for k in range(n_crops)]
    tfm = ClipTransform(img_size, resize, train=False, n_crops=n_crops, mean=tuple(mean), std=tuple(std))
    return VideoDataset(part, n_frames, "test", tfm, _audio_frame(audio, img_size, n_mels, sample_rate, cache_dir),
                        views=views, n_clips=n_clips, replace_bad=replace_bad)


def video_views(path, n_frames: int, n_clips: int, n_crops: int, tfm: ClipTransform,
                audio: AudioFrame | None = None) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """All ``n_clips x n_crops`` test views of one video, clip-major: each clip is decoded once and its crops
    are cut from it; the audio frame is computed once and repeated. Returns video ``(V, T, 3, S, S)``, audio
    ``(V, 1, 3, S, S)`` or None, and whether the file has sound."""
    rng = np.random.default_rng(0)  # test sampling and test transforms draw nothing from it
    views = []
    for clip in range(n_clips):
        frames, _ = load_clip(path, n_frames, "test", rng, clip_index=clip, n_clips=n_clips)
        views += [tfm(frames, rng, crop_index=crop) for crop in range(n_crops)]
    video = torch.stack(views)
    if audio is None:
        return video, None, True
    spec, has_audio = audio(path, train=False)
    return video, spec[None, None].expand(len(views), -1, -1, -1, -1).contiguous(), has_audio


def views_dataloader(ds: VideoDataset, batch_size: int = 8, num_workers: int = 0, device=None) -> TSAMDataLoader:
    "Ordered (no shuffle, no drop) fastai DataLoader over a `clip_views_dataset`."
    return TSAMDataLoader(ds, bs=batch_size, shuffle=False, drop_last=False, num_workers=num_workers, device=device)
