"""Evaluating a checkpoint file without a run folder (tsamlib.evaluation.released), and notebook 06 on the 12 real
clips.

The checkpoint is written in the authors' exact layout by the independent re-creation of their model in
test_authors_checkpoint.py (resnet18, 6 frames + audio, k=2, 8 classes); the data are six tiny clips with sound
(three classes), so the module runs in seconds.
"""
import json
from pathlib import Path

import nbformat
import papermill as pm
import pytest
import torch
from authors_like import SETTINGS as MODEL
from authors_like import AuthorsModel, save_like_authors, trained_like
from conftest import make_video

from tsamlib.data.manifest import build_manifest
from tsamlib.evaluation.predict import clip_views
from tsamlib.evaluation.protocols import AuthorsPasses, views_protocol
from tsamlib.evaluation.released import (
    RELEASED,
    checkpoint_classes,
    evaluate_checkpoint,
    released_result_path,
    released_settings,
    summary_table,
)
from tsamlib.evaluation.specs import Loading
from tsamlib.model.formats import authors_safe_globals
from tsamlib.model.pretrained import save_authors_checkpoint
from tsamlib.model.tsam import create_tsam, tsam_kwargs

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = dict(arch="resnet18", audio=True, img_size=32, resize=36, n_mels=32, flip=True, preset="authors", **MODEL)
N_CLASSES = 8


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("released")
    torch.manual_seed(0)
    reference = save_like_authors(trained_like(AuthorsModel("resnet18", num_classes=N_CLASSES, **MODEL)),
                                  d / "resnet18_tiny.ckpt.pth.tar")
    records = [dict(path=str(make_video(d / "clips" / f"c{y}_{i}.mp4", n_frames=14, seed=10 * y + i)), label=y,
                    label_name=f"class{y}", split=split) for y in range(3) for i, split in enumerate(("valid",) * 2)]
    records.append(dict(path=str(make_video(d / "clips" / "t.mp4", seed=99)), label=0, label_name="class0",
                        split="train"))
    manifest = d / "tiny.csv"
    build_manifest(records, manifest, workers=1, verbose=False)
    return reference, d / "resnet18_tiny.ckpt.pth.tar", manifest, d


@pytest.fixture(scope="module")
def result(files):
    _, ckpt, manifest, d = files
    return evaluate_checkpoint(ckpt, manifest, settings=SETTINGS, protocols=(views_protocol(2, 1), AuthorsPasses(4)),
                               loading=Loading(cache_dir=d / "mel", progress=False), out_dir=d / "out", note="test")


def test_both_protocols_and_the_record(files, result):
    _, ckpt, manifest, d = files
    v, a = result["views"], result["authors"]
    assert result["num_classes"] == N_CLASSES == checkpoint_classes(ckpt)
    assert v["n_videos"] == a["n_videos"] == 6 and v["probs"].shape == (6, N_CLASSES)
    assert v["vocab"][:3] == ["class0", "class1", "class2"] and v["vocab"][3:] == [str(i) for i in range(3, 8)]
    for r in (v, a):
        assert 0 <= r["top1"] <= r["top5"] <= 1
        assert r["top1"] == pytest.approx((r["probs"].argmax(1) == r["labels"]).float().mean().item())
    after = a["top1_after_passes"]
    assert len(after) == 4 and a["top1"] == after[-1]                        # honest: all 4 passes
    assert a["top1_best_of_n_selected_on_eval_set"] == max(after) >= a["top1"]
    assert after[a["n_passes_selected_on_eval_set"] - 1] == max(after)
    table = summary_table(result)
    assert list(table.index) == ["fixed views", "authors' passes", "authors' printed figure"]
    assert "selected on the evaluation set" in table.loc["authors' printed figure", "chosen"]
    rec = json.loads(result["path"].read_text())
    assert result["path"] == released_result_path(ckpt, manifest, "valid", d / "out")
    assert result["path"].name == "resnet18_tiny_tiny_valid.json"
    assert rec["layout"] == "authors" and rec["data_state"]["epoch"] == 51 and rec["note"] == "test"
    assert rec["settings"]["shift_pad"] == "keep" and rec["settings"]["video_norm"] == "none"
    assert rec["views"]["metrics"]["top1"] == v["top1"] and rec["authors"]["metrics"]["top1"] == a["top1"]
    assert rec["authors"]["metrics"]["top1_after_passes"] == after
    assert [r["top1"] for r in rec["summary"]] == [v["top1"], a["top1"], max(after)]
    assert rec["environment"]["git_commit"] and len(rec["views"]["videos"]) == 6


def test_fixed_protocol_equals_independent_averaging(files, result):
    """Views built from the raw files (predict.clip_views) through the independent re-creation of the authors'
    model, softmax averaged: the same scores as evaluate_checkpoint's fixed protocol."""
    reference, *_ = files
    v = result["views"]
    for i, path in enumerate(v["paths"]):
        video, audio, _ = clip_views(path, result["settings"], n_clips=2, n_crops=1, verbose=False)
        with torch.no_grad():
            probs = torch.softmax(reference(video, audio), 1).mean(0)
        torch.testing.assert_close(probs, v["probs"][i], atol=1e-4, rtol=1e-4)


def test_authors_protocol_is_seeded(files, result):
    _, ckpt, manifest, d = files
    kw = dict(settings=SETTINGS, loading=Loading(cache_dir=d / "mel", progress=False), write=False)
    again = evaluate_checkpoint(ckpt, manifest, protocols=(AuthorsPasses(4, seed=0),), **kw)
    assert again["views"] is None and [r["protocol"] for r in again["summary"]][0] == "authors' passes"
    assert torch.equal(again["authors"]["probs"], result["authors"]["probs"])
    assert again["authors"]["top1_after_passes"] == result["authors"]["top1_after_passes"]
    other = evaluate_checkpoint(ckpt, manifest, protocols=(AuthorsPasses(4, seed=1),), **kw)
    assert not torch.equal(other["authors"]["probs"], result["authors"]["probs"])


def test_bad_input_names_the_file_and_the_fix(files, tmp_path):
    _, ckpt, manifest, d = files
    kw = dict(settings=SETTINGS, write=False, loading=Loading(cache_dir=None, progress=False))
    with pytest.raises(FileNotFoundError, match="nothing.tar not found: download"):
        evaluate_checkpoint(tmp_path / "nothing.tar", manifest, **kw)
    with pytest.raises(ValueError, match=r"no rows with split 'test' \(splits present: \['train', 'valid'\]\)"):
        evaluate_checkpoint(ckpt, manifest, split="test", **kw)
    with pytest.raises(ValueError, match="resnet18_tiny.ckpt.pth.tar does not fit .* pass the settings"):
        evaluate_checkpoint(ckpt, manifest, **{**kw, "settings": {**SETTINGS, "arch": "resnet34"}})
    with pytest.raises(ValueError, match="unknown settings"):
        evaluate_checkpoint(ckpt, manifest, **{**kw, "settings": {**SETTINGS, "epochs": 3}})
    # a plain tsamlib state dict loads too; its 2 classes cannot score labels 0..2
    plain = create_tsam("resnet18", num_classes=2, audio=True, **tsam_kwargs(dict(MODEL, shift_pad="keep")))
    torch.save(plain.state_dict(), tmp_path / "plain.pth")
    with pytest.raises(ValueError, match="labels up to 2 .*plain.pth has 2 classes"):
        evaluate_checkpoint(tmp_path / "plain.pth", manifest, **kw)
    with pytest.raises(ValueError, match="shift_depth=4 needs n_frames > 4"):
        released_settings("kinetics400", n_frames=4)
    assert released_settings("something_v1")["audio"] is False and RELEASED["kinetics400"]["num_classes"] == 400


def test_export_in_the_authors_layout_round_trips(files, tmp_path):
    """save_authors_checkpoint writes what the independent re-creation of their model loads strictly."""
    reference, ckpt, *_ = files
    model = create_tsam("resnet18", num_classes=N_CLASSES, audio=True, pretrained=ckpt,
                        **tsam_kwargs(dict(MODEL, shift_pad="keep")))
    out = save_authors_checkpoint(model.eval(), tmp_path / "exported.ckpt.pth.tar", data_state={"epoch": 3})
    with torch.serialization.safe_globals(authors_safe_globals()):
        raw = torch.load(out, weights_only=True)
    assert set(raw) == {"data_state", "model_state", "optimizer_state_dict"} and raw["data_state"] == {"epoch": 3}
    fresh = AuthorsModel("resnet18", num_classes=N_CLASSES, **MODEL).eval()
    for name, part in fresh.model_layers.items():
        part.load_state_dict(raw["model_state"][name], strict=True)
    video, audio = torch.randn(2, 6, 3, 32, 32), torch.randn(2, 1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fresh(video, audio), reference(video, audio))


def test_notebook_06_on_the_real_clips(kinetics_clips, tmp_path, monkeypatch):
    """Stand-ins in the three layouts, each scored with its own protocols and ours on the real clips."""
    monkeypatch.delenv("MPLBACKEND", raising=False)
    out = tmp_path / "06.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "06_released_checkpoint.ipynb"), str(out), kernel_name="python3",
                        cwd=str(ROOT), progress_bar=False,
                        parameters=dict(clips_dir=str(kinetics_clips), work_dir=str(tmp_path / "work"),
                                        arch="resnet18", n_frames=6, img_size=32, resize=36, n_mels=32, n_clips=1,
                                        n_crops=1, n_passes=3))
    text = "\n".join(str(o.get("text", "")) + json.dumps(o.get("data", {}))
                     for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code" for o in c.outputs)
    assert "no released checkpoint was given" in text and "random weights" in text
    assert "selected on the evaluation set" in text and "means nothing" in text
    assert "2 outputs (the evaluation manifest's classes)" in text   # the clips' 0/1
    records = {json.loads(p.read_text())["format"]: json.loads(p.read_text())
               for p in (tmp_path / "work").glob("*.json")}
    assert sorted(records) == ["authors", "mmaction2", "tsm"]
    rec = records["authors"]
    assert rec["layout"] == "authors" and "random weights" in rec["note"] and rec["views"]["metrics"]["n_videos"] == 4
    assert rec["settings"]["n_frames"] == 6 and rec["authors"]["protocol"]["n_passes"] == 3
    assert rec["num_classes"] == 2
    assert sorted(records["tsm"]["others"]) == ["tsm", "tsm_dense"] and records["tsm"]["authors"] is None
    assert records["tsm"]["others"]["tsm_dense"]["protocol"]["views_per_video"] == 30
    mm = records["mmaction2"]["others"]["mmaction2"]["protocol"]
    assert mm["source"] == "the file's meta cfg test_pipeline" and mm["img_size"] == 32
    assert not any((ROOT / "results" / "released" / p.name).exists() for p in (tmp_path / "work").glob("*.json"))


def test_a_tsm_family_file_is_scored_with_the_settings_it_states(files, tmp_path):
    """settings=None / a dict without arch: the model the file states; what it does not record must be given."""
    from tsm_family_like import TSMRepoModel, save_like_tsm
    _, _, manifest, d = files
    torch.manual_seed(3)
    ckpt = tmp_path / "TSM_tiny_RGB_resnet18_shift8_blockres_avg_segment4_e1.pth"
    save_like_tsm(trained_like(TSMRepoModel(N_CLASSES, 4, "resnet18", shift_div=8)), ckpt, "resnet18")
    with pytest.raises(ValueError, match=r"does not record n_frames, f_div \(tsm format\): pass them, e.g. "
                                         r"n_frames=4, f_div=8 \(what its file name says"):
        evaluate_checkpoint(ckpt, manifest, settings=None, protocols=("views",), write=False,
                            loading=Loading(progress=False))
    common = dict(protocols=(views_protocol(1, 1),), loading=Loading(cache_dir=d / "mel", progress=False), write=False)
    got = evaluate_checkpoint(ckpt, manifest, settings=dict(n_frames=4, f_div=8, img_size=32, resize=36), **common)
    assert got["settings"]["arch"] == "resnet18" and got["settings"]["video_norm"] == "imagenet"
    assert got["load_report"].layout == "tsm" and got["num_classes"] == N_CLASSES
    explicit = dict(arch="resnet18", n_frames=4, f_div=8, shift_depth=1, img_size=32, resize=36, audio=False)
    want = evaluate_checkpoint(ckpt, manifest, settings=explicit, **common)
    torch.testing.assert_close(got["views"]["probs"], want["views"]["probs"])
