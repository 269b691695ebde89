"""Evaluation and prediction of a trained run: fixed multi-view protocol, interpretation, CLI, notebook 04.

One tiny audio run (resnet10t, 4 frames, 32 px) is trained once per module with ``fit_run`` on a subset of
``data/default``; one of its validation files is corrupt, so evaluation must count it as failed.
"""
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import make_video

from tsamlib.__main__ import main
from tsamlib.data.loaders import video_dataloaders
from tsamlib.evaluation.interpret import ViewsInterpretation
from tsamlib.evaluation.predict import clip_views, predict
from tsamlib.evaluation.scoring import per_class_accuracy
from tsamlib.evaluation.views import eval_path, evaluate_views, interpretation, load_run_model
from tsamlib.runs.fileio import read_json, repo_root
from tsamlib.runs.folder import start_run
from fastai.torch_core import set_seed
from tsamlib.training import fit_run, tsam_learner

DEFAULT = repo_root() / "data" / "default" / "manifest.csv"
PARAMS = dict(n_frames=4, shift_depth=1, f_div=8, n_insert=1, m_insert=0, audio=True, pretrained=None,
              arch="resnet10t", img_size=32, resize=36, flip=True, n_mels=32, epochs=1, lr=2e-3, recipe="one_cycle",
              lr_decay=None, batch_size=4, dropout=0.5, num_workers=0, seed=0)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    if not DEFAULT.is_file():
        pytest.skip("data/default missing: python -m tsamlib synth --kind default --out data/default")
    tmp = tmp_path_factory.mktemp("evalrun")
    df = pd.read_csv(DEFAULT, keep_default_na=False)
    df["path"] = [str(DEFAULT.parent / p) for p in df["path"]]
    part = pd.concat([g.groupby("split").head(2) for _, g in df.groupby("label")]).sort_values(["split", "label"])
    bad = tmp / "corrupt.mp4"
    bad.write_bytes(Path(part["path"].iloc[-1]).read_bytes()[:200])          # header only: cannot decode
    row = part[part["split"] == "valid"].iloc[[0]].assign(path=str(bad))
    manifest = tmp / "manifest.csv"
    pd.concat([part, row]).to_csv(manifest, index=False)
    params = dict(dataset=str(manifest), **PARAMS)
    set_seed(0)
    dls = video_dataloaders(manifest, n_frames=4, audio=True, img_size=32, resize=36, n_mels=32, batch_size=4,
                            cache_dir=tmp / "mel")
    learn = tsam_learner(dls, arch="resnet10t", n_frames=4, audio=True, shift_depth=1)
    run = start_run("tiny", params, runs_root=tmp / "runs")
    with pytest.warns(UserWarning, match="corrupt.mp4"):
        fit_run(learn, run, epochs=1, lr=2e-3)
    run.close()  # let the notebook's kernel (another process) write its evaluation
    return run.path


@pytest.fixture(scope="module")
def result(run_dir):
    return evaluate_views(run_dir, "valid", n_clips=2, n_crops=3, batch_size=8, cache_dir=None)


def test_views_protocol_and_record(run_dir, result):
    n = result["n_videos"]
    assert n == 12 and result["probs"].shape == (n, 6) and result["labels"].tolist() == sorted(list(range(6)) * 2)
    assert torch.allclose(result["probs"].sum(1), torch.ones(n), atol=1e-5)
    assert (result["n_views"] == 6).all()
    assert result["n_failed"] == 1 and "corrupt.mp4" in next(iter(result["failed"]))   # counted, not scored
    top1 = (result["probs"].argmax(1) == result["labels"]).float().mean().item()
    assert result["top1"] == pytest.approx(top1)
    rec = json.loads(eval_path(run_dir, "valid", 2, 3).read_text())
    assert rec["protocol"]["n_clips"] == 2 and rec["protocol"]["n_crops"] == 3
    assert rec["protocol"]["aggregation"] == "mean of softmax over all views"
    assert rec["metrics"]["top1"] == pytest.approx(top1) and rec["metrics"]["n_failed"] == 1
    assert "git_commit" in rec["environment"] and len(rec["per_class"]) == 6 and len(rec["videos"]) == 12


def test_views_match_independent_prediction(run_dir, result):
    """The loader path (evaluate_views) and the raw-file path (predict.clip_views) give the same scores."""
    model, params = load_run_model(run_dir)
    for i in (0, 7):
        video, audio, _ = clip_views(result["paths"][i], params, n_clips=2, n_crops=3)
        with torch.no_grad():
            p = torch.softmax(model(video, audio), 1).mean(0)
        assert torch.allclose(p, result["probs"][i], atol=1e-4)


def test_interpretation_and_per_class(result):
    interp = interpretation(result)
    assert isinstance(interp, ViewsInterpretation)
    cm = interp.confusion_matrix()
    assert cm.shape == (6, 6) and cm.sum() == 12 and cm.trace() == round(result["top1"] * 12)
    assert all(a in interp.vocab and b in interp.vocab for a, b, _ in interp.most_confused())
    pca = per_class_accuracy(result)
    assert pca["n"].sum() == 12 and pca["correct"].sum() == cm.trace()
    fig = interp.plot_top_losses(2)
    assert len(fig.axes) == 2 * 4


def test_predict_video_and_cli(run_dir, result, tmp_path, capsys):
    clip = result["paths"][0]                                    # a real mp4 of data/default (with sound)
    top = predict(run_dir, clip, k=5, n_clips=2)
    probs = [p for _, p in top]
    assert len(top) == 5 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
    assert main(["predict", clip, "--run", str(run_dir)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()[1:]
    assert [line.split()[1] for line in lines] == [n for n, _ in top]
    assert [float(line.split()[-1]) for line in lines] == pytest.approx(probs, abs=1e-4)
    silent = make_video(tmp_path / "silent.mp4", n_frames=8, audio=False)
    assert len(predict(run_dir, silent, k=3, n_clips=1)) == 3
    assert "no audio track" in capsys.readouterr().out


def test_predict_kinetics_clip(run_dir, kinetics_clips):
    clip = sorted((kinetics_clips / "videos").glob("*.mp4"))[0]
    top = predict(run_dir, clip, k=5, n_clips=1)
    probs = [p for _, p in top]
    assert len(top) == 5 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6


def test_errors(run_dir, tmp_path, capsys):
    assert main(["predict", str(tmp_path / "nope.mp4"), "--run", str(run_dir)]) == 1
    assert "nope.mp4: no such video file" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "nope.mp4"), "--run", str(tmp_path / "norun")]) == 1
    assert "run folder" in capsys.readouterr().err
    (tmp_path / "junk.mp4").write_text("not a video")
    assert main(["predict", str(tmp_path / "junk.mp4"), "--run", str(run_dir)]) == 1
    assert "junk.mp4: cannot" in capsys.readouterr().err
    unfinished = shutil.copytree(run_dir, tmp_path / "unfinished")
    (unfinished / "checkpoints" / "model.pth").unlink()
    with pytest.raises(RuntimeError, match="model.pth"):
        load_run_model(unfinished)


def test_notebook_04(run_dir, tmp_path):
    import papermill as pm
    pm.execute_notebook(str(repo_root() / "notebooks" / "04_evaluate.ipynb"), str(tmp_path / "04.ipynb"),
                        parameters=dict(run_id=run_dir.name, runs_root=str(run_dir.parent), n_clips=1, n_crops=1),
                        cwd=str(repo_root() / "notebooks"), progress_bar=False, kernel_name="python3")
    rec = read_json(eval_path(run_dir, "valid", 1, 1))
    assert rec["metrics"]["n_videos"] == 12 and rec["metrics"]["n_failed"] == 1


def test_two_crops_are_refused_before_anything_is_scored_or_written(run_dir):
    before = sorted(p.name for p in run_dir.iterdir())
    with pytest.raises(ValueError, match=r"n_crops=2: choose 1 \(the centre\) or 3"):
        evaluate_views(run_dir, "valid", n_clips=1, n_crops=2)
    assert sorted(p.name for p in run_dir.iterdir()) == before   # no record with nulls


def test_a_model_in_memory_is_scored_as_the_runs_own_weights(run_dir, result):
    """weights=<a model>: that model is scored on the run's views; the run's own weights give the same numbers."""
    model, _ = load_run_model(run_dir)
    res = evaluate_views(run_dir, "valid", n_clips=2, n_crops=3, cache_dir=None, write=False, progress=False,
                         weights=model)
    assert res["protocol"]["weights"] == "the model given" and result["protocol"]["weights"] == "last"
    torch.testing.assert_close(res["probs"], result["probs"])
