"""Data-loading speed: ms per clip on one core (decode + transforms, optional audio frame).

Measures `VideoDataset.load` (what a worker does per sample) for 8 and 16 frames, video only and with
the audio frame (cold: empty cache; cached: second read), from mp4 (decord) and from a JPEG frame
folder made from one clip with PIL, at the paper's sizes (256/224) and small CPU sizes (72/64).
Writes ``results/benchmarks/data_loading.{json,md}`` and the table into the "## Data loading"
section of ``results/benchmarks/README.md``.

    OMP_NUM_THREADS=1 python benchmarks/bench_data.py            # about 1 minute on 2 cores
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tsamlib.audio import AudioFrame
from tsamlib.data import VideoDataset
from tsamlib.transforms import ClipTransform

__all__ = ["main"]

REPO = Path(__file__).resolve().parents[1]
CMD = "OMP_NUM_THREADS=1 python benchmarks/bench_data.py"


def clips_dir() -> Path:
    root = Path(os.environ.get("TSAM_KINETICS_CLIPS", REPO.parent / "shared" / "kinetics-clips"))
    if not (root / "videos").is_dir(): sys.exit(f"Kinetics clips not found at {root}: set TSAM_KINETICS_CLIPS")
    return root / "videos"


def make_frame_folder(video: Path, out: Path) -> Path:
    "Every frame of `video` as <out>/<stem>/00001.jpg ... (PIL, quality 90)."
    import av
    from PIL import Image
    d = out / video.stem
    d.mkdir(parents=True, exist_ok=True)
    with av.open(str(video)) as c:
        for i, f in enumerate(c.decode(video=0)):
            Image.fromarray(f.to_ndarray(format="rgb24")).save(d / f"{i + 1:05d}.jpg", quality=90)
    return d


def time_ms(fn, repeats: int) -> float:
    "Median wall time of `fn()` in ms."
    ts = []
    for _ in range(repeats):
        t = time.perf_counter(); fn(); ts.append((time.perf_counter() - t) * 1000)
    return statistics.median(ts)


def bench(paths: list[Path], source: str, n_frames: int, resize: int, img_size: int, audio: str,
          repeats: int, tmp: Path) -> float:
    "Median over clips of the per-clip median ms, for one configuration (audio: off/cold/cached)."
    df = pd.DataFrame(dict(path=[str(p) for p in paths], label=0))
    tfm = ClipTransform(img_size, resize, train=True)
    per_clip = []
    for i in range(len(paths)):
        if audio == "off":
            ds = VideoDataset(df, n_frames, "train", tfm)
            per_clip.append(time_ms(lambda: ds.load(i, np.random.default_rng(0)), repeats))
        elif audio == "cold":
            def cold():
                af = AudioFrame(size=(img_size, img_size), cache_dir=tempfile.mkdtemp(dir=tmp))
                VideoDataset(df, n_frames, "train", tfm, af).load(i, np.random.default_rng(0))
            per_clip.append(time_ms(cold, repeats))
        else:
            af = AudioFrame(size=(img_size, img_size), cache_dir=tempfile.mkdtemp(dir=tmp))
            ds = VideoDataset(df, n_frames, "train", tfm, af)
            ds.load(i, np.random.default_rng(0))                        # fill the cache
            per_clip.append(time_ms(lambda: ds.load(i, np.random.default_rng(1)), repeats))
    return statistics.median(per_clip)


def audio_only(paths: list[Path], img_size: int, repeats: int, tmp: Path) -> dict:
    "Audio frame alone: cold (decode + 3 mels + image) vs cached (load + crop + image), ms."
    cold, hot = [], []
    for p in paths:
        cold.append(time_ms(lambda: AudioFrame(size=(img_size, img_size), cache_dir=tempfile.mkdtemp(dir=tmp))(
            p, train=True, rng=np.random.default_rng(0)), repeats))
        af = AudioFrame(size=(img_size, img_size), cache_dir=tempfile.mkdtemp(dir=tmp))
        af(p)
        hot.append(time_ms(lambda: af(p, train=True, rng=np.random.default_rng(0)), repeats))
    c, h = statistics.median(cold), statistics.median(hot)
    return dict(img_size=img_size, cold_ms=round(c, 1), cached_ms=round(h, 1), ratio=round(h / c, 3))


def to_markdown(rows: list[dict], audio_rows: list[dict], meta: dict) -> str:
    lines = [f"ms per clip, one core (`torch.set_num_threads(1)`), median over {meta['n_clips']} clips of the "
             f"median of {meta['repeats']} repeats; training transforms. mp4: {meta['clips']}; JPEG: all frames "
             f"of {meta['jpeg_from']} as a folder. Machine: {meta['machine']}; "
             "repeat runs differ by up to about 30% when other jobs share the cores; mp4 time is dominated by H.264 "
             "seeking/decoding (720p clips cost most), JPEG folders avoid it.", "",
             "| source | frames | resize/crop | video only | + audio (cold) | + audio (cached) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        cell = lambda v: "-" if v != v else f"{v:.0f}"            # NaN: not measured
        lines.append(f"| {r['source']} | {r['n_frames']} | {r['resize']}/{r['img_size']} | {cell(r['off'])} | "
                     f"{cell(r['cold'])} | {cell(r['cached'])} |")
    lines += ["", "Audio frame alone (mp4 clips, train-time crop):", "",
              "| size | cold ms | cached ms | cached / cold |", "|---|---|---|---|"]
    lines += [f"| {a['img_size']} | {a['cold_ms']} | {a['cached_ms']} | {a['ratio']} |" for a in audio_rows]
    return "\n".join(lines) + "\n"


def write_readme_section(readme: Path, body: str) -> None:
    "Replace (or append) the '## Data loading' section, leaving other sections alone."
    text = readme.read_text() if readme.exists() else "# Benchmarks\n"
    section = f"## Data loading\n\nProduced by `{CMD}`.\n\n{body}\n"
    lines, out, skip, done = text.splitlines(keepends=True), [], False, False
    for line in lines:
        if line.startswith("## "):
            if line.strip() == "## Data loading": skip, done = True, True; out.append(section); continue
            skip = False
        if not skip: out.append(line)
    if not done: out.append(("\n" if out and not out[-1].endswith("\n\n") else "") + section)
    readme.write_text("".join(out))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-clips", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=REPO / "results" / "benchmarks")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    videos = sorted(clips_dir().glob("*.mp4"), key=lambda p: p.stat().st_size)
    step = max(1, len(videos) // args.n_clips)
    paths = videos[::step][: args.n_clips]                          # small, medium and large files
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        jpeg_src = next(p for p in videos if "ZZXedPVIBEE" in p.name)      # 640x360, 300 frames
        folder = make_frame_folder(jpeg_src, tmp / "frames")
        mp4_same = [jpeg_src]
        rows = []
        for source, srcs in [("mp4 (decord)", paths), ("mp4 (decord), same clip as JPEG", mp4_same), ("JPEG folder", [folder])]:
            for n_frames in (8, 16):
                for resize, img in ((256, 224), (72, 64)):
                    r = dict(source=source, n_frames=n_frames, resize=resize, img_size=img)
                    for audio in ("off", "cold", "cached"):
                        if source == "JPEG folder" and audio != "off":
                            r[audio] = float("nan"); continue        # folders carry no audio track here
                        r[audio] = round(bench(srcs, source, n_frames, resize, img, audio, args.repeats, tmp), 1)
                    rows.append(r); print(r, flush=True)
        audio_rows = [audio_only(paths, s, args.repeats, tmp) for s in (224, 64)]
        print(audio_rows)
    meta = dict(n_clips=len(paths), repeats=args.repeats, clips=", ".join(p.name for p in paths),
                jpeg_from=jpeg_src.name, machine=f"{platform.processor() or platform.machine()}, "
                f"{os.cpu_count()} cores, torch {torch.__version__}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "data_loading.json").write_text(json.dumps(dict(meta=meta, rows=rows, audio=audio_rows), indent=1))
    md = to_markdown(rows, audio_rows, meta)
    (args.out / "data_loading.md").write_text(md)
    write_readme_section(args.out / "README.md", md)
    print(md)


if __name__ == "__main__":
    main()
