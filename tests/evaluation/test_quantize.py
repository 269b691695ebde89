"""INT8 export: calibrated on the run's training clips, kept only when it agrees with fp32 on its validation clips."""
from __future__ import annotations

import json

import numpy as np
import pytest
from fake_runs import finished_run

from tsamlib.__main__ import main
from tsamlib.evaluation import quantize as qz
from tsamlib.evaluation.released import example_clips_manifest

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def int8_run(kinetics_clips, tmp_path_factory):
    root = tmp_path_factory.mktemp("int8")
    manifest = example_clips_manifest(root / "manifest.csv", kinetics_clips)
    return finished_run(root / "runs", manifest, audio=False, shift_depth=1)


def test_int8_file_carries_its_measured_agreement(tmp_path, int8_run, capsys):
    out = tmp_path / "m.int8.onnx"
    assert main(["export", str(int8_run), "--onnx", str(out), "--int8", "--calib-clips", "4",
                 "--min-agreement", "0.5"]) == 0
    assert "top-1 agreement" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["m.int8.onnx"]   # no temporary fp32 graph left
    s = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = json.loads(s.get_modelmeta().custom_metadata_map["int8"])
    assert meta["n_calib"] == 4 and meta["method"] == "minmax" and 0.5 <= meta["agreement"] <= 1
    assert np.isfinite(meta["max_abs_diff"]) and meta["onnxruntime"] == ort.__version__
    assert any(n.op_type == "QuantizeLinear" for n in __import__("onnx").load(str(out)).graph.node)
    x = np.zeros([1] + [d if isinstance(d, int) else 1 for d in s.get_inputs()[0].shape[1:]], np.float32)
    assert s.run(None, {s.get_inputs()[0].name: x})[0].shape[0] == 1


def test_an_agreement_below_the_threshold_writes_nothing(tmp_path, int8_run, capsys):
    out = tmp_path / "m.int8.onnx"
    assert main(["export", str(int8_run), "--onnx", str(out), "--int8", "--calib-clips", "1",
                 "--min-agreement", "1.01"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: INT8 top-1 agreement") and "below --min-agreement" in err[0]
    assert "--calib-clips" in err[0] and list(tmp_path.iterdir()) == []


def test_quantize_checked_refuses_an_unknown_method(tmp_path):
    with pytest.raises(ValueError, match="one of minmax"):
        qz.quantize_checked(tmp_path / "a.onnx", tmp_path / "b.onnx", [], [], method="mse")


@pytest.fixture(scope="module")
def causal_run(kinetics_clips, tmp_path_factory):
    root = tmp_path_factory.mktemp("int8-stream")
    manifest = example_clips_manifest(root / "manifest.csv", kinetics_clips)
    return finished_run(root / "runs", manifest, audio=True, shift_depth=2, shift_direction="causal", n_frames=4)


def test_int8_stream_graph_streams_and_carries_its_agreement(tmp_path, causal_run, capsys):
    """``--int8 --stream``: the stream graph quantized on every step of the calibration clips' fp32 stream, compared
    at the last step of each validation clip; the file streams with OnnxStream as the fp32 one does."""
    from tsamlib.evaluation.onnx_stream import OnnxStream
    out = tmp_path / "s.int8.onnx"
    assert main(["export", str(causal_run), "--onnx", str(out), "--int8", "--stream", "--calib-clips", "2",
                 "--min-agreement", "0.25"]) == 0
    said = capsys.readouterr().out
    assert "steps of 2 training clips" in said and [p.name for p in tmp_path.iterdir()] == ["s.int8.onnx"]
    stream = OnnxStream(out)
    meta = json.loads(stream.session.get_modelmeta().custom_metadata_map["int8"])
    assert meta["graph"] == "stream" and meta["n_calib_clips"] == 2 and meta["n_calib"] == 2 * 4   # 4 frames each
    assert meta["compared"] == "last step" and 0.25 <= meta["agreement"] <= 1 and meta["n_eval"] == 4
    assert any(n.op_type == "QuantizeLinear" for n in __import__("onnx").load(str(out)).graph.node)
    frame = np.zeros((1, 3, 32, 32), np.float32)
    first, second = stream.step(frame, frame), stream.step(frame)
    assert first.shape == second.shape == (1, 2) and np.isfinite(second).all()


def test_int8_stream_of_a_bidirectional_run_is_refused(tmp_path, int8_run, capsys):
    out = tmp_path / "m.int8.onnx"
    assert main(["export", str(int8_run), "--onnx", str(out), "--int8", "--stream"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a stream needs a causal run" in err[0] and list(tmp_path.iterdir()) == []
