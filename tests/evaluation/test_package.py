"""``checkpoint convert``: a package (safetensors, config.json, a model card) of each format, read back exactly."""
import json

import pytest
import torch
import yaml
from authors_like import SETTINGS, AuthorsModel, save_like_authors, trained_like
from fake_runs import finished_run
from tsm_family_like import MMRecognizer, TSMRepoModel, mmaction2_cfg_text, save_like_mmaction2, save_like_tsm

from tsamlib.evaluation.package import convert_checkpoint, model_card
from tsamlib.model.formats import inspect_checkpoint
from tsamlib.model.tsam import create_tsam, create_tsam_from


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def _same_logits(a, b, n_frames, audio=False):
    torch.manual_seed(5)
    video = torch.randn(2, n_frames, 3, 32, 32)
    extra = (torch.randn(2, 1, 3, 32, 32),) if audio else ()
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(video, *extra), b.eval()(video, *extra), atol=1e-5, rtol=1e-4)


def test_tsm_file_converts_to_a_package_that_gives_its_logits(tmp_path):
    torch.manual_seed(0)
    ref = trained_like(TSMRepoModel(4, 6, "resnet18", shift_div=4))
    src = tmp_path / "TSM_mini_RGB_resnet18_shift4_blockres_avg_segment6_e9.pth"
    save_like_tsm(ref, src, "resnet18", best_prec1=63.5)
    with pytest.raises(ValueError, match=r"does not record n_frames and f_div .*--n-frames N --f-div N"):
        convert_checkpoint(src, tmp_path / "pkg")
    assert not (tmp_path / "pkg").exists()   # nothing written for a refused conversion
    out = convert_checkpoint(src, tmp_path / "pkg", n_frames=6, f_div=4, dataset="mini",
                             classes=["w", "x", "y", "z"])
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert not list(tmp_path.glob(".pkg.*"))   # no temporary folder left
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["n_frames"] == 6 and config["source"]["format"] == "tsm"
    assert config["source"]["settings_from"]["n_frames"] == "given to convert"
    assert config["metrics"][0]["value"] == 63.5 and config["metrics"][0]["measured_here"] is False
    assert config["classes"] == ["w", "x", "y", "z"] and len(config["source"]["sha256"]) == 64
    info = inspect_checkpoint(out)
    assert info.format == "package" and info.settings["f_div"] == 4 and info.classes == ["w", "x", "y", "z"]
    _same_logits(create_tsam_from(out), ref, 6)
    card = (out / "README.md").read_text()
    meta = _front_matter(card)
    assert meta["library_name"] == "tsamlib" and meta["pipeline_tag"] == "video-classification"
    assert meta["datasets"] == ["mini"] and "license" in meta and meta["license"] is None   # the owner's to set
    assert meta["model-index"][0]["results"][0]["metrics"][0]["value"] == 63.5
    assert "not measured here" in card and "best_prec1" in card   # where the number came from
    with pytest.raises(FileExistsError, match="--overwrite"):
        convert_checkpoint(src, out, n_frames=6, f_div=4)
    convert_checkpoint(src, out, n_frames=6, f_div=4, overwrite=True)


def test_mmaction2_and_authors_files_convert(tmp_path):
    torch.manual_seed(1)
    mm = trained_like(MMRecognizer(18, 3, 4, tsm=True, shift_div=8, preprocessor_buffers=True))
    src = tmp_path / "tsm_r18.pth"
    save_like_mmaction2(mm, src, mmaction2_cfg_text(18, 3, 4), classes=["a", "b", "c"])
    out = convert_checkpoint(src, tmp_path / "mm")
    config = json.loads((out / "config.json").read_text())
    assert config["classes"] == ["a", "b", "c"] and config["model"]["n_frames"] == 4
    assert set(config["source"]["not_weights"]) == {"data_preprocessor.mean", "data_preprocessor.std"}
    assert _front_matter((out / "README.md").read_text())["metrics"] == []   # no number recorded: none claimed
    _same_logits(create_tsam_from(out), mm, 4)
    authors = trained_like(AuthorsModel("resnet18", num_classes=5, **SETTINGS))
    save_like_authors(authors, tmp_path / "resnet18_x.ckpt.pth.tar")
    with pytest.raises(ValueError, match="n_frames and f_div"):
        convert_checkpoint(tmp_path / "resnet18_x.ckpt.pth.tar", tmp_path / "au")
    out = convert_checkpoint(tmp_path / "resnet18_x.ckpt.pth.tar", tmp_path / "au", audio=True,
                             **{k: v for k, v in SETTINGS.items() if k != "n_insert" and k != "m_insert"})
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["shift_pad"] == "keep" and config["metrics"][0]["value"] == 73.4
    _same_logits(create_tsam_from(out), authors, SETTINGS["n_frames"], audio=True)


def test_a_finished_run_converts_with_its_classes_and_top1(tmp_path):
    from tsamlib.data.datasets import dataset_manifest
    from tsamlib.evaluation.views import run_vocab
    manifest = dataset_manifest("default", build_missing=True)
    run = finished_run(tmp_path / "runs", manifest, run_id="r1", n_frames=4)
    out = convert_checkpoint(run, tmp_path / "pkg")
    config = json.loads((out / "config.json").read_text())
    assert config["classes"] == run_vocab(dict(dataset=str(manifest))) and config["dataset"] == str(manifest)
    assert config["source"]["format"] == "tsamlib" and config["source"]["settings_from"]["n_frames"].startswith(
        "the run's params.json")
    assert any(m["measured_here"] and m["name"] == "top-1" for m in config["metrics"])
    model = create_tsam_from(out)
    assert model.fc.out_features == config["num_classes"]


def test_model_card_says_when_nothing_is_known():
    config = dict(name="x", arch="resnet18", num_classes=2, classes=None, dataset=None,
                  model=dict(n_frames=8, audio=False, shift_depth=0, f_div=8, shift_pad="zero",
                             shift_direction="bidirectional", n_insert=1, m_insert=0, dropout=0.5),
                  preprocessing=dict(img_size=224), metrics=[],
                  source=dict(path="a.pth", format="backbone", sha256=None, records={}, settings_from={},
                              not_weights={}),
                  provenance=dict(git_commit=None, packages=dict(torch="2")))
    card = model_card(config)
    meta = _front_matter(card)
    assert meta["datasets"] == [] and meta["metrics"] == [] and "model-index" not in meta
    assert "None recorded" in card and "TSN" in card and "not recorded (outputs are label indices)" in card


def test_train_from_a_package_keeps_the_backbone(tmp_path):
    torch.manual_seed(2)
    ref = trained_like(TSMRepoModel(9, 4, "resnet18", shift_div=8))
    src = tmp_path / "TSM_k_RGB_resnet18_shift8_blockres_avg_segment4_e1.pth"
    save_like_tsm(ref, src, "resnet18")
    out = convert_checkpoint(src, tmp_path / "pkg", n_frames=4, f_div=8)
    model = create_tsam("resnet18", num_classes=3, n_frames=4, pretrained=out)
    assert model.load_report.head == "replaced" and model.load_report.layout == "package"
    assert torch.equal(model.backbone.layer4[1].conv2.weight, ref.base_model.layer4[1].conv2.weight)
