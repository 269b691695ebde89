"""Synthetic datasets: real decodable files, deterministic, skipped when present, class-dependent content."""
from __future__ import annotations

import json

import av
import numpy as np
import pytest

from tsamlib.__main__ import main
from tsamlib.data.manifest import read_manifest
from tsamlib.data.synthetic import KINDS, describe, make_synthetic_dataset, outdated, render_clip

SMALL = dict(n_per_class=5, n_classes=3, seconds=1.0, size=(48, 64), fps=12, length_jitter=0.0)


def _decode(path):
    decord = pytest.importorskip("decord")   # these checks read with decord, the default backend
    vr = decord.VideoReader(str(path), num_threads=1)
    frames = vr.get_batch(list(range(len(vr)))).asnumpy()
    try:
        audio = decord.AudioReader(str(path), sample_rate=-1, mono=True)[:].asnumpy()
    except decord.DECORDError:  # decord raises on a file without an audio track
        audio = None
    return frames, vr.get_avg_fps(), audio


def _changed(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of pixels that differ by more than the background noise can explain."""
    return float((np.abs(a.astype(float) - b.astype(float)).max(-1) > 60).mean())


def _peak_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[spec.argmax()])


@pytest.fixture(scope="module")
def small_default(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("syn") / "default", workers=2, **SMALL)


def test_files_decode_as_asked(small_default):
    df = read_manifest(small_default / "manifest.csv")
    assert len(df) == 15 and (df["problem"] == "").all() and df["has_audio"].all()
    assert df["label_name"].unique().tolist() == [n for n, _ in describe("default")[:3]]
    assert df.groupby("label")["split"].apply(lambda s: (s == "valid").sum()).tolist() == [1, 1, 1]
    for path in df["path"][:3]:
        assert path.startswith(str(small_default)) and path.endswith(".mp4")
        frames, fps, audio = _decode(path)
        assert frames.shape == (12, 48, 64, 3) and fps == pytest.approx(12.0)
        assert 16000 <= audio.shape[1] <= 16000 + 2048 and 0.05 < np.abs(audio).max() < 1.0
        with av.open(path) as c:
            assert c.streams.audio[0].rate == 16000 and c.streams.audio[0].codec_context.name == "aac"
            assert c.streams.video[0].codec_context.name == "h264"
    assert (df["n_frames"] == 12).all() and np.allclose(df["duration"], 1.0)


def test_deterministic_and_skip_and_param_guard(small_default, tmp_path, capsys):
    other = make_synthetic_dataset(tmp_path / "again", workers=1, **SMALL)
    a, b = read_manifest(small_default / "manifest.csv"), read_manifest(other / "manifest.csv")
    assert a["split"].tolist() == b["split"].tolist()
    for pa, pb in zip(a["path"][::4], b["path"][::4]):
        fa, _, aa = _decode(pa)
        fb, _, ab = _decode(pb)
        np.testing.assert_array_equal(fa, fb)
        np.testing.assert_array_equal(aa, ab)
    stamp = (other / "manifest.csv").stat().st_mtime_ns
    capsys.readouterr()
    make_synthetic_dataset(tmp_path / "again", workers=1, **SMALL)
    assert "skipping generation" in capsys.readouterr().out
    assert (other / "manifest.csv").stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match="seed"):
        make_synthetic_dataset(tmp_path / "again", seed=1, **SMALL)
    make_synthetic_dataset(tmp_path / "again", seed=1, overwrite=True, workers=1, **{**SMALL, "n_classes": 2})
    assert json.loads((other / "synthetic.json").read_text())["seed"] == 1
    assert not (other / describe("default")[2][0]).exists()  # the old third class folder is gone
    fc, _, _ = _decode(read_manifest(other / "manifest.csv")["path"][0])
    assert not np.array_equal(fc, _decode(a["path"][0])[0])  # another seed, other pixels
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="not empty"):
        make_synthetic_dataset(tmp_path / "busy", **SMALL)


def test_no_audio_track_and_length_jitter(tmp_path):
    root = make_synthetic_dataset(tmp_path / "ss", kind="mini-something", n_per_class=2, seconds=1.0, audio=False,
                                  workers=1)
    df = read_manifest(root / "manifest.csv")
    assert len(df) == 12 and not df["has_audio"].any() and (df["problem"] == "").all()
    assert df["n_frames"].between(10, 14).all() and df["n_frames"].nunique() > 1  # +-15 % lengths
    frames, _, audio = _decode(df["path"][0])
    assert audio is None and len(frames) == df["n_frames"][0]


def test_default_classes_differ_in_colour_and_sound():
    expected_hz = [262, 392, 660]
    for c, (want_rgb, hz) in enumerate(zip([0, 1, 2], expected_hz)):
        frames, audio = render_clip("default", c, 0, 0, 1.0, (64, 64), 12)
        vivid = frames.reshape(-1, 3)[frames.reshape(-1, 3).max(1) > 150].astype(float)
        assert vivid.mean(0).argmax() == want_rgb, c
        assert _peak_hz(audio, 16000) == pytest.approx(hz, rel=0.05)


def test_kinetics_av_sound_splits_hum_from_beeps():
    def high_share(c):
        shares = []
        for i in range(8):
            _, audio = render_clip("mini-kinetics-av", c, 0, i, 1.0, (32, 32), 12)
            spec = np.abs(np.fft.rfft(audio)) ** 2
            f = np.fft.rfftfreq(len(audio), 1 / 16000)
            shares.append(spec[(f > 900) & (f < 1700)].sum() / spec[(f > 80) & (f < 600)].sum())
        return np.median(shares)
    assert high_share(1) > 3 * high_share(0) and high_share(3) > 3 * high_share(2)


def test_kinetics_av_pictures_split_the_shapes_by_colour_family():
    """Version 2: each shape has its own colour family and the triangle distractor the remaining colours, so the
    pictures split disk from square (and only that: hum and beeps of one shape look alike)."""
    from tsamlib.data.synthetic import _KAV_COLOURS, _KAV_DISTRACTOR, _PALETTE

    def families(c, i):
        frames, _ = render_clip("mini-kinetics-av", c, 0, i, 0.5, (64, 64), 12, audio=False)
        px = frames[len(frames) // 2].reshape(-1, 3).astype(float)
        px = px[px.max(1) > 150]  # the objects, not the dark background
        nearest = np.abs(px[:, None] - _PALETTE[None]).sum(-1).argmin(1)
        return {int(k) for k in np.unique(nearest) if (nearest == k).sum() > 10}
    for c in range(4):
        own, other = set(_KAV_COLOURS[c // 2]), set(_KAV_COLOURS[1 - c // 2])
        for i in range(6):
            seen = families(c, i)
            assert seen & own and not seen & other, (c, i, seen)
            assert seen <= own | set(_KAV_DISTRACTOR), (c, i, seen)


def test_a_newer_generator_rewrites_a_stale_dataset(tmp_path, capsys, monkeypatch):
    import tsamlib.data.datasets as datasets
    args = dict(kind="mini-kinetics-av", n_per_class=1, n_classes=2, seconds=0.5, size=(32, 32), workers=1)
    root = make_synthetic_dataset(tmp_path / "mini-kinetics-av", **args)
    pfile = root / "synthetic.json"
    old = json.loads(pfile.read_text())
    assert not outdated(root) and not outdated(tmp_path / "nothing-here")
    pfile.write_text(json.dumps({**old, "version": old["version"] - 1}))  # as written by the older generator
    assert outdated(root)
    monkeypatch.setattr(datasets, "dataset_dir", lambda kind: tmp_path / kind)
    with pytest.raises(FileExistsError, match="older generator"):
        datasets.dataset_manifest("mini-kinetics-av")  # without build_missing: the fix is named, nothing used
    capsys.readouterr()
    make_synthetic_dataset(root, **args)  # same settings, only the version differs: regenerated, no error
    assert "regenerating with version" in capsys.readouterr().out
    assert json.loads(pfile.read_text()) == {**old, "complete": True}
    assert datasets.dataset_manifest("mini-kinetics-av") == root / "manifest.csv"  # current again
    assert not outdated(root)
    pfile.write_text(json.dumps({**old, "version": old["version"] - 1, "seed": 5}))
    with pytest.raises(FileExistsError, match="seed"):  # other settings too: never rewritten without overwrite
        make_synthetic_dataset(root, **args)


def test_a_record_cut_short_by_a_full_disk_is_detected_and_the_dataset_rebuilt(tmp_path, capsys, monkeypatch):
    """A 0-byte synthetic.json (what a full disk left before the record was written atomically) blocks nothing."""
    import tsamlib.data.datasets as datasets
    monkeypatch.setattr(datasets, "dataset_dir", lambda kind: tmp_path / kind)
    args = dict(kind="default", n_per_class=1, n_classes=2, seconds=0.5, size=(32, 32), workers=1)
    root = make_synthetic_dataset(tmp_path / "default", **args)
    record = (root / "synthetic.json").read_text()
    (root / "synthetic.json").write_bytes(b"")
    assert outdated(root) == "left incomplete"
    with pytest.raises(FileExistsError, match="was left incomplete"):
        datasets.dataset_manifest("default")   # without build_missing: the fix is named
    capsys.readouterr()
    make_synthetic_dataset(root, **args)
    assert "is unreadable (the writer was interrupted): writing the dataset again" in capsys.readouterr().out
    assert (root / "synthetic.json").read_text() == record and not outdated(root)
    assert not list(root.glob(".*.tmp*")) and not list(root.glob("*.tmp"))   # the atomic write left no temp file


def test_mini_something_is_about_order():
    def frames(c, i):
        return render_clip("mini-something", c, 0, i, 2.0, (64, 64), 12, audio=False)[0]

    for i in range(4):
        for c, sign in ((0, 1), (1, -1)):  # the moving object's column centroid goes the labelled way
            f = frames(c, i).astype(float)
            moving = np.abs(f - np.median(f, 0)).max(-1)
            cols = (moving * np.arange(64)).sum((1, 2)) / moving.sum((1, 2))
            assert sign * np.corrcoef(np.arange(len(cols)), cols)[0, 1] > 0.8
        f = frames(2, i)
        mid = len(f) // 2 + 2
        assert _changed(f[0], f[mid]) > 2 * _changed(f[-1], f[mid]) + 0.005  # appears: empty start
        f = frames(3, i)
        mid = len(f) // 2 - 2
        assert _changed(f[-1], f[mid]) > 2 * _changed(f[0], f[mid]) + 0.005  # disappears: empty end
    returns = np.mean([_changed(f[0], f[-1]) for f in (frames(4, i) for i in range(6))])
    changes = np.mean([_changed(f[0], f[-1]) for f in (frames(5, i) for i in range(6))])
    assert changes > 2 * returns


def test_describe_and_cli(tmp_path, capsys):
    for kind in KINDS:
        rows = describe(kind)
        assert len(rows) >= 4 and all(isinstance(n, str) and len(d) > 10 for n, d in rows)
    with pytest.raises(ValueError, match="Unknown synthetic kind"):
        describe("nope")
    assert main(["synth", "--describe", "--kind", "mini-kinetics-av"]) == 0
    assert "disk_beeps" in capsys.readouterr().out
    out = tmp_path / "cli"
    assert main(["synth", "--out", str(out), "--n-per-class", "1", "--n-classes", "2", "--seconds", "0.5",
                 "--size", "32", "32", "--workers", "1"]) == 0
    assert len(read_manifest(out / "manifest.csv")) == 2
    assert main(["index", "folder", str(out), "--out", str(tmp_path / "idx.csv"), "--workers", "1"]) == 0
    assert "skipped 2 non-video files" in capsys.readouterr().out  # manifest.csv + synthetic.json


def test_two_processes_writing_one_dataset_take_turns(tmp_path):
    """Two processes asked for the same dataset while a third holds its lock: both say they wait; when the lock is
    released one writes the dataset and the other finds it complete (no process deletes the other's clips)."""
    import os
    import subprocess
    import sys

    from conftest import REPO_ROOT

    from tsamlib.runs.fileio import exclusive_lock
    root = tmp_path / "ds"
    code = ("from tsamlib.data.synthetic import make_synthetic_dataset as m; "
            f"m({str(root)!r}, kind='default', n_per_class=1, n_classes=2, seconds=0.5, workers=1)")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")
    with exclusive_lock(tmp_path / ".ds.synthetic.lock", "holding it for the test"):
        procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=env) for _ in range(2)]
        first = [p.stdout.readline() for p in procs]  # each blocks until its process reports the wait
        assert all(line.startswith("waiting for another process writing the synthetic dataset") for line in first)
        assert not root.exists()
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    said = [o[0] for o in outs]
    assert sum("synthetic dataset 'default': 2 clips, 2 classes" in s for s in said) == 1
    assert sum("skipping generation" in s for s in said) == 1
    assert len(read_manifest(root / "manifest.csv")) == 2
    assert sorted(p.name for p in root.iterdir()) == ["green_square_falls", "manifest.csv", "red_disk_slides_right",
                                                      "synthetic.json"]  # the lock file is beside root, not in it
