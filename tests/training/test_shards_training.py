"""A run on a shard dataset trains and validates as the same run on the prepared folders it was packed from."""
from __future__ import annotations

import json
import warnings

import pytest
import torch
from conftest import make_video

from tsamlib.config import RunConfig
from tsamlib.data.manifest import build_manifest
from tsamlib.data.prepare import prepare_dataset
from tsamlib.data.shards import write_shards
from tsamlib.evaluation.released import example_clips_manifest
from tsamlib.runs.loader import safe_load


def _both(tmp_path, folders_manifest, index, **settings) -> tuple[dict, dict, list]:
    """One epoch on the folders and one on the shards, the same settings and seed: both metrics and the largest
    difference of their final weights."""
    from tsamlib import train
    base = dict(runs_root=str(tmp_path / "runs"), arch="resnet10t", n_frames=4, img_size=32, resize=36, epochs=1,
                seed=0, pretrained=None, dropout=0.0) | settings   # no dropout: its mask follows a clip's place in
    # the batch, which the shards' shuffle buffer and the folders' shuffle choose differently
    got = []
    for name, data in (("folders", folders_manifest), ("shards", index)):
        run = train(RunConfig(dataset=str(data), run_id=name, **base))
        got.append((json.loads((run.path / "metrics.json").read_text())["final"] | dict(epochs=json.loads(
            (run.path / "metrics.json").read_text())["epochs"]),
                    safe_load(run.checkpoint_dir / "model.pth")))
    (ma, wa), (mb, wb) = got
    return ma, mb, [float((wa[k].float() - wb[k].float()).abs().max()) for k in wa if wa[k].is_floating_point()]


@pytest.mark.parametrize("audio", [True, False])
def test_a_run_on_shards_is_the_run_on_folders(tmp_path, audio):
    """Six small clips (four to train, one batch: the order a shuffle buffer gives does not change a batch), one
    epoch: the same validation top-1 and loss, and final weights equal to float rounding."""
    recs = [dict(path=str(make_video(tmp_path / "v" / f"{i}.mp4", seed=i, audio=i % 2 == 0)), label=i % 2,
                 label_name=f"class {i % 2}", split="valid" if i >= 4 else "train") for i in range(6)]
    build_manifest(recs, tmp_path / "in.csv", workers=1, verbose=False)
    res = prepare_dataset(tmp_path / "in.csv", tmp_path / "folders", short_side=36, workers=1, verbose=False)
    index = write_shards(res.manifest, tmp_path / "shards", shard_bytes=100_000)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        a, b, diffs = _both(tmp_path, res.manifest, index, audio=audio, batch_size=4)
    silent = [w for w in said if "3 of 6 videos have no audio track: their audio frame is silent" in str(w.message)]
    assert len(silent) == (2 if audio else 0)   # said by both layouts
    assert b["top1"] == a["top1"] and b["valid_loss"] == pytest.approx(a["valid_loss"], abs=1e-4)
    assert max(diffs) < 1e-4
    assert b["epochs"][0]["train_loss"] == pytest.approx(a["epochs"][0]["train_loss"], abs=1e-4)


def test_the_real_clips_train_the_same_from_shards(tmp_path, kinetics_clips):
    """The 12 real Kinetics clips, prepared, then packed: one epoch (all training clips in one batch) validates
    with the folder layout's top-1 on a fixed seed."""
    manifest = example_clips_manifest(tmp_path / "manifest.csv", kinetics_clips)
    res = prepare_dataset(manifest, tmp_path / "folders", short_side=36, workers=1, verbose=False)
    index = write_shards(res.manifest, tmp_path / "shards")
    n_train = json.loads(index.read_text())["splits"]["train"]
    a, b, diffs = _both(tmp_path, res.manifest, index, audio=True, batch_size=n_train)
    assert b["top1"] == a["top1"] and b["valid_loss"] == pytest.approx(a["valid_loss"], abs=1e-4)
    assert max(diffs) < 1e-4
    assert torch.isfinite(torch.tensor(b["valid_loss"]))


@pytest.fixture(scope="module")
def small_shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("small-shards")
    recs = [dict(path=str(make_video(d / "v" / f"{i}.mp4", seed=i, audio=False)), label=i % 2,
                 label_name=f"class {i % 2}", split="valid" if i >= 6 else "train") for i in range(11)]
    build_manifest(recs, d / "in.csv", workers=1, verbose=False)
    res = prepare_dataset(d / "in.csv", d / "folders", short_side=36, workers=1, verbose=False)
    return write_shards(res.manifest, d / "shards", shard_bytes=30_000)   # several shards a split


def test_two_loader_workers_give_every_validation_clip_once(small_shards):
    from tsamlib.data.loaders import ShardLoader, video_dataloaders
    for workers in (0, 2):
        dls = video_dataloaders(small_shards, n_frames=4, img_size=32, resize=36, batch_size=2,
                                num_workers=workers, device="cpu")
        assert isinstance(dls.valid, ShardLoader) and dls.vocab == ["class 0", "class 1"]
        labels = torch.cat([b[-1] for b in dls.valid])
        assert len(labels) == len(dls.valid.dataset) == 5 and dls.valid.n_items == 5
        assert sorted(labels.tolist()) == [0, 0, 0, 1, 1]   # clips 6..10: labels 0 1 0 1 0
        assert sum(len(b[-1]) for b in dls.train) == 6      # 6 training clips, batches of 2: none dropped


def test_several_processes_on_shards_are_refused_before_the_run_folder(small_shards, tmp_path, monkeypatch):
    import tsamlib.training.run as run_mod
    monkeypatch.setattr(run_mod, "num_distrib", lambda: 2)
    with pytest.raises(ValueError, match="trains in one process for now"):
        run_mod.setup_training(RunConfig(dataset=str(small_shards), runs_root=str(tmp_path / "runs"),
                                         arch="resnet10t", n_frames=4, img_size=32, resize=36, batch_size=4))
    assert not (tmp_path / "runs").exists()
