"""Manifests: probing odd/broken files, the four builders, CSV round trip, summary and CLI."""
from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest
from conftest import make_video
from PIL import Image

from tsamlib.__main__ import main
from tsamlib.data import index, probe
from tsamlib.data import manifest as m


def test_probe_classifies_media_zoo(media_zoo):
    paths = [p for p, _ in media_zoo.values()]
    results = probe.probe_many(paths, workers=2)  # the process-pool path
    serial = probe.probe_many(paths, workers=1)
    assert [(r["problem"], r["n_frames"], r["has_audio"]) for r in results] == [
        (r["problem"], r["n_frames"], r["has_audio"]) for r in serial]
    for (name, (path, want)), got in zip(media_zoo.items(), results):
        assert (got["problem"] == "") == want["ok"], (name, got)
        assert got["has_audio"] == want["has_audio"], (name, got)
        if want["n_frames"] is not None:
            assert got["n_frames"] == want["n_frames"], (name, got)
            assert got["fps"] == pytest.approx(12.0) and got["duration"] == pytest.approx(want["n_frames"] / 12)
    by_name = dict(zip(media_zoo, results))
    assert by_name["empty"]["problem"] == "empty file"
    assert by_name["text_renamed"]["problem"].startswith("cannot open")
    assert probe.probe_video(media_zoo["fine"][0].parent / "nope.mp4")["problem"] == "missing file"
    assert probe.probe_video(media_zoo["audio_only"][0])["problem"] == "no video stream"


def test_probe_frame_folder(tmp_path):
    (tmp_path / "a").mkdir()
    for i in range(1, 6):
        Image.new("RGB", (8, 8)).save(tmp_path / "a" / f"{i:05d}.jpg")
    (tmp_path / "empty").mkdir()
    got = probe.probe_video(tmp_path / "a")
    assert got["n_frames"] == 5 and math.isnan(got["fps"]) and got["problem"] == "" and not got["has_audio"]
    assert probe.probe_video(tmp_path / "empty")["problem"] == "empty frame folder"


def test_index_list_on_real_clips(kinetics_clips, tmp_path, capsys):
    out = tmp_path / "k.csv"
    lists = {"train": kinetics_clips / "training.txt", "val": kinetics_clips / "validation.txt"}
    df = index.index_list(kinetics_clips, lists, out, class_names=["zero", "one"], workers=1)
    assert len(df) == 12 and (df["problem"] == "").all() and df["has_audio"].all()
    assert df["split"].value_counts().to_dict() == {"train": 8, "valid": 4}
    expected = {}
    for split, f in (("train", "training.txt"), ("valid", "validation.txt")):
        for line in (kinetics_clips / f).read_text().split("\n"):
            if line.strip():
                vid, label = line.split()
                expected[vid] = (int(label), split)
    got = {os.path.basename(p)[:-4]: (lab, s) for p, lab, s in zip(df["path"], df["label"], df["split"])}
    assert got == expected
    assert set(df["label_name"]) == {"zero", "one"}
    assert (df["label_name"] == df["label"].map({0: "zero", 1: "one"})).all()
    assert (df["n_frames"] > 100).all() and df["fps"].between(14, 31).all() and df["duration"].between(5, 10.5).all()
    back = m.read_manifest(out)
    pd.testing.assert_frame_equal(back, df)
    assert "12 clips: 12 ok" in capsys.readouterr().out


def test_write_read_roundtrip_relative_paths_and_atomic(tmp_path):
    inside = make_video(tmp_path / "data" / "c" / "x y.mp4", n_frames=4)
    df = pd.DataFrame(dict(path=[str(inside), "/elsewhere/z.mp4"], label=[0, 1], label_name=["c", "d"],
                           split=["train", "valid"], n_frames=[4, 0], fps=[12.0, math.nan],
                           duration=[1 / 3, math.nan], has_audio=[True, False], problem=["", "missing file"]))
    csv = tmp_path / "data" / "manifest.csv"
    m.write_manifest(df, csv)
    raw = pd.read_csv(csv, keep_default_na=False)
    assert list(raw.columns) == m.COLUMNS
    assert raw["path"].tolist() == ["c/x y.mp4", "/elsewhere/z.mp4"]
    assert sorted(f.name for f in csv.parent.iterdir()) == ["c", "manifest.csv"]  # no temp file left
    moved = tmp_path / "moved"
    (tmp_path / "data").rename(moved)  # relative paths survive a move of the dataset folder
    back = m.read_manifest(moved / "manifest.csv")
    assert back["path"][0] == str(moved / "c" / "x y.mp4") and os.path.exists(back["path"][0])
    assert back["label"].dtype == np.int64 and back["has_audio"].dtype == bool
    assert back["problem"].tolist() == ["", "missing file"] and math.isnan(back["fps"][1])
    with pytest.raises(ValueError, match="columns"):
        m.write_manifest(df.drop(columns=["problem"]), csv)
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\nx,1\n")
    with pytest.raises(ValueError, match="bad.csv"):
        m.read_manifest(bad)


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    df = pd.DataFrame([dict(path="a.mp4", label=0, label_name="a", split="train", n_frames=1, fps=1.0,
                            duration=1.0, has_audio=False, problem="")])
    csv = m.write_manifest(df, tmp_path / "m.csv")
    before = csv.read_text()
    monkeypatch.setattr(pd.DataFrame, "to_csv", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        m.write_manifest(df.assign(label_name="b"), csv)
    assert csv.read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == ["m.csv"]


def test_index_folder_stratified_and_split_folders(tmp_path):
    root = tmp_path / "flat"
    for c, n in (("cat", 5), ("dog", 3)):
        for i in range(n):
            make_video(root / c / f"{c}{i}.mp4", n_frames=3, audio=False)
    (root / "dog" / "notes.txt").write_text("skip me")
    df = index.index_folder(root, root / "manifest.csv", valid_fraction=0.4, seed=1, workers=1)
    assert len(df) == 8 and (df["problem"] == "").all() and not df["has_audio"].any()
    assert df.groupby("label_name")["split"].apply(lambda s: (s == "valid").sum()).to_dict() == {"cat": 2, "dog": 1}
    assert df[df.label_name == "dog"]["label"].eq(1).all()
    again = index.index_folder(root, tmp_path / "again.csv", valid_fraction=0.4, seed=1, workers=1)
    assert again["split"].tolist() == df["split"].tolist()
    split_root = tmp_path / "split"
    make_video(split_root / "train" / "a" / "1.mp4", n_frames=3)
    make_video(split_root / "val" / "a" / "2.mp4", n_frames=3)
    make_video(split_root / "val" / "b" / "3.avi", n_frames=3)  # not an mp4 container name, still probed
    df = index.index_folder(split_root, tmp_path / "s.csv", workers=1)
    assert sorted(zip(df["label_name"], df["split"])) == [("a", "train"), ("a", "valid"), ("b", "valid")]


def test_index_kinetics400_layouts_and_missing(tmp_path, capsys):
    root, ann = tmp_path / "k400", tmp_path / "ann"
    ann.mkdir()
    make_video(root / "abseiling" / "AAA_000001_000011.mp4", n_frames=3)  # per-class layout
    make_video(root / "val" / "BBB_000002_000012.mp4", n_frames=3)  # per-split layout
    make_video(root / "CCC_000003_000013.mp4", n_frames=3)  # flat layout
    (ann / "train.csv").write_text("label,youtube_id,time_start,time_end,split\n"
                                   "abseiling,AAA,1,11,train\n\"zumba, fast\",GONE,5,15,train\n")
    (ann / "validate.csv").write_text("label,youtube_id,time_start,time_end,split\nabseiling,BBB,2,12,val\n")
    (ann / "test.csv").write_text("youtube_id,time_start,time_end,split\nCCC,3,13,test\n")
    df = index.index_kinetics400(root, ann, tmp_path / "k.csv", workers=1)
    assert len(df) == 4
    row = df.set_index(df["path"].map(os.path.basename))
    assert row.loc["AAA_000001_000011.mp4", "label"] == 0 and row.loc["BBB_000002_000012.mp4", "split"] == "valid"
    assert row.loc["CCC_000003_000013.mp4", "label"] == -1 and row.loc["CCC_000003_000013.mp4", "split"] == "test"
    gone = row.loc["GONE_000005_000015.mp4"]
    assert gone["problem"] == "missing file" and gone["label"] == 1 and gone["label_name"] == "zumba, fast"
    out = capsys.readouterr().out
    assert "missing files listed in the annotations but absent on disk (1)" in out and "GONE_000005" in out
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        index.index_kinetics400(root, {"train": ann / "nope.csv"}, tmp_path / "x.csv")


def test_index_something_v1(tmp_path):
    root, ann = tmp_path / "frames", tmp_path / "ann"
    ann.mkdir()
    for vid, n in (("1", 4), ("2", 2), ("3", 0)):
        (root / vid).mkdir(parents=True)
        for i in range(1, n + 1):
            Image.new("RGB", (8, 6), (i * 40, 0, 0)).save(root / vid / f"{i:05d}.jpg")
    pushing = "Pushing something from left to right"
    (ann / "something-something-v1-labels.csv").write_text(f"Holding something\n{pushing}\n")
    (ann / "something-something-v1-train.csv").write_text(f"1;{pushing}\n4;Holding something\n")
    (ann / "something-something-v1-validation.csv").write_text("2;Holding something\n3;Holding something\n")
    df = index.index_something_v1(root, ann, tmp_path / "ss.csv", workers=1)
    assert df["label"].tolist() == [1, 0, 0, 0] and df["split"].tolist() == ["train", "train", "valid", "valid"]
    assert df["n_frames"].tolist() == [4, 0, 2, 0]
    assert df["problem"].tolist() == ["", "missing file", "", "empty frame folder"]
    summary = m.summarize_manifest(df)
    assert "4 clips: 2 ok, 2 with problems, 4 without audio" in summary
    assert "problem 'missing file': 1" in summary and "problem 'empty frame folder': 1" in summary


def test_cli_index_list_and_folder(kinetics_clips, tmp_path):
    out = tmp_path / "cli.csv"
    assert main(["index", "list", str(kinetics_clips), "--out", str(out), "--workers", "2",
                 "--lists", f"train={kinetics_clips / 'training.txt'}",
                 f"valid={kinetics_clips / 'validation.txt'}"]) == 0
    df = m.read_manifest(out)
    assert len(df) == 12 and set(df["label_name"]) == {"0", "1"}
    with pytest.raises(SystemExit):
        main(["index", "list", str(kinetics_clips), "--out", str(out), "--lists", "training.txt"])
