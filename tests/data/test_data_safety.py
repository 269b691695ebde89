"""Bad data never bends the numbers: validation leaves broken clips out (never substitutes), training replaces and
counts them, mel caches heal or are bypassed, and skip-log folders of killed processes do not pile up."""
import errno
import json
import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import make_video
from fastai.callback.core import Callback

from tsamlib.data.audio import AudioFrame
from tsamlib.data.loaders import SampleDropped, video_dataloaders
from tsamlib.data.skiplog import SkipLog
from tsamlib.runs.folder import start_run
from fastai.torch_core import set_seed
from tsamlib.training import fit_run, tsam_learner

SMALL = dict(n_frames=4, img_size=32, resize=36, n_mels=32)


def _row(path, label, split, problem=""):
    return dict(path=str(path), label=label, label_name=f"c{label}", split=split, has_audio=True, problem=problem)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    "Six good clips, one text file renamed .mp4 and one empty file."
    d = tmp_path_factory.mktemp("clips")
    good = [make_video(d / f"v{i}.mp4", n_frames=8, size=(32, 32), seed=i) for i in range(6)]
    (d / "broken.mp4").write_text("this is not a video\n" * 20)
    (d / "empty.mp4").write_bytes(b"")
    return d, good


class ValidCount(Callback):
    "Clips seen by each validation pass (the batch sizes fastai weights metrics with)."
    order = 90

    def before_validate(self):
        self.passes = getattr(self, "passes", []) + [0]

    def after_batch(self):
        if not self.training:
            self.passes[-1] += len(self.yb[0])


def test_valid_leaves_bad_clip_out_train_replaces(clips, tmp_path):
    d, good = clips
    rows = [_row(good[i], i % 2, "train") for i in range(3)] + [_row(d / "broken.mp4", 0, "train")]
    rows += [_row(good[3], 0, "valid"), _row(d / "broken.mp4", 1, "valid"), _row(good[4], 1, "valid"),
             _row(good[5], 0, "valid")]
    rows += [_row(d / "empty.mp4", 0, "valid", "empty file"), _row(d / "gone.mp4", 1, "train", "missing")]
    with pytest.warns(UserWarning, match="excluded 2 of 10 rows"):
        dls = video_dataloaders(pd.DataFrame(rows), batch_size=2, seed=0, **SMALL)
    assert dls.excluded == {"valid": {str(d / "empty.mp4"): "empty file"}, "train": {str(d / "gone.mp4"): "missing"}}
    vds = dls.valid.dataset
    with pytest.raises(SampleDropped, match="broken.mp4"):
        vds[1]
    loaded = []                                 # paths each valid item really came from
    load = vds.load
    vds.load = lambda i, rng: (loaded.append(vds.paths[vds.views[i][0]]), load(i, rng))[1]

    set_seed(0)
    counter = ValidCount()
    learn = tsam_learner(dls, arch="resnet10t", recipe="one_cycle", cbs=[counter])
    run = start_run("r", dict(x=1), runs_root=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        final = fit_run(learn, run, 1, 1e-3, seed=0)
    good_valid = [str(good[3]), str(good[4]), str(good[5])]
    assert counter.passes == [3, 3]             # the epoch's validation and finish_run's: N-1 clips each
    assert loaded == good_valid * 2             # each good clip once per pass, no substitute
    assert final["valid_clips"] == 3 and final["valid_dropped_samples"] == 1
    assert list(final["valid_dropped"]) == [str(d / "broken.mp4")]
    assert final["skipped_samples"] == 1 and list(final["skipped"]) == [str(d / "broken.mp4")]
    assert final["skipped_replacements"] >= 1
    assert final["manifest_excluded"] == {"valid": 1, "train": 1}
    assert final["manifest_excluded_paths"]["valid"] == {str(d / "empty.mp4"): "empty file"}
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert m["final"]["valid_dropped"] == final["valid_dropped"] and m["epochs"][0]["valid_dropped_samples"] == 1
    assert m["epochs"][0]["skipped_samples"] == 1
    # the metrics are the mean over the 3 clips that loaded
    loaded.clear()
    preds, targs = learn.get_preds(dl=dls.valid)
    assert len(preds) == 3 and loaded == good_valid and targs.tolist() == [0, 1, 0]
    assert final["top1"] == pytest.approx(float((preds.argmax(1) == targs).float().mean()), abs=1e-6)
    valid_loss = float(F.cross_entropy(torch.log(preds), targs))
    assert final["valid_loss"] == pytest.approx(valid_loss, abs=1e-4)
    assert dls.skipped("valid") == final["valid_dropped"] and dls.n_skipped("train") == final["skipped_replacements"]
    rep = dls.skip_report()
    assert rep["valid"]["policy"] == "drop" and rep["train"]["policy"] == "replace" and rep["valid"]["clips"] == 4
    run.close()


@pytest.mark.parametrize("num_workers", [0, 2])
def test_dropped_clips_keep_batches_and_order_with_workers(clips, num_workers):
    d, good = clips
    valid = [good[0], d / "broken.mp4", good[1], good[2], d / "broken.mp4", d / "empty.mp4", good[3], good[4]]
    rows = [_row(good[5], 0, "train"), _row(good[4], 1, "train")]
    rows += [_row(p, i % 3, "valid") for i, p in enumerate(valid)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dls = video_dataloaders(pd.DataFrame(rows), batch_size=2, num_workers=num_workers, **SMALL)
        assert [b[-1].tolist() for b in dls.valid] == [[0], [2, 0], [0, 1]]    # the all-bad batch is left out
        learn = tsam_learner(dls, arch="resnet10t")
        preds, targs = learn.get_preds()
    assert len(preds) == 5 and targs.tolist() == [0, 2, 0, 0, 1]
    assert set(dls.skipped("valid")) == {str(d / "broken.mp4"), str(d / "empty.mp4")}


def test_all_valid_bad_raises(clips):
    d, good = clips
    rows = [_row(good[0], 0, "train"), _row(good[1], 1, "train"), _row(d / "broken.mp4", 0, "valid")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dls = video_dataloaders(pd.DataFrame(rows), batch_size=2, **SMALL)
        with pytest.raises(RuntimeError, match="all 1 samples of split 'valid' failed"):
            list(dls.valid)


def _corrupt(f, kind):
    if kind == "truncated":
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    elif kind == "garbage":
        f.write_bytes(os.urandom(300))
    elif kind == "empty":
        f.write_bytes(b"")
    elif kind == "wrong_keys":
        np.savez(f, x=np.zeros(3))
    elif kind == "wrong_shapes":
        np.savez(f, has_audio=np.array(True), m0=np.zeros(5, np.float16), m1=np.zeros((32, 4), np.float16),
                 m2=np.zeros((32, 4), np.float16))


@pytest.mark.parametrize("kind", ["truncated", "garbage", "empty", "wrong_keys", "wrong_shapes"])
def test_unreadable_cache_entry_is_recomputed_and_rewritten(clips, tmp_path, kind):
    path = clips[1][0]
    af = AudioFrame(size=(32, 32), n_mels=32, cache_dir=tmp_path)
    x0, h0 = af(path)
    f = af.cache.file(path)
    _corrupt(f, kind)
    with pytest.warns(UserWarning, match="unreadable") as rec:
        x1, h1 = af(path)
    assert len([w for w in rec if "mel cache" in str(w.message)]) == 1 and str(f) in str(rec[0].message)
    assert torch.equal(x0, x1) and h0 == h1
    with np.load(f) as z:
        assert z["m0"].shape[0] == 32                    # rewritten, valid
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(af(path)[0], x0)
    assert af.cache.hits == 1 and af.cache.misses == 2
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]


def test_truncated_cache_entry_never_makes_a_bad_sample(clips, tmp_path):
    d, good = clips
    rows = [_row(good[i], i % 2, "train") for i in range(2)] + [_row(good[i], i % 2, "valid") for i in (2, 3)]
    df = pd.DataFrame(rows)
    dls = video_dataloaders(df, audio=True, batch_size=2, cache_dir=tmp_path, **SMALL)
    list(dls.valid)                                      # fills the cache
    for f in tmp_path.rglob("*.npz"):
        _corrupt(f, "truncated")
    dls = video_dataloaders(df, audio=True, batch_size=2, cache_dir=tmp_path, **SMALL)
    with pytest.warns(UserWarning, match="unreadable"):
        b = [x for x in dls.valid]
    assert sum(len(x[-1]) for x in b) == 2 and dls.skipped() == {}


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EROFS])
def test_unwritable_cache_warns_once_and_data_loads(clips, tmp_path, monkeypatch, err):
    d, good = clips
    import tsamlib.data.audio

    def full_disk(fh, **kw):
        fh.write(b"PK\x03\x04partial")
        raise OSError(err, os.strerror(err))
    monkeypatch.setattr(tsamlib.data.audio.np, "savez", full_disk)
    rows = [_row(good[i], i % 2, "train") for i in range(4)] + [_row(good[4], 0, "valid")]
    dls = video_dataloaders(pd.DataFrame(rows), audio=True, batch_size=2, cache_dir=tmp_path, **SMALL)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        batches = list(dls.train) + list(dls.valid)
    msgs = [str(w.message) for w in rec if "mel cache" in str(w.message)]
    assert len(msgs) == 1 and "cannot be written" in msgs[0] and os.strerror(err) in msgs[0]
    assert sum(len(b[-1]) for b in batches) == 5 and dls.skipped() == {}
    assert not dls.train.dataset.audio.cache.writable
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]   # no entry, no temp file


def test_stale_skip_folder_of_dead_pid_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = tmp_path / f"tsam-skips-{dead.pid}-abc123"
        live = tmp_path / f"tsam-skips-{alive.pid}-def456"
        for f in (stale, live):
            f.mkdir()
            (f / "x.skip").write_text("p\tr\n")
        log = SkipLog()
        assert not stale.exists() and live.exists()
        assert log.dir.parent == tmp_path and log.dir.name.startswith(f"tsam-skips-{os.getpid()}-")
    finally:
        alive.kill()
        alive.wait()
