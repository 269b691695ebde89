"""The ``preset`` setting: "tsamlib" (this library) or "authors" (their released code), and each switch on its own.

One test per switch (shift borders, input values, audio front end, videos without sound, colour augmentation,
validation view, weight decay, the checkpoint kept, the evaluation protocol), the resolution rules, and one run
trained for an epoch with ``preset="authors"`` on a subset of ``data/default`` and evaluated both ways.
"""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from conftest import make_video, tiny_dls
from fastai.callback.core import Callback

from tsamlib.config import PRESET_SWITCHES, SWITCHES, RunConfig, config_diff, resolve_switches
from tsamlib.data.audio import AudioFrame, authors_audio_image, load_waveform_authors
from tsamlib.data.loaders import DataSpec, video_dataloaders
from tsamlib.data.manifest import NO_AUDIO_DROPPED
from tsamlib.data.transforms import ClipTransform, denormalize, norm_stats
from tsamlib.data.video import load_clip
from tsamlib.evaluation.scoring import AUTHORS_EVAL_SCALES
from tsamlib.evaluation.views import authors_eval_path, eval_path, evaluate_authors, evaluate_run, load_run_model
from tsamlib.model.tsam import create_tsam, tsam_kwargs
from tsamlib.runs.checkpoints import BestCheckpoint, read_best
from tsamlib.runs.fileio import repo_root
from tsamlib.runs.folder import start_run
from fastai.torch_core import set_seed
from tsamlib.training import fit_run, tsam_learner
from tsamlib.training.run import begin_run

DEFAULT = repo_root() / "data" / "default" / "manifest.csv"


# ------------------------------------------------------------------------------------------------ resolution
def test_preset_resolves_and_an_explicit_switch_wins():
    assert RunConfig().switches() == dict(preset="tsamlib", **PRESET_SWITCHES["tsamlib"])
    authors = RunConfig(preset="authors")
    assert authors.switches() == dict(preset="authors", **PRESET_SWITCHES["authors"])
    assert set(SWITCHES) == set(PRESET_SWITCHES["authors"]) and all(getattr(authors, k) is None for k in SWITCHES)
    mixed = RunConfig(preset="authors", valid_view="center_crop", wd_bn_bias=False)
    assert mixed.switches()["valid_view"] == "center_crop" and mixed.switches()["wd_bn_bias"] is False
    assert mixed.switches()["video_norm"] == "none"                             # the rest from the preset
    assert RunConfig(shift_pad="keep").model_kwargs()["shift_pad"] == "keep"     # tsamlib preset, one switch
    assert authors.model_kwargs()["shift_pad"] == "keep" and RunConfig().model_kwargs()["shift_pad"] == "zero"
    # params.json records the preset and every resolved switch; a switch left to the preset equals it given
    settings = authors.settings()
    assert settings["preset"] == "authors" and all(settings[k] == PRESET_SWITCHES["authors"][k] for k in SWITCHES)
    assert config_diff(settings, RunConfig(preset="authors", shift_pad="keep")) == {}
    assert config_diff(settings, mixed) == {"valid_view": ("short_side", "center_crop"), "wd_bn_bias": (True, False)}
    # a run recorded before the presets existed (no preset, no switches) is a tsamlib run
    old = {k: v for k, v in RunConfig().settings().items() if k not in SWITCHES and k != "preset"}
    assert config_diff(old, RunConfig()) == {} and "preset" in config_diff(old, authors)
    assert RunConfig.from_params(json.loads(json.dumps(settings))).switches() == authors.switches()


def test_bad_preset_or_switch_raises_naming_the_choices():
    with pytest.raises(ValueError, match=r"preset='paper'.*\['tsamlib', 'authors'\]"):
        RunConfig(preset="paper")
    with pytest.raises(ValueError, match=r"preset='x'.*\['tsamlib', 'authors'\]"):
        resolve_switches(dict(preset="x"))
    with pytest.raises(ValueError, match=r"video_norm='ToTensor'.*\['imagenet', 'none'\]"):
        RunConfig(video_norm="ToTensor")
    with pytest.raises(ValueError, match="color_aug"):
        RunConfig(color_aug="yes")


def test_shift_border_follows_the_preset():
    kw = dict(num_classes=3, pretrained=None)
    for preset, pad in (("tsamlib", "zero"), ("authors", "keep")):
        cfg = RunConfig(preset=preset, n_frames=4, audio=True, shift_depth=2)
        model = create_tsam("resnet10t", **kw, **tsam_kwargs(cfg.model_kwargs()))
        assert model.shift_pad == pad and model.backbone.layer1[0].conv1.shift.pad == pad
    cfg = RunConfig(preset="authors", shift_pad="zero", n_frames=4)
    assert create_tsam("resnet10t", **kw, **tsam_kwargs(cfg.model_kwargs())).shift_pad == "zero"


# ------------------------------------------------------------------------------------------------ video
def _frames(t: int = 3, h: int = 48, w: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8))


def test_authors_video_values_are_totensor_of_the_short_side_square():
    frames = _frames()
    mean, std = norm_stats("none")
    got = ClipTransform(32, 36, train=False, valid_view="short_side", mean=mean, std=std)(frames)
    square = frames.permute(0, 3, 1, 2)[:, :, :, 8:56]               # centre 48 x 48 of the 48 x 64 frame
    expected = TF.to_dtype(TF.resize(square, [32, 32], antialias=True), torch.float32, scale=True)
    assert got.min() >= 0 and got.max() <= 1
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    assert torch.equal(denormalize(got, mean, std), got)                # display: shown as they are
    imagenet = ClipTransform(32, 36, train=False, valid_view="short_side")(frames)
    torch.testing.assert_close(denormalize(imagenet), expected, atol=1e-5, rtol=0)
    # tsamlib's view: centre img_size of the frame resized to `resize` (a smaller field of view)
    centre = ClipTransform(32, 36, train=False, mean=mean, std=std)(frames)
    assert ClipTransform(32, 36).box(48, 64)[2] == pytest.approx(32 / 0.75)   # 32 of 36, not the whole 48
    assert not torch.allclose(centre, got)
    # 3 test crops of the short side: start / centre / end along the long side
    three = ClipTransform(32, 36, train=False, n_crops=3, valid_view="short_side", mean=mean, std=std)
    torch.testing.assert_close(three(frames, crop_index=1), expected, atol=1e-6, rtol=0)
    start = TF.to_dtype(TF.resize(frames.permute(0, 3, 1, 2)[..., :48], [32, 32], antialias=True), torch.float32,
                        scale=True)
    torch.testing.assert_close(three(frames, crop_index=0), start, atol=1e-6, rtol=0)


def test_color_augmentation_is_one_draw_per_clip_and_off_in_tsamlib():
    same = _frames(1).expand(4, -1, -1, -1).contiguous()               # 4 identical frames
    mean, std = norm_stats("none")
    plain = ClipTransform(32, 36, train=True, flip=False, scales=(1,), mean=mean, std=std)
    jitter = ClipTransform(32, 36, train=True, flip=False, scales=(1,), mean=mean, std=std, color_jitter=True,
                           grayscale_p=0.2)
    n_gray = 0
    for seed in range(60):
        a = plain(same, np.random.default_rng(seed))
        b = jitter(same, np.random.default_rng(seed))
        assert all(torch.equal(b[0], b[i]) for i in range(1, 4))       # every frame of a clip: the same colours
        assert not torch.allclose(a, b, atol=1e-3) and b.min() >= 0 and b.max() <= 1
        n_gray += bool(torch.equal(b[0, 0], b[0, 1]) and torch.equal(b[0, 1], b[0, 2]))
    assert 3 <= n_gray <= 24                                             # RandomGrayscale(0.2): ~12 of 60
    # brightness alone on a flat grey: the factor lies in the authors' range [0.8, 1.2]
    grey = torch.full((2, 3, 8, 8), 0.5)
    from tsamlib.data.transforms import color_jitter
    for seed in range(20):
        out = color_jitter(grey, np.random.default_rng(seed))
        assert torch.allclose(out[:, 0], out[:, 1]) and 0.4 - 1e-6 <= float(out.mean()) <= 0.6 + 1e-6


@pytest.fixture(scope="module")
def mixed_audio_manifest(tmp_path_factory) -> Path:
    """3 classes of tiny videos: train 2 + 1 without sound per class, valid 1 per class, plus one valid video
    without sound, and one whose manifest claims sound that its file lacks."""
    d = tmp_path_factory.mktemp("mixed_audio")
    rows = []
    for y in range(3):
        for i in range(3):
            p = make_video(d / f"tr{y}{i}.mp4", n_frames=8, size=(32, 48), audio=i < 2, seed=10 * y + i)
            rows.append(dict(path=str(p), label=y, label_name=f"c{y}", split="train", has_audio=i < 2))
        p = make_video(d / f"va{y}.mp4", n_frames=8, size=(32, 48), seed=100 + y)
        rows.append(dict(path=str(p), label=y, label_name=f"c{y}", split="valid", has_audio=True))
    rows.append(dict(path=str(make_video(d / "va_silent.mp4", n_frames=8, size=(32, 48), audio=False)), label=0,
                     label_name="c0", split="valid", has_audio=False))
    rows.append(dict(path=str(make_video(d / "va_lies.mp4", n_frames=8, size=(32, 48), audio=False)), label=1,
                     label_name="c1", split="valid", has_audio=True))
    df = pd.DataFrame(rows).assign(n_frames=8, fps=12, duration=8 / 12, problem="")
    df.to_csv(d / "manifest.csv", index=False)
    return d / "manifest.csv"


def test_videos_without_sound_are_dropped_and_counted(mixed_audio_manifest):
    kw = dict(n_frames=2, img_size=16, resize=18, n_mels=16, batch_size=8)
    with pytest.warns(UserWarning, match="excluded 4 of 14 rows with problems"):
        dls = video_dataloaders(mixed_audio_manifest, audio=True, missing_audio="drop", **kw)
    assert dls.n_excluded == {"train": 3, "valid": 1}
    assert set(dls.excluded["valid"].values()) == {NO_AUDIO_DROPPED}
    assert len(dls.train.dataset) == 6 and len(dls.valid.dataset) == 4
    with pytest.warns(UserWarning, match="va_lies.mp4"):
        batches = list(dls.valid)
    assert sum(len(b[-1]) for b in batches) == 3                           # found silent at load time: dropped
    assert "no audio track" in dls.skipped("valid")[str(mixed_audio_manifest.parent / "va_lies.mp4")]
    with pytest.warns(UserWarning, match="4 of 14 videos have no audio track"):   # tsamlib: kept, silent frame
        kept = video_dataloaders(mixed_audio_manifest, audio=True, missing_audio="silent", **kw)
    assert kept.n_excluded == {} and len(kept.train.dataset) == 9 and len(kept.valid.dataset) == 5
    rgb = video_dataloaders(mixed_audio_manifest, audio=False, missing_audio="drop", **kw)   # RGB runs: all kept
    assert rgb.n_excluded == {} and len(rgb.train.dataset) == 9


# ------------------------------------------------------------------------------------------------ audio
def test_authors_audio_frontend_and_a_cache_per_frontend(tmp_path):
    path = make_video(tmp_path / "stereo.mp4", n_frames=24, sample_rate=16000, layout="stereo")
    w = load_waveform_authors(path)
    assert w.sr == 16000 and w.has_audio
    expected = torch.from_numpy(authors_audio_image(w.wave, w.sr, size=(32, 32), n_mels=32))
    got, has_audio = AudioFrame(size=(32, 32), n_mels=32, frontend="authors")(path)
    assert has_audio and torch.equal(got, expected)
    assert abs(float(got.mean())) > 1                                   # raw log values, never z-scored
    ours, _ = AudioFrame(size=(32, 32), n_mels=32)(path)
    assert float(ours.mean()) == pytest.approx(0, abs=1e-4) and float(ours.std()) == pytest.approx(1, abs=0.05)
    a = AudioFrame(size=(32, 32), n_mels=32, frontend="authors", cache_dir=tmp_path / "mel")
    t = AudioFrame(size=(32, 32), n_mels=32, cache_dir=tmp_path / "mel")
    assert a.cache.file(path) != t.cache.file(path) and "authors" in json.dumps(a.params())
    first = a(path)[0], t(path)[0]
    again = a(path)[0], t(path)[0]                                      # both from the one cache folder
    assert a.cache.hits == 1 and t.cache.hits == 1
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    torch.testing.assert_close(again[0], expected, atol=0.02, rtol=0.01)   # float16 in the cache
    with pytest.raises(ValueError, match="frontend"):
        AudioFrame(frontend="torchaudio")


# ------------------------------------------------------------------------------------------------ training
def _bn_and_conv(model):
    bn = next(m.weight for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    conv = next(m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    return bn, conv


@pytest.mark.parametrize("wd_bn_bias", [False, True])
def test_weight_decay_on_batchnorm_only_with_the_authors_switch(wd_bn_bias):
    set_seed(0)
    learn = tsam_learner(tiny_dls(), arch="resnet10t", n_frames=4, audio=False, recipe="paper",
                         wd_bn_bias=wd_bn_bias)
    learn.create_opt()
    learn.opt.set_hypers(lr=1.0, wd=learn.wd)                          # as fit() sets them; wd = 1e-4 (paper)
    bn, conv = _bn_and_conv(learn.model)
    for p in learn.model.parameters():
        p.grad = torch.zeros_like(p)
    bn0, conv0 = bn.detach().clone(), conv.detach().clone()
    learn.opt.step()                                                    # zero gradients: only the decay moves
    torch.testing.assert_close(conv, conv0 * (1 - 1e-4))               # convolutions decay in both presets
    if wd_bn_bias:
        torch.testing.assert_close(bn, bn0 * (1 - 1e-4))
    else:
        assert torch.equal(bn, bn0)


class _Snapshots(Callback):
    order = 90

    def __init__(self):
        self.states = {}

    def after_epoch(self):
        self.states[self.epoch] = {k: v.detach().clone() for k, v in self.model.state_dict().items()}


def test_best_epoch_is_kept_beside_the_last(tmp_path):
    set_seed(0)
    learn = tsam_learner(tiny_dls(n_train=8, n_valid=6), arch="resnet10t", n_frames=4, audio=False,
                         recipe="paper")
    run = start_run("b", dict(epochs=3), runs_root=tmp_path)
    snaps = _Snapshots()
    final = fit_run(learn, run, 3, 0.05, keep_best=True, cbs=[snaps])
    top1 = [r["top1"] for r in run.metrics["epochs"]]
    best_epoch = int(np.argmax(top1)) + 1                                # the first of equal ones, counted from 1
    assert [r["epoch"] for r in run.metrics["epochs"]] == [1, 2, 3]
    best = read_best(run.checkpoint_dir)
    assert best["epoch"] == best_epoch and best["top1"] == pytest.approx(max(top1))
    assert all(torch.equal(best["model"][k], v) for k, v in snaps.states[best_epoch - 1].items())  # fastai's 0-based
    if best_epoch != 3:                                                  # not the last weights
        assert not all(torch.equal(best["model"][k], v) for k, v in snaps.states[2].items())
    assert final["best_epoch"] == best_epoch and final["best_valid_top1_selected_on_valid"] == pytest.approx(max(top1))
    last = torch.load(run.checkpoint_dir / "last.pth", weights_only=True)
    assert last["epoch"] == 3 and (run.checkpoint_dir / "model.pth").is_file()   # resume and "last" unchanged
    cb = BestCheckpoint(run.checkpoint_dir, resume=True)
    cb.before_fit()
    assert (cb.best, cb.best_epoch) == (pytest.approx(max(top1)), best_epoch)   # resumed: the best so far
    run.close()
    start_run("n", dict(epochs=1), runs_root=tmp_path)
    assert read_best(tmp_path / "n" / "checkpoints") is None             # tsamlib's default keeps the last only


# ------------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def authors_run(tmp_path_factory, mixed_audio_manifest):
    """One epoch of an audio run with preset="authors" through the notebook's path (begin_run, DataSpec.of),
    on 2 train + 1 valid videos per class of data/default and one video without sound per split."""
    if not DEFAULT.is_file():
        pytest.skip("data/default missing: python -m tsamlib synth --kind default --out data/default")
    tmp = tmp_path_factory.mktemp("authors_run")
    df = pd.read_csv(DEFAULT, keep_default_na=False)
    df["path"] = [str(DEFAULT.parent / p) for p in df["path"]]
    part = pd.concat([g[g.split == "train"].head(2) for _, g in df.groupby("label")]
                     + [g[g.split == "valid"].head(1) for _, g in df.groupby("label")])
    silent = pd.read_csv(mixed_audio_manifest, keep_default_na=False)
    silent = silent[silent["path"].str.endswith(("tr02.mp4", "va_silent.mp4"))]
    silent = silent.assign(label_name=df.loc[df["label"] == 0, "label_name"].iloc[0])   # both are of class 0
    manifest = tmp / "manifest.csv"
    pd.concat([part, silent[part.columns]]).to_csv(manifest, index=False)
    cfg = RunConfig(dataset=str(manifest), preset="authors", n_frames=4, audio=True, arch="resnet10t", img_size=32,
                    resize=36, n_mels=32, epochs=1, batch_size=4, run_id="authors", runs_root=str(tmp / "runs"))
    run, manifest = begin_run(cfg)
    with pytest.warns(UserWarning, match="excluded 2 of 20 rows"):  # the two videos without sound, said aloud
        dls = video_dataloaders(manifest, DataSpec.of(cfg), batch_size=cfg.batch_size, seed=cfg.seed,
                                cache_dir=tmp / "mel")
    sw = cfg.switches()
    set_seed(0)
    learn = tsam_learner(dls, arch=cfg.arch, recipe=cfg.recipe, pretrained=cfg.pretrained,
                         wd_bn_bias=sw["wd_bn_bias"], **cfg.model_kwargs())
    video, audio, _ = dls.one_batch()
    final = fit_run(learn, run, cfg.epochs, cfg.lr, seed=cfg.seed, keep_best=sw["eval_weights"] == "best")
    run.close()
    return dict(run=run, final=final, learn=learn, video=video, audio=audio, mel=tmp / "mel")


def test_authors_preset_trains_end_to_end(authors_run):
    run, final, learn = authors_run["run"], authors_run["final"], authors_run["learn"]
    params = json.loads((run.path / "params.json").read_text())
    assert params["preset"] == "authors" and {k: params[k] for k in SWITCHES} == PRESET_SWITCHES["authors"]
    assert learn.model.shift_pad == "keep" and learn.wd_bn_bias
    assert 0 <= float(authors_run["video"].min()) and float(authors_run["video"].max()) <= 1   # ToTensor values
    assert abs(float(authors_run["audio"].mean())) > 1                  # raw log-mels
    tfm = learn.dls.train.dataset.tfm
    assert tfm.color_jitter and tfm.grayscale_p == 0.2 and learn.dls.valid.dataset.tfm.valid_view == "short_side"
    assert final["manifest_excluded"] == {"train": 1, "valid": 1}       # the videos without sound: counted
    assert all(v == NO_AUDIO_DROPPED for split in final["manifest_excluded_paths"].values() for v in split.values())
    assert final["best_epoch"] == 1 and (run.checkpoint_dir / "best.pth").is_file()


def test_authors_evaluation_sums_logits_and_labels_the_selected_figure(authors_run):
    run_dir = authors_run["run"].path
    res = evaluate_run(run_dir, cache_dir=authors_run["mel"], progress=False)    # the run's protocol: authors
    assert res["protocol"]["name"] == "authors" and res["protocol"]["weights"] == "best"
    assert res["n_videos"] == 6 and res["n_excluded"] == 1 and len(res["top1_after_passes"]) == 10
    assert res["top1"] == res["top1_after_passes"][-1]                    # honest: all 10 passes summed
    assert res["top1_best_of_n_selected_on_eval_set"] == max(res["top1_after_passes"]) >= res["top1"]
    assert 1 <= res["n_passes_selected_on_eval_set"] <= 10
    rec = json.loads(authors_eval_path(run_dir, "valid", 10).read_text())
    assert rec["metrics"]["top1"] == res["top1"] and "top1_best_of_n_selected_on_eval_set" in rec["metrics"]
    # the sum of logits, recomputed view by view for two videos from the same seeds
    model, params = load_run_model(run_dir)
    tfm = ClipTransform(32, 36, train=True, flip=True, scales=AUTHORS_EVAL_SCALES, mean=(0, 0, 0), std=(1, 1, 1))
    af = AudioFrame(size=(32, 32), n_mels=32, frontend="authors", cache_dir=authors_run["mel"])   # same values
    with torch.no_grad():
        for r in (4,):
            path = res["paths"][r]
            total = 0
            for m in range(10):
                rng = np.random.default_rng([0, m, r])
                frames, _ = load_clip(path, 4, "train", rng)
                total = total + model(tfm(frames, rng)[None], af(path)[0][None, None]).double()
            torch.testing.assert_close(res["probs"][r], F.softmax(total / 10, 1)[0].float(), atol=1e-5, rtol=0)
    kw = dict(n_passes=2, seed=1, cache_dir=authors_run["mel"], write=False, progress=False)
    other, again = evaluate_authors(run_dir, **kw), evaluate_authors(run_dir, **kw)
    assert torch.equal(again["probs"], other["probs"])                    # seeded
    assert len(other["top1_after_passes"]) == 2 and not torch.allclose(other["probs"], res["probs"])
    views = evaluate_run(run_dir, protocol="views", n_clips=1, n_crops=1, cache_dir=authors_run["mel"],
                         weights="last", progress=False)
    assert views["protocol"]["valid_view"] == "short_side" and views["protocol"]["weights"] == "last"
    assert views["n_videos"] == 6 and eval_path(run_dir, "valid", 1, 1).is_file()
