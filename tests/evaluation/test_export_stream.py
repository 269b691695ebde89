"""The stream graph (``export --stream``): onnxruntime steps, fed back their own state, agree with StreamingTSAM at
every step, for a dynamic batch, with and without audio, any depth and both pads; the reference loop runs without
torch; a bidirectional run is refused and nothing is written."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_runs import finished_run

from tsamlib.__main__ import main
from tsamlib.evaluation import export as ex
from tsamlib.evaluation.onnx_stream import OnnxStream
from tsamlib.evaluation.released import example_clips_manifest
from tsamlib.model.online import StreamingTSAM
from tsamlib.model.shift_reference import ShiftSpec
from tsamlib.model.tsam import create_tsam

ort = pytest.importorskip("onnxruntime")
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("audio, pad, k", [(True, "zero", 3), (False, "keep", 1), (True, "keep", 2),
                                           (False, "zero", 0)])
def test_stream_graph_agrees_with_streaming_tsam_every_step(tmp_path, audio, pad, k):
    _stream_agrees(tmp_path, "resnet18", audio, pad, k)


def test_another_timm_resnet_streams_too(tmp_path):   # a deep stem, avg-pool downsampling: other ops, same state
    _stream_agrees(tmp_path, "resnet10t", True, "keep", 3)


def _stream_agrees(tmp_path, arch, audio, pad, k):
    torch.manual_seed(0)
    model = create_tsam(arch, num_classes=5, n_frames=8, audio=audio, n_insert=2,
                        shift=ShiftSpec(depth=k, f_div=4, pad=pad, direction="causal")).eval()
    path = ex.write_stream_onnx(model, tmp_path / "s.onnx", torch.randn(2, 3, 32, 32))
    meta = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    state = json.loads(meta["state"])
    assert meta["initial_state"] == "zeros" and all(s["shape"][0] == "B" for s in state)
    assert [s["name"] for s in state] == [f"shift{i}" for i in range(model.n_shifted_blocks if k else 0)] + \
        ["total", "frames"] + (["audio_features"] if audio else [])   # one buffer per block the model shifts
    if k and arch == "resnet18":                     # layer1 at 32 px: 64 channels of 8x8, k x 2kf moved of them
        assert state[0]["shape"] == ["B", k, 2 * k * ((64 // 4) // k), 8, 8]
    assert state[-1 if not audio else -2]["shape"] == ["B", 1] and "frames seen" in state[-1 - audio]["meaning"]
    for b in (1, 3):                                      # not the traced batch of 2
        torch_stream, onnx_stream = StreamingTSAM(model), OnnxStream(path)
        frames, sound = torch.randn(6, b, 3, 32, 32), torch.randn(b, 3, 32, 32)
        for t in range(6):
            given = sound if audio and t == 3 else None     # sound arrives late: silence before, as StreamingTSAM
            want = torch_stream.step(frames[t], given).numpy()
            got = onnx_stream.step(frames[t].numpy(), None if given is None else given.numpy())
            assert got.shape == (b, 5) and np.abs(got - want).max() < 1e-4, (b, t)


@pytest.fixture(scope="module")
def clips_manifest(kinetics_clips, tmp_path_factory):
    return example_clips_manifest(tmp_path_factory.mktemp("clips") / "manifest.csv", kinetics_clips)


@pytest.mark.parametrize("settings", [dict(audio=True, shift_depth=3, f_div=4, shift_pad="keep"),
                                      dict(audio=False, shift_depth=1, f_div=8, shift_pad="zero")])
def test_cli_stream_export_is_checked_on_real_clips(tmp_path, clips_manifest, kinetics_clips, settings, capsys):
    run = finished_run(tmp_path / "runs", clips_manifest, shift_direction="causal", **settings)
    out = tmp_path / "stream.onnx"
    videos = [str(v) for v in sorted((kinetics_clips / "videos").glob("*.mp4"))[:3]]
    assert main(["export", str(run), "--onnx", str(out), "--stream", "--videos", *videos]) == 0
    assert "wrote" in capsys.readouterr().out and out.is_file() and not list(tmp_path.glob(".*checking*"))
    meta = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    check = json.loads(meta["check"])
    assert set(check["max_abs_diff"]) == {"1", "3"} and max(check["max_abs_diff"].values()) <= 1e-4
    assert check["steps"] == 8 and meta["graph"] == "stream" and json.loads(meta["audio"]) == settings["audio"]
    inputs = [i.name for i in ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).get_inputs()]
    assert inputs[:3] == (["frame", "audio", "audio_new"] if settings["audio"] else ["frame", "shift0", "shift1"])


def test_a_stream_disagreement_writes_nothing(tmp_path, clips_manifest, kinetics_clips, monkeypatch):
    run = finished_run(tmp_path / "runs", clips_manifest, shift_direction="causal", shift_depth=2, f_div=4)
    monkeypatch.setattr(ex, "check_stream", lambda *a, **k: {1: 0.5, 3: 0.0})
    with pytest.raises(ex.ExportCheckError, match="0.5"):
        ex.export_onnx_stream(run, tmp_path / "s.onnx", videos=sorted((kinetics_clips / "videos").glob("*.mp4"))[:1])
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".*"))


def test_a_bidirectional_run_is_refused(tmp_path, clips_manifest, capsys):
    run = finished_run(tmp_path / "runs", clips_manifest, shift_depth=2, f_div=4)
    out = tmp_path / "s.onnx"
    assert main(["export", str(run), "--onnx", str(out), "--stream"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "shift_direction='causal'" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".*checking*"))


def test_the_reference_loop_needs_no_torch(tmp_path):
    model = create_tsam("resnet18", num_classes=3, n_frames=4, audio=True,
                        shift=ShiftSpec(depth=2, f_div=4, direction="causal")).eval()
    path = ex.write_stream_onnx(model, tmp_path / "s.onnx", torch.randn(1, 3, 32, 32))
    code = ("import sys, numpy as np, tsamlib; s = tsamlib.OnnxStream(sys.argv[1]); "
            "[s.step(np.zeros((2, 3, 32, 32), np.float32)) for _ in range(3)]; "
            "out = s.step(np.ones((2, 3, 32, 32), np.float32), np.ones((2, 3, 32, 32), np.float32)); "
            "assert out.shape == (2, 3), out.shape; assert 'torch' not in sys.modules, 'torch imported'; print('ok')")
    res = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, cwd=REPO,
                         env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PATH": ""})
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
