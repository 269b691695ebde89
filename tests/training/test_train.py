"""Training: recipes, run records, checkpoints every epoch, and an exact resume after an interruption."""
import json

import pytest
import torch
from conftest import tiny_dls
from fastai.callback.core import Callback

from tsamlib.runs.fileio import atomic_write_json
from tsamlib.runs.folder import open_run, start_run
from tsamlib.training.learner import StepDecay, fit_run, plot_learning_curve, seed_everything, tsam_learner


class Interrupt(Callback):
    order = 100  # after the checkpoint of the epoch is written

    def __init__(self, after_epoch):
        self.at = after_epoch

    def after_epoch(self):
        if self.epoch == self.at:
            raise KeyboardInterrupt("simulated kill")


def train(tmp_path, run_id, recipe, epochs=3, resume=False, cbs=()):
    seed_everything(0)
    learn = tsam_learner(tiny_dls(), arch="resnet10t", n_frames=4, audio=False, shift_depth=1, recipe=recipe)
    run = start_run(run_id, dict(recipe=recipe, epochs=epochs), runs_root=tmp_path, resume=resume)
    lr = 1e-3 if recipe == "one_cycle" else 0.02
    return fit_run(learn, run, epochs, lr, seed=0, resume=resume, lr_decay=[(0.1, 2)], cbs=cbs)


@pytest.mark.parametrize("recipe", ["paper", "one_cycle"])
def test_resume_matches_uninterrupted(tmp_path, recipe):
    full = train(tmp_path, "full", recipe)
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path, "cut", recipe, cbs=[Interrupt(1)])
    cut = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert not cut["finished"] and [r["epoch"] for r in cut["epochs"]] == [1, 2]   # counted from 1
    resumed = train(tmp_path, "cut", recipe, resume=True)
    assert resumed["resumed_from_epoch"] == 3   # the first epoch the resumed session trained
    a = json.loads((tmp_path / "full" / "metrics.json").read_text())
    b = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert [r["valid_loss"] for r in b["epochs"]] == pytest.approx([r["valid_loss"] for r in a["epochs"]], abs=1e-6)
    assert resumed["valid_loss"] == pytest.approx(full["valid_loss"], abs=1e-6)
    assert resumed["top1"] == full["top1"]


class TableRows(Callback):
    order = 90  # after the Recorder (50) has logged the epoch's row

    def before_fit(self):
        self.rows = []

    def after_epoch(self):
        self.rows.append(self.recorder.log[0])


def test_epochs_are_counted_from_1_everywhere(tmp_path, capsys):
    """The terminal line, fastai's progress table, metrics.json and the checkpoint agree on the epoch's number."""
    rows = TableRows()
    train(tmp_path, "e", "paper", epochs=2, cbs=[rows])
    m = json.loads((tmp_path / "e" / "metrics.json").read_text())
    last = torch.load(tmp_path / "e" / "checkpoints" / "last.pth", weights_only=True)
    out = capsys.readouterr().out
    assert rows.rows == [1, 2] and [r["epoch"] for r in m["epochs"]] == [1, 2] and m["epochs_from"] == 1
    assert last["epoch"] == 2 and "epoch 1/2 " in out and "epoch 2/2 " in out and "epoch 0" not in out


def test_run_records_and_no_silent_overwrite(tmp_path):
    final = train(tmp_path, "r", "paper", epochs=2)
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert m["finished"] and len(m["epochs"]) == 2 and m["final"]["top1"] == final["top1"]
    row = m["epochs"][-1]
    assert row["train_clips"] == 24 and row["train_steps"] == 3 and row["train_clips_per_s"] > 0
    assert row["lr"] == pytest.approx(0.02)
    env = m["environment"]
    assert env["packages"]["torch"].startswith("2.14.1") and "git_commit" in env and env["python"]
    assert (tmp_path / "r" / "checkpoints" / "model.pth").is_file()
    assert json.loads((tmp_path / "r" / "params.json").read_text()) == dict(recipe="paper", epochs=2)
    with pytest.raises(FileExistsError, match="finished"):
        start_run("r", {}, runs_root=tmp_path)
    start_run("r", dict(recipe="paper", epochs=2), runs_root=tmp_path, overwrite=True)
    assert len(list(tmp_path.glob("r.old-*"))) == 1  # moved aside, not deleted
    assert open_run(tmp_path / "r").params["epochs"] == 2


def test_unfinished_run_needs_resume_and_same_params(tmp_path):
    start_run("u", dict(a=1), runs_root=tmp_path).log_epoch(dict(epoch=0))  # trained one epoch
    with pytest.raises(FileExistsError, match="resume=True"):
        start_run("u", dict(a=1), runs_root=tmp_path)
    with pytest.raises(ValueError, match="different settings"):
        start_run("u", dict(a=2), runs_root=tmp_path, resume=True)
    with pytest.raises(ValueError, match="plain folder name"):
        start_run("../x", {}, runs_root=tmp_path)


def test_step_decay_is_the_reports_schedule():
    sd = StepDecay([(0.2, 5), (0.01, 30), (0.002, 45)])
    assert [sd.factor(e) for e in (0, 4, 5, 29, 30, 44, 45, 49)] == [1, 1, 0.2, 0.2, 0.01, 0.01, 0.002, 0.002]


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    p = atomic_write_json(tmp_path / "m.json", dict(a=1))
    with pytest.raises(TypeError):
        atomic_write_json(p, dict(a=object.__new__(type("Bad", (), {"__str__": None}))))
    assert json.loads(p.read_text()) == dict(a=1) and list(tmp_path.iterdir()) == [p]


def test_lr_find_and_paper_optimizer():
    seed_everything(0)
    learn = tsam_learner(tiny_dls(), arch="resnet10t", n_frames=4, audio=False, recipe="paper")
    learn.create_opt()
    assert learn.opt.hypers[0]["mom"] == 0.9 and learn.wd == 1e-4
    res = learn.lr_find(num_it=5, show_plot=False)
    assert res.valley > 0


def test_recorder_keeps_per_batch_losses_after_fit_run_and_resume(tmp_path, capsys):
    """The learning curve of notebook 03 (learn.recorder.plot_loss) has every batch, also after a resume."""
    def fit(run_id, resume=False, cbs=()):
        seed_everything(0)
        learn = tsam_learner(tiny_dls(), arch="resnet10t", n_frames=4, audio=False, progress_bars=False)
        run = start_run(run_id, dict(epochs=3), runs_root=tmp_path, resume=resume)
        fit_run(learn, run, 3, 1e-3, seed=0, resume=resume, cbs=cbs)
        return learn

    full = fit("full")
    assert len(full.recorder.losses) == 3 * 3 and len(full.recorder.values) == 3  # 3 epochs x 3 batches
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("epoch ")]
    assert [ln.split()[1] for ln in lines] == ["1/3", "2/3", "3/3"] and all("ETA" in ln for ln in lines)
    with pytest.raises(KeyboardInterrupt):
        fit("cut", cbs=[Interrupt(1)])
    resumed = fit("cut", resume=True)
    assert len(resumed.recorder.losses) == 9 and len(resumed.recorder.values) == 3
    assert [float(x) for x in resumed.recorder.losses] == pytest.approx([float(x) for x in full.recorder.losses],
                                                                        abs=1e-5)
    ax = plot_learning_curve(resumed)
    lines = {ln.get_label(): ln for ln in ax.lines}
    assert len(lines["train, every batch (moving average)"].get_xdata()) == 9 and ax.get_xlabel() == "epoch"
    assert list(lines["train, at the epoch's end"].get_xdata()) == [1, 2, 3]
    assert list(lines["valid, whole validation set"].get_ydata()) == pytest.approx([v[1] for v in resumed.recorder.values])


def test_the_learning_curve_keeps_its_lines_with_one_batch_per_epoch(tmp_path):
    seed_everything(0)
    learn = tsam_learner(tiny_dls(n_train=8, bs=8), arch="resnet10t", n_frames=4, audio=False, progress_bars=False)
    fit_run(learn, start_run("one", dict(epochs=3), runs_root=tmp_path), 3, 1e-3, seed=0)
    lines = {ln.get_label(): ln for ln in plot_learning_curve(learn).lines}
    assert list(lines["train, at the epoch's end"].get_xdata()) == [1, 2, 3]   # fastai's plot kept 1 point of 3
    assert len(lines["valid, whole validation set"].get_xdata()) == 3
