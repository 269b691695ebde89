"""Checkpoints of the TSM family load with every tensor placed and give their source model's logits.

The source models (the TSM repository's TSN/TSM on a torchvision ResNet, mmaction2's Recognizer2D with ConvModule
names) are re-created in ``tests/tsm_family_like.py`` and saved as their training scripts save them; tsamlib's
timm-based model must give the same logits in eval mode on the same input.
"""
import re

import pytest
import torch
from authors_like import trained_like
from tsm_family_like import (MMRecognizer, TSMRepoModel, mmaction2_cfg_text, save_like_mmaction2, save_like_tsm)

from tsamlib.model.formats import (UnsupportedCheckpoint, inspect_checkpoint, insert_rule, mmaction2_config,
                                   name_hints, read_checkpoint)
from tsamlib.model.shift_reference import ShiftSpec
from tsamlib.model.tsam import check_model_settings, create_tsam, create_tsam_from
from tsamlib.runs.loader import CheckpointError

TSM_NAME = "TSM_kinetics_RGB_resnet18_shift8_blockres_avg_segment8_e50.pth"


def _logits(model, video):
    with torch.no_grad():
        return model.eval()(video)


@pytest.fixture(scope="module")
def tsm_r18(tmp_path_factory):
    torch.manual_seed(0)
    ref = trained_like(TSMRepoModel(5, 8, "resnet18", shift_div=8, dropout=0.5))
    path = tmp_path_factory.mktemp("tsm") / TSM_NAME
    return save_like_tsm(ref, path, "resnet18"), path


@pytest.fixture(scope="module")
def mm_tsm_r18(tmp_path_factory):
    torch.manual_seed(1)
    ref = trained_like(MMRecognizer(18, 5, 6, tsm=True, shift_div=4, preprocessor_buffers=True))
    path = tmp_path_factory.mktemp("mm") / "tsm_imagenet-pretrained-r18_8xb16-1x1x6-50e_kinetics400-rgb.pth"
    return save_like_mmaction2(ref, path, mmaction2_cfg_text(18, 5, 6, tsm=True, shift_div=4),
                               classes=["a", "b", "c", "d", "e"]), path


def test_tsm_repository_checkpoint_gives_its_logits(tsm_r18, capsys):
    ref, path = tsm_r18
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"epoch", "arch", "state_dict", "optimizer", "best_prec1"}
    assert "module.base_model.layer1.0.conv1.net.weight" in raw["state_dict"]
    model = create_tsam("resnet18", num_classes=5, n_frames=8, shift=ShiftSpec(f_div=8), pretrained=path)
    rep = model.load_report
    assert rep.layout == "tsm" and rep.loaded == len(raw["state_dict"]) and rep.head == "loaded"
    assert not rep.missing and not rep.unexpected and not rep.skipped_classifier
    assert "tsm format" in capsys.readouterr().out
    video = torch.randn(2, 8, 3, 32, 32)
    torch.testing.assert_close(_logits(model, video), _logits(ref, video), atol=1e-5, rtol=1e-4)


def test_tsm_checkpoint_states_what_its_tensors_and_records_hold(tsm_r18):
    _, path = tsm_r18
    info = inspect_checkpoint(path)
    assert (info.format, info.arch, info.num_classes) == ("tsm", "resnet18", 5)
    assert info.settings == dict(shift_depth=1, shift_pad="zero", audio=False, shift_direction="bidirectional",
                                 n_insert=1, m_insert=0)   # never from the name
    assert info.name_hints == dict(arch="resnet18", f_div=8, n_frames=8)
    assert info.records == dict(epoch=50, arch="resnet18", best_prec1=71.2)
    text = "\n".join(info.describe())
    assert "n_frames: not recorded in the file (its name says 8" in text and "record best_prec1: 71.2" in text


def test_tsm_resnet101_shifts_every_second_block_and_gives_its_logits(tmp_path):
    torch.manual_seed(2)
    ref = trained_like(TSMRepoModel(3, 4, "resnet101", shift_div=8, dropout=0.8))
    path = save_like_tsm(ref, tmp_path / "TSM_something_RGB_resnet101_shift8_blockres_avg_segment4_e45.pth",
                         "resnet101") and tmp_path / "TSM_something_RGB_resnet101_shift8_blockres_avg_segment4_e45.pth"
    info = inspect_checkpoint(path)
    assert info.arch == "resnet101" and info.stages == (3, 4, 23, 3)
    assert info.shifted[3] == list(range(0, 23, 2)) and (info.settings["n_insert"], info.settings["m_insert"]) == (2, 0)
    with pytest.raises(ValueError, match=r"n_insert=2, m_insert=0"):   # every block: not what the file holds
        create_tsam("resnet101", num_classes=3, n_frames=4, pretrained=path)
    model = create_tsam("resnet101", num_classes=3, n_frames=4, n_insert=2, pretrained=path)
    assert model.n_shifted_blocks == 2 + 2 + 12 + 2 and not model.load_report.missing
    video = torch.randn(1, 4, 3, 32, 32)
    torch.testing.assert_close(_logits(model, video), _logits(ref, video), atol=1e-5, rtol=1e-4)


def test_tsm_trained_without_dropout_and_tsn_files(tmp_path):
    torch.manual_seed(3)
    ref = trained_like(TSMRepoModel(4, 4, "resnet18", shift_div=4, dropout=0))   # classifier = base_model.fc
    path = tmp_path / "TSM_x_RGB_resnet18_shift4_blockres_avg_segment4_e1.pth"
    save_like_tsm(ref, path, "resnet18")
    assert "module.base_model.fc.weight" in torch.load(path, weights_only=True)["state_dict"]
    model = create_tsam_from(path, n_frames=4, f_div=4)
    video = torch.randn(2, 4, 3, 32, 32)
    torch.testing.assert_close(_logits(model, video), _logits(ref, video), atol=1e-5, rtol=1e-4)
    tsn = trained_like(TSMRepoModel(4, 5, "resnet18", is_shift=False))
    path = tmp_path / "TSM_kinetics_RGB_resnet18_avg_segment5_e50.pth"
    save_like_tsm(tsn, path, "resnet18")
    info = inspect_checkpoint(path)
    assert info.settings["shift_depth"] == 0 and not any(info.shifted.values())
    with pytest.raises(ValueError, match=r"shift_depth=0 \(from tensors \(no shift wrapper: a TSN\)\), this model "
                                         r"has shift_depth=1"):
        create_tsam("resnet18", num_classes=4, n_frames=5, pretrained=path)
    model = create_tsam_from(path, n_frames=5)   # a TSN needs no f_div
    video = torch.randn(2, 5, 3, 32, 32)
    torch.testing.assert_close(_logits(model, video), _logits(tsn, video), atol=1e-5, rtol=1e-4)


def test_mmaction2_tsm_checkpoint_gives_its_logits_with_settings_from_meta(mm_tsm_r18):
    ref, path = mm_tsm_r18
    raw = torch.load(path, weights_only=True)
    keys = raw["state_dict"]
    assert "backbone.layer1.0.conv1.conv.net.weight" in keys and "cls_head.fc_cls.weight" in keys
    info = inspect_checkpoint(path)
    assert (info.format, info.arch, info.num_classes, info.classes) == ("mmaction2", "resnet18", 5, list("abcde"))
    assert info.settings["n_frames"] == 6 and info.settings["f_div"] == 4 and info.settings["shift_depth"] == 1
    assert "meta cfg" in info.sources["n_frames"] and info.records["epoch"] == 50
    assert info.preprocessing["test_views"]["num_clips"] == 6 and info.preprocessing["average_clips"] == "prob"
    assert set(info.ignored) == {"data_preprocessor.mean", "data_preprocessor.std"}   # counted, named, not lost
    model = create_tsam_from(path)
    rep = model.load_report
    assert rep.loaded + len(info.ignored) == len(raw["state_dict"]) and not rep.missing and not rep.unexpected
    video = torch.randn(2, 6, 3, 32, 32)
    torch.testing.assert_close(_logits(model, video), _logits(ref, video), atol=1e-5, rtol=1e-4)


def test_mmaction2_tsn_r50_checkpoint_gives_its_logits(tmp_path):
    torch.manual_seed(4)
    ref = trained_like(MMRecognizer(50, 7, 3, tsm=False))
    path = tmp_path / "tsn_imagenet-pretrained-r50_8xb32-1x1x3-100e_kinetics400-rgb.pth"
    save_like_mmaction2(ref, path, mmaction2_cfg_text(50, 7, 3, tsm=False))
    info = inspect_checkpoint(path)
    assert (info.arch, info.settings["shift_depth"], info.settings["dropout"]) == ("resnet50", 0, 0.4)
    assert "n_frames" not in info.settings   # a TSN runs on any number of frames
    model = create_tsam("resnet50", num_classes=7, n_frames=3, shift=ShiftSpec(depth=0), pretrained=path)
    assert model.load_report.loaded == 320
    video = torch.randn(2, 3, 3, 32, 32)
    torch.testing.assert_close(_logits(model, video), _logits(ref, video), atol=1e-5, rtol=1e-4)


def test_mismatches_are_refused_naming_both_values(tsm_r18, mm_tsm_r18):
    _, tsm = tsm_r18
    _, mm = mm_tsm_r18
    with pytest.raises(ValueError, match=r"holds a ResNet-18 .*arch 'resnet18'.* this model is arch='resnet50': "
                                         r"build it with arch='resnet18'"):
        create_tsam("resnet50", num_classes=5, n_frames=8, pretrained=tsm)
    with pytest.raises(ValueError, match=r"trained with n_frames=6 \(from meta cfg \(backbone num_segments=6\)\), "
                                         r"this model has n_frames=8.*f_div=4.*Build the model with n_frames=6, "
                                         r"f_div=4"):
        create_tsam("resnet18", num_classes=5, n_frames=8, pretrained=mm)
    with pytest.raises(ValueError, match=r"trained with shift_depth=1 .* this model has shift_depth=3"):
        create_tsam("resnet18", num_classes=5, n_frames=8, shift=ShiftSpec(depth=3, f_div=4), pretrained=tsm)
    with pytest.raises(ValueError, match=r"n_frames=6"):   # checked without building: before any run folder
        check_model_settings("resnet18", pretrained=mm, n_frames=8, f_div=4)
    # what only the file name says is a warning, never a refusal or a value
    with pytest.warns(UserWarning, match=r"the file name says n_frames=8 but this model has n_frames=6"):
        create_tsam("resnet18", num_classes=5, n_frames=6, pretrained=tsm)
    with pytest.raises(ValueError, match=r"does not record n_frames and f_div \(tsm format\): give n_frames=, "
                                         r"f_div= \(CLI: --n-frames N --f-div N\); its file name says n_frames=8, "
                                         r"f_div=8"):
        create_tsam_from(tsm)


def test_weights_match_takes_a_tsm_file_into_a_deeper_tsam(tsm_r18, capsys):
    ref, path = tsm_r18
    model = create_tsam("resnet18", num_classes=5, n_frames=8, shift=ShiftSpec(depth=4, f_div=4), n_insert=2,
                        pretrained=path, pretrained_match="weights")
    rep = model.load_report
    assert rep.loaded == 122 and not rep.missing
    assert any("shift_depth=1" in n and "shift_depth=4" in n for n in rep.notes)
    assert any("n_insert" in n for n in rep.notes) and "this model has shift_depth=4" in capsys.readouterr().out
    assert torch.equal(model.backbone.layer1[0].conv1.net.weight, ref.base_model.layer1[0].conv1.net.weight)
    assert rep.record()["differences_taken"] == rep.notes and len(rep.record()["sha256"]) == 64


def test_a_new_head_for_other_classes_is_said(mm_tsm_r18, capsys):
    _, path = mm_tsm_r18
    model = create_tsam("resnet18", num_classes=3, n_frames=6, shift=ShiftSpec(f_div=4), pretrained=path)
    rep = model.load_report
    assert rep.head == "replaced" and rep.loaded == 120 and not rep.missing
    assert "classifier replaced by a new one (the file's has 5 classes)" in capsys.readouterr().out


def test_variants_tsamlib_does_not_build_are_named(tmp_path, tsm_r18):
    _, path = tsm_r18
    sd = torch.load(path, weights_only=True)["state_dict"]

    def variant(name, change):
        out = dict(sd)
        change(out)
        torch.save({"state_dict": out, "epoch": 1}, tmp_path / name)
        return tmp_path / name

    def rename(old, new):
        return lambda d: d.update({k.replace(old, new): d.pop(k) for k in [k for k in d if old in k]})

    cases = {
        "mobilenet.pth": (rename("module.base_model.layer1.", "module.base_model.features.1."), "MobileNetV2"),
        "block.pth": (rename(".0.conv1.net.", ".0.net.conv1."), "'block' shift placement"),
        "nl.pth": (lambda d: d.update({"module.base_model.layer2.0.nl.g.weight": torch.zeros(1)}), "non-local"),
        "tpool.pth": (rename("module.base_model.layer2.", "module.base_model.layer2.net."), "temporal pooling"),
        "flow.pth": (lambda d: d.update({"module.base_model.conv1.weight": torch.zeros(64, 10, 7, 7)}),
                     "10 input channels"),
    }
    for name, (change, what) in cases.items():
        with pytest.raises(UnsupportedCheckpoint, match=what):
            inspect_checkpoint(variant(name, change))
    with pytest.raises(UnsupportedCheckpoint, match="'every n-th block from m' rule"):   # shifted blocks 0 and 1 of 3
        inspect_checkpoint(variant("odd.pth", rename("module.base_model.layer1.1.conv1.net.",
                                                     "module.base_model.layer1.1.conv1.")))


class Trap:
    """Unpickling this would create ``marker``: a file that runs code when loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        from pathlib import Path
        return (Path.touch, (Path(self.marker),))


def test_truncated_and_code_running_files_are_named_and_never_executed(tmp_path, tsm_r18):
    _, path = tsm_r18
    data = path.read_bytes()
    cut = tmp_path / "TSM_cut.pth"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        create_tsam("resnet18", num_classes=5, n_frames=8, pretrained=cut)
    marker = tmp_path / "code-ran"
    raw = torch.load(path, weights_only=True)
    torch.save({**raw, "args": Trap(marker)}, tmp_path / "TSM_trap.pth")
    with pytest.raises(CheckpointError, match=r"a pickle that needs \w+: objects, not only weights, so it was not "
                                              r"unpickled"):
        inspect_checkpoint(tmp_path / "TSM_trap.pth")
    assert not marker.exists()


def test_a_tsamlib_run_checkpoint_states_the_runs_settings(tmp_path):
    import json
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    a = create_tsam("resnet18", num_classes=4, n_frames=6, shift=ShiftSpec(depth=2, f_div=4), audio=True)
    torch.save(a.state_dict(), run / "checkpoints" / "model.pth")
    (run / "params.json").write_text(json.dumps(dict(arch="resnet18", n_frames=6, shift_depth=2, f_div=4, audio=True,
                                                     dataset="default", img_size=32, resize=36)))
    info = inspect_checkpoint(run / "checkpoints" / "model.pth")
    assert info.format == "tsamlib" and info.settings["shift_depth"] == 2 and info.settings["audio"] is True
    assert info.sources["n_frames"].startswith("the run's params.json (") and info.preprocessing["img_size"] == 32
    with pytest.raises(ValueError, match=r"trained with audio=True .*this model has audio=False"):
        create_tsam("resnet18", num_classes=4, n_frames=6, shift=ShiftSpec(depth=2, f_div=4),
                    pretrained=run / "checkpoints" / "model.pth")
    b = create_tsam_from(run / "checkpoints" / "model.pth")
    video, audio = torch.randn(1, 6, 3, 32, 32), torch.randn(1, 1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(b.eval()(video, audio), a.eval()(video, audio))


def test_helpers_read_rules_names_and_configs():
    assert insert_rule({1: [0, 2], 2: [0, 2], 3: [0, 2, 4], 4: [0, 2]}, (3, 4, 6, 3)) == (2, 0)
    assert insert_rule({1: [1], 2: [1, 3], 3: [1, 3, 5], 4: [1]}, (3, 4, 6, 3)) == (2, 1)
    assert insert_rule({1: [], 2: [], 3: [], 4: []}, (3, 4, 6, 3)) is None
    assert name_hints("TSM_something_RGB_resnet101_shift8_blockres_avg_segment16_e45.pth") == dict(
        arch="resnet101", f_div=8, n_frames=16)
    assert name_hints("tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_kinetics400-rgb_20220831-64d69186.pth") == dict(
        arch="resnet50", n_frames=8)
    assert name_hints("model.pth") == {}
    cfg = mmaction2_config(mmaction2_cfg_text(50, 400, 16, tsm=True, shift_div=8, test_clips=16))
    assert cfg["backbone"]["num_segments"] == 16 and cfg["cls_head"]["num_classes"] == 400
    assert cfg["test_frames"]["num_clips"] == 16 and cfg["test_frames"]["twice_sample"] is True
    assert mmaction2_config("this is not python (") == {}
    backbone = mmaction2_config("import os\nos.system('touch x')\nmodel = dict(backbone=dict(type='ResNetTSM', "
                                "depth=50, num_segments=__import__('os').getpid()))")["backbone"]
    assert backbone["type"] == "ResNetTSM" and backbone["depth"] == 50   # literals only: a call is never run
    assert not isinstance(backbone["num_segments"], int)                 # ... it is known to be set, not read


def test_read_checkpoint_returns_timm_names(tsm_r18, mm_tsm_r18):
    for _, path in (tsm_r18, mm_tsm_r18):
        sd, info = read_checkpoint(path)
        ours = create_tsam("resnet18", num_classes=5, n_frames=8).state_dict()
        want = {k.replace("backbone.", "", 1).replace(".conv1.net.", ".conv1.") for k in ours}
        assert set(sd) == want, info.format


@pytest.mark.parametrize("setting, says", [
    ("num_segments=[4]", "backbone num_segments=[4], which is not a valid num_segments"),
    ("num_segments=None", "num_segments=None"), ("num_segments=4.7", "num_segments=4.7"),
    ("num_segments=True", "num_segments=True"), ("num_segments='four'", "num_segments='four'"),
    ("shift_div=0", "shift_div=0"), ("temporal_pool='no'", "temporal_pool='no'"),
])
def test_mmaction2_config_values_that_no_model_has_are_refused(tmp_path, setting, says):
    torch.manual_seed(7)
    text = mmaction2_cfg_text(18, 3, 4).replace("num_segments=4)", f"num_segments=4, {setting})", 1)
    text = text.replace("num_segments=4, num_segments=", "num_segments=")   # the setting replaces the default one
    save_like_mmaction2(MMRecognizer(18, 3, 4), tmp_path / "mm.pth", text)
    with pytest.raises(UnsupportedCheckpoint, match=re.escape(says)):
        inspect_checkpoint(tmp_path / "mm.pth")


def test_mmaction2_config_expressions_and_huge_texts_are_not_read(tmp_path):
    mm = MMRecognizer(18, 3, 4)
    text = mmaction2_cfg_text(18, 3, 4).replace("num_segments=4)", "num_segments=clips_per_video)", 1)
    save_like_mmaction2(mm, tmp_path / "expr.pth", text)
    info = inspect_checkpoint(tmp_path / "expr.pth")
    assert "n_frames" not in info.settings and info.settings["f_div"] == 8   # set by an expression: not guessed
    save_like_mmaction2(mm, tmp_path / "huge.pth", mmaction2_cfg_text(18, 3, 4) + "\n# x" * 400_000)
    info = inspect_checkpoint(tmp_path / "huge.pth")
    assert info.records["config"].startswith("not read: 1,6") and "n_frames" not in info.settings
    text = mmaction2_cfg_text(18, 3, 4).replace("dropout_ratio=0.5", "dropout_ratio=5")
    save_like_mmaction2(mm, tmp_path / "drop.pth", text)
    with pytest.raises(UnsupportedCheckpoint, match="cls_head dropout_ratio=5"):
        inspect_checkpoint(tmp_path / "drop.pth")


def test_a_package_config_edited_by_hand_is_refused_naming_it(tmp_path, tsm_r18):
    import json

    from tsamlib.evaluation.package import convert_checkpoint
    _, path = tsm_r18
    pkg = convert_checkpoint(path, tmp_path / "pkg", n_frames=8, f_div=8)
    good = json.loads((pkg / "config.json").read_text())

    def edited(change):
        cfg = json.loads(json.dumps(good))
        change(cfg)
        (pkg / "config.json").write_text(json.dumps(cfg) if not isinstance(cfg, str) else cfg)
        return pkg

    cases = [(lambda c: c.update(preprocessing=[1]), "preprocessing of the wrong type"),
             (lambda c: c.update(metrics="oops"), "metrics of the wrong type"),
             (lambda c: c.update(classes=[[1], None, "a", "b", "c"]), "classes of the wrong type"),
             (lambda c: c.update(num_classes=7), "num_classes says 7 classes but the classifier"),
             (lambda c: c.update(model={}), "'model' lacks"),
             (lambda c: c["model"].update(n_frames=0), "config.json): n_frames=0 is out of range"),
             (lambda c: c.update(arch="resnet9000"), "config.json) says arch='resnet9000' but the tensors are a "
                                                     "ResNet-18")]
    for change, says in cases:
        with pytest.raises(UnsupportedCheckpoint, match=re.escape(says)):
            inspect_checkpoint(edited(change))
    (pkg / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(UnsupportedCheckpoint, match="nested too deeply"):
        inspect_checkpoint(pkg)


def test_odd_state_dicts_and_run_folders(tmp_path, tsm_r18):
    _, path = tsm_r18
    sd = torch.load(path, weights_only=True)["state_dict"]
    torch.save({**sd, "module.base_model.note": "hello"}, tmp_path / "odd.pth")
    with pytest.raises(UnsupportedCheckpoint, match=r"1 values that are not tensors \(first: "
                                                    r"'module.base_model.note', a str\)"):
        inspect_checkpoint(tmp_path / "odd.pth")
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "params.json").write_text('{"arch": "resnet18", "n_frames": 8}')
    with pytest.raises(UnsupportedCheckpoint, match="run folder .* has no checkpoints/model.pth"):
        inspect_checkpoint(run)
    torch.save(create_tsam("resnet18", num_classes=3, n_frames=8).state_dict(), run / "checkpoints" / "model.pth")
    assert inspect_checkpoint(run).format == "tsamlib"   # a run folder is read as its final weights
    (run / "params.json").write_text("[1]")
    with pytest.raises(UnsupportedCheckpoint, match="holds a JSON list, not an object of settings"):
        inspect_checkpoint(run / "checkpoints" / "model.pth")


def test_non_finite_weights_and_odd_keys_are_refused_before_training(tmp_path, tsm_r18):
    _, path = tsm_r18
    raw = torch.load(path, weights_only=True)
    raw["state_dict"]["module.base_model.layer1.0.conv1.net.weight"][0, 0, 0, 0] = float("inf")
    torch.save(raw, tmp_path / "inf.pth")
    with pytest.raises(ValueError, match=r"1 tensors with NaN or infinite values \(first: layer1.0.conv1.weight\)"):
        check_model_settings("resnet18", pretrained=tmp_path / "inf.pth", n_frames=8)   # what train checks first
    torch.save({5: torch.zeros(1), "a": torch.zeros(1)}, tmp_path / "keys.pth")
    with pytest.raises(UnsupportedCheckpoint, match="keys that are not names"):
        inspect_checkpoint(tmp_path / "keys.pth")


@pytest.mark.parametrize("depth,k", [(18, 1), (50, 0)])
def test_a_tsam_saved_in_tsm_and_mmaction2_layouts_loads_into_their_models(tmp_path, depth, k):
    """save_tsm_checkpoint / save_mmaction2_checkpoint: the source repositories' own models (re-created here) load
    the file strictly and give tsamlib's logits; tsamlib reads both back to the same model."""
    from tsamlib.model.pretrained import save_mmaction2_checkpoint, save_tsm_checkpoint
    torch.manual_seed(4)
    model = trained_like(create_tsam(f"resnet{depth}", num_classes=5, n_frames=4, shift=ShiftSpec(depth=k, f_div=8),
                                     pretrained=None)).eval()
    video = torch.randn(2, 4, 3, 32, 32)
    want = _logits(model, video)
    tsm = torch.load(save_tsm_checkpoint(model, tmp_path / "tsm.pth", epoch=3), weights_only=True)
    ref = TSMRepoModel(5, 4, f"resnet{depth}", is_shift=k == 1, shift_div=8)
    ref.load_state_dict({key[len("module."):]: v for key, v in tsm["state_dict"].items()})   # strict
    torch.testing.assert_close(_logits(ref, video), want, atol=1e-5, rtol=1e-4)
    assert tsm["arch"] == f"resnet{depth}" and tsm["epoch"] == 3
    mm = torch.load(save_mmaction2_checkpoint(model, tmp_path / "mm.pth", classes=list("abcde")), weights_only=True)
    ref = MMRecognizer(depth, 5, 4, tsm=k == 1, shift_div=8)
    ref.load_state_dict(mm["state_dict"])                                                         # strict
    torch.testing.assert_close(_logits(ref, video), want, atol=1e-5, rtol=1e-4)
    info = inspect_checkpoint(tmp_path / "mm.pth")
    assert info.format == "mmaction2" and info.classes == list("abcde")
    assert info.preprocessing["test_crop"] == {"type": "CenterCrop", "crop_size": 224}
    again = create_tsam_from(tmp_path / "mm.pth", audio=False, **({} if k else dict(n_frames=4)))
    torch.testing.assert_close(_logits(again, video), want)


def test_models_their_code_cannot_build_are_not_written_in_their_layouts(tmp_path):
    from tsamlib.model.pretrained import save_mmaction2_checkpoint, save_tsm_checkpoint
    for kw, says in ((dict(shift=ShiftSpec(depth=2)), "shift depth 2"), (dict(audio=True), "an audio frame"),
                     (dict(shift=ShiftSpec(pad="keep")), "'keep' borders"),
                     (dict(n_insert=2), "i % 2 == 0 (theirs: i % 1 == 0)")):
        model = create_tsam("resnet18", num_classes=3, n_frames=4, pretrained=None, **kw)
        for save in (save_tsm_checkpoint, save_mmaction2_checkpoint):
            with pytest.raises(ValueError, match=re.escape(says)):
                save(model, tmp_path / "x.pth")
    assert not (tmp_path / "x.pth").exists()


@pytest.mark.parametrize("kwargs, says", [
    (dict(mean_255=(float("nan"), 0, 0)), "mean_255="), (dict(mean_255=(1, 2)), "mean_255="),
    (dict(std_255=(0, 0, 0)), "each > 0"), (dict(std_255="abc"), "std_255="),
    (dict(classes=["a", "b"]), "a list of 5 names"), (dict(classes="abcde"), "a list of 5 names"),
    (dict(resize=10, img_size=224), "img_size=224 > resize=10"), (dict(img_size="224)), dict(type='x'"), "img_size="),
    (dict(epoch="x"), "epoch='x'")])
def test_mmaction2_saver_refuses_values_its_config_cannot_hold(tmp_path, kwargs, says):
    from tsamlib.model.pretrained import save_mmaction2_checkpoint, save_tsm_checkpoint
    model = create_tsam("resnet18", num_classes=5, pretrained=None, n_frames=4, audio=False,
                        shift=ShiftSpec(depth=1, pad="zero"))
    with pytest.raises(ValueError, match=re.escape(says)):
        save_mmaction2_checkpoint(model, tmp_path / "mm.pth", **kwargs)
    assert not (tmp_path / "mm.pth").exists()
    with pytest.raises(ValueError, match="epoch="):
        save_tsm_checkpoint(model, tmp_path / "tsm.pth", epoch="x")


def test_mmaction2_input_values_are_read_from_its_preprocessor(tmp_path):
    """The cfg's data_preprocessor mean/std (0-255) decide the input values: ImageNet's, values in [0, 1], or a
    refusal naming them (the views would not be the ones the file was trained on)."""
    from tsamlib.model.pretrained import save_mmaction2_checkpoint
    model = create_tsam("resnet18", num_classes=3, n_frames=4, pretrained=None)
    save_mmaction2_checkpoint(model, tmp_path / "in.pth")
    assert inspect_checkpoint(tmp_path / "in.pth").preprocessing["video_norm"] == "imagenet"
    save_mmaction2_checkpoint(model, tmp_path / "01.pth", mean_255=(0, 0, 0), std_255=(255, 255, 255))
    assert inspect_checkpoint(tmp_path / "01.pth").preprocessing["video_norm"] == "none"
    save_mmaction2_checkpoint(model, tmp_path / "odd.pth", mean_255=(127.5,) * 3, std_255=(127.5,) * 3)
    with pytest.raises(UnsupportedCheckpoint, match=r"normalises inputs with mean=\[127.5, 127.5, 127.5\]"):
        inspect_checkpoint(tmp_path / "odd.pth")
