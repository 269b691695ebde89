"""Without decord (no wheels on aarch64 or macOS) every read, probe, prepare and training path goes through PyAV.

The same script runs twice in a fresh interpreter, once as installed and once with ``sys.modules["decord"] = None``
(``import decord`` fails as it does where decord is not installed); both must give the same probes, frames,
manifest and prepared clips, the second saying once that PyAV reads the videos and printing no traceback.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO_ROOT

pytest.importorskip("decord")   # the reference run reads with decord

SCRIPT = r'''
import json, sys
from pathlib import Path
import numpy as np
if sys.argv[1] == "missing":   # torchcodec too: 'auto' would take it next, and it needs the system's FFmpeg
    sys.modules["decord"] = sys.modules["torchcodec"] = sys.modules["torchcodec.decoders"] = None
from tsamlib.data.loaders import video_dataloaders
from tsamlib.data.manifest import build_manifest
from tsamlib.data.prepare import prepare_dataset
from tsamlib.data.synthetic import make_synthetic_dataset
from tsamlib.data.video import count_frames, load_clip, load_views, read_frames

real, out = Path(sys.argv[2]), Path(sys.argv[3])
syn = make_synthetic_dataset(out / "syn", n_per_class=2, n_classes=2, seconds=1.0, size=(48, 64), fps=12, workers=1)
videos = sorted(real.glob("*.mp4")) + sorted((syn).rglob("*.mp4"))
records = [dict(path=str(v), label=i % 2, label_name=f"c{i % 2}", split="train" if i % 3 else "valid")
           for i, v in enumerate(videos)]
df = build_manifest(records, out / "manifest.csv", workers=2, verbose=False)
frames = {}
for i, v in enumerate(videos):
    n = count_frames(v)
    frames[f"{i}_valid8"] = load_clip(v, 8, "valid")[0].numpy()
    frames[f"{i}_train16"] = load_clip(v, 16, "train", rng=np.random.default_rng(i))[0].numpy()
    frames[f"{i}_views"] = load_views(v, 8, 2)[0].numpy()
    frames[f"{i}_ends"] = read_frames(v, [0, n - 1]).numpy()
syn_manifest = syn / "manifest.csv"
prep = prepare_dataset(syn_manifest, out / "prep", short_side=32, workers=1, verbose=False, mels="none")
dls = video_dataloaders(prep.manifest, n_frames=4, img_size=32, resize=32, batch_size=2, seed=0,
                        valid_split="train")
x, y = dls.valid.one_batch()
frames["batch"] = x.cpu().numpy()
np.savez(out / "frames.npz", **frames)
probe = df[["n_frames", "fps", "has_audio", "problem"]].to_dict("list")
(out / "probe.json").write_text(json.dumps(dict(probe=probe, prepared=prep.table["n_frames"].tolist())))
'''


def _run(mode: str, real: Path, out: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    res = subprocess.run([sys.executable, "-c", SCRIPT, mode, str(real), str(out)], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


@pytest.mark.slow
def test_without_decord_pyav_reads_the_same(kinetics_clips, tmp_path):
    real = kinetics_clips / "videos"
    ref, miss = tmp_path / "decord", tmp_path / "missing"
    _run("installed", real, ref)
    res = _run("missing", real, miss)
    said = (res.stdout + res.stderr).count("video_backend='auto'")
    assert said == 1 and "videos are read with pyav (decord: " in res.stdout, res.stdout[-2000:]
    assert "Traceback" not in res.stderr
    assert json.loads((miss / "probe.json").read_text()) == json.loads((ref / "probe.json").read_text())
    a, b = np.load(ref / "frames.npz"), np.load(miss / "frames.npz")
    assert sorted(a.files) == sorted(b.files)
    for k in a.files:   # measured: PyAV's frames equal decord's, pixel for pixel, on these clips
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# ------------------------------------------------------------------------------------------- the setting
def test_video_backend_setting_reaches_the_readers_and_auto_equals_missing():
    from tsamlib.config import RunConfig, config_diff
    from tsamlib.data.loaders import DataSpec
    from tsamlib.evaluation.specs import ViewsSpec
    old = {k: v for k, v in RunConfig().settings().items() if k != "video_backend"}   # a run recorded before it
    assert config_diff(old, RunConfig().settings()) == {}
    assert config_diff(old, RunConfig(video_backend="pyav").settings()) == {"video_backend": ("auto", "pyav")}
    assert ViewsSpec.of(old).video_backend == "auto" and ViewsSpec.of(dict(old, video_backend="pyav")).video_backend \
        == "pyav"
    assert DataSpec.of(RunConfig(video_backend="pyav")).video_backend == "pyav"
    with pytest.raises(ValueError, match="video_backend"):
        RunConfig(video_backend="ffmpeg")


def test_a_backend_not_installed_is_refused_naming_the_fix(monkeypatch, tmp_path, kinetics_clips):
    from tsamlib.config import RunConfig
    from tsamlib.data import decode
    from tsamlib.data.video import load_clip
    from tsamlib.training.run import setup_training
    monkeypatch.setattr(decode, "backend_missing", lambda b: "ModuleNotFoundError: No module named 'decord'"
                        if b == "decord" else "")
    with pytest.raises(ModuleNotFoundError, match="pip install decord"):
        setup_training(RunConfig(video_backend="decord", runs_root=str(tmp_path / "runs")))
    assert not (tmp_path / "runs").exists()
    with pytest.raises(ValueError, match="choose one of"):
        decode.resolve_backend("ffmpeg")
    video = sorted((kinetics_clips / "videos").glob("*.mp4"))[0]
    frames, _ = load_clip(video, 4, "valid", backend="pyav")   # 'pyav' asked for: decord never opened
    assert frames.shape[0] == 4 and decode.file_readers("pyav") == (decode.PyAVSeek, decode.PyAVVideo)
