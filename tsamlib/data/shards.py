"""WebDataset tar shards of prepared clips, for network file systems and object stores.

    write_shards(prepared_manifest, out, shard_bytes=256e6)   # out/train-000000.tar ... valid-... + out/index.json
    for sample in read_shards("out/index.json", "train"): ...   # dict(key, frames, mels, label, source, meta)
    ShardDataset("out/index.json", "train", 8, "train", transform)   # training items, as VideoDataset's

A sample holds exactly what ``prepare`` stored for the clip (its JPEG frames, its log-mels, ``prepare.json``, the
``.wav`` when it has audio), its label, split and source path: the shards are packed from a prepared folder, so the
decoding is prepare's own and its skip counts are the ones reported. Each split has its own shards (every rank
reads its own share of a split's shards), and its samples are numbered in the manifest's order, ``clip00000000``
up: a sample's randomness depends on ``(seed, epoch, number)`` as a :class:`~tsamlib.data.loaders.VideoDataset`
item's does on ``(seed, epoch, row)``, so the same clips give the same views whichever layout they are read from.
The index (``index.json``) lists the shards with their split, samples and bytes, the classes and the preparation
settings, so a reader knows the epoch size before reading.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from .audio import AudioFrame, MelsMissingError
from .decode import AudioError, JpegBytes
from .manifest import NO_AUDIO_DROPPED
from .skiplog import SkipLog
from .transforms import ClipTransform
from .video import load_clip

__all__ = ["INDEX_NAME", "FORMAT_VERSION", "write_shards", "read_index", "is_shard_index", "split_shards",
           "read_shards", "ShardDataset"]

INDEX_NAME = "index.json"
FORMAT_VERSION = 2    # 2: one set of shards per split, samples numbered within their split
_PATTERN = "%s-%06d.tar"   # split, shard number
_SPLIT_ORDER = ("train", "valid", "test")


def _sample(row, key: str) -> dict:
    """One clip folder (and its ``.wav``) as a webdataset sample: every stored file under its own name."""
    folder = Path(row.path)
    source = json.loads((folder / "prepare.json").read_text())["source"]   # the input video prepare read
    sample = {"__key__": key, "cls": str(int(row.label)).encode(), "source.txt": source.encode(),
              "split.txt": str(row.split).encode()}
    for f in sorted(folder.iterdir()):
        sample[f.name] = f.read_bytes()     # frames 00001.jpg, log-mels, prepare.json: the bytes prepare wrote
    wav = folder.with_suffix(".wav")
    if wav.is_file():
        sample["audio.wav"] = wav.read_bytes()
    return sample


def write_shards(prepared_manifest: str | os.PathLike, out: str | os.PathLike, shard_bytes: float = 256e6) -> Path:
    """Pack the usable clips of a prepared manifest into ``out/SPLIT-NNNNNN.tar``, split by split (a new shard after
    about ``shard_bytes``); write ``out/index.json``; return its path."""
    import webdataset as wds

    from .manifest import read_manifest
    table = read_manifest(prepared_manifest)
    usable = table[table["problem"] == ""].reset_index(drop=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    present = list(dict.fromkeys(usable["split"].astype(str)))
    splits = [s for s in _SPLIT_ORDER if s in present] + [s for s in present if s not in _SPLIT_ORDER]
    shards: list[dict] = []
    per_split, no_audio = {}, {}
    for split in splits:
        rows = usable[usable["split"].astype(str) == split]
        per_split[split], no_audio[split] = len(rows), int((~rows["has_audio"].astype(bool)).sum())
        counts: list[int] = []
        with wds.ShardWriter(str(out / _PATTERN).replace("%s", split, 1), maxsize=int(shard_bytes),
                             maxcount=10**9, verbose=0) as sink:
            for i, row in enumerate(rows.itertuples(index=False)):   # numbered in the manifest's order
                sink.write(_sample(row, f"clip{i:08d}"))
                while len(counts) < sink.shard:
                    counts.append(0)
                counts[sink.shard - 1] += 1
        shards += [dict(name=_PATTERN % (split, k), split=split, samples=n,
                        bytes=(out / (_PATTERN % (split, k))).stat().st_size) for k, n in enumerate(counts) if n]
    first = json.loads((Path(usable["path"].iat[0]) / "prepare.json").read_text()) if len(usable) else {}
    index = dict(format="webdataset", version=FORMAT_VERSION, samples=len(usable), shards=shards,
                 splits=per_split, no_audio=no_audio,
                 skipped=int(len(table) - len(usable)),
                 classes=sorted({(int(a), str(b)) for a, b in zip(usable["label"], usable["label_name"])}),
                 params=first.get("params", {}), mels=first.get("mels", {}))
    (out / INDEX_NAME).write_text(json.dumps(index, indent=1))
    return out / INDEX_NAME


def read_index(index: str | os.PathLike) -> dict:
    """The index of a shard dataset (a local path or any fsspec URL), checked; a clear error when it is missing,
    not an index, or written by an older version (shards without splits)."""
    import fsspec
    try:
        with fsspec.open(str(index), "r") as f:
            got = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{index}: no shard index there; write one with `python -m tsamlib prepare "
                                "MANIFEST --out DIR --format shards`") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{index}: not a shard index (not JSON: {e})") from None
    if not isinstance(got, dict) or got.get("format") != "webdataset":
        raise ValueError(f"{index}: not a shard index (written by `prepare --format shards`)")
    if got.get("version") != FORMAT_VERSION:
        raise ValueError(f"{index}: shards of format version {got.get('version', 1)}, this version reads "
                         f"{FORMAT_VERSION} (one set per split); write them again with `python -m tsamlib prepare "
                         "MANIFEST --out DIR --format shards` (the prepared clips are reused)")
    return got


def is_shard_index(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a shard dataset's index (by its name: ``*.json``), rather than a manifest CSV."""
    return str(path).endswith(".json")


def split_shards(idx: dict, split: str, rank: int = 0, world: int = 1) -> list[dict]:
    """The shards of ``split`` that rank ``rank`` of ``world`` reads (every ``world``-th, as webdataset's
    ``split_by_node``); ValueError naming the splits present when ``split`` has none."""
    mine = [s for s in idx["shards"] if s["split"] == split]
    if not mine:
        raise ValueError(f"the shard dataset has no split {split!r} (splits present: {sorted(idx['splits'])})")
    return mine[rank::world]


def _decode(sample: dict) -> dict:
    frames = [sample[k] for k in sorted(k for k in sample if k.endswith(".jpg"))]
    mels = {k: v for k, v in sample.items() if k.endswith((".npy", ".npz"))}
    return dict(key=sample["__key__"], frames=frames, mels=mels, label=int(sample["cls"]),
                source=sample["source.txt"].decode(), split=sample["split.txt"].decode(),
                meta=json.loads(sample["prepare.json"]))


def read_shards(index: str | os.PathLike, split: str | None = None, shuffle: int = 0, seed: int = 0):
    """Iterate the samples of a shard dataset (of ``split``, else all): every rank reads its own shards and each
    DataLoader worker its share of them (webdataset's split_by_node / split_by_worker); ``shuffle`` > 0 a buffer
    of that many samples, seeded by ``seed`` (an epoch's seed: resuming an epoch means reading it again with the
    same seed)."""
    import random

    import webdataset as wds
    idx = read_index(index)
    base = str(index).rsplit("/", 1)[0] if "/" in str(index) else "."
    names = [s["name"] for s in (idx["shards"] if split is None else split_shards(idx, split))]
    urls = [f"{base}/{n}" for n in names]
    for u in urls:
        if "://" not in u and not Path(u).is_file():
            raise FileNotFoundError(f"{u}: a shard listed in {index} is missing; write the shards again")
    ds = wds.WebDataset(urls, shardshuffle=False, nodesplitter=wds.split_by_node, workersplitter=wds.split_by_worker,
                        handler=wds.reraise_exception, empty_check=False)
    if shuffle:
        ds = ds.shuffle(shuffle, rng=random.Random(seed))
    return ds.map(_decode)


def _rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class ShardDataset(torch.utils.data.IterableDataset):
    """Items ``(video, [audio,] label)`` of a split of a shard dataset, read in a stream: what a
    :class:`~tsamlib.data.loaders.VideoDataset` gives for the same prepared clips, view for view (the same
    sampling, transform and audio frame, the same randomness per clip), in the shards' order or through a
    shuffle buffer of ``shuffle`` samples (training), seeded per epoch.

    A sample that fails to load is left out of its epoch (a stream cannot swap in another one), recorded in
    ``log`` and reported as the folder loaders' skips are. Clips prepared without the run's log-mels raise
    :class:`~tsamlib.data.audio.MelsMissingError` (the run's settings, not a bad clip). ``len`` is the samples
    this rank reads in an epoch."""
    def __init__(self, index: str | os.PathLike, split: str, n_frames: int, mode: str, transform: ClipTransform,
                 audio: AudioFrame | None = None, seed: int = 0, shuffle: int = 0, on_bad: str = "replace",
                 drop_silent: bool = False):
        self.index, self.split, self.info = str(index), split, read_index(index)
        split_shards(self.info, split)     # a split that is not there is said now, not in a worker
        self.n_frames, self.mode, self.tfm, self.audio = n_frames, mode, transform, audio
        self.seed, self.epoch, self.shuffle = seed, 0, shuffle
        self.on_bad, self.drop_silent, self.n_inp = on_bad, drop_silent, 2 if audio is not None else 1
        left_out = f"left out of split {split!r} this epoch (a shard stream does not substitute)"
        self.log = SkipLog(action=left_out) if on_bad != "drop" else SkipLog(action=left_out,
                                                                             hint=f"dls.skipped({split!r})")

    def __len__(self) -> int:
        return sum(s["samples"] for s in split_shards(self.info, self.split, *_rank_world()))

    def load(self, s: dict, rng: np.random.Generator) -> tuple:
        """The item of sample ``s`` (raises on a bad one), drawing from ``rng`` as VideoDataset.load does."""
        where = s["source"]
        frames, _ = load_clip(JpegBytes(s["frames"], where), self.n_frames, self.mode, rng)
        video = self.tfm(frames, rng)
        label = torch.tensor(s["label"], dtype=torch.long)
        if self.audio is None:
            return video, label
        spec, has_audio = self.audio.image(*self.audio.stored_mels(s["mels"], where), train=self.mode == "train",
                                           rng=rng)
        if self.drop_silent and not has_audio:
            raise AudioError(f"{where}: {NO_AUDIO_DROPPED}")
        return video, spec[None], label

    def __iter__(self):
        for s in read_shards(self.index, self.split, self.shuffle, seed=hash((self.seed, self.epoch))):
            where = s["source"]
            known = self.log.bad().get(where)   # failed before (another epoch, another worker): not decoded again
            if known is not None:
                self.log.record(where, known)
                continue
            rng = np.random.default_rng([self.seed, self.epoch, int(s["key"][len("clip"):])])
            try:
                item = self.load(s, rng)
            except MelsMissingError:
                raise
            except Exception as e:
                self.log.record(where, f"{type(e).__name__}: {str(e).replace(where + ': ', '')}")
                continue
            yield item
