"""Shard datasets: packed from a prepared folder, read back byte for byte, split across workers, bad input named;
their items are the folder layout's, and a run on them trains and validates as one on the folders."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import make_video

from tsamlib.data.manifest import build_manifest, read_manifest
from tsamlib.data.prepare import prepare_dataset
from tsamlib.data.shards import read_shards, write_shards


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    recs = [dict(path=str(make_video(d / "v" / f"{i}.mp4", seed=i, audio=i % 2 == 0)), label=i % 2,
                 label_name=f"class {i % 2}", split="valid" if i >= 4 else "train") for i in range(6)]
    build_manifest(recs, d / "in.csv", workers=1, verbose=False)
    res = prepare_dataset(d / "in.csv", d / "folders", short_side=32, workers=1, verbose=False)
    index = write_shards(res.manifest, d / "shards", shard_bytes=20_000)   # small: several shards
    return res, index


def test_every_sample_equals_its_prepared_folder(packed):
    res, index = packed
    table = read_manifest(res.manifest)
    by_source = {str(Path(json.loads((Path(p) / "prepare.json").read_text())["source"]).resolve()): Path(p)
                 for p in table["path"]}
    idx = json.loads(index.read_text())
    assert len(idx["shards"]) > 1 and sum(s["samples"] for s in idx["shards"]) == idx["samples"] == 6
    assert idx["splits"] == {"train": 4, "valid": 2} and {s["split"] for s in idx["shards"]} == {"train", "valid"}
    got = list(read_shards(index))
    assert len(got) == 6 and [s["split"] for s in read_shards(index, "valid")] == ["valid", "valid"]
    for s in got:
        folder = by_source[str(Path(s["source"]).resolve())]
        rows = table[table["split"] == s["split"]].reset_index(drop=True)
        assert rows["path"].iat[int(s["key"][4:])] == str(folder)   # numbered in the manifest's order, per split
        assert s["frames"] == [f.read_bytes() for f in sorted(folder.glob("*.jpg"))]
        assert s["mels"] and all(s["mels"][k] == (folder / k).read_bytes() for k in s["mels"])
        assert s["label"] == int(table.loc[table["path"] == str(folder), "label"].iat[0])


def _keys_of(index, workers: int) -> list[str]:
    class It(torch.utils.data.IterableDataset):
        def __iter__(self):
            return (s["split"] + s["key"] for s in read_shards(index))
    return list(torch.utils.data.DataLoader(It(), num_workers=workers, batch_size=None))



def test_two_workers_read_every_clip_once(packed):
    _, index = packed
    keys = _keys_of(index, 2)
    assert sorted(keys) == sorted(_keys_of(index, 0)) and len(set(keys)) == 6


def test_shuffle_is_seeded(packed):
    _, index = packed
    a = [s["key"] for s in read_shards(index, shuffle=4, seed=1)]
    assert a == [s["key"] for s in read_shards(index, shuffle=4, seed=1)] and sorted(a) == sorted(
        s["key"] for s in read_shards(index))


def test_missing_shard_and_truncated_tar_are_named(packed, tmp_path):
    _, index = packed
    import shutil
    copy = tmp_path / "s"
    shutil.copytree(index.parent, copy)
    first = copy / json.loads(index.read_text())["shards"][0]["name"]
    first.write_bytes(first.read_bytes()[:3000])
    with pytest.raises(Exception, match="shard|tar|EOF|header|truncated"):
        list(read_shards(copy / "index.json"))
    first.unlink()
    with pytest.raises(FileNotFoundError, match="missing"):
        read_shards(copy / "index.json")
    with pytest.raises(FileNotFoundError, match="--format shards"):
        read_shards(tmp_path / "nothing.json")


def test_cli_prepare_format_shards(packed, tmp_path, capsys):
    from tsamlib.__main__ import main as cli
    res, _ = packed
    src = Path(res.manifest).parent.parent / "in.csv"
    assert cli(["prepare", str(src), "--out", str(tmp_path / "o"), "--format", "shards", "--shard-size", "1MB",
                "--short-side", "32", "--workers", "1"]) == 0
    idx = json.loads((tmp_path / "o" / "index.json").read_text())
    assert idx["samples"] == 6 and len(idx["shards"]) == 2 and idx["params"]["short_side"] == 32   # one a split
    with pytest.raises(SystemExit):
        cli(["prepare", str(src), "--out", str(tmp_path / "p"), "--format", "shards", "--shard-size", "lots"])
    assert "256MB" in capsys.readouterr().err


@pytest.mark.parametrize("audio", [True, False])
def test_shard_items_equal_the_folder_items(packed, audio):
    """A ShardDataset gives, clip for clip, the very tensors a VideoDataset gives for the prepared folders: the same
    frames, segment draws, crops, flips and audio crops from the same (seed, epoch, number)."""
    from tsamlib.config import RunConfig
    from tsamlib.data.loaders import DataSpec, VideoDataset
    from tsamlib.data.manifest import read_table, split_rows, usable_rows
    from tsamlib.data.shards import ShardDataset
    res, index = packed
    spec = DataSpec.of(RunConfig(n_frames=4, img_size=32, resize=36, audio=audio))
    table = usable_rows(read_table(res.manifest), audio)[0]
    for split, mode in (("train", "train"), ("valid", "valid")):
        af = spec.audio_frame()
        folder = VideoDataset(split_rows(table, split), 4, mode, spec.transform(mode == "train"), af, seed=3,
                              on_bad="raise")
        shard = ShardDataset(index, split, 4, mode, spec.transform(mode == "train"), spec.audio_frame(), seed=3)
        folder.epoch = shard.epoch = 2
        got = list(shard)
        assert len(got) == len(folder) == len(shard) == (4 if split == "train" else 2)
        for i, item in enumerate(got):
            want = folder[i]
            assert len(item) == len(want) == (3 if audio else 2)
            assert all(torch.equal(a, b) for a, b in zip(item, want)), (split, i)
        if audio:
            assert af.prepared_hits == len(folder) and not af.prepared_misses   # the folders' stored log-mels


def test_shard_dataset_refusals(packed, tmp_path):
    from tsamlib.config import RunConfig
    from tsamlib.data.audio import AudioFrame, MelsMissingError
    from tsamlib.data.loaders import DataSpec
    from tsamlib.data.shards import ShardDataset
    _, index = packed
    tfm = DataSpec.of(RunConfig(n_frames=4, img_size=32, resize=36)).transform(False)
    with pytest.raises(ValueError, match=r"no split 'test' \(splits present: \['train', 'valid'\]\)"):
        ShardDataset(index, "test", 4, "valid", tfm)
    other = AudioFrame(size=(32, 32), n_mels=40)      # log-mels prepare did not write
    with pytest.raises(MelsMissingError, match="--format shards --mels tsamlib:40"):
        list(ShardDataset(index, "valid", 4, "valid", tfm, other))
    old = tmp_path / "index.json"
    old.write_text(json.dumps({**json.loads(index.read_text()), "version": None}))
    with pytest.raises(ValueError, match="write them again"):
        ShardDataset(old, "train", 4, "train", tfm)
    (tmp_path / "x.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a shard index"):
        ShardDataset(tmp_path / "x.json", "train", 4, "train", tfm)


def test_a_bad_sample_is_left_out_and_counted(packed, tmp_path):
    """A sample whose frames do not decode is left out of its epoch and recorded, the others still come."""
    import io
    import tarfile

    from tsamlib.config import RunConfig
    from tsamlib.data.loaders import DataSpec
    from tsamlib.data.shards import ShardDataset
    _, index = packed
    idx = json.loads(index.read_text())
    first = next(s["name"] for s in idx["shards"] if s["split"] == "train")
    import shutil
    copy = tmp_path / "s"
    shutil.copytree(index.parent, copy)
    with tarfile.open(index.parent / first) as src, tarfile.open(copy / first, "w") as dst:
        members = src.getmembers()
        victim = next(m.name for m in members if m.name.endswith(".jpg"))
        for m in members:
            data = src.extractfile(m).read()
            if m.name == victim:
                data = b"not a jpeg"
            m.size = len(data)
            dst.addfile(m, io.BytesIO(data))
    tfm = DataSpec.of(RunConfig(n_frames=4, img_size=32, resize=36)).transform(True)
    ds = ShardDataset(copy / "index.json", "train", 12, "train", tfm)   # 12 of 12 frames: the bad one is read
    with pytest.warns(UserWarning, match="left out of split 'train'"):
        got = list(ds)
        ds.log.report_new()
    assert len(got) == 3 and len(ds.log.skipped()) == 1 and "UnidentifiedImageError" in next(
        iter(ds.log.skipped().values()))
