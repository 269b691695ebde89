"""Datasets and fastai DataLoaders for TSAM: clips of T frames, optionally one audio frame.

``video_dataloaders(manifest, DataSpec(...))`` gives a `TSAMDataLoaders` whose batches are
``(video, label)`` with video float ``(B, T, 3, H, W)``, or ``(video, audio, label)`` with audio
``(B, 1, 3, H, W)``; ``n_inp`` is 1 or 2, so ``Learner(dls, model, loss_func=...)`` calls
``model(video)`` or ``model(video, audio)``.

Bad data is never lost silently:

- manifest rows with a non-empty ``problem`` are excluded and reported when the loaders are made
  (as are rows with ``has_audio == False``: their audio frame is silent, or, in audio runs with
  ``missing_audio="drop"`` (the authors' choice), they are excluded too);
  and listed on the loaders: ``dls.excluded`` (split -> {path: problem});
- with ``missing_audio="drop"``, a video whose sound turns out missing at load time counts as a file that
  failed to load (below);
- a TRAINING sample that fails to load at run time is replaced by the next loadable one (index + 1, ...);
- a VALIDATION sample that fails to load is left out of its batch (never replaced: metrics are averaged
  over the clips that loaded, no clip counts twice);
- either way it is reported once per path (a warning in the main process, also with workers) and counted
  in a small log folder per split shared by all workers: ``dls.skipped(split)`` (path -> reason),
  ``dls.n_skipped(split)`` (failed attempts), ``dls.skip_report()`` (everything, per split). If every
  sample of a split fails, a `RuntimeError` says so.

Log folders (:mod:`tsamlib.data.skiplog`) are ``<tmp>/tsam-skips-<pid>-*``, removed by their process; those of
killed processes are removed when the next `SkipLog` is made.

Randomness of a sample depends only on ``(seed, epoch, index)``, so batches are the same for any
``num_workers``; shuffling uses ``random.Random(seed)``.
"""
from __future__ import annotations

import random
import sys
import warnings
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader, SkipItemException
from fastai.torch_core import default_device, to_device

from ..config import DATA_SWITCHES

from .audio import DEFAULT_SR, AudioFrame
from .manifest import NO_AUDIO_DROPPED, manifest_vocab, read_table, usable_rows
from .manifest import split_rows as _split
from .workers import single_thread
from .skiplog import SkipLog
from .transforms import AUTHORS_GRAYSCALE_P, ClipTransform, denormalize, norm_stats
from .decode import resolve_backend
from .shards import ShardDataset, is_shard_index
from .video import load_clip, load_views

__all__ = ["limit_threads", "SampleDropped", "NoAudioError", "VideoDataset", "TSAMDataLoader", "TSAMDataLoaders",
           "DataSpec", "ShardLoader", "SHUFFLE_BUFFER", "video_dataloaders", "clip_views_dataset", "video_views",
           "views_dataloader", "show_clip_batch"]


class SampleDropped(SkipItemException):
    """A sample that failed to load in a split that never substitutes (fastai's DataLoader leaves it out)."""


class NoAudioError(RuntimeError):
    """A video without sound in an audio run with ``missing_audio="drop"``: handled as a file that fails to load."""


ON_BAD = ("replace", "drop", "raise")


class VideoDataset(torch.utils.data.Dataset):
    """Items `(video, [audio,] label)` for manifest rows, in `mode` train/valid/test (one item per view).

    A sample that fails to load (``on_bad``): ``"replace"`` by the next loadable one (training), ``"drop"``
    (raise `SampleDropped`, which a fastai DataLoader leaves out of the batch: validation), or ``"raise"``.
    Each failure is recorded in the dataset's ``log`` (a :class:`~tsamlib.data.skiplog.SkipLog` shared by its
    workers)."""
    def __init__(self, df: pd.DataFrame, n_frames: int, mode: str, transform: ClipTransform,
                 audio: AudioFrame | None = None, seed: int = 0,
                 views: list[tuple[int, int, int]] | None = None, on_bad: str = "replace",
                 split: str | None = None, drop_silent: bool = False, backend: str = "auto"):
        self.df, self.n_frames, self.mode = df.reset_index(drop=True), n_frames, mode
        self.backend = resolve_backend(backend)   # here, once: not in each worker process
        self.tfm, self.audio = transform, audio
        self.on_bad = on_bad
        if self.on_bad not in ON_BAD:
            raise ValueError(f"on_bad={on_bad!r}: use one of {ON_BAD}")
        self.seed, self.epoch = seed, 0
        self.split = split if split is not None else mode
        self.log = SkipLog() if self.on_bad != "drop" else SkipLog(
            action=f"left out of split {self.split!r}, not replaced", hint=f"dls.skipped({self.split!r})")
        self.views = views if views is not None else [(i, 0, 1) for i in range(len(self.df))]
        self.n_clips = max((c for _, c, _ in self.views), default=0) + 1 if views is not None else 1   # clips a video
        self.paths, self.labels = self.df["path"].tolist(), self.df["label"].astype(int).tolist()
        self.n_inp, self.drop_silent = 2 if audio is not None else 1, drop_silent

    def __len__(self) -> int:
        return len(self.views)

    def load(self, i: int, rng: np.random.Generator) -> tuple:
        """Load view `i` (raises on a bad file)."""
        row, clip, crop = self.views[i]
        path = self.paths[row]
        if self.audio is not None:
            self.audio.prefetch(path)         # a prepared clip's log-mels come from the disk while frames decode
        frames, _ = load_clip(path, self.n_frames, self.mode, rng, clip_index=clip, n_clips=self.n_clips,
                              backend=self.backend)
        video = self.tfm(frames, rng, crop_index=crop)
        label = torch.tensor(self.labels[row], dtype=torch.long)
        if self.audio is None:
            return video, label
        spec, has_audio = self.audio(path, train=self.mode == "train", rng=rng)
        if self.drop_silent and not has_audio:
            raise NoAudioError(f"{path}: {NO_AUDIO_DROPPED}")
        return video, spec[None], label

    def __getitem__(self, i: int) -> tuple:
        rng = np.random.default_rng([self.seed, self.epoch, int(i)])
        if self.on_bad == "raise":
            return self.load(i, rng)
        if self.on_bad == "drop":
            path = self.paths[self.views[i][0]]
            bad = self.log.bad()
            if path in bad:
                self.log.record(path, bad[path])
            else:
                try:
                    return self.load(i, rng)
                except Exception as e:
                    self.log.record(path, f"{type(e).__name__}: {str(e).replace(path + ': ', '')}")
            raise SampleDropped(f"{path}: {self.log.bad()[path]} (left out of split {self.split!r})")
        bad = self.log.bad()
        for k in range(len(self)):
            j = (i + k) % len(self)
            path = self.paths[self.views[j][0]]
            if path in bad:
                self.log.record(path, bad[path])
                continue
            try:
                return self.load(j, rng)
            except Exception as e:
                self.log.record(path, f"{type(e).__name__}: {str(e).replace(path + ': ', '')}")
        raise RuntimeError(f"all {len(self)} samples failed to load; first failures: "
                           f"{list(self.log.skipped().items())[:3]} (check the paths and files in the manifest)")


def limit_threads() -> None:
    """One thread per worker for numba (librosa), torch and the OpenMP/BLAS pools: numba's first if it is imported
    (else ``NUMBA_NUM_THREADS=1`` covers a later import), then :func:`tsamlib.data.workers.single_thread` and the pools
    already loaded (threadpoolctl).

    numba goes first: starting its threading layer sets the OpenMP thread count to ``NUMBA_NUM_THREADS``, and its
    ``omp`` layer binds to torch's libgomp. Set after torch's, it gave torch 2+ threads again, and a forked worker's
    first large torch op waited forever for the parent's OpenMP threads (OMP_NUM_THREADS unset)."""
    numba = sys.modules.get("numba")
    if numba is not None:
        try:
            numba.set_num_threads(1)
        except Exception:
            pass
    single_thread()   # thread variables, and torch.set_num_threads(1) (torch is imported here)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    except Exception:
        pass


class TSAMDataLoader(DataLoader):
    """fastai DataLoader: new randomness each epoch, skipped samples reported from the main process; a dataset
    with ``on_bad="drop"`` gives smaller batches (never empty ones) and an error if no sample loads at all."""
    def before_iter(self):
        super().before_iter()
        self.dataset.epoch += 1
        self.n_items = 0   # samples delivered by this pass

    def wif(self):
        limit_threads()

    def _drops(self) -> bool:
        return getattr(self.dataset, "on_bad", None) == "drop"

    def create_batches(self, samps):
        """Dropping datasets: each chunk of `bs` indices gives one (smaller) batch, never merged with the next one."""
        if not self._drops():
            yield from super().create_batches(samps)
            return
        for chunk in self.chunkify(samps):
            items = [o for o in map(self.do_item, chunk) if o is not None]
            yield self.do_batch(items) if items else ()   # () keeps the order of the workers' batches; not shown

    def __iter__(self):
        for b in super().__iter__():
            if not (isinstance(b, tuple) and len(b) == 0):
                yield b

    def after_batch(self, b):
        self.dataset.log.report_new()
        if len(b):
            self.n_items = getattr(self, "n_items", 0) + len(b[-1])
        return b

    def after_iter(self):
        super().after_iter()
        ds = self.dataset
        if getattr(ds, "on_bad", None) != "drop":
            return
        idxs = getattr(self, "_DataLoader__idxs", None)   # the pass's indices (fastai keeps them as `__idxs`)
        bad = ds.log.skipped()
        if bad and isinstance(idxs, list):
            # fastai's `get_preds(reorder=True)` sorts its results by this very list once the pass is over:
            # leave out the samples that were dropped so that it reorders the clips that really came
            idxs[:] = [i for i in idxs if ds.paths[ds.views[i][0]] not in bad]
        if len(ds) and not getattr(self, "n_items", 0):
            ds.log.report_new()
            raise RuntimeError(f"all {len(ds)} samples of split {ds.split!r} failed to load; first failures: "
                               f"{list(ds.log.skipped().items())[:3]} (check the paths and files in the manifest)")

    @property
    def n_inp(self) -> int:
        return self.dataset.n_inp


def _collate(items: list[tuple]) -> tuple:
    return tuple(torch.utils.data.default_collate(items))   # fastai's batches are tuples


def _shard_worker(_: int) -> None:
    limit_threads()


class ShardLoader(TSAMDataLoader):
    """A TSAMDataLoader over a :class:`~tsamlib.data.shards.ShardDataset`: a torch DataLoader's workers each read
    their own shards, item by item, and the batches are made here (fastai's own worker split hands each worker
    indices, which a stream has not; batched in the workers, each one's last partial batch would be dropped), so
    only the epoch's last partial batch is dropped, as with the folders. A pass reports the samples left out."""
    def __iter__(self):
        self.randomize()
        self.before_iter()
        workers = self.fake_l.num_workers     # 0 inside fastai's `no_multiproc` (one_batch, show_batch)
        items = torch.utils.data.DataLoader(self.dataset, batch_size=None, num_workers=workers,
                                            prefetch_factor=max(2, self.bs) if workers else None,
                                            worker_init_fn=_shard_worker if workers else None)
        batch: list = []
        for item in items:
            batch.append(item)
            if len(batch) == self.bs:
                yield self._out(batch)
                batch = []
        if batch and not self.drop_last:
            yield self._out(batch)
        self.after_iter()

    def _out(self, items: list) -> tuple:
        b = _collate(items)
        return self.after_batch(to_device(b, self.device) if self.device is not None else b)

    def after_iter(self):
        ds = self.dataset
        ds.log.report_new()
        if len(ds) and not self.n_items:
            raise RuntimeError(f"all {len(ds)} samples of split {ds.split!r} of {ds.index} failed to load; first "
                               f"failures: {list(ds.log.skipped().items())[:3]}")


_ROLES = ("train", "valid")


class TSAMDataLoaders(DataLoaders):
    """fastai DataLoaders with `vocab`, `c`, `n_inp`, skip reports and a clip `show_batch`.

    ``excluded``: manifest rows left out when the loaders were made, ``{split: {path: problem}}``."""
    excluded: dict[str, dict[str, str]] = {}

    @property
    def n_inp(self) -> int:
        return self.train.dataset.n_inp

    def _logs(self, split: str | None = None) -> list[SkipLog]:
        """The skip logs of the loaders of `split` (``"train"``/``"valid"`` or a manifest split name; None: all)."""
        dls = [dl for k, dl in enumerate(self.loaders) if split is None or split == getattr(dl.dataset, "split", None)
               or (k < len(_ROLES) and split == _ROLES[k])]
        if split is not None and not dls:
            raise ValueError(f"no loader for split {split!r} (use 'train', 'valid' or "
                             f"{[getattr(dl.dataset, 'split', None) for dl in self.loaders]})")
        return list({id(dl.dataset.log): dl.dataset.log for dl in dls}.values())

    def skipped(self, split: str | None = None) -> dict[str, str]:
        """Path -> reason for every sample that failed to load so far (of `split`, else all; all workers)."""
        return {p: r for log in self._logs(split) for p, r in log.skipped().items()}

    def n_skipped(self, split: str | None = None) -> int:
        """Failed load attempts so far (of `split`, else all), all workers (a bad file met 3 times counts 3)."""
        return sum(log.n_events() for log in self._logs(split))

    def skip_report(self) -> dict[str, dict]:
        """Per loader (``"train"``, ``"valid"``): manifest ``split``, ``policy`` (``replace``: swapped for another
        sample, ``drop``: left out), ``samples`` (distinct files that failed), ``events`` (failed attempts),
        ``clips`` (samples in the split) and ``paths`` (path -> reason)."""
        out = {}
        for k, dl in enumerate(self.loaders):
            ds = dl.dataset
            paths = ds.log.skipped()
            out[_ROLES[k] if k < len(_ROLES) else f"loader{k}"] = dict(
                split=getattr(ds, "split", None), policy=getattr(ds, "on_bad", "replace"), samples=len(paths),
                events=ds.log.n_events(), clips=len(ds), paths=paths)
        return out

    @property
    def n_excluded(self) -> dict[str, int]:
        """Manifest rows excluded per split."""
        return {s: len(v) for s, v in self.excluded.items()}

    def show_batch(self, b=None, max_n: int = 4, figsize=None):
        """Frames of each clip in a row (denormalised), then its 3 mel channels; returns the figure."""
        if b is None:
            b = self.train.one_batch()
        return show_clip_batch(b, self.vocab, self.train.dataset.tfm, max_n, figsize,
                               hops=self.train.dataset.audio.hops_ms if self.n_inp == 2 else None,
                               windows=self.train.dataset.audio.windows_ms if self.n_inp == 2 else None)


def show_clip_batch(b, vocab, tfm: ClipTransform, max_n: int = 4, figsize=None, windows=None, hops=None):
    """Matplotlib figure of a batch: one row per sample, T frames then the mel channels."""
    import matplotlib.pyplot as plt
    video, label = b[0].cpu(), b[-1].cpu()
    audio = b[1].cpu() if len(b) == 3 else None
    n, t = min(max_n, len(video)), video.shape[1]
    cols = t + (3 if audio is not None else 0)
    fig, axes = plt.subplots(n, cols, figsize=figsize or (1.4 * cols, 1.6 * n), squeeze=False)
    for r in range(n):
        frames = denormalize(video[r], tfm.mean, tfm.std)
        for c in range(t):
            ax = axes[r, c]
            ax.imshow(frames[c].permute(1, 2, 0).numpy())
            ax.axis("off")
        axes[r, 0].set_title(str(vocab[int(label[r])]), fontsize=8, loc="left")
        if audio is not None:
            for k in range(3):
                ax = axes[r, t + k]
                ax.imshow(audio[r, 0, k].numpy(), origin="lower", aspect="auto", cmap="magma")
                ax.axis("off")
                ax.set_title(f"{windows[k]}/{hops[k]} ms", fontsize=8)
    fig.tight_layout()
    return fig


@dataclass(frozen=True)
class DataSpec:
    """How a run's clips are made, one frozen group of settings: frames, sizes, the audio frame, input values, the
    training augmentation and the data switches (:data:`tsamlib.config.DATA_SWITCHES`). ``DataSpec.of(cfg)``
    reads a :class:`~tsamlib.config.RunConfig` once, switches resolved."""

    n_frames: int = 8
    audio: bool = False
    img_size: int = 224
    resize: int = 256
    flip: bool = True
    n_mels: int = 224
    sample_rate: int = DEFAULT_SR
    mean: tuple | None = None   # None: those of video_norm
    std: tuple | None = None
    scales: tuple = (1, .875, .75, .66)
    grayscale_p: float = 0.0
    video_norm: str = "imagenet"
    audio_frontend: str = "tsamlib"
    missing_audio: str = "silent"
    color_aug: bool = False      # ColorJitter and RandomGrayscale(0.2) in training, replacing grayscale_p
    valid_view: str = "center_crop"
    video_backend: str = "auto"   # what decodes video files (tsamlib.data.decode.resolve_backend)

    @classmethod
    def of(cls, cfg) -> "DataSpec":
        sw = cfg.switches()
        return cls(n_frames=cfg.n_frames, audio=cfg.audio, img_size=cfg.img_size, resize=cfg.resize, flip=cfg.flip,
                   n_mels=cfg.n_mels, video_backend=cfg.video_backend, **{k: sw[k] for k in DATA_SWITCHES})

    def mean_std(self) -> tuple[tuple, tuple]:
        """``mean`` / ``std`` when given, else those of ``video_norm`` (:func:`~tsamlib.data.transforms.norm_stats`)."""
        m0, s0 = norm_stats(self.video_norm)
        return tuple(m0 if self.mean is None else self.mean), tuple(s0 if self.std is None else self.std)

    def transform(self, train: bool) -> ClipTransform:
        mean, std = self.mean_std()
        gray = AUTHORS_GRAYSCALE_P if self.color_aug else self.grayscale_p
        return ClipTransform(self.img_size, self.resize, train=train, flip=self.flip, scales=tuple(self.scales),
                             grayscale_p=gray if train else 0.0, mean=mean, std=std,
                             color_jitter=self.color_aug and train, valid_view=self.valid_view)

    def audio_frame(self, cache_dir=None) -> AudioFrame | None:
        if not self.audio:
            return None
        return AudioFrame(size=(self.img_size, self.img_size), n_mels=self.n_mels, sr=self.sample_rate,
                          cache_dir=cache_dir, frontend=self.audio_frontend)


def _warn_excluded(df: pd.DataFrame, excluded: dict, used: pd.DataFrame, spec: DataSpec) -> None:
    """Rows with problems left out, and silent audio frames, said once when the loaders are made."""
    bad = [(p, q) for part in excluded.values() for p, q in part.items()]
    if bad:
        shown = "; ".join(f"{p} ({q})" for p, q in bad[:5])
        warnings.warn(f"excluded {len(bad)} of {len(df)} rows with problems: {shown}{' ...' if len(bad) > 5 else ''}")
    if spec.audio and spec.missing_audio == "silent":
        silent = int((~used["has_audio"].astype(bool)).sum())
        if silent:
            warnings.warn(f"{silent} of {len(used)} videos have no audio track: their audio frame is silent")


def video_dataloaders(manifest, spec: DataSpec | None = None, *, batch_size: int = 8, num_workers: int = 0,
                      seed: int = 0, device=None, cache_dir=None, train_split: str = "train",
                      valid_split: str = "valid", **settings) -> TSAMDataLoaders:
    """Train (random segments, multi-scale crop, flip) and valid (centre frames, centre crop) loaders of the clips
    ``spec`` describes (or a :class:`DataSpec` of ``settings``: ``video_dataloaders(m, n_frames=8, audio=True)``).
    ``batch_size`` clips a step, ``seed`` for the shuffle and the per-clip randomness, ``cache_dir`` for log-mels."""
    spec = replace(spec, **settings) if spec is not None else DataSpec(**settings)
    if is_shard_index(manifest):
        return _shard_dataloaders(manifest, spec, batch_size, num_workers, seed, device, cache_dir, train_split,
                                  valid_split)
    df = read_table(manifest)
    vocab = manifest_vocab(df)
    good, excluded = usable_rows(df, spec.audio, spec.missing_audio)
    tr, va = _split(good, train_split), _split(good, valid_split)
    _warn_excluded(df, excluded, pd.concat([tr, va]), spec)
    af = spec.audio_frame(cache_dir)
    drop = spec.audio and spec.missing_audio == "drop"
    train_ds = VideoDataset(tr, spec.n_frames, "train", spec.transform(True), af, seed, on_bad="replace",
                            split=train_split, drop_silent=drop, backend=spec.video_backend)
    valid_ds = VideoDataset(va, spec.n_frames, "valid", spec.transform(False), af, seed, on_bad="drop",
                            split=valid_split, drop_silent=drop, backend=spec.video_backend)
    return _loaders(TSAMDataLoader, train_ds, valid_ds, batch_size, num_workers, seed, device, vocab, excluded)


def _loaders(kind: type, train_ds, valid_ds, batch_size: int, num_workers: int, seed: int, device, vocab: list,
             excluded: dict) -> TSAMDataLoaders:
    """The train (shuffled, whole batches) and valid loaders of ``kind`` over the datasets, as one TSAMDataLoaders."""
    dls = []
    for ds, train in ((train_ds, True), (valid_ds, False)):
        shuffle = train and kind is TSAMDataLoader   # a shard loader shuffles in its dataset's buffer instead
        dl = kind(ds, bs=batch_size, shuffle=shuffle, drop_last=train and len(ds) >= batch_size,
                  num_workers=num_workers)
        dl.rng = random.Random(seed)
        dls.append(dl)
    # fastai's DataLoader keeps batches where they are made unless told a device, and its Learner then leaves the
    # model where it is: without this a GPU machine would train on the CPU
    res = TSAMDataLoaders(*dls, device=default_device() if device is None else device)
    res.vocab, res.c, res.excluded = vocab, len(vocab), excluded
    return res


SHUFFLE_BUFFER = 1000   # training samples a shard loader shuffles among (webdataset's usual size; ~0.1-1 GB of JPEGs)


def _shard_dataloaders(index, spec: DataSpec, batch_size: int, num_workers: int, seed: int, device, cache_dir,
                       train_split: str, valid_split: str) -> TSAMDataLoaders:
    """:func:`video_dataloaders` of a shard dataset's index: the same items from a stream of its shards."""
    if spec.audio and cache_dir is not None:
        cache_dir = None   # a shard's log-mels are in the shard: there is nothing to cache
    af = spec.audio_frame(cache_dir)
    drop = spec.audio and spec.missing_audio == "drop"
    train_ds = ShardDataset(index, train_split, spec.n_frames, "train", spec.transform(True), af, seed,
                            shuffle=SHUFFLE_BUFFER, on_bad="replace", drop_silent=drop)
    valid_ds = ShardDataset(index, valid_split, spec.n_frames, "valid", spec.transform(False), af, seed,
                            on_bad="drop", drop_silent=drop)
    info = train_ds.info
    if info.get("skipped"):
        warnings.warn(f"{index}: {info['skipped']} clips of the prepared manifest were not packed (the problems "
                      "prepare reported)")
    silent = sum(info["no_audio"].get(s, 0) for s in (train_split, valid_split))
    if spec.audio and silent:
        n = sum(info["splits"].get(s, 0) for s in (train_split, valid_split))
        warnings.warn(f"{silent} of {n} videos have no audio track: their audio frame is "
                      f"{'silent' if spec.missing_audio == 'silent' else 'missing: they are left out'}")
    names = dict((int(a), str(b)) for a, b in info["classes"])
    vocab = [names.get(i, str(i)) for i in range(max(names) + 1)]
    return _loaders(ShardLoader, train_ds, valid_ds, batch_size, num_workers, seed, device, vocab, {})


def clip_views_dataset(manifest, split: str = "test", n_clips: int = 1, n_frames: int = 8,
                       tfm: ClipTransform | None = None, audio_frame: AudioFrame | None = None,
                       missing_audio: str = "silent", on_bad: str = "raise", backend: str = "auto") -> VideoDataset:
    """Every (clip, crop) view of every video of `split`: item `v` is view `ds.views[v] = (row, clip, crop)`, the
    crops those of ``tfm`` (a test :class:`~tsamlib.data.transforms.ClipTransform` with its ``n_crops``; default:
    the centre crop, 224 of a 256 short side, ImageNet values), with ``audio_frame``'s image when one is given
    (``missing_audio`` as in :func:`video_dataloaders`).

    Average the softmax over the views of a row for the multi-view score. Bad files raise by default
    (``on_bad``: a replaced view would be scored as the wrong video)."""
    tfm = ClipTransform(train=False) if tfm is None else tfm
    audio = audio_frame is not None
    part = _split(usable_rows(read_table(manifest), audio, missing_audio)[0], split)
    views = [(r, c, k) for r in range(len(part)) for c in range(n_clips) for k in range(tfm.n_crops)]
    return VideoDataset(part, n_frames, "test", tfm, audio_frame, views=views, on_bad=on_bad,
                        split=split, drop_silent=audio and missing_audio == "drop", backend=backend)


def video_views(path, n_frames: int, n_clips: int, n_crops: int, tfm: ClipTransform,
                audio: AudioFrame | None = None, drop_silent: bool = False, sampling: str = "segments",
                backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """All ``n_clips x n_crops`` test views of one video, clip-major: the clips (placed as ``sampling`` says,
    :func:`~tsamlib.data.video.view_indices`) are decoded in one read and their crops cut from them; the audio
    frame is computed once and repeated. Returns video ``(V, T, 3, S, S)``, audio ``(V, 1, 3, S, S)`` or None, and
    whether the file has sound (``drop_silent``: no sound raises :class:`NoAudioError`)."""
    rng = np.random.default_rng(0)  # test sampling and test transforms draw nothing from it
    clips, _ = load_views(path, n_frames, n_clips, sampling, backend=backend)
    views = [tfm(frames, rng, crop_index=crop) for frames in clips for crop in range(n_crops)]
    video = torch.stack(views)
    if audio is None:
        return video, None, True
    spec, has_audio = audio(path, train=False)
    if drop_silent and not has_audio:
        raise NoAudioError(f"{path}: {NO_AUDIO_DROPPED}")
    return video, spec[None, None].expand(len(views), -1, -1, -1, -1).contiguous(), has_audio


def views_dataloader(ds: VideoDataset, batch_size: int = 8, num_workers: int = 0, device=None) -> TSAMDataLoader:
    """Ordered (no shuffle, no drop) fastai DataLoader over a `clip_views_dataset`, on ``device`` (default: the GPU
    when there is one, as fastai's ``default_device``)."""
    return TSAMDataLoader(ds, bs=batch_size, shuffle=False, drop_last=False, num_workers=num_workers,
                          device=default_device() if device is None else device)
