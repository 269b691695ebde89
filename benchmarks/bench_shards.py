"""Read rate of a shard dataset against the prepared folders it was packed from, on the 12 real Kinetics clips.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_shards.py [--repeats 3]

Each clip read = every stored file's bytes (JPEG frames, log-mels, prepare.json, .wav) and every frame JPEG-decoded
with PIL, the same work for both layouts (what a loader must do before sampling). Cold: the files fsynced and dropped
from the page cache (posix_fadvise DONTNEED, as bench_cold.py) before the read; warm: read right after. Medians of
--repeats, 1 and 2 DataLoader workers, measured side by side in one run; first-batch latency = first clip's arrival.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_cold import drop_page_cache
from PIL import Image

from tsamlib.data.manifest import build_manifest, read_manifest
from tsamlib.data.prepare import prepare_dataset
from tsamlib.data.shards import read_shards, write_shards

CLIPS = Path(__file__).resolve().parents[2] / "shared" / "kinetics-clips"


class FolderClips(torch.utils.data.IterableDataset):
    def __init__(self, folders):
        self.folders = folders

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        mine = self.folders if info is None else self.folders[info.id::info.num_workers]
        for f in mine:
            files = sorted(f.iterdir()) + [f.with_suffix(".wav")]
            data = {p.name: p.read_bytes() for p in files if p.is_file()}
            yield sum(Image.open(io.BytesIO(v)).convert("RGB").size[0] for k, v in data.items() if k.endswith(".jpg"))


class ShardClips(torch.utils.data.IterableDataset):
    def __init__(self, index):
        self.index = index

    def __iter__(self):
        for s in read_shards(self.index):
            yield sum(Image.open(io.BytesIO(b)).convert("RGB").size[0] for b in s["frames"])


def _time(ds, workers: int) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    first, n = None, 0
    for _ in torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers):
        first = first or time.perf_counter() - t0
        n += 1
    return n / (time.perf_counter() - t0), first, n


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="results/benchmarks/shards")
    a = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench_shards_"))
    labels = dict(line.split() for line in (CLIPS / "training.txt").read_text().splitlines() if line.strip())
    recs = [dict(path=str(v), label=int(labels.get(v.stem, 0)), label_name=str(labels.get(v.stem, 0)), split="train")
            for v in sorted((CLIPS / "videos").glob("*.mp4"))]
    build_manifest(recs, tmp / "in.csv", workers=2, verbose=False)
    res = prepare_dataset(tmp / "in.csv", tmp / "folders", workers=2, verbose=False)
    index = write_shards(res.manifest, tmp / "shards")
    folders = [Path(p) for p, q in zip(read_manifest(res.manifest)["path"], res.table["problem"]) if q == ""]
    folder_files = [p for f in folders for p in list(f.iterdir()) + [f.with_suffix(".wav")] if p.is_file()]
    shard_files = sorted((tmp / "shards").glob("*.tar"))
    layouts = {"folders": (FolderClips(folders), folder_files), "shards": (ShardClips(index), shard_files)}
    rows = []
    for workers in (1, 2):
        for state in ("cold", "warm"):
            got = {k: [] for k in layouts}
            for _ in range(a.repeats):
                for name, (ds, files) in layouts.items():   # interleaved: side by side
                    if state == "cold":
                        drop_page_cache(files)
                    got[name].append(_time(ds, workers))
            for name, runs in got.items():
                rows.append(dict(layout=name, workers=workers, cache=state,
                                 clips_per_s=statistics.median(r[0] for r in runs),
                                 first_clip_ms=1000 * statistics.median(r[1] for r in runs), clips=runs[0][2]))
    size = {k: sum(p.stat().st_size for p in files) for k, (_, files) in layouts.items()}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    import webdataset
    cmd = "PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_shards.py " + " ".join(argv or sys.argv[1:])
    result = dict(command=cmd,
                  commit=commit, python=platform.python_version(), torch=torch.__version__,
                  webdataset=webdataset.__version__, cpus=os.cpu_count(), repeats=a.repeats, bytes=size,
                  files={"folders": len(folder_files), "shards": len(shard_files)}, rows=rows)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out + ".json").write_text(json.dumps(result, indent=1))
    md = [f"# Shards vs prepared folders: read rate on the {rows[0]['clips']} real Kinetics clips", "",
          f"`{result['command']}` at {commit}; Python {result['python']}, torch {result['torch']}, webdataset "
          f"{result['webdataset']}, {result['cpus']} CPUs (shared machine). Medians of {a.repeats}, side by side.",
          "A clip read = all its stored bytes + every frame JPEG-decoded (PIL). Cold = posix_fadvise DONTNEED first.",
          "", f"Bytes on disk: folders {size['folders']:,} in {len(folder_files)} files; shards {size['shards']:,} "
          f"in {len(shard_files)} file(s).", "", "| layout | workers | cache | clips/s | first clip (ms) |",
          "|---|---|---|---|---|"]
    md += [f"| {r['layout']} | {r['workers']} | {r['cache']} | {r['clips_per_s']:.1f} | {r['first_clip_ms']:.0f} |"
           for r in rows]
    Path(a.out + ".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
