"""The benchmark scripts' helpers that touch files: they write only under their temporary folder."""
import importlib.util
from pathlib import Path

from conftest import REPO_ROOT, make_video
from tsamlib.manifest import read_manifest


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
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
