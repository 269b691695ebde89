"""The benchmark scripts' helpers that touch files: they write only under their temporary folder."""
import importlib.util
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, make_video

from tsamlib.data.manifest import read_manifest


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod          # dataclasses and worker processes look the module up by name
    spec.loader.exec_module(mod)
    return mod


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every entry under root with its size and modification time (links made elsewhere do not count)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def test_gpu_bench_repeats_clips_without_writing_beside_the_source_clips(tmp_path):
    """``bench_gpu.prepared_clips`` repeats the training clips for its epoch; the repeats (links) go under its
    temporary folder, and the user's clip folder is left exactly as it was (once they were linked beside the mp4s)."""
    bench_gpu = _load("bench_gpu")
    clips = tmp_path / "clips"
    for i, name in enumerate(("a", "b", "c")):
        make_video(clips / "videos" / f"{name}.mp4", n_frames=8, size=(32, 48), seed=i)
    (clips / "training.txt").write_text("a 8 0\nb 8 1\n")
    (clips / "validation.txt").write_text("c 8 0\n")
    before = _tree(clips)
    work = tmp_path / "work"
    work.mkdir()
    got = bench_gpu.prepared_clips(clips, work, repeat=3, workers=1)
    assert _tree(clips) == before
    for layout in ("prepared", "mp4"):
        df = read_manifest(got["manifests"][layout])
        train = df[df["split"] == "train"]
        assert len(train) == 6 and (df["split"] == "valid").sum() == 1
        twins = [Path(p) for p in train["path"] if "-r" in Path(p).name]
        assert len(twins) == 4 and all(p.exists() and p.absolute().is_relative_to(work) for p in twins)


def test_traffic_floor_counts_three_clone_passes_per_shifted_block():
    """The floor of ``bench_gpu``: passes x the clone times of the shifted blocks' inputs, found by a meta-device
    forward pass (ResNet-18 at 32 px: conv1 of block 0 of each stage for TSAM, of every block for TSM), as a ratio to
    TSN's step; a shape without a clone time is named, not guessed."""
    bench_gpu = _load("bench_gpu")
    cfg = dict(arch="resnet18", img=32, frames=4, k=2)
    clone = {(64, 8): 1.0, (128, 4): 0.1, (256, 2): 0.01, (512, 1): 0.001}
    res = dict(meta=dict(cfg=cfg),
               shift=[dict(channels=c, size=s, clone_ms=ms) for (c, s), ms in clone.items()],
               eager=[dict(variant="tsn", ms_per_step=100.0, vs_tsn=1.0), dict(variant="tsam", ms_per_step=110.0,
                                                                             vs_tsn=1.1)])
    assert bench_gpu.shifted_inputs(cfg, dict(shift_depth=2, f_div=4, n_insert=2, m_insert=0)) == [
        (64, 8), (64, 8), (128, 4), (256, 2)]  # block 0 of layer2-4 sees the previous stage's shape
    rows = {r["variant"]: r for r in bench_gpu.traffic_floor(res)}
    assert set(rows) == {"tsm", "tsam", "tsam_keep_copy"}  # not TSN (no shift), not the slice copies
    tsam = rows["tsam"]
    assert (tsam["shifted_blocks"], tsam["passes"]) == (4, 3)
    assert tsam["floor_ms"] == pytest.approx(3 * (1.0 + 1.0 + 0.1 + 0.01))
    assert tsam["floor_vs_tsn_eager"] == pytest.approx(1 + tsam["floor_ms"] / 100, abs=1e-3)
    assert tsam["measured_vs_tsn_eager"] == 1.1 and "floor_vs_tsn_compiled" not in tsam
    assert rows["tsam_keep_copy"]["floor_ms"] == pytest.approx(2 * 2.11)
    assert rows["tsm"]["floor_ms"] == pytest.approx(3 * (3 * 1.0 + 2 * 0.1 + 2 * 0.01 + 0.001))
    res["shift"] = res["shift"][:-1]  # no clone time for layer4's (512, 1)
    rows = {r["variant"]: r for r in bench_gpu.traffic_floor(res)}
    assert rows["tsm"]["missing_clone_times"] == [(512, 1)] and "floor_ms" not in rows["tsm"]
    assert "floor_ms" in rows["tsam"]
    md = "\n".join(bench_gpu.floor_markdown(bench_gpu.traffic_floor(res)))
    assert "no clone time for [(512, 1)]" in md and "| tsam | 4 | 3 | 6.33 | 1.063 | 1.1 |" in md


def test_cold_bench_drops_every_file_of_a_prepared_clip_from_the_page_cache(tmp_path):
    """``bench_cold``: ``clip_files`` is the frame folder's files and its ``.wav``; after ``drop_page_cache`` none of
    them is cached (checked with ``fincore`` where it exists), ``prefetch`` brings the frames back; ``measure`` gives
    a cold and a warm time per clip."""
    import os
    import time

    from tsamlib.data.audio import AudioFrame
    from tsamlib.data.manifest import build_manifest
    from tsamlib.data.prepare import prepare_dataset
    from tsamlib.data.video import prefetch
    bench_cold = _load("bench_cold")
    video = make_video(tmp_path / "v.mp4", n_frames=12, size=(48, 64))
    build_manifest([dict(path=str(video), label=0, label_name="x", split="train")], tmp_path / "in.csv", workers=1,
                   verbose=False)
    res = prepare_dataset(tmp_path / "in.csv", tmp_path / "out", workers=1, verbose=False, mels="tsamlib:16")
    folder = Path(res.table["path"].iat[0])
    files = bench_cold.clip_files(folder)
    names = sorted(p.name for p in files)
    assert set(names) - {n for n in names if n.endswith(".jpg")} == {AudioFrame(n_mels=16).prepared_name(),
                                                                     "prepare.json", "v.wav"}
    assert {n for n in names if n.endswith(".jpg")} == {f"{k:05d}.jpg" for k in range(1, 13)} and "v.wav" in names
    for f in files:
        f.read_bytes()
    bench_cold.drop_page_cache(files)
    cached = bench_cold.resident_bytes(files)
    if cached is not None:
        assert cached == 0
        jpgs = [f for f in files if f.suffix == ".jpg"]
        page = os.sysconf("SC_PAGE_SIZE")
        whole = sum(-(-f.stat().st_size // page) * page for f in jpgs)   # fincore counts whole pages
        prefetch(jpgs + [tmp_path / "missing.jpg"])          # a missing file is left to the read that follows
        for _ in range(100):                                  # the kernel reads them in the background
            if bench_cold.resident_bytes(jpgs) == whole:
                break
            time.sleep(0.05)
        assert bench_cold.resident_bytes(jpgs) == whole
    rows = bench_cold.measure([folder], lambda cache_dir: AudioFrame(size=(32, 32), n_mels=16, cache_dir=cache_dir),
                              1, tmp_path, n_frames=4, resize=36, img_size=32)
    assert [r["clip"] for r in rows] == ["v"] and rows[0]["cold"] > 0 and rows[0]["warm"] > 0


def test_layouts_bench_quick_mode_writes_a_row_per_layout(tmp_path):
    """``bench_layouts`` in its quick mode on 2 small clips (one repeat, one epoch of 8 samples): the table has a row
    for every layout with every column filled (16 workers named as not measured on a machine without them), the
    JSON the same rows, and nothing is written beside the clips. No time is checked."""
    import json
    import os
    bench = _load("bench_layouts")
    clips = tmp_path / "clips"
    videos = [make_video(clips / "a.mp4", n_frames=20, size=(48, 64), seed=0),
              make_video(clips / "b.mp4", n_frames=12, size=(40, 70), layout="stereo", sample_rate=48000, seed=1)]
    before = _tree(clips)
    out = tmp_path / "out"
    bench.main(["--videos", *map(str, videos), "--repeats", "1", "--rounds", "1", "--loader-clips", "8", "--out",
                str(out), "--work", str(tmp_path)])
    assert _tree(clips) == before
    md = (out / "data_layouts.md").read_text()
    head = next(line for line in md.splitlines() if line.startswith("| layout"))
    cols = [c.strip() for c in head.strip("|").split("|")]
    assert cols == ["layout: frames", "audio read from", "MB per clip (frames + the rest)", "MB, 2 clips", "PSNR dB",
                    "cold ms", "warm ms", "cold / warm", "clips/s, 2 workers", "clips/s, 16 workers"]
    rows = [line for line in md.splitlines() if line.startswith("| ") and line != head]
    assert len(rows) == len(bench.LAYOUTS) == 7
    for (key, (frames, audio)), row in zip(bench.LAYOUTS.items(), rows):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == len(cols) and all(cells), row
        assert cells[0] == frames.format(gop=8, crf=18) and cells[1] == audio
        if (os.cpu_count() or 1) < 16:
            assert cells[-1] == f"not measured: {os.cpu_count()} cores"
    assert "`prepare` (default)" in rows[2] and "lossless" in rows[-1]
    res = json.loads((out / "data_layouts.json").read_text())
    assert [r["key"] for r in res["rows"]] == list(bench.LAYOUTS)
    assert all(len(r["per_clip"]) == 2 and r["bytes_total"] > 0 for r in res["rows"])
    assert "prepare's default" in md
