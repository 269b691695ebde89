"""``tsamlib.data.prepare``: manifests converted to JPEG frame folders + ``.wav``, loaded like the source clips."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import make_video

from tsamlib.__main__ import main as cli
from tsamlib.data.audio import audio_source, load_waveform
from tsamlib.data.manifest import build_manifest, check_manifest, read_manifest, write_manifest
from tsamlib.data.prepare import TMP_SUFFIX, prepare_dataset
from tsamlib.data.video import load_clip

SHORT = 64


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """Input manifest: 3 good clips (one without audio, one stereo 48 kHz), a broken file and an unprobed bad one."""
    d = tmp_path_factory.mktemp("prepare_src")
    v = d / "videos"
    recs = []
    specs = [("a", 0, "train", dict(size=(96, 128), seed=1)),
             ("b", 1, "train", dict(size=(96, 128), audio=False, seed=2)),
             ("c", 0, "valid", dict(size=(48, 64), layout="stereo", sample_rate=48000, seed=3)),
             ("d", 1, "valid", dict(size=(96, 128), n_frames=20, seed=4))]
    for name, label, split, kw in specs:
        recs.append(dict(path=str(make_video(v / f"{name}.mp4", **kw)), label=label, label_name=f"class {label}",
                         split=split))
    (v / "broken.mp4").write_text("this is not a video\n" * 20)
    recs.append(dict(path=str(v / "broken.mp4"), label=0, label_name="class 0", split="train"))
    df = build_manifest(recs, d / "in.csv", workers=1, verbose=False)
    # a row that probed fine but does not decode (file damaged after indexing): its failure must be named too
    (v / "late.mp4").write_bytes(b"\x00" * 4000)
    late = df.iloc[[0]].assign(path=str(v / "late.mp4"))
    write_manifest(pd.concat([df, late], ignore_index=True), d / "in.csv")
    return d


@pytest.fixture(scope="module")
def prepared(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepare_out")
    res = prepare_dataset(source / "in.csv", out, short_side=SHORT, workers=2, verbose=False)
    return source, out, res


def _by_stem(df: pd.DataFrame) -> dict[str, pd.Series]:
    return {Path(s).stem: r for s, r in zip(df["source"], (r for _, r in df.iterrows()))}


def test_manifest_has_every_row_with_problems_named(prepared):
    _, out, res = prepared
    raw = pd.read_csv(out / "manifest.csv", keep_default_na=False)
    assert list(raw.columns) == ["path", "label", "label_name", "split", "n_frames", "fps", "duration", "has_audio",
                                 "problem", "source"]
    rows = _by_stem(res.table)
    assert set(rows) == {"a", "b", "c", "d", "broken", "late"}
    assert rows["broken"]["problem"].startswith("cannot open")
    assert rows["late"]["problem"].startswith("cannot decode")
    for s, n, audio in (("a", 12, True), ("b", 12, False), ("c", 12, True), ("d", 20, True)):
        assert rows[s]["problem"] == "" and rows[s]["n_frames"] == n and bool(rows[s]["has_audio"]) is audio, s
        assert rows[s]["fps"] == pytest.approx(12.0)
    assert (res.converted, res.skipped, res.failed, res.carried) == (4, 0, 1, 1)
    assert res.problems == {"cannot open": 1, "cannot decode": 1}
    assert "cannot decode" in res.summary() and "late.mp4" in res.summary()
    # the loaders read it (the extra column is dropped by read_manifest, accepted by check_manifest)
    back = read_manifest(out / "manifest.csv")
    assert back["path"].tolist() == res.table["path"].tolist()
    info = check_manifest(out / "manifest.csv")
    assert info["rows"]["train"] == 2 and info["rows"]["valid"] == 2 and info["n_excluded"] == 2


def test_layout_frames_and_wav_where_the_loaders_look(prepared):
    _, out, res = prepared
    rows = _by_stem(res.table)
    a = Path(rows["a"]["path"])
    assert a == out / "class 0" / "a" and a.is_dir()
    assert sorted(p.name for p in a.glob("*.jpg"))[:2] == ["00001.jpg", "00002.jpg"]
    assert audio_source(a) == out / "class 0" / "a.wav"
    assert not (out / "class 1" / "b.wav").exists() and audio_source(Path(rows["b"]["path"])).is_dir()
    assert json.loads((a / "prepare.json").read_text())["n_frames"] == 12


@pytest.mark.parametrize("stem", ["a", "c", "d"])
def test_frames_match_the_source(prepared, stem):
    _, out, res = prepared
    row = _by_stem(res.table)[stem]
    src, idx = load_clip(row["source"], 8, "valid")
    got, idx2 = load_clip(row["path"], 8, "valid")
    assert (idx == idx2).all()
    h, w = src.shape[1:3]
    scale = SHORT / min(h, w) if min(h, w) > SHORT else 1.0
    assert got.shape[1:3] == (round(h * scale), round(w * scale))
    ref = src.permute(0, 3, 1, 2).float()
    if scale != 1.0:
        ref = F.interpolate(ref, size=got.shape[1:3], mode="bilinear", antialias=True, align_corners=False)
    diff = (ref - got.permute(0, 3, 1, 2).float()).abs().mean() / 255
    assert diff < 0.06, diff   # random-noise test frames are JPEG's worst case; real frames differ far less
    # frame identity: each prepared frame is closer to its own source frame than to the next one
    nxt = torch.roll(ref, 1, 0)
    assert (ref - got.permute(0, 3, 1, 2).float()).abs().mean() < (nxt - got.permute(0, 3, 1, 2).float()).abs().mean()


def test_smooth_frames_are_near_identical(tmp_path):
    """Natural-looking (smooth) frames: mean abs difference under 3/255 at the same indices."""
    import av
    path = tmp_path / "smooth.mp4"
    yy, xx = np.mgrid[0:96, 0:128]
    with av.open(str(path), "w", format="mp4") as c:
        vs = c.add_stream("libx264", rate=12)
        vs.width, vs.height, vs.pix_fmt = 128, 96, "yuv420p"
        vs.options = {"threads": "1", "preset": "ultrafast", "crf": "10"}
        for t in range(10):
            img = np.stack([(xx * 2 + t * 9) % 256, (yy * 2 + t * 5) % 256, (xx + yy) % 256], -1).astype(np.uint8)
            c.mux(vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(vs.encode())
    build_manifest([dict(path=str(path), label=0, label_name="x", split="train")], tmp_path / "in.csv", workers=1,
                   verbose=False)
    res = prepare_dataset(tmp_path / "in.csv", tmp_path / "out", short_side=0, workers=1, verbose=False)
    src, _ = load_clip(path, 8, "valid")
    got, _ = load_clip(res.table["path"].iat[0], 8, "valid")
    assert got.shape == src.shape
    assert (src.float() - got.float()).abs().mean() / 255 < 3 / 255


@pytest.mark.parametrize("stem", ["a", "c"])
def test_audio_loads_with_the_same_length(prepared, stem):
    _, out, res = prepared
    row = _by_stem(res.table)[stem]
    w_src = load_waveform(row["source"], mono=False)
    w_new = load_waveform(row["path"], mono=False)
    assert w_new.has_audio and w_new.source.endswith(f"{stem}.wav")
    assert w_new.wave.shape == w_src.wave.shape
    assert np.abs(w_new.wave - w_src.wave).max() < 1e-3      # 16-bit PCM rounding
    silent = load_waveform(_by_stem(res.table)["b"]["path"])
    assert not silent.has_audio


def test_rerun_redoes_only_what_is_missing_and_cleans_temp_folders(source, tmp_path):
    out = tmp_path / "out"
    first = prepare_dataset(source / "in.csv", out, short_side=SHORT, workers=1, verbose=False)
    assert first.converted == 4
    a = out / "class 0" / "a"
    shutil.rmtree(a)
    (out / "class 0" / "a.wav").unlink()
    stale = out / "class 1" / f".d{TMP_SUFFIX}"        # what a killed run leaves: a half-written clip
    stale.mkdir()
    (stale / "00001.jpg").write_bytes(b"half")
    mtime = (out / "class 0" / "c" / "00001.jpg").stat().st_mtime_ns
    second = prepare_dataset(source / "in.csv", out, short_side=SHORT, workers=1, verbose=False)
    assert (second.converted, second.skipped, second.removed_temp) == (1, 3, 1)
    assert not stale.exists() and a.is_dir() and (out / "class 0" / "a.wav").is_file()
    assert (out / "class 0" / "c" / "00001.jpg").stat().st_mtime_ns == mtime
    pd.testing.assert_frame_equal(first.table, second.table)
    assert not list(out.glob(f"*/.*{TMP_SUFFIX}"))
    # a complete-looking clip that lost its .wav or a frame is made again
    (out / "class 0" / "a.wav").unlink()
    (out / "class 0" / "c" / "00003.jpg").unlink()
    again = prepare_dataset(source / "in.csv", out, short_side=SHORT, workers=1, verbose=False)
    assert (again.converted, again.skipped) == (2, 2)
    assert (out / "class 0" / "a.wav").is_file() and (out / "class 0" / "c" / "00003.jpg").is_file()
    # other parameters: clips are made again
    third = prepare_dataset(source / "in.csv", out, short_side=32, fps=6, workers=1, verbose=False)
    assert third.converted == 4
    rows = _by_stem(third.table)
    assert rows["d"]["n_frames"] == 10 and rows["d"]["fps"] == 6.0
    assert len(list(Path(rows["d"]["path"]).glob("*.jpg"))) == 10


def test_a_full_disk_stops_prepare_and_marks_no_clip_bad(source, tmp_path, monkeypatch, capsys):
    """A write the disk refuses (ENOSPC) is the disk's error, not the clip's: prepare stops with it, names the
    folder and the fix, writes no manifest; clips done before are kept, and a rerun with space finishes the rest."""
    import errno

    import tsamlib.data.prepare as prep
    out = tmp_path / "out"
    real, calls = prep._write_frames, []

    def full_after_one(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(prep, "_write_frames", full_after_one)
    with pytest.raises(OSError, match=rf"No space left on device while writing prepared clips into {out}: free "
                                      "space .* no clip was marked bad"):
        prepare_dataset(source / "in.csv", out, short_side=SHORT, workers=1, verbose=False)
    assert not (out / "manifest.csv").exists() and not list(out.glob(f"*/.*{TMP_SUFFIX}"))
    assert cli(["prepare", str(source / "in.csv"), "--out", str(out), "--workers", "1"]) == 2   # the CLI: one line
    err = capsys.readouterr().err.strip().splitlines()[-1]   # after the progress bar's lines
    assert err.startswith("error: [Errno 28] No space left on device while writing") and "Traceback" not in err
    monkeypatch.setattr(prep, "_write_frames", real)   # space again
    res = prepare_dataset(source / "in.csv", out, short_side=SHORT, workers=1, verbose=False)
    assert (res.converted, res.skipped, res.failed) == (3, 1, 1)   # the first clip was kept; late.mp4 fails itself
    # the only problems are the clips' own (broken.mp4 from indexing, late.mp4 now), none from the full disk
    assert res.table.loc[res.table["problem"] != "", "problem"].str.startswith("cannot ").all()


def test_a_second_prepare_into_the_same_folder_fails_and_names_the_lock(source, tmp_path):
    """While one prepare holds ``OUT/.prepare.lock``, a second one into OUT stops at once (nothing written), with an
    error naming OUT and the lock; afterwards the folder can be prepared."""
    from tsamlib.runs.fileio import exclusive_lock
    out = tmp_path / "out"
    out.mkdir()
    with exclusive_lock(out / ".prepare.lock", "holding it for the test"):
        with pytest.raises(RuntimeError, match=rf"another process is preparing into {out} \(lock .*\.prepare\.lock\)"):
            prepare_dataset(source / "in.csv", out, short_side=SHORT, workers=1, verbose=False)
        assert sorted(p.name for p in out.iterdir()) == [".prepare.lock"]
    assert prepare_dataset(source / "in.csv", out, short_side=SHORT, workers=1, verbose=False).converted == 4


def test_cli(source, tmp_path, capsys):
    assert cli(["prepare", str(source / "in.csv"), "--out", str(tmp_path / "o"), "--short-side", "32",
                "--fps", "native", "--quality", "80", "--workers", "1"]) == 0
    text = capsys.readouterr().out
    assert "4 usable" in text and "problem 'cannot decode': 1" in text
    assert (tmp_path / "o" / "manifest.csv").is_file()
    with pytest.raises(SystemExit):
        cli(["prepare", str(source / "in.csv"), "--out", str(tmp_path / "o"), "--fps", "fast"])


def test_killed_run_leaves_no_workers_and_its_temp_folder_is_cleaned(tmp_path):
    """SIGKILL the CLI mid-clip: its workers die with it; the rerun removes the half-written folder and finishes."""
    recs = [dict(path=str(make_video(tmp_path / f"long{i}.mp4", n_frames=150, size=(240, 320), audio=False,
                                     seed=i)), label=0, label_name="x", split="train") for i in range(2)]
    build_manifest(recs, tmp_path / "in.csv", workers=1, verbose=False)
    out = tmp_path / "killed-out"
    cmd = [sys.executable, "-m", "tsamlib", "prepare", str(tmp_path / "in.csv"), "--out", str(out), "--workers", "2",
           "--short-side", "0", "--quality", "100"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=Path(__file__).resolve().parents[2])
    deadline = time.time() + 60
    while time.time() < deadline and not any(d.glob("*.jpg") for d in out.glob(f"*/.*{TMP_SUFFIX}")):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    temp = list(out.glob(f"*/.*{TMP_SUFFIX}"))
    assert temp, "no temporary folder seen before the kill"
    time.sleep(1.0)
    alive = []
    for d in Path("/proc").iterdir():
        try:
            if str(out).encode() in (d / "cmdline").read_bytes():
                alive.append(d.name)
        except OSError:
            pass
    assert not alive, f"worker processes outlived the killed parent: {alive}"
    res = prepare_dataset(tmp_path / "in.csv", out, short_side=0, quality=100, workers=1, verbose=False)
    assert res.removed_temp >= 1 and not list(out.glob(f"*/.*{TMP_SUFFIX}"))
    assert res.converted + res.skipped == 2 and (res.table["n_frames"] == 150).all()
