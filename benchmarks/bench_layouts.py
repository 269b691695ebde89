"""Data layouts for training: bytes per clip, ms per 16+1 training read on one core (cold and warm), clips/s through
a DataLoader, for every way of storing the clips that this library reads or could read.

A read is one training sample as a loader worker makes it, ``VideoDataset.load``: 16 TSN segments in training mode
(one random frame each), crop 224 out of 256 (multi-scale), flip, normalise, then the audio frame (224 x 224). The
same clips in every layout, side by side in one run:

- ``source``: the mp4s as downloaded (decord), the audio frame computed from their AAC track at every read (a run
  without ``cache_dir``); ``source+cache``: the same with the mel cache filled in an earlier epoch (``cache_dir``);
- ``jpeg``: ``python -m tsamlib prepare`` (the default layout): JPEG, native frame rate, short side 256, PIL quality
  90; ``jpeg-10fps``: the same at ``--fps 10``; ``authors``: ``prepare --layout authors --fps 10`` (FFmpeg's JPEG at
  ``-q:v 0``, 10 fps, height 256);
- ``h264``: made here (``prepare`` cannot yet): the frames of ``jpeg`` re-encoded as one H.264 ``video.mp4`` per clip
  (libx264 through PyAV, native rate, short side 256 rounded down to even sizes, a keyframe every ``--gop`` frames,
  no B-frames, ``--crf``), read by decord;
- ``npy``: made here: the same frames as ``jpeg`` before compression, one uint8 ``frames.npy`` (T, H, W, 3) per clip,
  read through ``np.load(mmap_mode="r")``, the 16 frames' byte ranges prefetched (``POSIX_FADV_WILLNEED``).

Every prepared layout (all but ``source``) stores the same audio: ``prepare``'s ``.wav`` and the log-mels of
``--mels`` (default ``tsamlib:64``, the run defaults), which is what the audio frame reads; the rows differ by their
frames only. ``h264`` and ``npy`` are folders like ``prepare``'s (``video.mp4`` or ``frames.npy`` beside the
log-mels and ``prepare.json``); ``VideoDataset.load`` reads them through :func:`read_clip`, which this script puts in
place of ``tsamlib.data.loaders.load_clip`` (every other path goes on to the library's ``load_clip``).

Cold: every file of the clip written back and dropped from the page cache (``fsync`` + ``POSIX_FADV_DONTNEED``,
:func:`bench_cold.drop_page_cache`; ``fincore`` checks that nothing stayed), a new dataset and audio frame (for
``source+cache`` the cache entry is one of the dropped files): the clip's first read since the files were written
elsewhere. Warm: the same read again at once. Per clip every layout in turn, cold and warm interleaved, median of
``--repeats``; then the median over the clips (and of the per-clip cold / warm ratios). clips/s: a
``TSAMDataLoader`` (batch 8, shuffled, ``--loader-clips`` samples drawn from the clips, page cache warm) with 2
worker processes, and with 16 where ``os.cpu_count()`` has them; median of ``--rounds`` epochs, layouts
interleaved. PSNR: the 16 validation-mode frames of each clip as stored against the same source frames resized the
same way without compression (``npy``), pooled per clip, median over the clips. Writes
``results/benchmarks/data_layouts.{json,md}``.

    OMP_NUM_THREADS=1 python benchmarks/bench_layouts.py            # about 12 minutes on 2 busy cores
    python benchmarks/bench_layouts.py --videos a.mp4 b.mp4 --repeats 1 --rounds 1 --loader-clips 8 --out /tmp/x
    python benchmarks/bench_layouts.py --from-json results/benchmarks/data_layouts.json   # the .md again, same numbers
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cold import clip_files, cold_warm_ms, drop_page_cache, resident_bytes  # noqa: E402
from bench_data import clips_dir, cpu_name  # noqa: E402

import tsamlib.data.loaders as loaders  # noqa: E402
from tsamlib.data.audio import AudioFrame  # noqa: E402
from tsamlib.data.loaders import TSAMDataLoader, VideoDataset  # noqa: E402
from tsamlib.data.transforms import ClipTransform  # noqa: E402
from tsamlib.data.video import load_clip, read_frames, segment_indices  # noqa: E402

__all__ = ["LAYOUTS", "read_clip", "build_raw", "psnr_db", "to_markdown", "main"]

REPO = Path(__file__).resolve().parents[1]
CMD = "OMP_NUM_THREADS=1 python benchmarks/bench_layouts.py"
N_FRAMES, RESIZE, IMG = 16, 256, 224
# key: (frames stored as, audio read from)
LAYOUTS = {
    "source": ("source mp4 (decord)", "the mp4, computed at every read"),
    "source+cache": ("source mp4 (decord)", "mel cache (filled in an earlier epoch)"),
    "jpeg": ("JPEG, native fps, short side 256, quality 90: `prepare` (default)", "stored log-mels"),
    "jpeg-10fps": ("JPEG, 10 fps, short side 256, quality 90: `prepare --fps 10`", "stored log-mels"),
    "authors": ("JPEG, 10 fps, height 256, `-q:v 0`: `prepare --layout authors --fps 10`", "stored log-mels"),
    "h264": ("H.264, native fps, short side 256, keyframe every {gop}, crf {crf} (decord; built here)",
             "stored log-mels"),
    "npy": ("uint8 `.npy`, native fps, short side 256, memory-mapped (built here)", "stored log-mels"),
}
VIDEO_NAME, NPY_NAME = "video.mp4", "frames.npy"


# ------------------------------------------------------------------------------------------- reading
def _read_npy(path: Path, indices: np.ndarray) -> torch.Tensor:
    """Frames ``indices`` of a uint8 ``(T, H, W, 3)`` ``.npy``: their byte ranges prefetched, then copied out."""
    arr = np.load(path, mmap_mode="r")
    size = int(np.prod(arr.shape[1:]))
    if hasattr(os, "posix_fadvise"):
        fd = os.open(path, os.O_RDONLY)
        try:
            for i in np.unique(indices):
                os.posix_fadvise(fd, arr.offset + int(i) * size, size, os.POSIX_FADV_WILLNEED)
        finally:
            os.close(fd)
    return torch.from_numpy(np.ascontiguousarray(arr[indices]))


def read_clip(path, n_segments: int, mode: str = "valid", rng=None, clip_index: int = 0, n_clips: int = 1,
              backend: str = "auto"):
    """``load_clip`` for the folders this script builds (``video.mp4``: decord; ``frames.npy``: memory-mapped);
    any other path goes to the library's :func:`tsamlib.data.video.load_clip`."""
    p = Path(path)
    if p.is_dir():
        if (p / VIDEO_NAME).is_file():
            return load_clip(p / VIDEO_NAME, n_segments, mode, rng, clip_index, n_clips, backend=backend)
        if (p / NPY_NAME).is_file():
            n = np.load(p / NPY_NAME, mmap_mode="r").shape[0]
            idx = segment_indices(n, n_segments, mode, rng=rng, clip_index=clip_index, n_clips=n_clips)
            return _read_npy(p / NPY_NAME, idx), idx
    return load_clip(path, n_segments, mode, rng, clip_index, n_clips, backend=backend)


def stored_frames(folder: Path, indices) -> np.ndarray:
    """Frames ``indices`` of a clip in any of the layouts, uint8 (T, H, W, 3)."""
    idx = np.asarray(indices, dtype=np.int64)
    if (folder / NPY_NAME).is_file():
        return np.load(folder / NPY_NAME, mmap_mode="r")[idx]
    return read_frames(folder / VIDEO_NAME if (folder / VIDEO_NAME).is_file() else folder, idx).numpy()


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of uint8 images ``a`` against ``b`` (pooled over all pixels), inf when equal."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255 ** 2 / mse)


# ------------------------------------------------------------------------------------------- building
def _prepare(videos: list[Path], out: Path, mels: str, **kw) -> list[Path]:
    from tsamlib.data.manifest import build_manifest
    from tsamlib.data.prepare import prepare_dataset
    csv = out.parent / f"{out.name}.csv"
    build_manifest([dict(path=str(v), label=0, label_name="clips", split="train") for v in videos], csv,
                   verbose=False)
    res = prepare_dataset(csv, out, workers=os.cpu_count(), verbose=False, mels=[mels], **kw)
    bad = res.table.loc[res.table["problem"] != ""]
    if len(bad):
        sys.exit(f"prepare failed: {bad[['source', 'problem']].to_string()}")
    return [Path(p) for p in res.table["path"]]


def build_raw(video: str, jpeg: str, jpeg10: str, h264_dir: str, npy_dir: str, gop: int, crf: int) -> dict:
    """From the source ``video``: ``npy_dir/frames.npy`` (every frame resized as ``prepare`` resizes it: decord, short
    side 256, PIL bilinear) and ``h264_dir/video.mp4`` (the same, at even sizes, libx264); the prepared clip's
    audio files copied beside both. Returns the PSNR of ``jpeg``, ``jpeg10`` (prepared folders) and the H.264 at the
    16 validation-mode frames against the uncompressed frames."""
    import av
    from PIL import Image

    from tsamlib.data.decode import video_readers
    from tsamlib.data.prepare import _selection, _target_size
    from tsamlib.data.video import count_frames
    jpeg, h264_dir, npy_dir = Path(jpeg), Path(h264_dir), Path(npy_dir)
    for d in (h264_dir, npy_dir):
        d.mkdir(parents=True, exist_ok=True)
        for f in jpeg.iterdir():
            if f.suffix != ".jpg":
                shutil.copy(f, d / f.name)                           # log-mels, prepare.json
        wav = jpeg.parent / f"{jpeg.name}.wav"
        if wav.is_file():
            shutil.copy(wav, d.parent / f"{d.name}.wav")
    vr = video_readers(video)[0](video)   # decord, or PyAV where decord is not installed
    n, fps = len(vr), float(vr.fps)
    h0, w0 = vr.frames([0])[0].shape[:2]
    h, w = _target_size(h0, w0, RESIZE)
    he, we = max(2, h - h % 2), max(2, w - w % 2)
    valid = segment_indices(n, N_FRAMES, "valid")
    refs = {}
    npy = np.lib.format.open_memmap(npy_dir / NPY_NAME, mode="w+", dtype=np.uint8, shape=(n, h, w, 3))
    with av.open(str(h264_dir / VIDEO_NAME), "w", format="mp4") as c:
        st = c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        st.width, st.height, st.pix_fmt = we, he, "yuv420p"
        st.options = {"crf": str(crf), "preset": "medium", "threads": "1",
                      "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0"}
        for a in range(0, n, 16):
            for j, arr in enumerate(vr.frames(np.arange(a, min(n, a + 16)))):
                im = Image.fromarray(arr)
                npy[a + j] = np.asarray(im.resize((w, h), Image.BILINEAR)) if (h, w) != (h0, w0) else arr
                even = np.asarray(im.resize((we, he), Image.BILINEAR)) if (he, we) != (h0, w0) else arr
                if a + j in valid:
                    refs[a + j] = even
                c.mux(st.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(even), format="rgb24")))
        c.mux(st.encode())
    npy.flush()
    del npy
    ref = np.load(npy_dir / NPY_NAME, mmap_mode="r")
    out = dict(n_frames=n, fps=fps, size=[h, w])
    out["jpeg"] = psnr_db(stored_frames(jpeg, valid), ref[valid])
    sel = _selection(n, fps, 10.0)
    k10 = segment_indices(len(sel), N_FRAMES, "valid")
    out["jpeg-10fps"] = psnr_db(stored_frames(Path(jpeg10), k10), ref[sel[k10]])
    n264 = count_frames(h264_dir / VIDEO_NAME)
    out["h264"] = (psnr_db(stored_frames(h264_dir, valid), np.stack([refs[i] for i in valid]))
                   if n264 == n else math.nan)
    out["h264_frames"] = n264
    out["npy"] = math.inf
    return out


@dataclass
class Layout:
    """One row: the path each clip is read from, its files (dropped for a cold read), the audio frame a read uses."""
    key: str
    paths: list[Path]
    files: list[list[Path]]
    video_files: list[list[Path]]
    cache_dir: Path | None = None
    psnr: list[float] = field(default_factory=list)

    def audio(self, mels: str) -> AudioFrame:
        frontend, n = mels.split(":")
        return AudioFrame(size=(IMG, IMG), n_mels=int(n), frontend=frontend,
                          cache_dir=None if self.cache_dir is None else str(self.cache_dir))


def build_layouts(videos: list[Path], tmp: Path, mels: str, gop: int, crf: int, workers: int) -> dict[str, Layout]:
    """Every layout of :data:`LAYOUTS` for ``videos``, written under ``tmp``."""
    src = tmp / "source"
    src.mkdir()
    copies = [Path(shutil.copy(v, src / v.name)) for v in videos]    # never touch the user's files
    cache = tmp / "mel-cache"
    af = Layout("source+cache", copies, [], [], cache).audio(mels)
    for p in copies:
        af.full_mels(p)                                                # an earlier epoch filled the cache
    out = {"source": Layout("source", copies, [[p] for p in copies], [[p] for p in copies]),
           "source+cache": Layout("source+cache", copies, [[p, af.cache.file(p)] for p in copies],
                                  [[p] for p in copies], cache)}
    jpeg = _prepare(videos, tmp / "jpeg", mels)
    jpeg10 = _prepare(videos, tmp / "jpeg-10fps", mels, fps=10.0)
    authors = _prepare(videos, tmp / "authors", mels, layout="authors", fps=10.0)
    h264 = [tmp / "h264" / f.name for f in jpeg]
    npy = [tmp / "npy" / f.name for f in jpeg]
    jobs = [(str(v), str(j), str(j10), str(h), str(n), gop, crf)
            for v, j, j10, h, n in zip(videos, jpeg, jpeg10, h264, npy)]
    with ProcessPoolExecutor(workers) as ex:
        built = list(ex.map(build_raw, *zip(*jobs)))
    for key, folders, name in (("jpeg", jpeg, ".jpg"), ("jpeg-10fps", jpeg10, ".jpg"), ("authors", authors, ".jpg"),
                               ("h264", h264, VIDEO_NAME), ("npy", npy, NPY_NAME)):
        files = [clip_files(f) for f in folders]
        out[key] = Layout(key, folders, files, [[p for p in fs if p.name.endswith(name)] for fs in files],
                          psnr=[b.get(key, math.nan) for b in built])
    return out


# ------------------------------------------------------------------------------------------- measuring
def time_reads(layouts: dict[str, Layout], mels: str, repeats: int, tmp: Path) -> tuple[dict, int]:
    """Per clip, every layout in turn: (cold ms, warm ms) medians of ``repeats``. Returns ({key: per-clip rows}, the
    most bytes any clip's files kept in the page cache right after a drop; -1 without ``fincore``)."""
    tfm = ClipTransform(IMG, RESIZE, train=True)
    rows = {k: [] for k in layouts}
    resident = 0
    n = len(next(iter(layouts.values())).paths)
    for lay in layouts.values():                                       # warm-up: imports, numba's compilation
        _read_once(lay, mels, tfm)
    for i in range(n):
        for key, lay in layouts.items():
            df = pd.DataFrame(dict(path=[str(lay.paths[i])], label=0))
            state = {}

            def fresh(lay=lay, df=df):
                state["ds"] = VideoDataset(df, N_FRAMES, "train", tfm, lay.audio(mels))

            def read():
                state["ds"].load(0, np.random.default_rng(0))

            drop_page_cache(lay.files[i])
            r = resident_bytes(lay.files[i])
            resident = max(resident, -1 if r is None else r)
            c, w = cold_warm_ms(read, lay.files[i], fresh, repeats)
            rows[key].append(dict(clip=lay.paths[i].name, cold=round(c, 1), warm=round(w, 1), ratio=round(c / w, 2)))
        print(f"{i + 1}/{n}", {k: r[-1]["cold"] for k, r in rows.items()}, flush=True)
    return rows, resident


def _read_once(lay: Layout, mels: str, tfm: ClipTransform) -> None:
    df = pd.DataFrame(dict(path=[str(lay.paths[0])], label=0))
    VideoDataset(df, N_FRAMES, "train", tfm, lay.audio(mels)).load(0, np.random.default_rng(0))


def loader_rate(lay: Layout, mels: str, workers: int, n_samples: int, seed: int) -> float:
    """clips/s of one epoch of ``n_samples`` training samples drawn from the clips, ``workers`` processes, batch 8."""
    df = pd.DataFrame(dict(path=[str(p) for p in lay.paths], label=0))
    views = [(i % len(df), 0, 0) for i in range(n_samples)]
    ds = VideoDataset(df, N_FRAMES, "train", ClipTransform(IMG, RESIZE, train=True), lay.audio(mels), seed=seed,
                      views=views)
    dl = TSAMDataLoader(ds, bs=8, shuffle=True, num_workers=workers)
    t = time.perf_counter()
    got = sum(len(b[-1]) for b in dl)
    dt = time.perf_counter() - t
    if got != n_samples:
        raise RuntimeError(f"{lay.key}: the loader gave {got} of {n_samples} samples")
    return got / dt


def warm_page_cache(layouts: dict[str, Layout]) -> float | None:
    """Read every file of every layout once (the cold reads dropped most of them from the page cache); returns the
    share of their pages cached afterwards (``fincore``; None without it)."""
    files = list(dict.fromkeys(p for lay in layouts.values() for fs in lay.files for p in fs))
    for f in files:
        with open(f, "rb") as fh:
            while fh.read(1 << 22):
                pass
    res = resident_bytes(files)
    page = os.sysconf("SC_PAGE_SIZE")
    whole = sum(-(-f.stat().st_size // page) * page for f in files)
    return None if res is None else round(res / whole, 3)


def time_loaders(layouts: dict[str, Layout], mels: str, worker_counts: list[int], n_samples: int,
                 rounds: int) -> dict:
    """{key: {workers: median clips/s over ``rounds`` epochs}}, layouts interleaved in each round."""
    got = {k: {w: [] for w in worker_counts} for k in layouts}
    for r in range(rounds):
        for w in worker_counts:
            for key, lay in layouts.items():
                got[key][w].append(loader_rate(lay, mels, w, n_samples, seed=r))
        print("round", r + 1, {k: {w: round(v[w][-1], 1) for w in v} for k, v in got.items()}, flush=True)
    return {k: {w: round(statistics.median(v), 1) for w, v in d.items()} for k, d in got.items()}


# ------------------------------------------------------------------------------------------- report
def _mb(x: float) -> str:
    return f"{x / 1e6:.2f}" if x < 1e7 else f"{x / 1e6:.0f}"


def _fmt_psnr(v) -> str:
    return "-" if v is None else v if isinstance(v, str) else f"{v:.1f}"


def summarise(key: str, lay: Layout, rows: list[dict], **fmt) -> dict:
    """A row of the table: bytes, PSNR and the medians of the per-clip times (``fmt`` fills in the layout's name)."""
    total = [sum(p.stat().st_size for p in fs) for fs in lay.files]
    video = [sum(p.stat().st_size for p in fs) for fs in lay.video_files]
    wav = [sum(p.stat().st_size for p in fs if p.suffix == ".wav") for fs in lay.files]
    finite = [p for p in lay.psnr if not math.isnan(p)]
    psnr = statistics.median(finite) if finite else None
    return dict(key=key, frames=LAYOUTS[key][0].format(**fmt), audio=LAYOUTS[key][1],
                bytes_median=int(statistics.median(total)),
                video_bytes_median=int(statistics.median(video)),
                other_bytes_median=int(statistics.median(t - v for t, v in zip(total, video))),
                wav_bytes_median=int(statistics.median(wav)),
                bytes_total=int(sum(total)), psnr="lossless" if psnr == math.inf else psnr,
                cold=round(statistics.median(r["cold"] for r in rows), 1),
                warm=round(statistics.median(r["warm"] for r in rows), 1),
                ratio=round(statistics.median(r["ratio"] for r in rows), 2),
                worst_ratio=round(max(r["ratio"] for r in rows), 2), per_clip=rows)


def to_markdown(result: dict) -> str:
    m = result["meta"]
    workers = m["loader_workers"]
    head = ["layout: frames", "audio read from", "MB per clip (frames + the rest)", f"MB, {m['n_clips']} clips",
            "PSNR dB", "cold ms", "warm ms", "cold / warm"] + [f"clips/s, {w} workers" for w in workers]
    lines = [f"Data layouts for training, `{m['command']}`: {m['clips']}, 16+1 sampling (16 TSN segments in training "
             "mode + the audio frame), as training reads them (`VideoDataset.load`: decode, multi-scale crop 224 of "
             f"256, flip, normalise; audio frame 224 x 224 from `{m['mels']}` log-mels). Machine: {m['machine']}; "
             f"1-minute load average {m['load_average'][0]} at the start, {m['load_average'][1]} at the end (other "
             "jobs shared the cores: compare rows, which ran interleaved, rather than absolute times). Started "
             f"{m['started']}, {m['minutes']} minutes.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["rows"]:
        rate = [("not measured: " + r["loader"][str(w)]) if isinstance(r["loader"].get(str(w)), str)
                else f"{r['loader'][str(w)]:.1f}" for w in workers]
        lines.append(f"| {r['frames']} | {r['audio']} | {_mb(r['bytes_median'])} ({_mb(r['video_bytes_median'])} + "
                     f"{_mb(r['other_bytes_median'])}) | {_mb(r['bytes_total'])} | {_fmt_psnr(r['psnr'])} | "
                     f"{r['cold']:.0f} | {r['warm']:.0f} | {r['ratio']} ({r['worst_ratio']}) | " + " | ".join(rate)
                     + " |")
    res = m["resident_after_drop"]
    lines += ["", "How it was measured:", "",
              "- MB per clip: median over the clips of every file a read of the clip may open (frames; the rest: "
              "`prepare`'s source-rate `.wav`, the stored log-mels, `prepare.json`; for `source+cache` the cache "
              "entry); the total is the sum over the clips.",
              "- ms: one process, one core (`torch.set_num_threads(1)`, `OMP_NUM_THREADS=1`). Cold: the clip's "
              "files fsynced and dropped from the page cache (`posix_fadvise(POSIX_FADV_DONTNEED)`; " +
              ("`fincore` found no byte of them cached after a drop" if res == 0 else
               f"at most {res} bytes of a clip's files still cached after a drop, by `fincore`" if res > 0 else
               "`fincore` missing: not checked") + "), a new dataset and audio frame: the clip's first read since "
              "its files were written. Warm: the same read at once after. Per clip the median of "
              f"{m['repeats']} repeats, every layout in turn, then the median over the {m['n_clips']} clips; "
              "cold / warm is the median of the per-clip ratios (worst clip in brackets).",
              f"- clips/s: `TSAMDataLoader` over `VideoDataset` (batch 8, shuffled, {m['loader_clips']} samples an "
              "epoch drawn from the clips in turn, worker processes started for each epoch as fastai does, the "
              "page cache warm: every file read once before" + (
                  f", {100 * m['cached_for_loader']:.0f} % of their pages then cached by `fincore`"
                  if m.get("cached_for_loader") is not None else "") +
              f"), median of {m['rounds']} epochs, layouts interleaved. The main process (collating the batches) and "
              "other jobs share the cores with the workers, so these rates are a ranking of the layouts on this "
              "machine, well below 2 x 1000 / warm ms.",
              "- PSNR: the 16 validation-mode frames of each clip as stored against the same source frames resized "
              "the same way without compression (the `.npy`'s), pooled per clip, median over the clips; `-` where "
              "the frames are not the same resized frames (the source; the authors' scaler and frame times).",
              f"- H.264: libx264 `preset=medium`, `crf={m['crf']}`, `keyint={m['gop']}`, no B-frames, yuv420p, "
              f"even sizes. {m['h264_note']}",
              "- Not measured: torchcodec, which needs FFmpeg's shared libraries installed on the system (its wheels "
              "do not ship them; this machine has no FFmpeg but PyAV's and decord's own copies).",
              ]
    if m.get("choice"):
        lines += ["", m["choice"]]
    return "\n".join(lines) + "\n"


def choice_text(rows: dict[str, dict]) -> str:
    """The paragraph that chooses ``prepare``'s default, from the measured rows (numbers filled in); a run whose
    numbers do not bear out a reason says so first."""
    j, j10, a, h, n, s = (rows[k] for k in ("jpeg", "jpeg-10fps", "authors", "h264", "npy", "source"))
    x = lambda p, q, f: p[f] / q[f]   # noqa: E731
    fb = "video_bytes_median"
    rate = lambda r: r["loader"]["2"]   # noqa: E731
    psnr = lambda r: f"{r['psnr']:.1f}" if isinstance(r["psnr"], float) else "-"   # noqa: E731
    broken = [claim for claim, ok in (
        ("JPEG reads faster than the H.264 and the source, warm and cold", all(
            j[t] < o[t] for o in (h, s) for t in ("warm", "cold"))),
        ("the .npy takes over 5 times JPEG's frame bytes", n[fb] > 5 * j[fb]),
        ("10 fps JPEGs read within 25 % of native ones", j10["warm"] < 1.25 * j["warm"]),
    ) if not ok]
    warn = (f"**This run does not bear out the reasons below** (not so here: {'; '.join(broken)}). "
            if broken else "")
    return warn + (
        "**prepare's default: JPEG at short side 256 and the native frame rate, as before.** Of the layouts that fit "
        f"on a disk JPEG reads fastest: {j['warm']:.0f} ms warm and {j['cold']:.0f} ms cold per 16+1 clip on one "
        f"core, against {h['warm']:.0f} / {h['cold']:.0f} ms for the short-GOP H.264, whose frames take "
        f"{x(h, j, fb):.2f} times JPEG's bytes but cost {x(h, j, 'warm'):.1f} times its read time (PSNR "
        f"{psnr(h)} against {psnr(j)} dB), and {s['warm']:.0f} / {s['cold']:.0f} ms for the source mp4s "
        f"({rate(j)}, {rate(h)} and {rate(s)} clips/s with 2 workers). The read time is what can starve a GPU: at "
        f"these per-core times 16 workers give at most 16 x 1000 / warm ms = {16000 / j['warm']:.0f} clips/s from "
        f"JPEG and {16000 / h['warm']:.0f} from the H.264 (arithmetic, an upper bound, not measured), while one "
        "H200 trains TSAM-R50 16+1 at about 226 clips/s (`gpu.md`: 8 clips in a 35.4 ms step). The uncompressed "
        "`.npy` reads fastest "
        f"({n['warm']:.0f} / {n['cold']:.0f} ms) but stores {x(n, j, fb):.1f} times JPEG's frame bytes "
        f"({_mb(n['bytes_total'])} MB for these clips against {_mb(j['bytes_total'])} MB), too much for "
        "Kinetics-sized data, so `prepare` does not get it. At 10 fps the same JPEGs read as fast "
        f"({j10['warm']:.0f} / {j10['cold']:.0f} ms) in {x(j10, j, fb):.2f} times the frame bytes (the authors' "
        f"layout: {a['warm']:.0f} / {a['cold']:.0f} ms, {x(a, j, fb):.2f}): `--fps 10` is the choice where disk "
        "space counts. The default keeps every frame all the same: reading costs the same, each training segment "
        "then draws from all its frames (the TSN protocol), and a new default would make `prepare` convert every "
        "clip of an existing folder again when rerun with the same command. Of the rest of a prepared clip, "
        f"{_mb(j['wav_bytes_median'])} MB is the source-rate `.wav`, which training does not read once the "
        "log-mels are stored (kept to compute other audio settings).")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=Path, nargs="*", help="clips to measure (default: the 12 real Kinetics clips)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=5, help="epochs per layout and worker count for clips/s")
    ap.add_argument("--loader-clips", type=int, default=96, help="samples in each timed epoch")
    ap.add_argument("--mels", default="tsamlib:64", help="log-mel setting stored and read (FRONTEND:N_MELS)")
    ap.add_argument("--gop", type=int, default=8)
    ap.add_argument("--crf", type=int, default=18)
    ap.add_argument("--out", type=Path, default=REPO / "results" / "benchmarks")
    ap.add_argument("--work", type=Path, default=REPO.parent if os.access(REPO.parent, os.W_OK) else None,
                    help="where the layouts are written (a temporary folder inside it, removed at the end)")
    ap.add_argument("--from-json", type=Path, help="write the .md again from a data_layouts.json (no measuring)")
    args = ap.parse_args(argv)
    if args.from_json:
        result = json.loads(args.from_json.read_text())
        result["meta"]["choice"] = choice_text({r["key"]: r for r in result["rows"]})
        args.from_json.write_text(json.dumps(result, indent=1, default=str))
        (args.from_json.parent / "data_layouts.md").write_text(to_markdown(result))
        return
    torch.set_num_threads(1)
    t0, started = time.perf_counter(), time.strftime("%Y-%m-%d %H:%M")
    load_start = os.getloadavg()[0]
    if args.videos:
        videos, what = sorted(args.videos), f"{len(args.videos)} clips ({', '.join(v.name for v in args.videos)})"
    else:
        videos = sorted(clips_dir().glob("*.mp4"))
        what = f"the {len(videos)} real Kinetics clips"
    loaders.load_clip = read_clip           # VideoDataset.load reads the h264 / npy folders too (forked workers too)
    cores = os.cpu_count() or 1
    worker_counts = [w for w in (2, 16) if cores >= w]
    with tempfile.TemporaryDirectory(dir=args.work) as t:
        tmp = Path(t)
        t_build = time.perf_counter()
        layouts = build_layouts(videos, tmp, args.mels, args.gop, args.crf, min(cores, len(videos)))
        print(f"built in {time.perf_counter() - t_build:.0f} s", flush=True)
        per_clip, resident = time_reads(layouts, args.mels, args.repeats, tmp)
        cached = warm_page_cache(layouts)
        rates = time_loaders(layouts, args.mels, worker_counts, args.loader_clips, args.rounds)
        rows = {k: summarise(k, lay, per_clip[k], gop=args.gop, crf=args.crf) for k, lay in layouts.items()}
        n264 = [p for p in layouts["h264"].psnr]
        for k, r in rows.items():
            r["loader"] = {str(w): (rates[k][w] if w in rates[k] else f"{cores} cores") for w in (2, 16)}
    bad = sum(1 for p in n264 if math.isnan(p))
    h264_note = (f"decord counted other frame numbers than the source in {bad} clip(s): no PSNR for them."
                 if bad else "decord reads back as many frames as the source has in every clip.")
    meta = dict(command=CMD if not args.videos else "python benchmarks/bench_layouts.py " + " ".join(
                    sys.argv[1:] if argv is None else argv), clips=what, n_clips=len(videos), repeats=args.repeats,
                rounds=args.rounds, loader_clips=args.loader_clips, mels=args.mels, gop=args.gop, crf=args.crf,
                loader_workers=[2, 16], resident_after_drop=resident, cached_for_loader=cached, h264_note=h264_note,
                machine=f"{cpu_name()}, {cores} cores, torch {torch.__version__}", started=started,
                minutes=round((time.perf_counter() - t0) / 60, 1),
                load_average=[round(load_start, 1), round(os.getloadavg()[0], 1)])
    meta["choice"] = choice_text(rows)
    result = dict(meta=meta, rows=list(rows.values()))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "data_layouts.json").write_text(json.dumps(result, indent=1, default=str))
    md = to_markdown(result)
    (args.out / "data_layouts.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
