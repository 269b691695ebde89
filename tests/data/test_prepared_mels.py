"""Prepared log-mels: ``prepare`` stores each clip's full-clip log-mels of chosen settings (``--mels``), the audio
frame reads them first, and settings without a file fall back to the ``.wav`` (counted, warned once)."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_video

from tsamlib.data.audio import AudioFrame, read_mels_file
from tsamlib.data.manifest import build_manifest
from tsamlib.data.prepare import prepare_dataset


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    d = tmp_path_factory.mktemp("mels")
    recs = [dict(path=str(make_video(d / "v" / "a.mp4", n_frames=24, size=(48, 64), fps=12, layout="stereo",
                                     sample_rate=44100, seed=1)), label=0, label_name="x", split="train"),
            dict(path=str(make_video(d / "v" / "b.mp4", n_frames=24, size=(48, 64), fps=12, audio=False, seed=2)),
                 label=1, label_name="y", split="train")]
    build_manifest(recs, d / "in.csv", workers=1, verbose=False)
    res = prepare_dataset(d / "in.csv", d / "out", short_side=32, workers=1, verbose=False)   # default mels
    return d, res


def _folders(res) -> dict[str, Path]:
    return {Path(s).stem: Path(p) for s, p in zip(res.table["source"], res.table["path"])}


def _computed(af: AudioFrame, folder: Path, train=False, seed=0):
    """What the audio frame is without the prepared file: computed from the folder's .wav (float16 as cached)."""
    mels, has_audio = af.front.full_mels(folder)
    mels = [m.astype(np.float16).astype(np.float32) for m in mels]
    return mels, has_audio


@pytest.mark.parametrize("stem", ["a", "b"])
def test_default_mels_are_written_and_read_first(prepared, stem, tmp_path):
    _, res = prepared
    folder = _folders(res)[stem]
    af = AudioFrame(size=(32, 32), n_mels=64)                       # the run defaults: tsamlib:64
    files = sorted(p.name for p in folder.glob("mels-*.npz"))
    assert files == [af.prepared_name]
    meta = json.loads((folder / "prepare.json").read_text())
    assert meta["mels"] == {af.prepared_name: af.params()}
    mels, has_audio = read_mels_file(folder / af.prepared_name, 64)
    want, want_audio = _computed(af, folder)
    assert has_audio is want_audio is (stem == "a")
    for m, w in zip(mels, want):
        np.testing.assert_array_equal(m, w)
    x, h = af(folder, train=True, rng=np.random.default_rng(3))
    assert (af.prepared_hits, af.prepared_misses) == (1, 0) and h is (stem == "a")
    # the same clip without the prepared file, through the mel cache as training reads it (float16 entries)
    fresh = AudioFrame(size=(32, 32), n_mels=64, cache_dir=str(tmp_path / "cache"))
    fresh._prepared = lambda path: None
    y, _ = fresh(folder, train=True, rng=np.random.default_rng(3))
    assert torch.equal(x, y)


def test_other_settings_fall_back_to_the_wav_counted_and_warned_once(prepared):
    _, res = prepared
    folder = _folders(res)["a"]
    af = AudioFrame(size=(32, 32), n_mels=32)
    with pytest.warns(UserWarning, match=r"no log-mels for these audio settings \(tsamlib:32.*--mels tsamlib:32"):
        x, has_audio = af(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                 # once per process, not per clip
        af(folder)
    assert (af.prepared_hits, af.prepared_misses) == (0, 2) and has_audio
    want, _ = af.front.full_mels(folder)
    assert x.shape == (3, 32, 32) and want[0].shape[0] == 32


def test_a_video_or_a_plain_frame_folder_is_neither_hit_nor_miss(prepared, tmp_path):
    d, _ = prepared
    af = AudioFrame(size=(32, 32), n_mels=64)
    af(d / "v" / "a.mp4")
    plain = tmp_path / "frames"
    plain.mkdir()
    af(plain)
    assert (af.prepared_hits, af.prepared_misses) == (0, 0)


def test_an_unreadable_prepared_file_is_computed_instead(prepared, tmp_path):
    import shutil
    _, res = prepared
    folder = tmp_path / "copy"
    shutil.copytree(_folders(res)["a"], folder)
    shutil.copy(_folders(res)["a"].parent / "a.wav", tmp_path / "copy.wav")
    af = AudioFrame(size=(32, 32), n_mels=64)
    (folder / af.prepared_name).write_bytes(b"not an npz")
    with pytest.warns(UserWarning, match="unreadable"):
        x, has_audio = af(folder)
    assert has_audio and af.prepared_misses == 1 and torch.isfinite(x).all()


def test_a_rerun_with_other_mels_only_adds_them(prepared, tmp_path):
    import shutil
    d, _ = prepared
    out = tmp_path / "out"
    shutil.copytree(d / "out", out)
    folder = out / "x" / "a"
    jpg_mtime = (folder / "00001.jpg").stat().st_mtime_ns
    res = prepare_dataset(d / "in.csv", out, short_side=32, workers=1, verbose=False,
                          mels=["authors:224", "tsamlib:32"])
    assert (res.converted, res.skipped, res.mels_added) == (0, 2, 2)
    assert "2 of them given new log-mels" in res.summary()
    assert (folder / "00001.jpg").stat().st_mtime_ns == jpg_mtime
    names = {AudioFrame(n_mels=n, frontend=f).prepared_name for f, n in (("tsamlib", 64), ("tsamlib", 32),
                                                                             ("authors", 224))}
    assert {p.name for p in folder.glob("mels-*.npz")} == names
    assert set(json.loads((folder / "prepare.json").read_text())["mels"]) == names
    for f, n in (("tsamlib", 32), ("authors", 224)):
        af = AudioFrame(size=(32, 32), n_mels=n, frontend=f)
        af(folder)
        assert af.prepared_hits == 1
    again = prepare_dataset(d / "in.csv", out, short_side=32, workers=1, verbose=False, mels="tsamlib:32")
    assert (again.skipped, again.mels_added) == (2, 0)


def test_mels_none_writes_no_file(prepared, tmp_path):
    d, _ = prepared
    res = prepare_dataset(d / "in.csv", tmp_path / "out", short_side=32, workers=1, verbose=False, mels="none")
    assert not list((tmp_path / "out").glob("*/*/mels-*.npz"))
    assert json.loads((Path(res.table["path"].iat[0]) / "prepare.json").read_text())["mels"] == {}
