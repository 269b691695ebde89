"""A TSM-family checkpoint scored with its own protocol (tsamlib.evaluation.protocols through evaluate_checkpoint)
gives what its own model gives on views built here from the protocol's definition: frames decoded with PyAV at the
indices TSM's / mmaction2's arithmetic names, crops sliced at their places (the frames' short side is the
protocol's, so no resize is involved), each source model's forward, their aggregation.

TSM: test_models.py --dense_sample --test_crops 3 --full_res (10 clips, 64 // T apart, GroupFullResSample, the
mean of the logits); mmaction2: a meta cfg with twice_sample and TenCrop (flips included), average_clips='prob'.
"""
import json

import av
import numpy as np
import pytest
import torch
from authors_like import trained_like
from conftest import make_video
from tsm_family_like import MMRecognizer, TSMRepoModel, mmaction2_cfg_text, save_like_mmaction2, save_like_tsm

from tsamlib.data.manifest import build_manifest
from tsamlib.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from tsamlib.evaluation.protocols import (
    AuthorsPasses,
    TestProtocol,
    mmaction2_protocol,
    protocol_named,
    tsm_protocol,
    views_protocol,
)
from tsamlib.evaluation.released import evaluate_checkpoint, summary_table
from tsamlib.evaluation.specs import Loading

N_CLASSES, T = 5, 4


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("protocols")
    records = [dict(path=str(make_video(d / f"v{i}.mp4", n_frames=n, size=(48, 64), audio=False, seed=i)), label=i % 2,
                    label_name=f"c{i % 2}", split="valid") for i, n in enumerate((70, 23, 41))]
    manifest = d / "m.csv"
    build_manifest(records, manifest, workers=1, verbose=False)
    return manifest, [r["path"] for r in records], d


def decoded(path):
    with av.open(path) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def normalised(frames):   # (..., H, W, 3) uint8 -> (..., 3, H, W), ImageNet statistics on [0, 1]
    x = torch.from_numpy(frames).float().movedim(-1, -3) / 255
    return (x - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)


def tsm_dense_views(frames):
    """TSM's dense 10-clip test of one video with GroupFullResSample crops (48 of a 48 x 64 frame)."""
    n = len(frames)
    stride, starts = 64 // T, np.linspace(0, max(1, 1 + n - 64) - 1, num=10, dtype=int)
    clips = [frames[[(i * stride + s) % n for i in range(T)]] for s in starts]
    step = (64 - 48) // 4
    return torch.stack([normalised(c[:, 0:48, x:x + 48]) for x in (0, 4 * step, 2 * step) for c in clips])


def mm_twice_tencrop_views(frames, crop=40):
    """mmaction2: SampleFrames(num_clips=T, test_mode, twice_sample), TenCrop(40) of a 48 x 64 frame."""
    n = len(frames)
    base = np.arange(T) * (n / T)
    clips = [frames[np.mod(o, n).astype(int)] for o in (base + n / (2 * T), base)]
    ws, hs = (64 - crop) // 4, (48 - crop) // 4
    views = []
    for c in clips:
        for y, x in ((0, 0), (0, 4 * ws), (4 * hs, 0), (4 * hs, 4 * ws), (2 * hs, 2 * ws)):
            v = normalised(c[:, y:y + crop, x:x + crop])
            views += [v, v.flip(-1)]
    return torch.stack(views)


def test_a_tsm_file_is_scored_with_tsms_two_tests(clips, tmp_path):
    manifest, paths, d = clips
    torch.manual_seed(0)
    ref = save_like_tsm(trained_like(TSMRepoModel(N_CLASSES, T, "resnet18", shift_div=8)), tmp_path / "tsm.pth",
                        "resnet18")
    res = evaluate_checkpoint(tmp_path / "tsm.pth", manifest, settings=dict(n_frames=T, f_div=8, img_size=48,
                              resize=48), protocols=(views_protocol(1, 1), "tsm", "tsm_dense"),
                              out_dir=tmp_path / "out", loading=Loading(progress=False))
    assert res["protocols"] == ("views", "tsm", "tsm_dense")                 # the file's own, beside ours
    dense = res["others"]["tsm_dense"]
    with torch.no_grad():
        want = torch.stack([ref(tsm_dense_views(decoded(p))).mean(0) for p in paths])   # mean of the logits
    torch.testing.assert_close(dense["probs"], want.softmax(1), atol=1e-4, rtol=0)
    assert dense["protocol"]["views_per_video"] == 30 and dense["protocol"]["img_size"] == 48
    assert "mean of logits" in dense["protocol"]["aggregation"]
    assert "TSM's dense test (10x3)" in summary_table(res).index
    rec = json.loads(res["path"].read_text())
    assert rec["format"] == "tsm" and rec["others"]["tsm"]["protocol"]["source"].startswith("TSM test_models.py")
    # TSM's 1-clip test is our 1x1 view here (the centre clip and crop), combined over one view either way
    torch.testing.assert_close(res["others"]["tsm"]["probs"], res["views"]["probs"], atol=1e-5, rtol=0)


def test_an_mmaction2_file_is_scored_with_the_test_pipeline_of_its_config(clips, tmp_path):
    manifest, paths, d = clips
    torch.manual_seed(1)
    steps = ("twice_sample=True), dict(type='DecordDecode'), dict(type='Resize', scale=(-1, 48)), "
             "dict(type='TenCrop', crop_size=40")
    ref = save_like_mmaction2(trained_like(MMRecognizer(18, N_CLASSES, T, tsm=True, shift_div=4)), tmp_path / "mm.pth",
                              mmaction2_cfg_text(18, N_CLASSES, T, shift_div=4, test_views=steps))
    res = evaluate_checkpoint(tmp_path / "mm.pth", manifest, settings=dict(audio=False, img_size=40, resize=48),
                              write=False, loading=Loading(progress=False),
                              protocols=(views_protocol(1, 1), "mmaction2"))
    assert res["protocols"] == ("views", "mmaction2")
    mm = res["others"]["mmaction2"]
    assert mm["protocol"]["source"] == "the file's meta cfg test_pipeline" and mm["protocol"]["notes"] == []
    with torch.no_grad():
        want = torch.stack([ref(mm_twice_tencrop_views(decoded(p))).softmax(1).mean(0) for p in paths])  # 'prob'
    torch.testing.assert_close(mm["probs"], want, atol=1e-4, rtol=0)
    assert mm["n_views"].tolist() == [20] * 3


def test_protocols_from_what_a_file_records():
    p = mmaction2_protocol({"test_views": {"num_clips": 8, "twice_sample": True, "test_mode": True},
                            "test_resize": {"type": "Resize", "scale": (-1, 256)},
                            "test_crop": {"type": "ThreeCrop", "crop_size": 256}, "average_clips": "prob"}, 8)
    assert (p.n_clips, p.n_crops, p.sampling, p.full_res, p.resize, p.aggregation) == (2, 3, "twice", True, 256,
                                                                                        "prob")
    assert p.sizes(224, 256) == (256, 256) and p.views_per_video == 6
    default = mmaction2_protocol(None, 8)
    assert (default.n_clips, default.n_crops, default.img_size) == (1, 10, 224)
    assert "records no test pipeline" in default.source
    odd = mmaction2_protocol({"test_views": {"num_clips": 25}, "test_crop": {"type": "CenterCrop", "crop_size": 224},
                              "average_clips": None}, 8)
    assert any("25 frames per clip" in n for n in odd.notes) and any("average_clips=None" in n for n in odd.notes)
    assert odd.aggregation == "prob"
    assert tsm_protocol().sizes(224, 256) == (224, 256) and tsm_protocol(dense=True).sizes(224, 256) == (256, 256)
    assert protocol_named("views", n_clips=10, n_crops=3).views_per_video == 30
    with pytest.raises(ValueError, match="protocol 'tsn'"):
        protocol_named("tsn")
    with pytest.raises(ValueError, match="aggregation='max'"):
        TestProtocol(aggregation="max")
    with pytest.raises(ValueError, match="places 1 clip"):
        TestProtocol(sampling="tsm", n_clips=2)
    assert (AuthorsPasses().n_passes, AuthorsPasses().seed, AuthorsPasses.name) == (10, 0, "authors")
    for bad in (dict(n_passes=0), dict(n_passes=2.5), dict(seed=-1), dict(seed=True)):
        with pytest.raises(ValueError, match="a whole number"):
            AuthorsPasses(**bad)


def test_odd_test_pipelines_are_followed_as_their_records_say():
    """A ThreeCrop smaller than the short side is cut at the short side, as its note says; a twice_sample that is
    not a bool is read as mmaction2 reads it (truthiness) and said; a square (w, h) crop_size is one number."""
    three = mmaction2_protocol({"test_views": {"num_clips": 4}, "test_resize": {"type": "Resize", "scale": (-1, 48)},
                                "test_crop": {"type": "ThreeCrop", "crop_size": 32}}, 4)
    assert three.sizes(32, 48) == (48, 48) and any("cut at the short side (48)" in n for n in three.notes)
    no_resize = mmaction2_protocol({"test_views": {"num_clips": 4}, "test_crop": {"type": "ThreeCrop",
                                                                                 "crop_size": 40}}, 4)
    assert no_resize.sizes(32, 36) == (40, 40)
    yes = mmaction2_protocol({"test_views": {"num_clips": 4, "twice_sample": "yes"}}, 4)
    assert (yes.n_clips, yes.sampling) == (2, "twice") and any("twice_sample='yes'" in n for n in yes.notes)
    square = mmaction2_protocol({"test_views": {"num_clips": 4}, "test_crop": {"type": "CenterCrop",
                                                                              "crop_size": (40, 40)}}, 4)
    assert square.img_size == 40 and square.notes == ()
    with pytest.raises(ValueError, match="test_crop="):
        mmaction2_protocol({"test_views": {"num_clips": 4}, "test_crop": {"type": "MultiScaleCrop"}}, 4)


def test_a_protocol_that_cannot_be_cut_is_refused_before_anything_runs(clips, tmp_path):
    manifest, paths, d = clips
    steps = ("twice_sample=False), dict(type='DecordDecode'), dict(type='Resize', scale=(-1, 48)), "
             "dict(type='TenCrop', crop_size=100")
    save_like_mmaction2(trained_like(MMRecognizer(18, N_CLASSES, T, tsm=True, shift_div=4)), tmp_path / "mm.pth",
                        mmaction2_cfg_text(18, N_CLASSES, T, shift_div=4, test_views=steps).replace(
                            "average_clips='prob'", "average_clips=None"))
    settings = dict(audio=False, img_size=40, resize=48)
    with pytest.raises(ValueError, match=r"protocol 'mmaction2' .*mm\.pth.* 100 px crops .* short side is 48 px"):
        evaluate_checkpoint(tmp_path / "mm.pth", manifest, settings=settings, write=False,
                            loading=Loading(progress=False))
    with pytest.raises(ValueError, match=r"protocols=\[\['tsm'\]\]"):
        evaluate_checkpoint(tmp_path / "mm.pth", manifest, settings=settings, protocols=[["tsm"]], write=False)
    with pytest.raises(ValueError, match="two different protocols named 'views'"):
        evaluate_checkpoint(tmp_path / "mm.pth", manifest, settings=settings, write=False,
                            protocols=("views", views_protocol(1, 1)))
    from tsamlib.model.formats import inspect_checkpoint
    assert inspect_checkpoint(tmp_path / "mm.pth").preprocessing["average_clips"] is None   # said, not dropped
    save_like_tsm(trained_like(TSMRepoModel(N_CLASSES, T, "resnet18", shift_div=8)), tmp_path / "tsm.pth", "resnet18")
    with pytest.raises(ValueError, match="at most 64 frames, the model has n_frames=80"):
        evaluate_checkpoint(tmp_path / "tsm.pth", manifest, settings=dict(n_frames=80, f_div=8, img_size=32,
                            resize=36), protocols=("tsm_dense",), write=False, loading=Loading(progress=False))
