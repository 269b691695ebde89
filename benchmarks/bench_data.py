"""Data-loading speed: ms per clip on one core (decode + transforms, optional audio frame).

Measures `VideoDataset.load` (what a worker does per sample) for 8 and 16 frames, video only and with
the audio frame (cold: empty cache; cached: second read), from mp4 (decord) and from a JPEG frame
folder made from one clip with PIL, at the paper's sizes (256/224) and small CPU sizes (72/64).
Then the prepared layout (``python -m tsamlib prepare``: JPEG frames at short side 256 + ``.wav``) against the mp4s
it was made from, side by side on the same clips (the 12 real Kinetics clips, synthetic clips when they are absent):
16 frames + the audio frame at 224 px with training transforms, interleaved per clip, medians.
Then each video backend (``video_backend``: decord, torchcodec, PyAV seeking to the frames, and PyAV decoding the whole
file in order, the fallback of every backend) on a 16-frame training read of each real clip, interleaved per clip.
Writes ``results/benchmarks/data_loading.{json,md}`` and the table into the "## Data loading"
section of ``results/benchmarks/README.md``.

    OMP_NUM_THREADS=1 python benchmarks/bench_data.py            # about 4 minutes on 2 cores
    OMP_NUM_THREADS=1 python benchmarks/bench_data.py --only-backends   # the backends' table alone (JSON merged)
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

from tsamlib.config import RunConfig
from tsamlib.data.audio import AudioFrame
from tsamlib.data.loaders import VideoDataset
from tsamlib.data.transforms import ClipTransform

__all__ = ["main"]

REPO = Path(__file__).resolve().parents[1]
CMD = "OMP_NUM_THREADS=1 python benchmarks/bench_data.py"
N_MELS = RunConfig().n_mels   # a default run's mel bands: the log-mels `prepare` stores by default


def clips_dir(required: bool = True) -> Path | None:
    """The folder of the real Kinetics clips; None (or exit, when ``required``) when absent."""
    root = Path(os.environ.get("TSAM_KINETICS_CLIPS", REPO.parent / "shared" / "kinetics-clips"))
    if not (root / "videos").is_dir():
        if required:
            sys.exit(f"Kinetics clips not found at {root}: set TSAM_KINETICS_CLIPS")
        return None
    return root / "videos"


def comparison_videos(tmp: Path) -> tuple[list[Path], str]:
    """The clips of the mp4 / prepared comparison: the real Kinetics clips, else 12 synthetic ones."""
    real = clips_dir(required=False)
    if real is not None:
        return sorted(real.glob("*.mp4")), f"the {len(list(real.glob('*.mp4')))} real Kinetics clips"
    from tsamlib.data.synthetic import make_synthetic_dataset
    root = make_synthetic_dataset(tmp / "synthetic", n_per_class=2, n_classes=6, seconds=10.0, size=(256, 340),
                                  fps=25, workers=os.cpu_count())
    return sorted(root.glob("*/*.mp4"))[:12], "12 synthetic clips (10 s, 340x256, 25 fps; real clips absent)"


def prepare_clips(videos: list[Path], tmp: Path) -> tuple[list[Path], float, int]:
    """Run ``tsamlib.data.prepare`` on ``videos``: (frame folders in order, wall seconds, workers)."""
    from tsamlib.data.manifest import build_manifest
    from tsamlib.data.prepare import prepare_dataset
    recs = [dict(path=str(v), label=0, label_name="clips", split="train") for v in videos]
    build_manifest(recs, tmp / "in.csv", verbose=False)
    workers = os.cpu_count() or 1
    t = time.perf_counter()
    res = prepare_dataset(tmp / "in.csv", tmp / "prepared", short_side=256, workers=workers, verbose=False)
    wall = time.perf_counter() - t
    bad = res.table.loc[res.table["problem"] != ""]
    if len(bad):
        sys.exit(f"prepare failed on {len(bad)} clips: {bad[['source', 'problem']].to_string()}")
    return [Path(p) for p in res.table["path"]], wall, workers


def compare_prepared(videos: list[Path], folders: list[Path], repeats: int, tmp: Path) -> list[dict]:
    """Per clip, mp4 and prepared interleaved: ms per 16-frame clip at 256/224, video only and + audio frame."""
    out = []
    for path in (videos[0], folders[0]):                      # warm-up: imports, numba compilation of librosa
        bench([path], "warm-up", 16, 256, 224, "cold", 1, tmp)
    for v, f in zip(videos, folders):
        r = dict(clip=v.name)
        for layout, path in (("mp4", v), ("prepared", f)):
            for audio in ("off", "cold", "cached"):
                r[f"{layout}_{audio}"] = round(bench([path], layout, 16, 256, 224, audio, repeats, tmp), 1)
        out.append(r)
        print(r, flush=True)
    return out


def prepared_stages(folders: list[Path], repeats: int, tmp: Path) -> dict:
    """Where a prepared 16+1 training clip's time goes: list the frame folder, decode 16 JPEGs, transform them
    (crop, resize, flip, normalise), audio frame from the mel cache; ms, median over clips of the median of repeats."""
    from tsamlib.data.decode import list_frames, read_images
    from tsamlib.data.video import segment_indices
    tfm = ClipTransform(img_size=224, resize=256, train=True)
    af = AudioFrame(size=(224, 224), n_mels=N_MELS, cache_dir=tempfile.mkdtemp(dir=tmp))
    per: dict[str, list[float]] = {"list": [], "decode": [], "transform": [], "audio_cached": []}
    for f in folders:
        rng = np.random.default_rng(0)
        names = list_frames(f)
        idx = segment_indices(len(names), 16, "train", rng)
        frames = torch.from_numpy(read_images(names, idx))
        af(f)
        per["list"].append(time_ms(lambda: list_frames(f), repeats))
        per["decode"].append(time_ms(lambda: read_images(names, idx), repeats))
        per["transform"].append(time_ms(lambda: tfm(frames, np.random.default_rng(0)), repeats))
        per["audio_cached"].append(time_ms(lambda: af(f, train=True, rng=np.random.default_rng(0)), repeats))
    return {k: round(statistics.median(v), 1) for k, v in per.items()}


def prepared_summary(per_clip: list[dict]) -> dict:
    """Medians over clips of each column, and of the per-clip mp4 / prepared ratios."""
    keys = [f"{layout}_{a}" for layout in ("mp4", "prepared") for a in ("off", "cold", "cached")]
    med = {k: round(statistics.median(r[k] for r in per_clip), 1) for k in keys}
    for a in ("off", "cold", "cached"):
        med[f"speedup_{a}"] = round(statistics.median(r[f"mp4_{a}"] / r[f"prepared_{a}"] for r in per_clip), 2)
    return med


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


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo``), else the platform's processor or machine name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def time_ms(fn, repeats: int) -> float:
    "Median wall time of `fn()` in ms."
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1000)
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
                af = AudioFrame(size=(img_size, img_size), n_mels=N_MELS, cache_dir=tempfile.mkdtemp(dir=tmp))
                VideoDataset(df, n_frames, "train", tfm, af).load(i, np.random.default_rng(0))
            per_clip.append(time_ms(cold, repeats))
        else:
            af = AudioFrame(size=(img_size, img_size), n_mels=N_MELS, cache_dir=tempfile.mkdtemp(dir=tmp))
            ds = VideoDataset(df, n_frames, "train", tfm, af)
            ds.load(i, np.random.default_rng(0))                        # fill the cache
            per_clip.append(time_ms(lambda: ds.load(i, np.random.default_rng(1)), repeats))
    return statistics.median(per_clip)


def audio_only(paths: list[Path], img_size: int, repeats: int, tmp: Path) -> dict:
    "Audio frame alone: cold (decode + 3 mels + image) vs cached (load + crop + image), ms."
    cold, hot = [], []
    for p in paths:
        cold.append(time_ms(lambda: AudioFrame(size=(img_size, img_size), n_mels=N_MELS,
                                               cache_dir=tempfile.mkdtemp(dir=tmp))(
            p, train=True, rng=np.random.default_rng(0)), repeats))
        af = AudioFrame(size=(img_size, img_size), n_mels=N_MELS, cache_dir=tempfile.mkdtemp(dir=tmp))
        af(p)
        hot.append(time_ms(lambda: af(p, train=True, rng=np.random.default_rng(0)), repeats))
    c, h = statistics.median(cold), statistics.median(hot)
    return dict(img_size=img_size, cold_ms=round(c, 1), cached_ms=round(h, 1), ratio=round(h / c, 3))


BACKEND_READERS = (("decord", "DecordVideo"), ("torchcodec", "TorchCodecVideo"), ("pyav", "PyAVSeek"),
                   ("pyav, whole file in order", "PyAVVideo"))


def compare_backends(videos: list[Path], repeats: int) -> dict:
    """ms per 16-frame training read (open the file, TSN train sampling, decode those frames: what a worker's
    ``load_clip`` does), each backend's reader on each clip, interleaved per clip; the medians over clips and the
    median per-clip ratio to PyAV's seeking reader. A backend not importable here is a row saying why."""
    from tsamlib.data import decode
    from tsamlib.data.video import segment_indices
    usable = [(name, getattr(decode, cls)) for name, cls in BACKEND_READERS
              if not decode.backend_missing(name.split(",")[0])]
    missing = {name: decode.backend_missing(name) for name, _ in BACKEND_READERS if name in decode.VIDEO_BACKENDS
               and decode.backend_missing(name)}

    def read(reader, path, seed):
        v = reader(path)
        return v.frames(segment_indices(len(v), 16, "train", np.random.default_rng(seed)))

    for name, reader in usable:   # warm-up: imports, first opens
        read(reader, videos[0], 0)
    per_clip = []
    for v in videos:
        r = dict(clip=v.name)
        ref = read(decode.PyAVVideo, v, 0)
        for name, reader in usable:
            r[name] = round(time_ms(lambda: read(reader, v, 0), repeats), 1)
            r[f"{name} equal"] = bool(np.array_equal(read(reader, v, 0), ref))   # frame-exact on this read
        per_clip.append(r)
        print(r, flush=True)
    med = {name: round(statistics.median(r[name] for r in per_clip), 1) for name, _ in usable}
    ratio = {name: round(statistics.median(r[name] / r["pyav"] for r in per_clip), 2) for name, _ in usable}
    equal = {name: all(r[f"{name} equal"] for r in per_clip) for name, _ in usable}
    return dict(n_clips=len(videos), repeats=repeats, median_ms=med, ratio_to_pyav=ratio, frames_equal=equal,
                missing=missing, auto=decode.resolve_backend("auto"), auto_order=list(decode.AUTO_ORDER),
                per_clip=per_clip)


def backends_markdown(b: dict) -> list[str]:
    """The video backends' section of the table."""
    lines = ["", f"Video backends (`video_backend`), same {b['n_clips']} real clips: ms per 16-frame training read "
             "(open the file, TSN training sampling, decode those frames as uint8 RGB: what a worker's `load_clip` "
             f"does before the transforms), one core, median of {b['repeats']} repeats per clip, the backends "
             "interleaved per clip, then the median over the clips. Equal: the frames are identical to PyAV's "
             "in-order decode of the whole file on every clip.", "",
             "| backend | ms per 16-frame read | / PyAV seeking (median per clip) | frames equal |",
             "|---|---|---|---|"]
    for name, _ in BACKEND_READERS:
        if name in b["median_ms"]:
            lines.append(f"| {name} | {b['median_ms'][name]:.0f} | {b['ratio_to_pyav'][name]} | "
                         f"{'yes' if b['frames_equal'][name] else 'NO'} |")
        elif name in b["missing"]:
            lines.append(f"| {name} | not measured: not importable here ({b['missing'][name]}) | - | - |")
    lines += ["", f"`video_backend='auto'` takes the first importable of {', '.join(b['auto_order'])} "
              f"(here: {b['auto']})."]
    if b.get("measured_alone"):
        v = b["versions"]
        lines[-1] += (f" This table was measured in a run of its own (`--only-backends`, commit "
                      f"{str(b['git_commit'])[:10]}, decord {v['decord']}, torchcodec {v['torchcodec']}, PyAV "
                      f"{v['av']}; 1-minute load average {b['load_average'][0]} at the start, "
                      f"{b['load_average'][1]} at the end); the tables above are from the last full run.")
    return lines


def prepared_markdown(prep: dict) -> list[str]:
    """The mp4 / prepared section of the table."""
    m, med = prep["meta"], prep["median"]
    stored = (f"the prepared layout reads the log-mels `prepare` stored in the folder, `mels-<hash>.npz`, in "
              f"{m['stored_mel_reads']} clips, the others its `.wav`" if "stored_mel_reads" in m else
              "the prepared layout from its `.wav`: measured before `prepare` stored log-mels")
    lines = ["", f"mp4 against the prepared layout (`python -m tsamlib prepare`: JPEG frames, short side 256, "
             f"quality 90, + `.wav`), same clips: {m['clips']}. One core (one process, "
             f"`torch.set_num_threads(1)`), ms per 16+1 clip (16 frames + the audio frame) at 256/224 with training "
             f"transforms; per clip the two layouts are measured one after the other, median of {m['repeats']} "
             f"repeats, then the median over the {m['n_clips']} clips. Audio cold: decode + 3 log-mels + image "
             f"(from the mp4's AAC track; {stored}); cached: from the mel cache. Preparing took "
             f"{m['prepare_s']:.0f} s for the {m['n_clips']} clips with {m['prepare_workers']} worker processes "
             f"({m['prepare_s'] / m['n_clips']:.1f} s per clip); the frames take {m['prepared_mb']:.0f} MB against "
             f"{m['mp4_mb']:.0f} MB of mp4.", "",
             "| layout | 16 frames | 16 frames + audio (cold) | 16 frames + audio (cached) |", "|---|---|---|---|"]
    for layout in ("mp4", "prepared"):
        lines.append(f"| {layout} | {med[f'{layout}_off']:.0f} | {med[f'{layout}_cold']:.0f} | "
                     f"{med[f'{layout}_cached']:.0f} |")
    lines.append(f"| mp4 / prepared (median of per-clip ratios) | {med['speedup_off']} | {med['speedup_cold']} | "
                 f"{med['speedup_cached']} |")
    if prep.get("stages"):
        st = prep["stages"]
        lines += ["", "Where a prepared 16+1 training clip's time goes (ms, one core, median over the clips): "
                  f"list the frame folder {st['list']}, decode 16 JPEGs {st['decode']}, transform them (crop, resize, "
                  f"flip, normalise) {st['transform']}, audio frame from the mel cache {st['audio_cached']}."]
    lines += ["", "Per clip (ms, 16+1 at 224, audio cold):", "", "| clip | mp4 | prepared |", "|---|---|---|"]
    lines += [f"| {r['clip']} | {r['mp4_cold']:.0f} | {r['prepared_cold']:.0f} |" for r in prep["per_clip"]]
    return lines


def to_markdown(rows: list[dict], audio_rows: list[dict], meta: dict, prep: dict | None = None,
                backends: dict | None = None) -> str:
    lines = [f"ms per clip, one core (`torch.set_num_threads(1)`), median over {meta['n_clips']} clips of the "
             f"median of {meta['repeats']} repeats; training transforms. mp4: {meta['clips']}; JPEG: all frames "
             f"of {meta['jpeg_from']} as a folder. Machine: {meta['machine']}, measured on 1 of its cores; 1-minute "
             f"load average {meta['load_average'][0]} at the start and {meta['load_average'][1]} at the end "
             "(other jobs shared the cores when it exceeds 1); "
             f"the audio frame has {meta.get('n_mels', 224)} mel bands; "
             "repeat runs differ by up to about 30% when other jobs share the cores; mp4 time is dominated by H.264 "
             "seeking/decoding (720p clips cost most), JPEG folders avoid it.", "",
             "| source | frames | resize/crop | video only | + audio (cold) | + audio (cached) |",
             "|---|---|---|---|---|---|"]

    def cell(v):
        return "-" if v != v else f"{v:.0f}"            # NaN: not measured

    for r in rows:
        lines.append(f"| {r['source']} | {r['n_frames']} | {r['resize']}/{r['img_size']} | {cell(r['off'])} | "
                     f"{cell(r['cold'])} | {cell(r['cached'])} |")
    lines += ["", "Audio frame alone (mp4 clips, train-time crop):", "",
              "| size | cold ms | cached ms | cached / cold |", "|---|---|---|---|"]
    lines += [f"| {a['img_size']} | {a['cold_ms']} | {a['cached_ms']} | {a['ratio']} |" for a in audio_rows]
    if prep is not None:
        lines += prepared_markdown(prep)
    if backends is not None:
        lines += backends_markdown(backends)
    return "\n".join(lines) + "\n"


def write_readme_section(readme: Path, body: str) -> None:
    "Replace (or append) the '## Data loading' section, leaving other sections alone."
    text = readme.read_text() if readme.exists() else "# Benchmarks\n"
    section = f"## Data loading\n\nProduced by `{CMD}`.\n\n{body}\n"
    lines, out, skip, done = text.splitlines(keepends=True), [], False, False
    for line in lines:
        if line.startswith("## "):
            if line.strip() == "## Data loading":
                skip, done = True, True
                out.append(section)
                continue
            skip = False
        if not skip:
            out.append(line)
    if not done:
        out.append(("\n" if out and not out[-1].endswith("\n\n") else "") + section)
    readme.write_text("".join(out))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-clips", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=REPO / "results" / "benchmarks")
    ap.add_argument("--skip-prepared", action="store_true", help="leave out the mp4 / prepared comparison")
    ap.add_argument("--only-backends", action="store_true",
                    help="measure the video backends alone; the other tables are kept from the last full run")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    load_start = os.getloadavg()[0]
    if args.only_backends:
        return write_backends_only(args, load_start)
    videos = sorted(clips_dir().glob("*.mp4"), key=lambda p: p.stat().st_size)
    step = max(1, len(videos) // args.n_clips)
    paths = videos[::step][: args.n_clips]                          # small, medium and large files
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        jpeg_src = next(p for p in videos if "ZZXedPVIBEE" in p.name)      # 640x360, 300 frames
        folder = make_frame_folder(jpeg_src, tmp / "frames")
        mp4_same = [jpeg_src]
        rows = []
        sources = [("mp4 (decord)", paths), ("mp4 (decord), same clip as JPEG", mp4_same), ("JPEG folder", [folder])]
        for source, srcs in sources:
            for n_frames in (8, 16):
                for resize, img in ((256, 224), (72, 64)):
                    r = dict(source=source, n_frames=n_frames, resize=resize, img_size=img)
                    for audio in ("off", "cold", "cached"):
                        if source == "JPEG folder" and audio != "off":
                            r[audio] = float("nan")        # folders carry no audio track here
                            continue
                        r[audio] = round(bench(srcs, source, n_frames, resize, img, audio, args.repeats, tmp), 1)
                    rows.append(r)
                    print(r, flush=True)
        audio_rows = [audio_only(paths, s, args.repeats, tmp) for s in (224, 64)]
        print(audio_rows)
        prep = None
        if not args.skip_prepared:
            cmp_videos, cmp_what = comparison_videos(tmp)
            folders, prep_s, prep_workers = prepare_clips(cmp_videos, tmp)
            per_clip = compare_prepared(cmp_videos, folders, args.repeats, tmp)

            def size_mb(ps):
                return sum(q.stat().st_size for p in ps for q in ([p] if p.is_file() else p.iterdir())) / 1e6
            wavs = [f.parent / (f.name + ".wav") for f in folders]
            stages = prepared_stages(folders, args.repeats, tmp)
            stored = AudioFrame(size=(224, 224), n_mels=N_MELS).prepared_name   # these settings' stored log-mels
            prep = dict(meta=dict(clips=cmp_what, n_clips=len(cmp_videos), repeats=args.repeats,
                                  prepare_s=round(prep_s, 1), prepare_workers=prep_workers,
                                  prepared_mb=round(size_mb(folders) + size_mb([w for w in wavs if w.exists()]), 1),
                                  mp4_mb=round(size_mb(cmp_videos), 1),
                                  stored_mel_reads=f"{sum((f / stored).is_file() for f in folders)}/{len(folders)}"),
                        per_clip=per_clip, median=prepared_summary(per_clip), stages=stages)
            print(prep["median"])
    backends = compare_backends(sorted(clips_dir().glob("*.mp4")), args.repeats)
    meta = dict(n_clips=len(paths), repeats=args.repeats, clips=", ".join(p.name for p in paths),
                jpeg_from=jpeg_src.name, machine=f"{cpu_name()}, "
                f"{os.cpu_count()} cores, torch {torch.__version__}",
                load_average=[round(load_start, 1), round(os.getloadavg()[0], 1)], n_mels=N_MELS, **provenance())
    write_results(args.out, dict(meta=meta, rows=rows, audio=audio_rows, prepared=prep, backends=backends))


def provenance() -> dict:
    """The commit and the decoders' versions, for the JSON and the table's first line."""
    import importlib.metadata as md
    from tsamlib.runs.provenance import environment_info

    def version(dist):
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return None
    return dict(git_commit=environment_info().get("git_commit"),
                versions={d: version(d) for d in ("decord", "torchcodec", "av", "pillow", "numpy")})


def write_results(out: Path, results: dict) -> None:
    """``data_loading.json``, ``data_loading.md`` and the README section, from one results dict."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "data_loading.json").write_text(json.dumps(results, indent=1))
    md = to_markdown(results["rows"], results["audio"], results["meta"], results["prepared"], results.get("backends"))
    (out / "data_loading.md").write_text(md)
    write_readme_section(out / "README.md", md)
    print(md)


def write_backends_only(args, load_start: float) -> None:
    """Measure the backends; keep the other tables of the last full run (its JSON), say so in the table."""
    old = json.loads((args.out / "data_loading.json").read_text())
    backends = compare_backends(sorted(clips_dir().glob("*.mp4")), args.repeats)
    backends.update(load_average=[round(load_start, 1), round(os.getloadavg()[0], 1)], measured_alone=True,
                    **provenance())
    write_results(args.out, dict(old, backends=backends))


if __name__ == "__main__":
    main()
