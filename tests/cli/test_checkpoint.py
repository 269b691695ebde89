"""``python -m tsamlib checkpoint inspect / convert`` and ``train --pretrained`` from each checkpoint format."""
import json

import pytest
import torch
from authors_like import SETTINGS, AuthorsModel, trained_like
from tsm_family_like import MMRecognizer, TSMRepoModel, mmaction2_cfg_text, save_like_mmaction2, save_like_tsm

from tsamlib.__main__ import main

TSM_NAME = "TSM_kinetics_RGB_resnet18_shift8_blockres_avg_segment4_e50.pth"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """One checkpoint of each format, resnet18, 4 frames."""
    root = tmp_path_factory.mktemp("formats")
    torch.manual_seed(0)
    save_like_tsm(trained_like(TSMRepoModel(7, 4, "resnet18", shift_div=8)), root / TSM_NAME, "resnet18")
    save_like_mmaction2(trained_like(MMRecognizer(18, 7, 4, tsm=True, shift_div=8)), root / "tsm_mm.pth",
                        mmaction2_cfg_text(18, 7, 4, tsm=True, shift_div=8))
    authors = dict(SETTINGS, n_frames=4, shift_depth=1, f_div=8, n_insert=1)
    model = trained_like(AuthorsModel("resnet18", num_classes=7, audio=False, **authors))
    optimizer = torch.optim.SGD(model.parameters(), 0.01)
    torch.save({"data_state": {"epoch": 3}, "model_state": {k: m.state_dict() for k, m in model.model_layers.items()},
                "optimizer_state_dict": optimizer.state_dict()}, root / "authors.ckpt.pth.tar")
    return root


def test_inspect_prints_what_the_file_holds(files, capsys):
    assert main(["checkpoint", "inspect", str(files / TSM_NAME)]) == 0
    out = capsys.readouterr().out
    assert "format: tsm" in out and "arch: resnet18" in out and "classes: 7" in out
    assert "n_frames: not recorded in the file (its name says 4" in out
    assert "would load: 122 tensors, 0 missing, 0 unexpected, head loaded" in out
    assert main(["checkpoint", "inspect", str(files / "tsm_mm.pth"), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["format"] == "mmaction2" and record["settings"]["n_frames"] == 4
    assert record["would_load"]["loaded"] == 122 and record["would_load"]["assumed_for_the_dry_run"] == {}


@pytest.mark.parametrize("make, says", [
    (lambda p: p.write_bytes(b""), "is empty"),
    (lambda p: p.write_text("hello"), "cannot be read weights-only"),
    (lambda p: torch.save({"state_dict": {"module.base_model.features.0.0.weight": torch.zeros(1)}}, p),
     "MobileNetV2"),
    (lambda p: torch.save({"weights": [1, 2]}, p), "holds 1 values that are not tensors (first: 'weights', a list)"),
    (lambda p: torch.save([1, 2], p), "holds no state dict of tensors"),
])
def test_inspect_names_a_bad_file_in_one_line(tmp_path, capsys, make, says):
    path = tmp_path / "bad.pth"
    make(path)
    assert main(["checkpoint", "inspect", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and says in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_convert_on_the_command_line(files, tmp_path, capsys):
    out = tmp_path / "pkg"
    assert main(["checkpoint", "convert", str(files / TSM_NAME), "--out", str(out)]) == 2
    assert "--n-frames N --f-div N" in capsys.readouterr().err and not out.exists()
    assert main(["checkpoint", "convert", str(files / TSM_NAME), "--out", str(out), "--n-frames", "4",
                 "--f-div", "8", "--dataset", "kinetics-400"]) == 0
    assert "checked: it reads back to the same logits" in capsys.readouterr().out
    assert main(["checkpoint", "convert", str(files / TSM_NAME), "--out", str(out), "--n-frames", "4",
                 "--f-div", "8"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["checkpoint", "convert", "no-such-run", "--out", str(tmp_path / "x")]) == 2
    assert "neither a file, a folder nor a run id" in capsys.readouterr().err


@pytest.fixture(scope="module")
def package_and_run(files, tmp_path_factory):
    """A package converted from the TSM file, and a finished tsamlib run: the last two formats to train from."""
    from fake_runs import finished_run

    from tsamlib.data.datasets import dataset_manifest
    from tsamlib.evaluation.package import convert_checkpoint
    root = tmp_path_factory.mktemp("more")
    convert_checkpoint(files / TSM_NAME, root / "pkg", n_frames=4, f_div=8)
    run = finished_run(root / "runs", dataset_manifest("default", build_missing=True), run_id="src", n_frames=4)
    return root / "pkg", run / "checkpoints" / "model.pth"


@pytest.mark.parametrize("name, fmt, extra", [(TSM_NAME, "tsm", []), ("tsm_mm.pth", "mmaction2", []),
                                              ("authors.ckpt.pth.tar", "authors", ["--shift-pad", "keep"]),
                                              ("package", "package", []), ("run", "tsamlib", [])])
def test_train_fine_tunes_from_each_format_on_the_default_dataset(files, package_and_run, tmp_path, capsys, name,
                                                                  fmt, extra):
    source = {"package": package_and_run[0], "run": package_and_run[1].parent.parent}.get(name, files / name)
    code = main(["train", "--pretrained", str(source), "--arch", "resnet18", "--n-frames", "4", "--img-size", "32",
                 "--resize", "36", "--epochs", "1", "--runs-root", str(tmp_path), "--run-id", "ft", *extra])
    out, err = capsys.readouterr()
    assert code == 0, err
    m = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    rec = m["pretrained"]
    weights = source / "checkpoints" / "model.pth" if name == "run" else source   # a run folder: its final weights
    assert m["finished"] and rec["format"] == fmt and rec["source"] == str(weights) and not rec["missing"]
    assert json.loads((tmp_path / "ft" / "params.json").read_text())["pretrained"] == str(source)
    if name == "run":   # the same dataset: its classifier fits and is kept
        assert rec["head"] == "loaded"
    else:
        assert rec["head"] == "replaced" and rec["num_classes"] == 7
        assert "its classifier (7 classes) replaced by a new one for this dataset's" in out
    assert len(rec["sha256"]) == 64
    assert "run ft finished" in out


def test_train_refuses_a_file_that_does_not_fit_before_the_run_folder(files, tmp_path, capsys):
    code = main(["train", "--pretrained", str(files / "tsm_mm.pth"), "--arch", "resnet18", "--n-frames", "8",
                 "--runs-root", str(tmp_path), "--run-id", "no"])
    err = capsys.readouterr().err
    assert code == 2 and "trained with n_frames=4" in err and "--pretrained-match weights" in err
    assert not (tmp_path / "no").exists()
