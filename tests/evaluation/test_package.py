"""``checkpoint convert``: a package (safetensors, config.json, a model card) of each format, read back exactly."""
import json
import re

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
    with pytest.raises(ValueError, match=r"does not record n_frames, audio, shift_depth and f_div \(authors format\)"):
        convert_checkpoint(tmp_path / "resnet18_x.ckpt.pth.tar", tmp_path / "au")   # their files record none
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


@pytest.fixture(scope="module")
def tsm_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("tsmsrc")
    torch.manual_seed(6)
    path = root / "TSM_k_RGB_resnet18_shift8_blockres_avg_segment4_e1.pth"
    save_like_tsm(trained_like(TSMRepoModel(5, 4, "resnet18", shift_div=8)), path, "resnet18", best_prec1=70.0)
    return path


def test_overwrite_replaces_only_a_package_and_never_the_source(tsm_file, tmp_path, monkeypatch):
    args = dict(n_frames=4, f_div=8)
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("important")
    with pytest.raises(FileExistsError, match="other files than a tsamlib package: nothing there is replaced"):
        convert_checkpoint(tsm_file, keep, overwrite=True, **args)
    assert (keep / "notes.txt").read_text() == "important"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        convert_checkpoint(tsm_file, tmp_path / "afile", overwrite=True, **args)
    with pytest.raises(ValueError, match="is the source or holds it"):
        convert_checkpoint(tsm_file, tsm_file.parent, overwrite=True, **args)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="is the current folder"):
        convert_checkpoint(tsm_file, "", overwrite=True, **args)
    assert (tmp_path / "afile").read_text() == "x" and (keep / "notes.txt").is_file()
    out = convert_checkpoint(tsm_file, tmp_path / "pkg", **args)
    before = (out / "config.json").read_text()
    import tsamlib.evaluation.package as package

    def broken_card(config):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(package, "model_card", broken_card)
    with pytest.raises(OSError, match=r"writing the package .*pkg failed \(No space left on device\): nothing was "
                                      r"replaced"):
        convert_checkpoint(tsm_file, out, overwrite=True, name="new", **args)
    assert (out / "config.json").read_text() == before and not list(tmp_path.glob(".pkg.*"))   # the old one stays
    monkeypatch.undo()
    convert_checkpoint(tsm_file, out, overwrite=True, name="new", **args)
    assert json.loads((out / "config.json").read_text())["name"] == "new" and not list(tmp_path.glob(".pkg.*"))


def test_a_package_holds_the_files_own_classifier_and_finite_weights(tsm_file, tmp_path):
    with pytest.raises(ValueError, match=r"its classifier does not fit this model's \(10 outputs: "
                                         r"fc.weight \(5, 512\)->\(10, 512\).*not converted with a new, "
                                         r"untrained head"):
        convert_checkpoint(tsm_file, tmp_path / "a", n_frames=4, f_div=8, num_classes=10)
    raw = torch.load(tsm_file, weights_only=True)
    raw["state_dict"]["module.base_model.layer1.0.conv2.weight"][0, 0, 0, 0] = float("nan")
    torch.save(raw, tmp_path / "nan.pth")
    with pytest.raises(ValueError, match=r"holds 1 tensors with NaN or infinite values \(first: "
                                         r"layer1.0.conv2.weight\)"):
        convert_checkpoint(tmp_path / "nan.pth", tmp_path / "b", n_frames=4, f_div=8)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize("classes, says", [([], "classes is empty"), (["a", "b", "a", "c", "d"], "repeated ['a']"),
                                           ("abcde", "a list of non-empty names"),
                                           (["a", "b"], "2 class names (given)")])
def test_class_names_are_checked(tsm_file, tmp_path, classes, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        convert_checkpoint(tsm_file, tmp_path / "c", n_frames=4, f_div=8, classes=classes)


def test_run_records_edited_by_hand_and_weights_of_a_file(tsm_file, tmp_path):
    from tsamlib.data.datasets import dataset_manifest
    run = finished_run(tmp_path / "runs", dataset_manifest("default", build_missing=True), run_id="r2", n_frames=4)
    with pytest.raises(ValueError, match="chooses among a run's weights"):
        convert_checkpoint(tsm_file, tmp_path / "w", weights="best", n_frames=4, f_div=8)
    with pytest.raises(ValueError, match="weights='middle'"):
        convert_checkpoint(run, tmp_path / "w", weights="middle")
    (run / "metrics.json").write_text(json.dumps(dict(finished=True, final=[1, 2])))
    convert_checkpoint(run, tmp_path / "w1")   # a final that is not an object: no number claimed, no crash
    (run / "eval_valid_2x3.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"eval_valid_2x3.json holds a JSON list, not the object tsamlib writes"):
        convert_checkpoint(run, tmp_path / "w2")


def test_a_killed_conversion_leaves_nothing_the_next_one_keeps(tsm_file, tmp_path):
    stale = tmp_path / ".pkg.999999.deadbeef.tmp"   # no such process
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    convert_checkpoint(tsm_file, tmp_path / "pkg", n_frames=4, f_div=8)
    assert not stale.exists()


def test_files_put_in_out_while_a_convert_runs_are_never_replaced(tsm_file, tmp_path, monkeypatch):
    import tsamlib.evaluation.package as package
    real = package._check_package
    out = tmp_path / "new"

    def meanwhile(model, folder):   # another program fills --out while the package is being written
        real(model, folder)
        out.mkdir()
        (out / "thesis.txt").write_text("precious")

    monkeypatch.setattr(package, "_check_package", meanwhile)
    with pytest.raises(FileExistsError, match="was filled while the package was written"):
        convert_checkpoint(tsm_file, out, n_frames=4, f_div=8, overwrite=True)
    assert (out / "thesis.txt").read_text() == "precious" and not list(tmp_path.glob(".new.*"))


def test_an_old_package_left_aside_by_a_kill_comes_back(tsm_file, tmp_path):
    out = convert_checkpoint(tsm_file, tmp_path / "pkg", n_frames=4, f_div=8)
    aside = tmp_path / ".pkg.999999.old.tmp"   # killed between moving it aside and moving the new one in
    out.rename(aside)
    (tmp_path / "link").symlink_to(aside)
    with pytest.raises(ValueError, match="is a symbolic link"):
        convert_checkpoint(tsm_file, tmp_path / "link", n_frames=4, f_div=8, overwrite=True)
    with pytest.raises(FileExistsError, match="holds a package already"):
        convert_checkpoint(tsm_file, out, n_frames=4, f_div=8)   # it was put back first, then kept
    assert (out / "model.safetensors").is_file() and not aside.exists()


def test_predict_stream_and_export_take_a_package_as_they_take_its_run(tmp_path, kinetics_clips, capsys):
    """A package of a run predicts, streams and exports as the run does: same views (its sizes, input values and
    audio front end come from config.json), same classes."""
    import onnx

    from tsamlib.__main__ import main
    from tsamlib.evaluation.export import export_onnx
    from tsamlib.evaluation.predict import predict
    from tsamlib.evaluation.released import example_clips_manifest
    from tsamlib.evaluation.stream import stream_video
    manifest = example_clips_manifest(tmp_path / "clips.csv", kinetics_clips)
    run = finished_run(tmp_path / "runs", manifest, audio=True, shift_depth=2, f_div=4, shift_direction="causal",
                       n_frames=4, video_norm="none", valid_view="short_side", audio_frontend="authors")
    package = convert_checkpoint(run, tmp_path / "pkg")
    pre = json.loads((package / "config.json").read_text())["preprocessing"]
    assert (pre["video_norm"], pre["valid_view"], pre["audio_frontend"]) == ("none", "short_side", "authors")
    video = sorted((kinetics_clips / "videos").glob("*.mp4"))[0]
    def same(a, b):   # [(class, p), ...]
        assert [n for n, _ in a] == [n for n, _ in b] and [p for _, p in a] == pytest.approx([p for _, p in b])
    same(predict(package, video, k=2, verbose=False), predict(run, video, k=2, verbose=False))
    by_run, by_package = list(stream_video(run, video, k=2)), list(stream_video(package, video, k=2))
    assert len(by_run) == len(by_package) > 1
    for a, b in zip(by_package, by_run):
        same(a.top, b.top)
    with pytest.raises(ValueError, match="is a package: it names no dataset to check the export on; give videos"):
        export_onnx(package, tmp_path / "m.onnx")
    rep = export_onnx(package, tmp_path / "m.onnx", videos=[video])
    meta = {p.key: p.value for p in onnx.load(str(rep.path)).metadata_props}
    assert json.loads(meta["classes"]) == json.loads((package / "config.json").read_text())["classes"]
    assert main(["predict", str(video), "--run", str(package), "--top", "1"]) == 0
    assert f"(run {package.name}," in capsys.readouterr().out
    assert main(["predict", str(video), "--run", str(package), "--stream", "--audio-window", "5"]) == 0   # has audio
    assert "audio window 5.0 s" in capsys.readouterr().out
    with pytest.raises(ValueError, match="is a package, which holds one set"):
        from tsamlib.evaluation.views import load_model
        load_model(package, weights="best")


def test_a_package_without_its_views_or_its_weights_is_named(tsm_file, tmp_path):
    from tsamlib.evaluation.views import load_model
    from tsamlib.runs.folder import resolve_run
    out = convert_checkpoint(tsm_file, tmp_path / "pkg", n_frames=4, f_div=8)
    config = json.loads((out / "config.json").read_text())
    del config["preprocessing"]["img_size"]
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(Exception, match=r"'preprocessing' lacks \['img_size'\]"):   # never the default 224 silently
        load_model(out)
    (out / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="holds config.json but no model.safetensors"):
        resolve_run(out)
