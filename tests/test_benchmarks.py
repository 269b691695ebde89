"""The benchmark scripts' helpers that touch files: they write only under their temporary folder."""
import importlib
import importlib.util
import json
import os
import subprocess
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


def _gpu_part(name: str):
    """A module of ``benchmarks/gpu_bench``, the parts of ``bench_gpu.py``, imported as the script imports them."""
    if str(REPO_ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    return importlib.import_module(f"gpu_bench.{name}")


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every entry under root with its size and modification time (links made elsewhere do not count)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def test_gpu_bench_repeats_clips_without_writing_beside_the_source_clips(tmp_path):
    """``prepared_clips`` (``bench_gpu.py``'s part ``data``) repeats the training clips for its epoch; the repeats
    (links) go under its temporary folder, and the user's clip folder is left exactly as it was (once they were linked
    beside the mp4s)."""
    real_clips = _gpu_part("real_clips")
    clips = tmp_path / "clips"
    for i, name in enumerate(("a", "b", "c")):
        make_video(clips / "videos" / f"{name}.mp4", n_frames=8, size=(32, 48), seed=i)
    (clips / "training.txt").write_text("a 8 0\nb 8 1\n")
    (clips / "validation.txt").write_text("c 8 0\n")
    before = _tree(clips)
    work = tmp_path / "work"
    work.mkdir()
    got = real_clips.prepared_clips(clips, work, repeat=3, workers=1)
    assert _tree(clips) == before
    for layout in ("prepared", "mp4"):
        df = read_manifest(got["manifests"][layout])
        train = df[df["split"] == "train"]
        assert len(train) == 6 and (df["split"] == "valid").sum() == 1
        twins = [Path(p) for p in train["path"] if "-r" in Path(p).name]
        assert len(twins) == 4 and all(p.exists() and p.absolute().is_relative_to(work) for p in twins)


def test_traffic_floor_counts_three_clone_passes_per_shifted_block():
    """The floor of ``bench_gpu.py``: passes x the clone times of the shifted blocks' inputs, found by a meta-device
    forward pass (ResNet-18 at 32 px: conv1 of block 0 of each stage for TSAM, of every block for TSM), as a ratio to
    the step of the TSN with the same segments (TSN+1 for TSAM, TSN for TSM); 2 passes where the copy is kept; a shape
    without a clone time is named, not guessed; variants running the same code count once."""
    settings, shift_cases, report = _gpu_part("settings"), _gpu_part("shift_cases"), _gpu_part("report")
    cfg = dict(arch="resnet18", img=32, frames=4, k=2, clips=[2])
    clone = {(64, 8): 1.0, (128, 4): 0.1, (256, 2): 0.01, (512, 1): 0.001}
    eager = {"tsn": 90.0, "tsn-audio": 100.0, "tsam": 110.0, "tsam-keepcopy": 105.0, "tsm16": 120.0}
    res = dict(meta=dict(cfg=cfg, device="cuda"),
               shift=[dict(clips=2, channels=c, size=s, clone_ms=ms) for (c, s), ms in clone.items()],
               eager=[dict(variant=n, clips=2, ms_per_step=ms) for n, ms in eager.items()])
    tsam_model = settings.variants(cfg)["tsam"]["model"]
    assert shift_cases.shifted_inputs(cfg, tsam_model) == [(64, 8), (64, 8), (128, 4), (256, 2)]  # block 0 of layer2-4
    rows = {r["variant"]: r for r in shift_cases.traffic_floor(res)}   # sees the previous stage's shape
    assert set(rows) == {"tsm16", "tsam", "tsam-keepcopy"}  # not TSN (no shift), not the unmeasured autograd path,
    tsam = rows["tsam"]                                        # tsam-triton is tsam's code on CUDA
    assert (tsam["shifted_blocks"], tsam["passes"], tsam["baseline"]) == (4, 3, "tsn-audio")
    assert tsam["floor_ms"] == pytest.approx(3 * (1.0 + 1.0 + 0.1 + 0.01))
    assert tsam["floor_vs_base_eager"] == pytest.approx(1 + tsam["floor_ms"] / 100, abs=1e-3)
    assert tsam["measured_vs_base_eager"] == 1.1 and "floor_vs_base_compiled" not in tsam
    assert rows["tsam-keepcopy"]["floor_ms"] == pytest.approx(2 * 2.11) and rows["tsam-keepcopy"]["passes"] == 2
    assert rows["tsm16"]["floor_ms"] == pytest.approx(3 * (3 * 1.0 + 2 * 0.1 + 2 * 0.01 + 0.001))
    assert rows["tsm16"]["baseline"] == "tsn" and rows["tsm16"]["measured_vs_base_eager"] == pytest.approx(1.333)
    res["shift"] = res["shift"][:-1]  # no clone time for layer4's (512, 1)
    rows = {r["variant"]: r for r in shift_cases.traffic_floor(res)}
    assert rows["tsm16"]["missing_clone_times"] == [(512, 1)] and "floor_ms" not in rows["tsm16"]
    assert "floor_ms" in rows["tsam"]
    md = "\n".join(report.floor_markdown(shift_cases.traffic_floor(res)))
    assert "no clone time for [(512, 1)]" in md
    assert "| 2 | tsam | triton, copy recomputed | 4 | 3 | 6.33 | tsn-audio | 1.063 | 1.1 | - | - |" in md


def test_cold_bench_drops_every_file_of_a_prepared_clip_from_the_page_cache(tmp_path):
    """``bench_cold``: ``clip_files`` is the frame folder's files and its ``.wav``; after ``drop_page_cache`` none of
    them is cached (checked with ``fincore`` where it exists), ``prefetch`` brings the frames back; ``measure`` gives
    a cold and a warm time per clip."""
    import os
    import time

    from tsamlib.data.audio import AudioFrame
    from tsamlib.data.manifest import build_manifest
    from tsamlib.data.prepare import prepare_dataset
    from tsamlib.data.decode import prefetch
    bench_cold = _load("bench_cold")
    video = make_video(tmp_path / "v.mp4", n_frames=12, size=(48, 64))
    build_manifest([dict(path=str(video), label=0, label_name="x", split="train")], tmp_path / "in.csv", workers=1,
                   verbose=False)
    res = prepare_dataset(tmp_path / "in.csv", tmp_path / "out", workers=1, verbose=False, mels="tsamlib:16")
    folder = Path(res.table["path"].iat[0])
    files = bench_cold.clip_files(folder)
    names = sorted(p.name for p in files)
    assert set(names) - {n for n in names if n.endswith(".jpg")} == {AudioFrame(n_mels=16).prepared_name,
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


def test_gpu_bench_rules_without_a_gpu():
    """The CPU-bound verdict follows its stated thresholds, and the default CUDA shift path is the fastest eager TSAM
    path at the largest clip count of a CUDA run (a CPU run decides nothing)."""
    timing, step_cases = _gpu_part("timing"), _gpu_part("step_cases")
    from tsamlib.model.shift import DEFAULT_CUDA_SHIFT_KERNEL
    assert [timing.cpu_bound_verdict(b) for b in (0.5, 0.79, 0.8, 0.94, 0.95, 1.02)] == [
        "CPU-bound", "CPU-bound", "partly CPU-bound", "partly CPU-bound", "GPU-bound", "GPU-bound"]
    assert timing.cpu_bound_verdict(None).startswith("not applicable")
    rows = [dict(variant="tsam-triton", clips=32, ms_per_step=40.0), dict(variant="tsam-autograd", clips=32,
                                                                          ms_per_step=35.0),
            dict(variant="tsam-autograd", clips=8, ms_per_step=99.0), dict(variant="tsam-triton", clips=8,
                                                                           ms_per_step=9.0)]
    res = dict(meta=dict(device="cuda", cfg=dict(clips=[8, 32], frames=16)), eager=rows,
               compiled=[dict(variant="tsam-triton", clips=32, ms_per_step=30.0)])
    d = step_cases.choose_default(res)
    assert d["eager_fastest"] == "autograd" and d["compiled_fastest"] == "triton"
    assert d["current"] == DEFAULT_CUDA_SHIFT_KERNEL and "'autograd' is fastest" in d["decision"]
    res["meta"]["device"] = "cpu"
    assert step_cases.choose_default(res)["decision"].startswith("none: these are not CUDA numbers")


def _section(md: str, title: str) -> str:
    """The text of the markdown section that starts with ``title`` (up to the next ``## ``)."""
    start = md.index(title)
    end = md.find("\n## ", start + len(title))
    return md[start:end if end > 0 else None]


@pytest.mark.slow
def test_gpu_bench_cpu_smoke_report(tmp_path):
    """``bench_gpu.py --device cpu --small`` end to end, few steps, into a temporary folder: every variant at both clip
    counts, eager and compiled (here all skipped for the time budget, each with its reason), the profile section and
    the CPU-bound statement, the default-path decision withheld, and a banner saying these are no GPU numbers."""
    settings = _gpu_part("settings")
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO_ROOT / "benchmarks" / "bench_gpu.py"), "--device", "cpu", "--small", "--clips",
           "2", "4", "--steps", "2", "--warmup", "1", "--rounds", "1", "--profile-steps", "1", "--budget", "0",
           "--parts", "eager,profile,compiled", "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    env.pop("TSAM_SHIFT_KERNEL", None)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["gpu_cpu_small.json", "gpu_cpu_small.md"]  # never gpu.md
    res = json.loads((out / "gpu_cpu_small.json").read_text())
    md = (out / "gpu_cpu_small.md").read_text()
    names = list(settings.VARIANT_ORDER)
    want = {(n, c) for n in names for c in (2, 4)}
    assert {(r["variant"], r["clips"]) for r in res["eager"] if r["ms_per_step"] > 0} == want
    assert all(r["vs_tsn"] is not None for r in res["eager"])
    assert {(r["variant"], r["clips"]) for r in res["compiled"]} == want
    assert all(r.get("skipped") for r in res["compiled"])
    assert {(p["variant"], p["clips"]) for p in res["profile"]} == want
    assert all(p["top_cpu"] and p["verdict"].startswith("not applicable") for p in res["profile"])
    assert "NOT GPU numbers" in md and "The GPU numbers are still to be measured" in md
    for title in ("## Training step, eager", "## Training step, torch.compile"):
        section = _section(md, title)
        for clips in (2, 4):
            table = section.split(f"**{clips} clips per step**")[1].split("**")[0]
            assert sorted(line.split(" | ")[0][2:] for line in table.splitlines() if line.startswith("| ts")) == \
                sorted(names)
    prof = _section(md, "## Profile: is the step CPU-bound?")
    assert "busy < 0.8: **CPU-bound**" in prof and "**CPU-bound: not applicable on this run**" in prof
    assert "Top CPU-side ops per step, tsam, 4 clips" in prof
    assert "**Is the step CPU-bound?** Not answerable from a CPU run" in md
    assert "Decision: none: these are not CUDA numbers" in md


@pytest.mark.slow
def test_gpu_bench_training_loop_and_accelerate_on_cpu(tmp_path):
    """The training-loop parts of ``bench_gpu.py --device cpu --small``: the repository's own loop (setup_training +
    fit) over a small synthetic dataset, timed per batch against the bare step, and ``accelerate launch`` of
    ``python -m tsamlib train`` on the same dataset, one epoch, finished."""
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO_ROOT / "benchmarks" / "bench_gpu.py"), "--device", "cpu", "--small", "--clips",
           "2", "--steps", "2", "--warmup", "1", "--rounds", "1", "--variants", "tsn,tsam", "--train-steps", "2",
           "--workers", "1", "--parts", "eager,train,accelerate", "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    res = json.loads((out / "gpu_cpu_small.json").read_text())
    assert res["errors"] == {}, res["errors"]
    (loop,) = res["train"]
    assert loop["clips"] == 2 and loop["timed_batches"] >= 2 and loop["ms_per_step"] > 0
    assert loop["finished"] is True and loop["precision"] == "fp32"
    assert loop["vs_bare_step"] == pytest.approx(loop["ms_per_step"] / loop["bare_ms_per_step"], rel=1e-2)
    acc = res["accelerate"]
    assert acc["returncode"] == 0 and acc["finished"] is True and acc["launch"]["world_size"] == 1
    assert acc["command"].startswith("accelerate launch --cpu --num_processes 1")
    md = (out / "gpu_cpu_small.md").read_text()
    assert "## The repository's training loop" in md and "## accelerate launch" in md


def test_gpu_bench_training_parts_say_why_they_did_not_run(tmp_path, monkeypatch):
    """Where fastai, PyAV, decord or librosa is missing (the GPU image has none of them) the training-loop parts are
    recorded as not run, naming what is missing, and the benchmark still writes its report."""
    bench_gpu = _load("bench_gpu")
    monkeypatch.setattr(bench_gpu, "missing_modules", lambda *names: ["fastai", "decord"])
    assert bench_gpu.main(["--device", "cpu", "--small", "--parts", "train,accelerate", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "gpu_cpu_small.json").read_text())
    for part in ("train", "accelerate"):
        assert "missing here: fastai, decord" in res[part]["skipped"]
    md = (tmp_path / "gpu_cpu_small.md").read_text()
    assert md.count("Not run: needs fastai, av, decord, librosa; missing here: fastai, decord") == 2


def test_layouts_bench_quick_mode_writes_a_row_per_layout(tmp_path):
    """``bench_layouts`` in its quick mode on 2 small clips (one repeat, one epoch of 8 samples): the table has a row
    for every layout with every column filled (16 workers named as not measured on a machine without them), the
    JSON the same rows, and nothing is written beside the clips. No time is checked."""
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


def test_online_bench_quick_mode_writes_its_table(tmp_path):
    """``bench_online --quick`` at 64 px: a row per thread count with both ratios and the state, the goal line, and
    ONNX Runtime agreeing with PyTorch; no time is checked."""
    bench = _load("bench_online")
    bench.main(["--quick", "--size", "64", "--out", str(tmp_path)])
    md = (tmp_path / "online_quick.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| resnet18 |")]
    assert len(rows) == 2 * len({1, os.cpu_count() or 1}) and "Goal: the streaming shift adds at most 10 %" in md
    res = json.loads((tmp_path / "online_quick.json").read_text())
    assert all(r["clip_max_abs_diff"] < 1e-4 and r["state_mb"] > 0 for r in res["rows"])
    assert all(r["ort_stream_ms"] > 0 and r["clip_int8_mb"] < r["clip_mb"] for r in res["rows"])   # the deployed rows
    assert "the ONNX stream step within 1.1x" in md   # a second table: PyTorch's rows, then ONNX Runtime's
