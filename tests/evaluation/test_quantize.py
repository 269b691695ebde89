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


def test_int8_of_the_stream_graph_is_refused_for_now(tmp_path, int8_run, capsys):
    out = tmp_path / "m.int8.onnx"
    assert main(["export", str(int8_run), "--onnx", str(out), "--int8", "--stream"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --int8 with --stream") and list(tmp_path.iterdir()) == []
