"""The authors' frame layout (``prepare --layout authors`` / ``--height``, :mod:`tsamlib.data.extract`).

Expectations are computed here from the documented rules, not from the code under test:

- FFmpeg's ``fps`` filter (doc/filters.texi "fps"; libavfilter/vf_fps.c): each input timestamp t is rounded to the
  output tick ``round(t * F)`` (``round=near``: halves away from zero); output tick k shows the last input frame
  whose tick is <= k; the stream ends at the tick of the end of the last frame (``eof_action=round``), and
  ``ffmpeg``'s constant-rate image output starts at the file's time 0 (a later first picture is repeated before it).
  So a clip whose last frame ends at time D (from the file's start) gives ``round(F * D)`` frames.
- ``scale=-1:H``: H pixels high, ``round(W * H / h)`` wide (``av_rescale``: halves up).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import struct
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_video

from tsamlib.__main__ import main as cli
from tsamlib.data.manifest import build_manifest
from tsamlib.data.prepare import prepare_dataset
from tsamlib.data.video import load_clip

AUTHORS_CMD = 'ffmpeg -i VIDEO -vf "scale=-1:256,fps=10" -q:v 0 OUT/%06d.jpg'   # video2frames.py


def half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


def expected_width(w: int, h: int, height: int = 256) -> int:
    return half_up(Fraction(w * height, h))


def frame_times(path: Path) -> tuple[list[Fraction], Fraction]:
    """Presentation times of the video frames (s, from the file's start, in display order) and the end of the last
    frame, from the container's packets (nothing decoded)."""
    import av
    with av.open(str(path)) as c:
        st = c.streams.video[0]
        tb = st.time_base
        start = Fraction(c.start_time or 0, 1_000_000)
        pts = sorted((p.pts, p.duration) for p in c.demux(st) if p.pts is not None)
    times = [p * tb - start for p, _ in pts]
    return times, (pts[-1][0] + pts[-1][1]) * tb - start


def expected_selection(times: list[Fraction], end: Fraction, fps: int = 10) -> list[int]:
    """Index of the input frame each output frame shows (module docstring's rule)."""
    ticks = [half_up(t * fps) for t in times]
    out = []
    for k in range(half_up(end * fps)):
        shown = [i for i, q in enumerate(ticks) if q <= k]
        out.append(shown[-1] if shown else 0)
    return out


def jpeg_size(path: Path) -> tuple[int, int]:
    """(width, height) from the JPEG's SOF marker."""
    d = path.read_bytes()
    i = 2
    while i < len(d):
        marker, length = d[i + 1], struct.unpack(">H", d[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            h, w = struct.unpack(">HH", d[i + 5:i + 9])
            return w, h
        i += 2 + length
    raise ValueError(f"{path}: no SOF marker")


def gray_video(path: Path, levels: list[int], fps: int, size=(64, 96), first_pts: int = 0,
               audio_from_zero: bool = False) -> Path:
    """An H.264 .mp4 whose frame i is flat grey ``levels[i]`` (timestamps from ``first_pts`` in 1/fps steps); with
    ``audio_from_zero`` an AAC track starting at 0 makes the file start before the video."""
    import av
    h, w = size
    with av.open(str(path), "w", format="mp4") as c:
        vs = c.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"threads": "1", "preset": "ultrafast", "crf": "4"}
        vs.codec_context.time_base = Fraction(1, fps)
        aus = c.add_stream("aac", rate=16000, layout="mono") if audio_from_zero else None
        if aus is not None:
            n = int(16000 * (first_pts + len(levels)) / fps)
            frame = av.AudioFrame.from_ndarray(np.zeros((1, n), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, 0
            c.mux(aus.encode(frame))
            c.mux(aus.encode(None))
        for i, v in enumerate(levels):
            f = av.VideoFrame.from_ndarray(np.full((h, w, 3), v, np.uint8), format="rgb24")
            f.pts, f.time_base = first_pts + i, Fraction(1, fps)
            c.mux(vs.encode(f))
        c.mux(vs.encode())
    return path


def prepare_one(video: Path, tmp: Path, **kw) -> tuple[Path, pd.Series]:
    build_manifest([dict(path=str(video), label=0, label_name="x", split="train")], tmp / "in.csv", workers=1,
                   verbose=False)
    res = prepare_dataset(tmp / "in.csv", tmp / "out", workers=1, verbose=False, **kw)
    row = res.table.iloc[0]
    assert row["problem"] == "", row["problem"]
    return Path(row["path"]), row


def frame_means(folder: Path) -> list[float]:
    from PIL import Image
    return [float(np.asarray(Image.open(f).convert("L")).mean()) for f in sorted(folder.glob("*.jpg"))]


# ------------------------------------------------------------------------------------------------------ real clips
@pytest.fixture(scope="module")
def authors_prepared(kinetics_clips, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("authors_layout")
    videos = sorted((kinetics_clips / "videos").glob("*.mp4"))
    build_manifest([dict(path=str(v), label=0, label_name="k", split="train") for v in videos], tmp / "in.csv",
                   workers=2, verbose=False)
    res = prepare_dataset(tmp / "in.csv", tmp / "out", layout="authors", fps=10, height=256, mels="none", workers=2,
                          verbose=False)
    return videos, res


def test_real_clips_frame_count_and_size_are_ffmpegs(authors_prepared):
    """Every real clip: round(10 x duration) frames (the 5.2 s clip 52, the 10 s ones 100), all 256 high and
    round(W * 256 / H) wide (the 270x360 portrait clip 192, 320x180 upscaled to 455), named 000001.jpg on."""
    import av
    videos, res = authors_prepared
    assert (res.table["problem"] == "").all() and res.converted == len(videos) == 12
    by_source = {Path(s).name: r for s, (_, r) in zip(res.table["source"], res.table.iterrows())}
    counts, widths = {}, {}
    for v in videos:
        row = by_source[v.name]
        times, end = frame_times(v)
        n = half_up(end * 10)
        with av.open(str(v)) as c:
            w, h = c.streams.video[0].width, c.streams.video[0].height
        folder = Path(row["path"])
        names = sorted(p.name for p in folder.glob("*.jpg"))
        assert names == [f"{k:06d}.jpg" for k in range(1, n + 1)], v.name
        assert row["n_frames"] == n and row["fps"] == 10.0 and row["duration"] == pytest.approx(n / 10)
        assert {jpeg_size(folder / name) for name in names} == {(expected_width(w, h), 256)}, v.name
        counts[v.stem[:11]], widths[v.stem[:11]] = n, expected_width(w, h)
        meta = json.loads((folder / "prepare.json").read_text())
        assert meta["params"] == dict(layout="authors", height=256, fps=10.0, qscale=0, names="%06d.jpg", version=1)
    assert counts["ZZcoTkIcLl8"] == 52 and sorted(set(counts.values())) == [52, 100]
    assert widths["ZZHMs7BdcCc"] == 192 and widths["ZZZdwibj-Sg"] == 455 and widths["ZZidjRsvAbs"] == 313


def test_real_clips_load_like_any_frame_folder(authors_prepared):
    _, res = authors_prepared
    x, idx = load_clip(res.table["path"].iat[0], 16, "valid")
    assert x.shape[0] == 16 and x.shape[1] == 256 and str(x.dtype) == "torch.uint8"
    assert (np.diff(idx) > 0).all()


# ------------------------------------------------------------------------------------------------------ synthetic
def test_portrait_video_becomes_144_wide(tmp_path):
    video = make_video(tmp_path / "portrait.mp4", n_frames=30, size=(640, 360), fps=30, audio=False)
    folder, row = prepare_one(video, tmp_path, layout="authors", fps=10, mels="none")
    files = sorted(folder.glob("*.jpg"))
    assert len(files) == row["n_frames"] == 10                  # 30 frames at 30 fps: 1 s
    assert {jpeg_size(f) for f in files} == {(144, 256)}
    assert not row["has_audio"]


@pytest.mark.parametrize("fps, n, first_pts", [(24, 30, 0), (12, 12, 0), (30, 31, 0), (24, 30, 8)])
def test_frames_are_the_ones_the_fps_filter_chooses(tmp_path, fps, n, first_pts):
    """Flat grey frames, one level each: every output frame is the input frame the rule picks. 24 fps puts input
    frame 6 exactly on tick 2.5 (rounded up: tick 2 shows frame 5) and ends the 30 frames on 12.5 (13 frames);
    12 frames at 12 fps end at 1 s (10 frames, not the 9 the last frame's own timestamp would give); a video starting
    8/24 s after the file (the audio starts at 0) has its first picture repeated for the ticks before it."""
    levels = [16 + 7 * i for i in range(n)]
    video = gray_video(tmp_path / "grey.mp4", levels, fps, first_pts=first_pts, audio_from_zero=first_pts > 0)
    times, end = frame_times(video)
    want = expected_selection(times, end)
    folder, row = prepare_one(video, tmp_path, layout="authors", fps=10, mels="none")
    got = frame_means(folder)
    assert len(got) == row["n_frames"] == len(want)
    picked = [int(np.argmin([abs(g - lv) for lv in levels])) for g in got]
    assert picked == want
    if (fps, n, first_pts) == (24, 30, 0):
        assert len(want) == 13 and want[2] == 5
    if (fps, n) == (12, 12):
        assert len(want) == 10
    if first_pts:
        assert want[:4] == [0, 0, 0, 0] and len(want) == 16


def test_native_rate_keeps_every_frame_and_height_scales_up(tmp_path):
    video = make_video(tmp_path / "small.mp4", n_frames=9, size=(48, 64), fps=9, audio=False)
    folder, row = prepare_one(video, tmp_path, layout="authors", fps=None, height=100, mels="none")
    assert row["n_frames"] == 9 and row["fps"] == pytest.approx(9.0)
    assert {jpeg_size(f) for f in folder.glob("*.jpg")} == {(expected_width(64, 48, 100), 100)}   # 133x100


MPEG1_INTRA = [8, 16, 19, 22, 26, 27, 29, 34, 16, 16, 22, 24, 27, 29, 34, 37, 19, 22, 26, 27, 29, 34, 34, 38,
               22, 22, 26, 27, 29, 34, 37, 40, 22, 26, 27, 29, 32, 35, 40, 48, 26, 27, 29, 32, 35, 40, 48, 58,
               26, 27, 29, 34, 38, 46, 56, 69, 27, 29, 35, 38, 46, 56, 69, 83]   # MPEG-1's default intra matrix


def test_jpeg_quantiser_is_ffmpegs_q0(tmp_path):
    """``-q:v 0``: FFmpeg's JPEG encoder raises quantiser 0 to its minimum, 2, and writes one table for all three
    components: its default intra matrix x 2 / 8 (the DC entry stays 8)."""
    from PIL import Image
    video = make_video(tmp_path / "q.mp4", n_frames=10, size=(96, 128), fps=10, audio=False)
    folder, _ = prepare_one(video, tmp_path, layout="authors", fps=10, mels="none")
    with Image.open(sorted(folder.glob("*.jpg"))[0]) as im:
        tables = im.quantization
    assert list(tables) == [0]
    assert list(tables[0]) == [8] + [m * 2 // 8 for m in MPEG1_INTRA[1:]]


# ------------------------------------------------------------------------------------------------ rerun, errors
def test_layout_is_recorded_and_a_rerun_with_another_layout_redoes_the_clip(tmp_path):
    video = make_video(tmp_path / "v.mp4", n_frames=24, size=(96, 128), fps=12)
    build_manifest([dict(path=str(video), label=0, label_name="x", split="train")], tmp_path / "in.csv", workers=1,
                   verbose=False)
    out = tmp_path / "out"
    first = prepare_dataset(tmp_path / "in.csv", out, workers=1, verbose=False, mels="none")
    folder = Path(first.table["path"].iat[0])
    assert json.loads((folder / "prepare.json").read_text())["params"]["layout"] == "tsamlib"
    assert sorted(p.name for p in folder.glob("*.jpg"))[0] == "00001.jpg" and first.table["n_frames"].iat[0] == 24
    authors = prepare_dataset(tmp_path / "in.csv", out, workers=1, verbose=False, layout="authors", fps=10,
                              mels="none")
    assert authors.converted == 1 and authors.table["n_frames"].iat[0] == 20
    assert sorted(p.name for p in folder.glob("*.jpg")) == [f"{k:06d}.jpg" for k in range(1, 21)]
    again = prepare_dataset(tmp_path / "in.csv", out, workers=1, verbose=False, layout="authors", fps=10, mels="none")
    assert (again.converted, again.skipped) == (0, 1)
    other_height = prepare_dataset(tmp_path / "in.csv", out, workers=1, verbose=False, layout="authors", fps=10,
                                   height=128, mels="none")
    assert other_height.converted == 1 and jpeg_size(folder / "000001.jpg")[1] == 128
    back = prepare_dataset(tmp_path / "in.csv", out, workers=1, verbose=False, mels="none")
    assert back.converted == 1 and back.table["n_frames"].iat[0] == 24
    # a clip recorded before layouts existed (no "layout" key) is a default-layout clip: still complete
    meta = json.loads((folder / "prepare.json").read_text())
    del meta["params"]["layout"]
    (folder / "prepare.json").write_text(json.dumps(meta))
    old = prepare_dataset(tmp_path / "in.csv", out, workers=1, verbose=False, mels="none")
    assert (old.converted, old.skipped) == (0, 1)


def test_bad_options_name_the_flag_and_the_fix(tmp_path, capsys):
    video = make_video(tmp_path / "v.mp4", n_frames=6, size=(48, 64), fps=6)
    build_manifest([dict(path=str(video), label=0, label_name="x", split="train")], tmp_path / "in.csv", workers=1,
                   verbose=False)
    m, out = str(tmp_path / "in.csv"), str(tmp_path / "out")
    with pytest.raises(ValueError, match=r"--layout.*choose one of \['tsamlib', 'authors'\]"):
        prepare_dataset(m, out, layout="ffmpeg", verbose=False)
    with pytest.raises(ValueError, match=r"--height.*positive integer"):
        prepare_dataset(m, out, layout="authors", height=0, verbose=False)
    with pytest.raises(ValueError, match=r"--mels 'tsamlib:2'.*FRONTEND:N_MELS"):
        prepare_dataset(m, out, mels=["tsamlib:2"], verbose=False)
    for argv, text in ((["--height", "0"], "argument --height: 0 is out of range: allowed [1, 4320]"),
                       (["--height", "-5"], "argument --height: -5 is out of range"),
                       (["--layout", "ffmpeg"], "argument --layout: invalid choice: 'ffmpeg'")):
        with pytest.raises(SystemExit) as e:
            cli(["prepare", m, "--out", out, *argv])
        assert e.value.code == 2 and text in capsys.readouterr().err
    for argv, text in ((["--layout", "authors", "--short-side", "128"], "--short-side belongs to the default layout"),
                       (["--height", "256", "--quality", "80"], "--quality belongs to the default layout"),
                       (["--layout", "tsamlib", "--height", "256"], "--height is the authors' layout's"),
                       (["--mels", "librosa:64"], "--mels 'librosa:64': expected FRONTEND:N_MELS")):
        assert cli(["prepare", m, "--out", out, *argv]) == 2
        assert text in capsys.readouterr().err
    assert not (tmp_path / "out" / "manifest.csv").exists()
    # frame folders are not the authors' input (they framed videos)
    folder = tmp_path / "frames" / "clip"
    folder.mkdir(parents=True)
    from PIL import Image
    for i in range(3):
        Image.new("RGB", (32, 24)).save(folder / f"{i + 1:05d}.jpg")
    build_manifest([dict(path=str(folder), label=0, label_name="x", split="train")], tmp_path / "f.csv", workers=1,
                   verbose=False)
    with pytest.raises(ValueError, match="converts video files.*default layout"):
        prepare_dataset(tmp_path / "f.csv", tmp_path / "out2", layout="authors", verbose=False)


def test_cli_height_alone_selects_the_authors_layout_at_10_fps(tmp_path, capsys):
    video = make_video(tmp_path / "v.mp4", n_frames=24, size=(96, 128), fps=12, audio=False)
    build_manifest([dict(path=str(video), label=0, label_name="x", split="train")], tmp_path / "in.csv", workers=1,
                   verbose=False)
    assert cli(["prepare", str(tmp_path / "in.csv"), "--out", str(tmp_path / "o"), "--height", "64", "--mels", "none",
                "--workers", "1"]) == 0
    folder = tmp_path / "o" / "x" / "v"
    assert sorted(p.name for p in folder.glob("*.jpg")) == [f"{k:06d}.jpg" for k in range(1, 21)]   # 2 s at 10 fps
    assert jpeg_size(folder / "000001.jpg") == (85, 64)
    assert json.loads((folder / "prepare.json").read_text())["params"]["layout"] == "authors"
    assert "1 usable" in capsys.readouterr().out


# ------------------------------------------------------------------------------- against a real ffmpeg, if any
def _ffmpeg() -> str | None:
    exe = os.environ.get("TSAM_FFMPEG") or shutil.which("ffmpeg")
    return exe if exe and Path(exe).is_file() else None


@pytest.mark.skipif(_ffmpeg() is None, reason="no ffmpeg program (set TSAM_FFMPEG to one) to compare with")
def test_same_frames_as_the_authors_ffmpeg_command(kinetics_clips, tmp_path):
    """The authors' command run by a real ``ffmpeg`` and the PyAV version: same file names, sizes and quantisation
    tables; pixels within JPEG noise (libswscale versions round the range conversion differently)."""
    from PIL import Image
    videos = sorted((kinetics_clips / "videos").glob("*.mp4"))[:4]
    videos.append(gray_video(tmp_path / "late.mp4", [16 + 7 * i for i in range(30)], 24, first_pts=8,
                             audio_from_zero=True))
    portrait = make_video(tmp_path / "portrait.mp4", n_frames=15, size=(640, 360), fps=30, audio=False)
    for angle in ("90", "180", "-90"):                        # a display matrix: ffmpeg turns the video upright
        rotated = tmp_path / f"rot{angle}.mp4"
        made = subprocess.run([_ffmpeg(), "-loglevel", "error", "-display_rotation", angle, "-i", str(portrait),
                               "-c", "copy", str(rotated)], capture_output=True)
        if made.returncode == 0:                              # older ffmpeg programs lack -display_rotation
            videos.append(rotated)
    for v in videos:
        ref = tmp_path / "ffmpeg" / v.stem
        ref.mkdir(parents=True)
        subprocess.run([_ffmpeg(), "-loglevel", "error", "-threads", "1", "-i", str(v), "-vf", "scale=-1:256,fps=10",
                        "-q:v", "0", str(ref / "%06d.jpg")], check=True)
        from tsamlib.data.extract import extract_frames
        ours = tmp_path / "ours" / v.stem
        ours.mkdir(parents=True)
        extract_frames(v, ours, fps=10, height=256)
        a, b = sorted(ref.iterdir()), sorted(ours.iterdir())
        assert [p.name for p in a] == [p.name for p in b], v.name
        for x, y in zip(a, b):
            with Image.open(x) as ix, Image.open(y) as iy:
                assert ix.size == iy.size and ix.quantization == iy.quantization
                diff = np.abs(np.asarray(ix.convert("RGB"), np.int16) - np.asarray(iy.convert("RGB"), np.int16))
            assert diff.mean() < 2.5, (v.name, x.name, diff.mean())
