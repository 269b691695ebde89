"""Shard datasets: packed from a prepared folder, read back byte for byte, split across workers, bad input named."""
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
                 label_name=f"class {i % 2}", split="train") for i in range(6)]
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
    got = list(read_shards(index))
    assert len(got) == 6
    for s in got:
        folder = by_source[str(Path(s["source"]).resolve())]
        assert s["frames"] == [f.read_bytes() for f in sorted(folder.glob("*.jpg"))]
        assert s["mels"] and all(s["mels"][k] == (folder / k).read_bytes() for k in s["mels"])
        assert s["label"] == int(table.loc[table["path"] == str(folder), "label"].iat[0])


def _keys_of(index, workers: int) -> list[str]:
    class It(torch.utils.data.IterableDataset):
        def __iter__(self):
            return (s["key"] for s in read_shards(index))
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
    assert idx["samples"] == 6 and len(idx["shards"]) == 1 and idx["params"]["short_side"] == 32
    with pytest.raises(SystemExit):
        cli(["prepare", str(src), "--out", str(tmp_path / "p"), "--format", "shards", "--shard-size", "lots"])
    assert "256MB" in capsys.readouterr().err
