"""WebDataset tar shards of prepared clips, for network file systems and object stores.

    write_shards(prepared_manifest, out, shard_bytes=256e6)   # out/shard-000000.tar ... + out/index.json
    for sample in read_shards("out/index.json"): ...          # dict(key, frames, mels, label, source, meta)

A sample holds exactly what ``prepare`` stored for the clip (its JPEG frames, its log-mels, ``prepare.json``, the
``.wav`` when it has audio), its label and its source path: the shards are packed from a prepared folder, so the
decoding is prepare's own and its skip counts are the ones reported. The index (``index.json``) lists the shards with
their samples and bytes, the classes and the preparation settings, so a reader knows the epoch size before reading.
"""
from __future__ import annotations

import json
import os
from pathlib import Path


__all__ = ["INDEX_NAME", "write_shards", "read_index", "read_shards"]

INDEX_NAME = "index.json"
_PATTERN = "shard-%06d.tar"


def _sample(row, key: str) -> dict:
    """One clip folder (and its ``.wav``) as a webdataset sample: every stored file under its own name."""
    folder = Path(row.path)
    source = json.loads((folder / "prepare.json").read_text())["source"]   # the input video prepare read
    sample = {"__key__": key, "cls": str(int(row.label)).encode(), "source.txt": source.encode()}
    for f in sorted(folder.iterdir()):
        sample[f.name] = f.read_bytes()     # frames 00001.jpg, log-mels, prepare.json: the bytes prepare wrote
    wav = folder.with_suffix(".wav")
    if wav.is_file():
        sample["audio.wav"] = wav.read_bytes()
    return sample


def write_shards(prepared_manifest: str | os.PathLike, out: str | os.PathLike, shard_bytes: float = 256e6) -> Path:
    """Pack the usable clips of a prepared manifest into ``out/shard-NNNNNN.tar`` (a new shard after about
    ``shard_bytes``); write ``out/index.json``; return its path."""
    import webdataset as wds

    from .manifest import read_manifest
    table = read_manifest(prepared_manifest)
    usable = table[table["problem"] == ""].reset_index(drop=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    counts: list[int] = []
    with wds.ShardWriter(str(out / _PATTERN), maxsize=int(shard_bytes), maxcount=10**9, verbose=0) as sink:
        for i, row in enumerate(usable.itertuples(index=False)):
            sink.write(_sample(row, f"clip{i:08d}"))
            while len(counts) < sink.shard:
                counts.append(0)
            counts[sink.shard - 1] += 1
    shards = [dict(name=_PATTERN % k, samples=n, bytes=(out / (_PATTERN % k)).stat().st_size)
              for k, n in enumerate(counts) if n]
    first = json.loads((Path(usable["path"].iat[0]) / "prepare.json").read_text()) if len(usable) else {}
    index = dict(format="webdataset", samples=len(usable), shards=shards, skipped=int(len(table) - len(usable)),
                 classes=sorted({(int(a), str(b)) for a, b in zip(usable["label"], usable["label_name"])}),
                 params=first.get("params", {}), mels=first.get("mels", {}))
    (out / INDEX_NAME).write_text(json.dumps(index, indent=1))
    return out / INDEX_NAME


def read_index(index: str | os.PathLike) -> dict:
    """The index of a shard dataset (a local path or any fsspec URL); a clear error when it is missing."""
    import fsspec
    try:
        with fsspec.open(str(index), "r") as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{index}: no shard index there; write one with `python -m tsamlib prepare "
                                "MANIFEST --out DIR --format shards`") from None


def _decode(sample: dict) -> dict:
    frames = [sample[k] for k in sorted(k for k in sample if k.endswith(".jpg"))]
    mels = {k: v for k, v in sample.items() if k.endswith((".npy", ".npz"))}
    return dict(key=sample["__key__"], frames=frames, mels=mels, label=int(sample["cls"]),
                source=sample["source.txt"].decode(), meta=json.loads(sample["prepare.json"]))


def read_shards(index: str | os.PathLike, shuffle: int = 0, seed: int = 0):
    """Iterate the samples of a shard dataset: every rank reads its own shards and each DataLoader worker its share
    of them (webdataset's split_by_node / split_by_worker); ``shuffle`` > 0 a buffer of that many samples, seeded
    by ``seed`` (an epoch's seed: resuming an epoch means reading it again with the same seed)."""
    import webdataset as wds
    idx = read_index(index)
    base = str(index).rsplit("/", 1)[0] if "/" in str(index) else "."
    urls = [f"{base}/{s['name']}" for s in idx["shards"]]
    for u in urls:
        if "://" not in u and not Path(u).is_file():
            raise FileNotFoundError(f"{u}: a shard listed in {index} is missing; write the shards again")
    ds = wds.WebDataset(urls, shardshuffle=False, nodesplitter=wds.split_by_node, workersplitter=wds.split_by_worker,
                        handler=wds.reraise_exception, empty_check=False)
    if shuffle:
        ds = ds.shuffle(shuffle, rng=__import__("random").Random(seed))
    return ds.map(_decode)


