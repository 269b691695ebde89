"""fastai DataLoaders over manifests: shapes, n_inp, bad samples, workers, views, show_batch, Learner."""
import os
import signal
import subprocess
import sys
import warnings

import pandas as pd
import pytest
import torch
from torch import nn

from tsamlib.data.loaders import clip_views_dataset, video_dataloaders, views_dataloader
from tsamlib.data.manifest import read_table
from tsamlib.data.transforms import ClipTransform

SMALL = dict(n_frames=4, img_size=64, resize=72, n_mels=64, batch_size=4)


def _row(path, label, split, has_audio=True, problem=""):
    return dict(path=str(path), label=label, label_name=f"class{label}", split=split, n_frames=0, fps=0.0,
                duration=0.0, has_audio=has_audio, problem=problem)


@pytest.fixture(scope="module")
def kinetics_df(kinetics_clips):
    rows = []
    for split, name in [("train", "training.txt"), ("valid", "validation.txt")]:
        for line in (kinetics_clips / name).read_text().split("\n"):
            if line.strip():
                vid, lab = line.split()
                rows.append(_row(kinetics_clips / "videos" / f"{vid}.mp4", int(lab), split))
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def zoo_df(media_zoo):
    "Fine clips plus broken files whose `problem` is empty (as if probing had missed them)."
    rows = [_row(media_zoo[n][0], i % 2, "train", media_zoo[n][1]["has_audio"])
            for i, n in enumerate(["fine", "no_audio", "odd_size", "portrait", "surround_48k", "audio_8k",
                                   "unicode_path", "three_frames", "text_renamed", "audio_only"])]
    rows.append(_row(media_zoo["empty"][0], 0, "train", False, problem="empty file"))
    rows += [_row(media_zoo[n][0], i, "valid") for i, n in enumerate(["fine", "portrait"])]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("audio", [False, True])
def test_kinetics_batches(kinetics_df, tmp_path, audio):
    dls = video_dataloaders(kinetics_df, audio=audio, cache_dir=tmp_path, **SMALL)
    assert dls.n_inp == (2 if audio else 1) and dls.c == 2 and dls.vocab == ["class0", "class1"]
    assert len(dls.train) == 2 and len(dls.valid) == 1
    b = dls.train.one_batch()
    assert len(b) == dls.n_inp + 1
    assert b[0].shape == (4, 4, 3, 64, 64) and b[0].dtype == torch.float32
    assert b[-1].dtype == torch.int64 and set(b[-1].tolist()) <= {0, 1}
    if audio:
        assert b[1].shape == (4, 1, 3, 64, 64) and b[1].dtype == torch.float32 and torch.isfinite(b[1]).all()
    assert dls.skipped() == {}


def test_bad_files_replaced_counted_and_reported(zoo_df):
    with pytest.warns(UserWarning) as rec:
        dls = video_dataloaders(zoo_df, audio=True, seed=1, **SMALL)
        batches = [b for _ in range(2) for b in dls.train]
    msgs = [str(w.message) for w in rec]
    assert any("excluded 1 of 13 rows with problems" in m and "empty.mp4" in m for m in msgs)
    assert any("2 of 12 videos have no audio track" in m for m in msgs)  # no_audio, text_renamed
    assert len(batches) == 4 and all(b[0].shape == (4, 4, 3, 64, 64) for b in batches)
    skipped = dls.skipped()
    assert set(skipped) == {str(zoo_df.path[8]), str(zoo_df.path[9])}
    assert "no video stream" in skipped[str(zoo_df.path[9])]
    # per epoch: item 8 (text) fails, its replacement 9 (audio only) fails, item 9 fails: 3 x 2 epochs
    assert dls.n_skipped() == 6
    assert sum("skipped" in m for m in msgs) == 2                           # warned once per path


def test_workers_give_same_batches_and_report_skips(zoo_df):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b0 = [b for b in video_dataloaders(zoo_df, seed=3, num_workers=0, **SMALL).train]
        dls = video_dataloaders(zoo_df, seed=3, num_workers=2, **SMALL)
        b2 = [b for b in dls.train]
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(b0, b2))
    assert len(dls.skipped()) == 2 and dls.n_skipped() == 3             # counted inside the workers


# Run in a fresh process: numba imported before the workers start (as librosa imports it in audio runs), torch's
# OpenMP threads running, OMP_NUM_THREADS unset; then loader workers are forked.
_FORKED_WORKERS = """
import sys, warnings
import numba
import torch
from tsamlib.data.loaders import limit_threads, video_dataloaders
warnings.simplefilter("ignore")
torch.set_num_threads(2)
torch.ones(1 << 22).mul_(2)

class Threads(torch.utils.data.Dataset):
    def __len__(self): return 4
    def __getitem__(self, i): return torch.get_num_threads()

dl = torch.utils.data.DataLoader(Threads(), num_workers=2, worker_init_fn=lambda _: limit_threads())
counts = sorted({int(n) for b in dl for n in b})
assert counts == [1], f"torch threads in the workers after limit_threads: {counts}"
batches = list(video_dataloaders(sys.argv[1], seed=3, num_workers=2, n_frames=4, img_size=64, resize=72,
                                 batch_size=4).train)
print("batches", len(batches), tuple(batches[0][0].shape))
"""


def test_forked_workers_run_one_thread_after_numba_and_torch_threads(zoo_df, tmp_path):
    """Starting numba's threading layer in a worker set the OpenMP thread count of torch's libgomp (numba binds to
    it) back to NUMBA_NUM_THREADS: the worker's first large torch op then waited forever for the parent's OpenMP
    threads, which a forked process does not have."""
    from conftest import REPO_ROOT
    manifest = tmp_path / "m.csv"
    zoo_df.to_csv(manifest, index=False)
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env.update(PYTHONPATH=str(REPO_ROOT), NUMBA_NUM_THREADS="2")
    proc = subprocess.Popen([sys.executable, "-c", _FORKED_WORKERS, str(manifest)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)   # the process and its hung workers
        proc.communicate()
        pytest.fail("loader workers hung (OpenMP in a forked worker)")
    assert proc.returncode == 0, err[-2000:]
    assert "batches 2 (4, 4, 3, 64, 64)" in out


def test_all_bad_raises(media_zoo):
    df = pd.DataFrame([_row(media_zoo[n][0], 0, s) for n in ["text_renamed", "truncated"] for s in ["train", "valid"]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dls = video_dataloaders(df, **SMALL | dict(batch_size=2))
        with pytest.raises(RuntimeError, match="all 2 samples failed"):
            dls.train.one_batch()


def test_csv_manifest_with_relative_paths(media_zoo, tmp_path):
    folder = media_zoo["fine"][0].parent
    rows = [_row(media_zoo[n][0].relative_to(folder), 0, s) for n, s in [("fine", "train"), ("portrait", "valid")]]
    csv = folder / "manifest_rel.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    df = read_table(csv)
    assert df.path[0] == str(media_zoo["fine"][0]) and df.problem.tolist() == ["", ""]
    dls = video_dataloaders(csv, **SMALL | dict(batch_size=1))
    assert dls.valid.one_batch()[0].shape == (1, 4, 3, 64, 64)
    with pytest.raises(ValueError, match="split 'valid'"):
        video_dataloaders(pd.DataFrame(rows[:1]), **SMALL)


def test_views_dataset(kinetics_df):
    ds = clip_views_dataset(kinetics_df, split="valid", n_clips=2, n_frames=SMALL["n_frames"],
                            tfm=ClipTransform(SMALL["img_size"], SMALL["resize"], n_crops=3))
    assert len(ds) == 4 * 6
    assert ds.views[:7] == [(0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 1, 0), (0, 1, 1), (0, 1, 2), (1, 0, 0)]
    x0, x1, x3 = ds[0][0], ds[1][0], ds[3][0]
    assert x0.shape == (4, 3, 64, 64) and not torch.equal(x0, x1) and not torch.equal(x0, x3)
    b = views_dataloader(ds, batch_size=6).one_batch()
    first_label = int(kinetics_df[kinetics_df.split == "valid"].label.iloc[0])
    assert torch.equal(b[0][2], ds[2][0]) and (b[1] == first_label).all()


def test_show_batch(kinetics_df, tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    dls = video_dataloaders(kinetics_df, audio=True, cache_dir=tmp_path, **SMALL)
    fig = dls.show_batch(max_n=2)
    assert len(fig.axes) == 2 * (4 + 3)
    assert [a.get_title() for a in fig.axes[4:7]] == ["25/10 ms", "50/25 ms", "100/50 ms"]


class TinyAV(nn.Module):
    "Average-pool video (and audio) frames, then a linear layer."
    def __init__(self, c=2):
        super().__init__()
        self.fc = nn.Linear(3, c)

    def forward(self, video, audio=None):
        x = video.mean((1, 3, 4))
        if audio is not None:
            x = (x + audio.mean((1, 3, 4))) / 2
        return self.fc(x)


def test_fastai_learner_fit_validate_get_preds(kinetics_df, tmp_path):
    import fastai.callback.progress  # noqa: F401  (adds Learner.no_bar)
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    dls = video_dataloaders(kinetics_df, audio=True, cache_dir=tmp_path, **SMALL)
    learn = Learner(dls, TinyAV(), loss_func=CrossEntropyLossFlat())
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, 1e-2)
    assert len(learn.validate()) == 1
    preds, targs = learn.get_preds()
    assert preds.shape == (4, 2) and targs.shape == (4,)


def test_batches_and_model_go_to_the_default_device(kinetics_df, tmp_path):
    """The loaders carry fastai's default device (the GPU when there is one): with none set, fastai's Learner left
    the model where it was and a GPU machine trained on the CPU (measured: 1.2 clips/s on an H200)."""
    from fastai.torch_core import default_device

    dls = video_dataloaders(kinetics_df, cache_dir=tmp_path, **SMALL)
    assert dls.device == default_device() and dls.train.device == default_device()
    assert views_dataloader(clip_views_dataset(kinetics_df, "valid", n_frames=2, tfm=ClipTransform(32, 36))).device \
        == default_device()
    from tsamlib.training.learner import tsam_learner
    learn = tsam_learner(dls, arch="resnet10t", shift_depth=1, progress_bars=False)
    learn.fit(1, lr=1e-4)
    assert next(learn.model.parameters()).device.type == default_device().type
