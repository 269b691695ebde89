"""Training: recipes, run records, checkpoints every epoch, and an exact resume after an interruption."""
import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_dls
from fastai.callback.core import Callback

from tsamlib.runs.fileio import atomic_write_json
from tsamlib.runs.folder import open_run, start_run
from fastai.torch_core import set_seed
from tsamlib.training import StepDecay, fit_run, plot_learning_curve, tsam_learner


class Interrupt(Callback):
    order = 100  # after the checkpoint of the epoch is written

    def __init__(self, after_epoch):
        self.at = after_epoch

    def after_epoch(self):
        if self.epoch == self.at:
            raise KeyboardInterrupt("simulated kill")


def train(tmp_path, run_id, recipe, epochs=3, resume=False, cbs=()):
    set_seed(0)
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
    set_seed(0)
    learn = tsam_learner(tiny_dls(), arch="resnet10t", n_frames=4, audio=False, recipe="paper")
    learn.create_opt()
    assert learn.opt.hypers[0]["mom"] == 0.9 and learn.wd == 1e-4
    res = learn.lr_find(num_it=5, show_plot=False)
    assert res.valley > 0


def test_one_report_per_epoch_in_jupyterlab_and_top1_named_so(tmp_path, capsys, monkeypatch):
    """fastai's table says top1 (as every record here) and, in a notebook someone watches, it is the epoch's only
    report (no second, printed line); the terminal and papermill's logs keep the line."""
    import sys
    learn = tsam_learner(tiny_dls(), arch="resnet10t", n_frames=4, audio=False, progress_bars=True)
    monkeypatch.delenv("TSAM_UNATTENDED", raising=False)
    import fastprogress.fastprogress as fp
    monkeypatch.setitem(sys.modules, "ipykernel", sys)        # as in JupyterLab, where fastai draws HTML tables
    monkeypatch.setattr(fp, "IN_NOTEBOOK", True)
    set_seed(0)
    fit_run(learn, start_run("nb", dict(epochs=1), runs_root=tmp_path), 1, 1e-3, seed=0)
    assert not [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("epoch 1/1")]
    assert learn.recorder.metric_names[1:-1] == ["train_loss", "valid_loss", "top1", "top5"]
    monkeypatch.delitem(sys.modules, "ipykernel")             # a terminal
    monkeypatch.setattr(fp, "IN_NOTEBOOK", False)
    learn = tsam_learner(tiny_dls(), arch="resnet10t", n_frames=4, audio=False, progress_bars=True)
    fit_run(learn, start_run("term", dict(epochs=1), runs_root=tmp_path), 1, 1e-3, seed=0)
    assert [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("epoch 1/1")]


def test_recorder_keeps_per_batch_losses_after_fit_run_and_resume(tmp_path, capsys):
    """The learning curve of notebook 03 (learn.recorder.plot_loss) has every batch, also after a resume."""
    def fit(run_id, resume=False, cbs=()):
        set_seed(0)
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
    valid = [v[1] for v in resumed.recorder.values]
    assert list(lines["valid, whole validation set"].get_ydata()) == pytest.approx(valid)


def test_the_learning_curve_keeps_its_lines_with_one_batch_per_epoch(tmp_path):
    set_seed(0)
    learn = tsam_learner(tiny_dls(n_train=8, bs=8), arch="resnet10t", n_frames=4, audio=False, progress_bars=False)
    fit_run(learn, start_run("one", dict(epochs=3), runs_root=tmp_path), 3, 1e-3, seed=0)
    lines = {ln.get_label(): ln for ln in plot_learning_curve(learn).lines}
    assert list(lines["train, at the epoch's end"].get_xdata()) == [1, 2, 3]   # fastai's plot kept 1 point of 3
    assert len(lines["valid, whole validation set"].get_xdata()) == 3


# ------------------------------------------------------------------------------ refusals before the run folder
def _manifest(tmp_path, n_classes=2, gone=0, name="m.csv"):
    """A manifest of 3 clips per class (2 train, 1 valid) whose files exist, but the first ``gone`` ones; the files
    are empty: these tests stop before anything is loaded."""
    import pandas as pd

    from tsamlib.data.manifest import COLUMNS, write_manifest
    recs = []
    for k in range(3 * n_classes):
        path = tmp_path / f"{Path(name).stem}-clips" / f"{k}.mp4"
        path.parent.mkdir(exist_ok=True)
        if k >= gone:
            path.touch()
        recs.append(dict(path=str(path), label=k % n_classes, label_name=f"c{k % n_classes}",
                         split="valid" if k >= 2 * n_classes else "train", n_frames=12, fps=12.0, duration=1.0,
                         has_audio=False, problem=""))
    return write_manifest(pd.DataFrame(recs, columns=COLUMNS), tmp_path / name)


def _cfg(tmp_path, manifest, **settings):
    from tsamlib.config import RunConfig
    return RunConfig(dataset=str(manifest), runs_root=str(tmp_path / "runs"), arch="resnet10t", n_frames=4,
                     img_size=32, resize=36, **settings)


def test_one_class_or_no_file_on_disk_is_refused_before_the_run_folder(tmp_path):
    from tsamlib.data.manifest import ManifestError
    from tsamlib.training.run import begin_run
    with pytest.raises(ManifestError, match=r"the usable train rows hold 1 class \(label 0 'c0', 2 rows\)"):
        begin_run(_cfg(tmp_path, _manifest(tmp_path, n_classes=1)))
    with pytest.raises(ManifestError, match=r"no usable train rows on disk: all 4 files are missing \(.*0\.mp4"):
        begin_run(_cfg(tmp_path, _manifest(tmp_path, gone=6, name="gone.csv")))
    assert not (tmp_path / "runs").exists()   # nothing written


def test_some_files_missing_on_disk_are_said_in_one_line_and_the_run_starts(tmp_path, capsys):
    from tsamlib.training.run import begin_run
    run, _ = begin_run(_cfg(tmp_path, _manifest(tmp_path, gone=1), run_id="r"))
    run.close()
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert notes == [f"note: 1 file of {tmp_path / 'm.csv'} is missing on disk (train 1 of 4: "
                     f"{tmp_path / 'm-clips' / '0.mp4'}); training replaces a missing clip by the next one that loads, "
                     "validation leaves it out, both counted in the run's metrics.json."]
    assert (tmp_path / "runs" / "r" / "params.json").is_file()


def test_resume_of_a_run_that_is_not_there_is_refused(tmp_path, monkeypatch):
    """resume=True used to start a new run in silence when there was none to resume (train(), the CLI and notebook
    03 alike); a run that is there still resumes; every process of a launch refuses alike."""
    import tsamlib
    import tsamlib.training.run as training_run
    manifest = _manifest(tmp_path)
    with pytest.raises(FileNotFoundError, match=f"no run 'nope' to resume under {tmp_path / 'runs'}; drop "
                                                r"resume=True \(--resume\) to start it"):
        tsamlib.train(_cfg(tmp_path, manifest, run_id="nope", resume=True))
    with pytest.raises(FileNotFoundError, match=r"resume=True \(--resume\) needs the run_id \(--run-id\)"):
        tsamlib.train(_cfg(tmp_path, manifest, resume=True))
    monkeypatch.setattr(training_run, "rank_distrib", lambda: 1)   # a second process of a launch
    with pytest.raises(FileNotFoundError, match="no run 'nope' to resume"):
        training_run.setup_training(_cfg(tmp_path, manifest, run_id="nope", resume=True))
    assert not (tmp_path / "runs").exists()
    run = start_run("cut", _cfg(tmp_path, manifest).settings(), runs_root=tmp_path / "runs")
    run.log_epoch(dict(epoch=1))   # unfinished: one epoch recorded
    run.close()
    training_run.check_resume(_cfg(tmp_path, manifest, run_id="cut", resume=True))   # there: no refusal
