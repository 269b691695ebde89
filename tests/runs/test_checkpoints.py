"""Checkpoints: faults are named (CheckpointError), the previous one is kept, resume falls back to it, and a full
disk while saving gives a clear error and leaves no temp file."""
import errno
import pickle

import pytest
import torch
from conftest import tiny_dls

from tsamlib.runs.checkpoints import Checkpoint, load_checkpoint, load_latest_checkpoint, read_best
from tsamlib.runs.loader import CheckpointError
from tsamlib.runs.folder import start_run
from fastai.torch_core import set_seed
from tsamlib.training import fit_run, tsam_learner


def learner(c=3):
    set_seed(0)
    dls = tiny_dls(8, 4, bs=4, valid_bs=4)
    dls.c = c
    return tsam_learner(dls, arch="resnet10t", n_frames=4, audio=False, recipe="paper")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    "A run trained 2 epochs (not finished): checkpoints/last.pth (epoch 2) and prev.pth (epoch 1), counted from 1."
    root = tmp_path_factory.mktemp("runs")
    run = start_run("r", dict(a=1), runs_root=root)
    fit_run(learner(), run, 2, 0.02, seed=0, finish=False)
    run.close()
    return run.checkpoint_dir


def _copy(trained, tmp_path):
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name in ("last.pth", "prev.pth"):
        (tmp_path / name).write_bytes((trained / name).read_bytes())
    return tmp_path / "last.pth", tmp_path / "prev.pth"


def test_last_and_prev_are_kept(trained):
    assert sorted(p.name for p in trained.iterdir()) == ["last.pth", "prev.pth"]
    assert torch.load(trained / "last.pth", weights_only=True)["epoch"] == 2
    assert torch.load(trained / "prev.pth", weights_only=True)["epoch"] == 1


def _break(last, kind):
    good = last.read_bytes()
    if kind == "empty":
        last.write_bytes(b"")
    elif kind == "truncated":
        last.write_bytes(good[: len(good) // 2])
    elif kind == "garbage":
        last.write_bytes(b"\x80\x02garbage, not a checkpoint" * 40)
    elif kind == "pickled_object":
        last.write_bytes(pickle.dumps(pickle.PickleError("x")))
    elif kind == "weights_only":
        torch.save(learner().model.state_dict(), last)
    elif kind == "missing_keys":
        torch.save(dict(model={}, epoch=3), last)
    elif kind == "other_model":
        l5 = learner(c=5)
        l5.create_opt()
        torch.save(dict(model=l5.model.state_dict(), opt={}, epoch=0), last)


@pytest.mark.parametrize("kind, what", [
    ("empty", "is empty \\(0 bytes\\)"), ("truncated", "truncated or corrupt"),
    ("garbage", "not a PyTorch checkpoint"), ("pickled_object", "not a PyTorch checkpoint"),
    ("weights_only", "holds model weights only"), ("missing_keys", "lacks \\['opt'\\]"),
    ("other_model", "written by a different model \\(2 shape mismatches \\(fc.weight")])
def test_broken_last_checkpoint_is_named(trained, tmp_path, kind, what):
    last, prev = _copy(trained, tmp_path)
    _break(last, kind)
    learn = learner()
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    with pytest.raises(CheckpointError, match=what) as e:
        load_checkpoint(learn, last)
    msg = str(e.value)
    assert str(last) in msg and "Re-running `torch.load`" not in msg and e.value.__cause__ is None
    assert all(torch.equal(v, learn.model.state_dict()[k]) for k, v in before.items())   # untouched
    # resume falls back to prev.pth (saved after epoch 1) and says so
    learn = learner()
    assert load_latest_checkpoint(learn, tmp_path) == 1
    assert not last.exists() and (tmp_path / "last.unreadable.pth").is_file()
    ref = torch.load(prev, weights_only=True)["model"]
    assert all(torch.equal(v, learn.model.state_dict()[k]) for k, v in ref.items())


def test_resume_continues_from_prev_when_last_is_corrupt(trained, tmp_path, capsys):
    run = start_run("r", dict(a=1), runs_root=tmp_path)
    _copy(trained, run.checkpoint_dir)
    (run.checkpoint_dir / "last.pth").write_bytes(b"")
    final = fit_run(learner(), run, 3, 0.02, seed=0, resume=True)
    out = capsys.readouterr().out
    ck = run.checkpoint_dir
    assert f"resuming from {ck / 'prev.pth'} (after epoch 1) because {ck / 'last.pth'} is empty" in out
    assert final["resumed_from_epoch"] == 2 and [r["epoch"] for r in run.metrics["epochs"]] == [2, 3]
    assert torch.load(run.checkpoint_dir / "last.pth", weights_only=True)["epoch"] == 3
    assert torch.load(run.checkpoint_dir / "prev.pth", weights_only=True)["epoch"] == 2
    assert (run.checkpoint_dir / "last.unreadable.pth").stat().st_size == 0   # kept aside, never rotated to prev
    run.close()


def test_both_broken_or_only_prev(trained, tmp_path, capsys):
    last, prev = _copy(trained, tmp_path)
    last.write_bytes(b"")
    prev.write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="no usable checkpoint") as e:
        load_latest_checkpoint(learner(), tmp_path)
    assert str(last) in str(e.value) and str(prev) in str(e.value)
    last.unlink()
    prev.write_bytes((trained / "prev.pth").read_bytes())     # killed between last -> prev and new -> last
    assert load_latest_checkpoint(learner(), tmp_path) == 1 and "last.pth is missing" in capsys.readouterr().out
    prev.unlink()
    assert load_latest_checkpoint(learner(), tmp_path) == 0   # nothing to resume


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0"),
                                   RuntimeError("PytorchStreamWriter failed writing file data/3: file write failed")])
def test_full_disk_while_saving(trained, tmp_path, monkeypatch, error):
    last, prev = _copy(trained, tmp_path)
    old_last, old_prev = last.read_bytes(), prev.read_bytes()
    learn = learner()
    learn.create_opt()
    cb = Checkpoint(tmp_path)
    cb.learn, cb.trained = learn, True
    learn.epoch = 2

    def full(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"PK\x03\x04 partial")
        raise error
    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError, match=f"no space left on device while writing {last}: free space or move runs_root"):
        cb.after_epoch()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pth", "prev.pth"]   # no .last.*.tmp.pth
    assert last.read_bytes() == old_last and prev.read_bytes() == old_prev


def test_a_checkpoint_written_before_epochs_counted_from_1_resumes_at_the_same_place(trained, tmp_path):
    """Files written when checkpoints counted epochs from 0 (no ``epochs_from``) still resume after the same epoch,
    and ``read_best`` reports their epoch counted from 1."""
    last, _ = _copy(trained, tmp_path)
    ck = torch.load(last, weights_only=True)
    assert ck["epochs_from"] == 1
    old = {k: v for k, v in ck.items() if k != "epochs_from"}
    torch.save({**old, "epoch": ck["epoch"] - 1}, last)                 # the old file of the same epoch
    assert load_checkpoint(learner(), last) == ck["epoch"] == 2
    torch.save(dict(model=ck["model"], epoch=0, top1=0.5), tmp_path / "best.pth")
    assert read_best(tmp_path)["epoch"] == 1
