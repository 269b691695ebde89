"""ONNX export: standard operators only, a dynamic batch, both border pads and the audio frame;
onnxruntime agrees with PyTorch within 1e-4 on the run's own preprocessing of the real Kinetics clips, at batch
sizes other than the traced one; a disagreement writes nothing."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_runs import finished_run

from tsamlib.__main__ import main
from tsamlib.config import RunConfig
from tsamlib.evaluation import export as ex
from tsamlib.evaluation.released import example_clips_manifest
from tsamlib.evaluation.views import run_vocab
from tsamlib.model.onnx_export import check_onnx_graph, export_model_onnx
from tsamlib.model.shift_reference import ShiftSpec
from tsamlib.model.tsam import create_tsam

ort = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("audio, pad, direction", [(True, "zero", "bidirectional"), (False, "keep", "bidirectional"),
                                                  (True, "keep", "bidirectional"), (True, "zero", "causal"),
                                                  (True, "keep", "causal")])
def test_graph_is_standard_ops_with_a_free_batch(tmp_path, audio, pad, direction):
    torch.manual_seed(0)
    model = create_tsam("resnet18", num_classes=5, n_frames=8, audio=audio, n_insert=2,
                        shift=ShiftSpec(depth=3, f_div=4, pad=pad, direction=direction)).eval()
    make = lambda b: [torch.randn(b, 8, 3, 32, 32)] + ([torch.randn(b, 1, 3, 32, 32)] if audio else [])  # noqa
    path = export_model_onnx(model, tmp_path / "m.onnx", *make(2))
    ops = check_onnx_graph(path)
    assert "Concat" in ops and "Conv" in ops
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == (["video", "audio"] if audio else ["video"])
    for b in (1, 3, 5):                                                   # not the traced batch of 2
        inputs = make(b)
        with torch.no_grad():
            want = model(*inputs).numpy()
        got = session.run(None, {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs)})[0]
        assert got.shape == (b, 5) and np.abs(got - want).max() < 1e-4


@pytest.fixture(scope="module")
def clips_manifest(kinetics_clips, tmp_path_factory):
    return example_clips_manifest(tmp_path_factory.mktemp("clips") / "manifest.csv", kinetics_clips)


@pytest.mark.parametrize("settings", [dict(audio=True, shift_depth=2, f_div=4, n_insert=2),
                                      dict(audio=False, shift_depth=3, f_div=4, shift_pad="keep"),
                                      dict(audio=True, shift_depth=3, f_div=4, shift_pad="keep",
                                           shift_direction="causal")])
def test_export_is_checked_on_real_clips(tmp_path, clips_manifest, kinetics_clips, settings):
    run = finished_run(tmp_path / "runs", clips_manifest, **settings)
    videos = sorted((kinetics_clips / "videos").glob("*.mp4"))[:4]
    rep = ex.export_onnx(run, tmp_path / "out" / "model.onnx", videos=videos)
    assert rep.path.is_file() and set(rep.max_abs_diff) == {1, 3}
    assert all(d < 1e-4 for d in rep.max_abs_diff.values()) and rep.inputs == (
        ["video", "audio"] if settings["audio"] else ["video"])
    meta = ort.InferenceSession(str(rep.path)).get_modelmeta().custom_metadata_map
    assert json.loads(meta["classes"]) == run_vocab(RunConfig(dataset=str(clips_manifest)))
    assert meta["n_frames"] == "8" and meta["img_size"] == "32"
    assert json.loads(meta["check"])["max_abs_diff"] == {str(b): d for b, d in rep.max_abs_diff.items()}
    shift = (str(settings["shift_depth"]), settings.get("shift_pad", "zero"),
             settings.get("shift_direction", "bidirectional"))
    assert (meta["shift_depth"], meta["shift_pad"], meta["shift_direction"]) == shift
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["model.onnx"]   # no temporary file left


def test_a_disagreement_writes_nothing(tmp_path, clips_manifest, kinetics_clips, monkeypatch):
    run = finished_run(tmp_path / "runs", clips_manifest, audio=True, shift_depth=1)
    real = ex.export_model_onnx

    def broken(model, path, *inputs, metadata=None):   # a graph whose logits are off by 1e-3
        with torch.no_grad():
            model.fc.bias += 1e-3
        try:
            return real(model, path, *inputs, metadata=metadata)
        finally:
            with torch.no_grad():
                model.fc.bias -= 1e-3
    monkeypatch.setattr(ex, "export_model_onnx", broken)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ex.ExportCheckError, match="was not written"):
        ex.export_onnx(run, out / "model.onnx", videos=sorted((kinetics_clips / "videos").glob("*.mp4"))[:2])
    assert list(out.iterdir()) == []


def test_cli_export_errors_are_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope"), "--onnx", str(tmp_path / "m.onnx")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no run")
    with pytest.raises(SystemExit) as e:
        main(["export", "demo", "--onnx", "x.onnx", "--atol", "0"])
    assert e.value.code == 2


def test_bad_outputs_and_tolerances_are_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    for out, what in ((tmp_path, "is a folder"), (tmp_path / "afile" / "m.onnx", "a file is there, not a folder")):
        assert main(["export", "demo", "--onnx", str(out)]) in (1, 2)
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and what in err[0], err
    with pytest.raises(ValueError, match="positive finite"):
        ex.export_onnx("demo", tmp_path / "m.onnx", atol=float("inf"))



@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
def test_export_to_a_device_is_refused_not_reported_as_written(tmp_path, clips_manifest, capsys):
    import os
    import stat
    run = finished_run(tmp_path / "runs", clips_manifest)
    assert main(["export", str(run), "--onnx", "/dev/full"]) == 1
    out, err = capsys.readouterr()
    assert "wrote" not in out and err.strip().splitlines() == [
        "error: cannot write /dev/full: it is a device, not a regular file; choose another --onnx path"]
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)
