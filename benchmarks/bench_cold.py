"""Cold against warm reads of prepared clips: ms per 16+1 clip (16 frames + the audio frame), one core.

A read is what a loader worker does for one training sample, ``VideoDataset.load``: list the frame folder, decode 16
JPEGs, training transforms (crop 224 out of 256, flip, normalise), then the audio frame (224 x 224). Cold: every file
of the clip (frames, ``.wav``, ``mels-*.npz``, ``prepare.json``) written back and dropped from the page cache
(``os.posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)``), and a fresh audio frame with an empty mel cache: the clip's
first read in a run. Warm: the same read again at once (files in the page cache, the mel cache filled where the audio
comes from a ``.wav``). Audio stored by ``prepare`` in three ways, side by side on the same clips in one run:

- ``wav``: the ``.wav`` at the source rate, all channels (prepare without log-mels): decode, mix, resample, 3 log-mels;
- ``wav-model-rate``: a 16-bit ``.wav`` already mono at the model's rate (22050 Hz): decode, 3 log-mels;
- ``mels``: the log-mels themselves (``prepare --mels``), read first: no spectrogram computed.

The default layout (short side 256, the library's front end) and the authors' (10 fps, height 256, their front end:
channel 0 at the file's rate, so no model-rate variant) are both measured; 224 mel bands (the paper's). Per clip,
every variant in turn, cold and warm interleaved, median of ``--repeats``; then the median over the clips, and the
median of the per-clip cold / warm ratios. Writes ``results/benchmarks/prepared_cold.{json,md}``.

    OMP_NUM_THREADS=1 python benchmarks/bench_cold.py            # about 4 minutes on 2 cores

The functions (:func:`clip_files`, :func:`drop_page_cache`, :func:`cold_warm_ms`, :func:`measure`) serve any layout
comparison: give them frame folders and a way to build the reader.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import clips_dir, comparison_videos, cpu_name  # noqa: E402

from tsamlib.data.audio import AudioFrame, load_waveform  # noqa: E402
from tsamlib.data.loaders import VideoDataset  # noqa: E402
from tsamlib.data.transforms import ClipTransform  # noqa: E402

__all__ = ["clip_files", "drop_page_cache", "resident_bytes", "cold_warm_ms", "measure", "main"]

REPO = Path(__file__).resolve().parents[1]
CMD = "OMP_NUM_THREADS=1 python benchmarks/bench_cold.py"


def clip_files(folder: Path) -> list[Path]:
    """Every file a read of prepared clip ``folder`` may open: its frames, log-mels and record, and ``<folder>.wav``."""
    files = [Path(e.path) for e in os.scandir(folder) if e.is_file()]
    wav = folder.parent / (folder.name + ".wav")
    return files + ([wav] if wav.is_file() else [])


def drop_page_cache(files: Iterable[Path]) -> None:
    """Write ``files`` back (fsync) and drop their pages from the page cache: the next read comes from the disk."""
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def resident_bytes(files: Iterable[Path]) -> int | None:
    """Bytes of ``files`` in the page cache (util-linux ``fincore``), None where it is missing."""
    exe = shutil.which("fincore")
    if exe is None:
        return None
    out = subprocess.run([exe, "--bytes", "--noheadings", "--output", "RES", *map(str, files)], capture_output=True,
                         text=True, check=True).stdout
    return sum(int(x) for x in out.split())


def cold_warm_ms(read: Callable[[], object], files: list[Path], fresh: Callable[[], None], repeats: int) -> tuple:
    """(cold ms, warm ms), medians of ``repeats``: cold after ``drop_page_cache(files)`` and ``fresh()`` (new reader
    state, e.g. an empty mel cache), warm right after it."""
    cold, warm = [], []
    for _ in range(repeats):
        drop_page_cache(files)
        fresh()
        t = time.perf_counter()
        read()
        cold.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        read()
        warm.append((time.perf_counter() - t) * 1000)
    return statistics.median(cold), statistics.median(warm)


def measure(folders: list[Path], make_audio: Callable[[str], AudioFrame | None], repeats: int, tmp: Path,
            n_frames: int = 16, resize: int = 256, img_size: int = 224) -> list[dict]:
    """Per clip folder: cold and warm ms of one training read (``VideoDataset.load``) with the audio frame
    ``make_audio(cache_dir)`` (None: video only), made anew with an empty mel cache before each cold read."""
    tfm = ClipTransform(img_size, resize, train=True)
    rows = []
    for folder in folders:
        df = pd.DataFrame(dict(path=[str(folder)], label=0))
        state = {}

        def fresh():
            state["ds"] = VideoDataset(df, n_frames, "train", tfm, make_audio(tempfile.mkdtemp(dir=tmp)))

        def read():
            state["ds"].load(0, np.random.default_rng(0))

        c, w = cold_warm_ms(read, clip_files(folder), fresh, repeats)
        rows.append(dict(clip=folder.name, cold=round(c, 1), warm=round(w, 1), ratio=round(c / w, 2)))
    return rows


def _prepare(videos: list[Path], out: Path, **kw) -> list[Path]:
    from tsamlib.data.manifest import build_manifest
    from tsamlib.data.prepare import prepare_dataset
    build_manifest([dict(path=str(v), label=0, label_name="clips", split="train") for v in videos],
                   out.parent / f"{out.name}.csv", verbose=False)
    res = prepare_dataset(out.parent / f"{out.name}.csv", out, workers=os.cpu_count(), verbose=False, **kw)
    bad = res.table.loc[res.table["problem"] != ""]
    if len(bad):
        sys.exit(f"prepare failed: {bad[['source', 'problem']].to_string()}")
    return [Path(p) for p in res.table["path"]]


def _model_rate_copy(folders: list[Path], out: Path, sr: int) -> list[Path]:
    """A copy of the clip folders whose ``.wav`` is mono 16-bit at ``sr`` (what the library's front end reads)."""
    import soundfile
    copies = []
    for f in folders:
        dst = out / f.name
        shutil.copytree(f, dst)
        w = load_waveform(f, sr)
        if w.has_audio:
            soundfile.write(str(out / f"{f.name}.wav"), w.wave, sr, subtype="PCM_16", format="WAV")
        copies.append(dst)
    return copies


def _summary(rows: list[dict]) -> dict:
    return dict(cold=round(statistics.median(r["cold"] for r in rows), 1),
                warm=round(statistics.median(r["warm"] for r in rows), 1),
                ratio=round(statistics.median(r["ratio"] for r in rows), 2),
                worst_ratio=round(max(r["ratio"] for r in rows), 2))


def to_markdown(result: dict) -> str:
    m = result["meta"]
    lines = [f"Cold against warm reads of prepared clips, `{CMD}`. Clips: {m['clips']}; machine: {m['machine']}, "
             "one core "
             f"(`torch.set_num_threads(1)`); load average {m['load_average'][0]} at the start, "
             f"{m['load_average'][1]} at the end. ms per 16+1 training read (`VideoDataset.load`: 16 JPEGs, crop 224 "
             f"of 256, flip, normalise, audio frame 224 x 224 with {m['n_mels']} mel bands). Cold: the clip's files "
             "fsynced and dropped from the page cache (`posix_fadvise DONTNEED`; "
             f"{m['resident_after_drop']} bytes of them still cached after the drop, by `fincore`), a fresh audio "
             "frame and an empty mel cache; warm: the same read again at once. Per clip the median of "
             f"{m['repeats']} repeats, then the median over the {m['n_clips']} clips; cold / warm is the median of "
             "the per-clip ratios (worst clip in brackets).", "",
             "| layout | audio stored by prepare | cold ms | warm ms | cold / warm |", "|---|---|---|---|---|"]
    for v in result["variants"]:
        s = v["summary"]
        lines.append(f"| {v['layout']} | {v['audio']} | {s['cold']:.0f} | {s['warm']:.0f} | {s['ratio']} "
                     f"({s['worst_ratio']}) |")
    lines += ["", f"Storage: {m['storage']}", "",
              "Reading: the log-mels dominate a cold read when they must be computed (decode, resample, 3 "
              "spectrograms); a `.wav` already at the model's rate saves only the resampling. Stored log-mels make "
              "the first read of a clip cost about what every later one does, which is why `prepare` writes them "
              "(`--mels`, default the run defaults `tsamlib:64`, `authors:224` for the authors' layout). The rest of "
              "a cold read's extra time is the disk's: a read asks for its 16 frames and its log-mels at once "
              "(`tsamlib.data.video.prefetch`, `POSIX_FADV_WILLNEED`) instead of one file after the other."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--n-mels", type=int, default=224)
    ap.add_argument("--out", type=Path, default=REPO / "results" / "benchmarks")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    load_start = os.getloadavg()[0]
    n = args.n_mels
    with tempfile.TemporaryDirectory(dir=REPO.parent if os.access(REPO.parent, os.W_OK) else None) as t:
        tmp = Path(t)
        videos, what = comparison_videos(tmp) if clips_dir(required=False) is None else (
            sorted(clips_dir().glob("*.mp4")), f"the {len(list(clips_dir().glob('*.mp4')))} real Kinetics clips")
        mels_t, mels_a = f"tsamlib:{n}", f"authors:{n}"
        plain = _prepare(videos, tmp / "tsamlib-wav", mels="none")
        (tmp / "tsamlib-wav22k").mkdir()
        model_rate = _model_rate_copy(plain, tmp / "tsamlib-wav22k", 22050)
        with_mels = _prepare(videos, tmp / "tsamlib-mels", mels=[mels_t])
        authors = _prepare(videos, tmp / "authors-mels", layout="authors", fps=10, mels=[mels_a])

        def audio(frontend: str, stored: bool) -> Callable[[str], AudioFrame]:
            def make(cache_dir: str) -> AudioFrame:
                af = AudioFrame(size=(224, 224), n_mels=n, cache_dir=cache_dir, frontend=frontend)
                if not stored:                  # the .wav variants: never the stored log-mels
                    af._prepared = lambda path: None
                return af
            return make

        default, theirs = "tsamlib (short side 256)", "authors (10 fps, height 256)"
        plan = [(default, "none (video only)", plain, lambda cache_dir: None),
                (default, "wav (source rate)", plain, audio("tsamlib", False)),
                (default, "wav-model-rate (22050 Hz mono)", model_rate, audio("tsamlib", False)),
                (default, f"mels ({mels_t})", with_mels, audio("tsamlib", True)),
                (theirs, "wav (source rate)", authors, audio("authors", False)),
                (theirs, f"mels ({mels_a})", authors, audio("authors", True))]
        for _, _, folders, make in plan:         # warm-up: imports, librosa's numba compilation
            measure(folders[:1], make, 1, tmp)
        per_clip: list[list[dict]] = [[] for _ in plan]
        for i in range(len(videos)):             # per clip, every variant one after the other: side by side
            for rows, (_, _, folders, make) in zip(per_clip, plan):
                rows += measure(folders[i:i + 1], make, args.repeats, tmp)
            print(videos[i].name, [rows[-1]["cold"] for rows in per_clip], flush=True)
        variants = [dict(layout=layout, audio=stored, per_clip=rows, summary=_summary(rows))
                    for rows, (layout, stored, _, _) in zip(per_clip, plan)]
        drop_page_cache(clip_files(with_mels[0]))
        resident = resident_bytes(clip_files(with_mels[0]))
        mb = lambda fs: round(sum(p.stat().st_size for f in fs for p in clip_files(f)) / 1e6, 1)   # noqa: E731
        storage = (f"{mb(plain)} MB for the default layout with the source-rate `.wav`s, {mb(model_rate)} MB with "
                   f"22050 Hz mono `.wav`s, {mb(with_mels)} MB with the source `.wav`s and the {mels_t} log-mels; the "
                   f"authors' layout with its `.wav`s and {mels_a} log-mels {mb(authors)} MB; the mp4s "
                   f"{round(sum(v.stat().st_size for v in videos) / 1e6, 1)} MB.")
    meta = dict(clips=what, n_clips=len(videos), repeats=args.repeats, n_mels=n, storage=storage,
                resident_after_drop=resident, machine=f"{cpu_name()}, {os.cpu_count()} cores, "
                f"torch {torch.__version__}", load_average=[round(load_start, 1), round(os.getloadavg()[0], 1)])
    result = dict(meta=meta, variants=variants)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "prepared_cold.json").write_text(json.dumps(result, indent=1))
    md = to_markdown(result)
    (args.out / "prepared_cold.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
