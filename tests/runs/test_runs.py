"""Run configuration and run lifecycle: one typed definition, checks before any folder exists, one owner per run
folder (real processes), runs that trained nothing never block their id, listing and finding runs."""
import ast
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import fields
from pathlib import Path

import pandas as pd
import papermill as pm
import pytest

from tsamlib.config import RunConfig, auto_run_id, config_diff
from tsamlib.data.datasets import dataset_manifest
from tsamlib.data.manifest import ManifestError
from tsamlib.runs.folder import (RunLock, RunLockedError, is_running, load_run, read_metrics, resolve_run, run_state,
                                 runs_table, start_run, unique_run_id)
from tsamlib.training.run import begin_run

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------- configuration
def test_notebook_03_parameters_are_the_run_config():
    """The literal parameters cell of 03 declares exactly RunConfig's fields, with RunConfig's defaults."""
    declared = pm.inspect_notebook(str(ROOT / "notebooks" / "03_train.ipynb"))
    nb = {k: ast.literal_eval(v["default"]) for k, v in declared.items() if k != "PAPERMILL_OUTPUT_PATH"}
    assert nb == {f.name: f.default for f in fields(RunConfig)}


@pytest.mark.parametrize("bad,name", [(dict(epochs=0), "epochs"), (dict(lr=-0.01), "lr"),
                                      (dict(batch_size=0), "batch_size"), (dict(n_frames=0), "n_frames"),
                                      (dict(recipe="sgd"), "recipe"), (dict(shift_depth=8), "shift_depth"),
                                      (dict(lr_decay=[[0.1, 2]]), "lr_decay"), (dict(epochs="3"), "epochs"),
                                      (dict(resize=32, img_size=64), "resize"), (dict(run_id="../x"), "run_id")])
def test_bad_settings_raise_naming_the_setting(bad, name):
    with pytest.raises(ValueError, match=name):
        RunConfig(**bad)


def test_values_are_normalised_once():
    cfg = RunConfig(recipe="paper", lr_decay=((0.2, 5),), lr=1)
    assert cfg.lr_decay == [[0.2, 5]] and isinstance(cfg.lr, float)
    assert config_diff(cfg.settings(), json.loads(json.dumps(cfg.settings()))) == {}
    assert config_diff({"lr": 0.1}, {"lr": 0.2}) == {"lr": (0.1, 0.2)}
    assert config_diff({"audio": 1}, {"audio": True}) == {"audio": (1, True)}  # a bool is not an int
    with pytest.raises(ValueError, match="unknown settings"):
        RunConfig.from_params(dict(epoch=3))


def test_auto_run_id_is_readable_and_unique(tmp_path):
    when = time.mktime((2026, 11, 26, 20, 13, 55, 0, 0, -1))
    assert auto_run_id(RunConfig(shift_depth=4), when) == "k4-fdiv8-8f-rgb-20261126-201355"
    rid = auto_run_id(RunConfig(audio=True, epochs=5, dataset="mini-kinetics-av"), when)
    assert rid == "k1-fdiv8-8f-av-mini-kinetics-av-ep5-20261126-201355"
    cfg = RunConfig(runs_root=str(tmp_path))
    first = unique_run_id(cfg, tmp_path)
    (tmp_path / first).mkdir()
    assert unique_run_id(cfg, tmp_path) in (f"{first}-2", auto_run_id(cfg))  # the clock may have moved on


def test_shift_direction_is_a_checked_model_setting_with_a_default():
    """``shift_direction``: "bidirectional" by default, "causal" on request (a model setting, recorded, in the run
    id); anything else refused naming the choices; records from before the setting load as bidirectional."""
    with pytest.raises(ValueError, match=r"shift_direction='forward': choose one of \['bidirectional', 'causal'\]"):
        RunConfig(shift_direction="forward")
    causal = RunConfig(shift_direction="causal", shift_depth=2)
    assert causal.model_kwargs()["shift_direction"] == "causal" and causal.settings()["shift_direction"] == "causal"
    assert RunConfig().model_kwargs()["shift_direction"] == "bidirectional"
    when = time.mktime((2026, 11, 26, 20, 13, 55, 0, 0, -1))
    assert auto_run_id(causal, when) == "k2-fdiv8-8f-rgb-causal-20261126-201355"
    old = {k: v for k, v in RunConfig().settings().items() if k != "shift_direction"}   # recorded before it existed
    assert RunConfig.of(old).shift_direction == "bidirectional" and config_diff(old, RunConfig()) == {}
    assert config_diff(old, causal.replace(shift_depth=1)) == {"shift_direction": ("bidirectional", "causal")}


# ------------------------------------------------------------------------------------------------- lifecycle
@pytest.fixture(scope="module")
def manifest():
    return dataset_manifest("default", build_missing=True)


def _bad_manifest(tmp_path, manifest, change):
    df = pd.read_csv(manifest, keep_default_na=False)
    df = change(df)
    out = tmp_path / "bad.csv"
    df.to_csv(out, index=False)
    return out


@pytest.mark.parametrize("change,what", [
    (lambda d: d.assign(label=d.label.where(d.index != 0, 9)), "label 9"),
    (lambda d: d.assign(label=d.label.where(d.index != 0, -1)), "negative"),
    (lambda d: pd.concat([d, d.iloc[:3]]), "duplicate rows"),
    (lambda d: d.assign(split=d.split.replace("train", "training")), "training"),
    (lambda d: d.iloc[0:0], "no rows"),
])
def test_a_failed_start_writes_nothing(tmp_path, manifest, change, what):
    bad = _bad_manifest(tmp_path, manifest, change)
    cfg = RunConfig(dataset=str(bad), run_id="r", runs_root=str(tmp_path / "runs"))
    with pytest.raises(ManifestError, match=what):
        begin_run(cfg)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("bad, what", [
    (dict(arch="resnet999"), r"arch='resnet999' is not a timm model"),
    (dict(f_div=1000), r"too few for f_div=1000"),
    (dict(pretrained="missing.pth"), r"'missing.pth' does not exist"),
])
def test_model_settings_are_checked_before_the_run_folder(tmp_path, manifest, bad, what):
    cfg = RunConfig(dataset=str(manifest), run_id="r", runs_root=str(tmp_path / "runs"), **bad)
    with pytest.raises((ValueError, FileNotFoundError), match=what):
        begin_run(cfg)
    assert not (tmp_path / "runs").exists()


def test_a_run_that_fails_to_start_is_not_left_locked(tmp_path, manifest, capsys, monkeypatch):
    """A start that fails after the folder exists (here: the Learner cannot be built) releases its lock, so the
    next start says nothing about a stale lock. A weights file that is not a checkpoint fails before any folder."""
    import tsamlib.training.run as training_run
    weights = tmp_path / "w.pth"
    weights.write_text("not weights")
    cfg = RunConfig(dataset=str(manifest), run_id="r", runs_root=str(tmp_path / "runs"), pretrained=str(weights),
                    arch="resnet10t", n_frames=4, img_size=32, resize=36)
    with pytest.raises(ValueError, match="cannot be read weights-only"):
        training_run.setup_training(cfg)
    assert not (tmp_path / "runs" / "r").exists()   # refused before the run folder

    def broken_learner(*args, **kwargs):
        raise ValueError("no learner today")

    monkeypatch.setattr(training_run, "tsam_learner", broken_learner)
    cfg = cfg.replace(pretrained=None)
    with pytest.raises(ValueError, match="no learner today"):
        training_run.setup_training(cfg)
    assert (tmp_path / "runs" / "r" / ".lock").read_text() == ""   # released: nobody owns the folder
    with pytest.raises(ValueError, match="no learner today"):
        training_run.setup_training(cfg)
    assert "stale lock" not in capsys.readouterr().out


def test_a_run_that_trained_nothing_never_blocks_its_id(tmp_path, capsys):
    start_run("r", dict(a=1), runs_root=tmp_path).close()
    assert run_state(tmp_path / "r") == "empty"
    run = start_run("r", dict(a=2), runs_root=tmp_path)  # other settings, no resume: starts afresh
    assert "starting afresh" in capsys.readouterr().out and run.params == dict(a=2)
    run.log_epoch(dict(epoch=0))
    run.close()
    with pytest.raises(FileExistsError, match="resume=True"):
        start_run("r", dict(a=2), runs_root=tmp_path)
    with pytest.raises(ValueError, match="different settings"):
        start_run("r", dict(a=3), runs_root=tmp_path, resume=True)
    start_run("r", dict(a=3), runs_root=tmp_path, overwrite=True).close()  # unfinished: moved aside too
    assert len(list(tmp_path.glob("r.old-*"))) == 1 and run_state(tmp_path / "r") == "empty"


def test_resume_with_the_same_tuple_settings(tmp_path):
    cfg = RunConfig(recipe="paper", lr_decay=[(0.2, 5)], run_id="t", runs_root=str(tmp_path))
    run = start_run("t", cfg.settings(), runs_root=tmp_path)
    run.log_epoch(dict(epoch=0))
    run.close()
    again = RunConfig(recipe="paper", lr_decay=((0.2, 5),), run_id="t", runs_root=str(tmp_path), resume=True)
    resumed = start_run("t", dict(again.settings(), lr_decay=((0.2, 5),)), runs_root=tmp_path, resume=True)
    resumed.close()   # tuples and lists are the same setting: the run is continued, its epoch kept
    assert resumed.metrics["epochs"] == [dict(epoch=0)] and len(resumed.metrics["resumed_at"]) == 1
    assert json.loads((tmp_path / "t" / "params.json").read_text())["lr_decay"] == [[0.2, 5]]
    with pytest.raises(ValueError, match=r"cannot resume .* different settings .*lr_decay"):   # another run
        start_run("t", dict(again.settings(), lr_decay=((0.1, 5),)), runs_root=tmp_path, resume=True)


def test_finished_run_without_weights(tmp_path):
    run = start_run("f", dict(a=1), runs_root=tmp_path)
    run.finish({})
    run.close()
    assert run_state(tmp_path / "f") == "finished-no-weights"  # as a fresh clone has it
    with pytest.raises(FileExistsError, match="weights"):
        start_run("f", dict(a=1), runs_root=tmp_path)
    (tmp_path / "f" / "checkpoints").mkdir()
    (tmp_path / "f" / "checkpoints" / "model.pth").write_bytes(b"x")
    assert run_state(tmp_path / "f") == "finished"


# ---------------------------------------------------------------------------------------- one owner (processes)
HOLDER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from tsamlib.runs import start_run
    root, ids, barrier, hold = Path(sys.argv[1]), sys.argv[2].split(","), sys.argv[3], float(sys.argv[4])
    for run_id in ids:
        if barrier:  # both processes meet here before each race, however slowly they started
            (Path(barrier) / f"{run_id}-{os.getpid()}").touch()
            while len(list(Path(barrier).glob(f"{run_id}-*"))) < 2:
                time.sleep(0.001)
        try:
            run = start_run(run_id, {"a": 1}, runs_root=root)
        except Exception as e:
            print("REFUSED", type(e).__name__, str(e).replace(chr(10), " "), flush=True)
            continue
        print("OWNER", flush=True)
        time.sleep(hold)
        run.close()
""")


def _holder(tmp_path, run_ids, hold, barrier=""):
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    return subprocess.Popen([sys.executable, str(script), str(tmp_path), run_ids, str(barrier), str(hold)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))


def test_two_processes_racing_on_one_run_id(tmp_path):
    """Three races (one run id each) between the same two processes, which meet at a barrier before each: every
    race has exactly one owner, and the other process is refused naming it."""
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [_holder(tmp_path, "race0,race1,race2", 2.0, barrier) for _ in range(2)]
    outs = [[line for line in p.communicate(timeout=120)[0].splitlines() if line.startswith(("OWNER", "REFUSED"))]
            for p in procs]
    assert [len(o) for o in outs] == [3, 3], outs
    for trial in range(3):
        lines = [o[trial] for o in outs]
        owners = [o for o in lines if o.startswith("OWNER")]
        refused = [o for o in lines if o.startswith("REFUSED RunLockedError")]
        assert len(owners) == 1 and len(refused) == 1, outs
        assert "in use by pid" in refused[0]


def test_a_second_process_is_refused_and_a_dead_owners_lock_is_taken_over(tmp_path, capsys):
    holder = _holder(tmp_path, "held", 60)
    try:
        assert holder.stdout.readline().startswith("OWNER")
        with pytest.raises(RunLockedError, match=f"in use by pid {holder.pid}"):
            start_run("held", {"a": 1}, runs_root=tmp_path, resume=True)
        with pytest.raises(RunLockedError, match="training since"):  # what evaluate_views takes to write
            RunLock(tmp_path / "held", what="evaluation").acquire()
        assert is_running(tmp_path / "held") and runs_table(tmp_path).set_index("run_id").loc["held", "status"] == \
            "running"   # not "empty" or "unfinished": a live process owns it
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    run = start_run("held", {"a": 1}, runs_root=tmp_path)  # trained nothing: starts afresh
    assert f"taking over a stale lock (pid {holder.pid}" in capsys.readouterr().out
    run.close()
    assert (tmp_path / "held" / ".lock").read_text() == ""  # released: nobody owns it
    assert not is_running(tmp_path / "held") and runs_table(tmp_path).loc[0, "status"] == "empty"


# ----------------------------------------------------------------------------------------------- finding runs
def test_runs_table_and_resolve_run(tmp_path):
    cfg = RunConfig(shift_depth=2, runs_root=str(tmp_path))
    run = start_run("one", cfg.settings(), runs_root=tmp_path)
    run.finish(dict(top1=0.75))
    run.close()
    df = runs_table(tmp_path)
    assert list(df.columns[:12]) == ["run_id", "dataset", "preset", "n_frames", "shift_depth", "f_div", "audio",
                                     "arch", "epochs", "status", "top1", "date"]
    assert df.loc[0, "preset"] == "tsamlib" and df.loc[0, "shift_pad"] == "zero"   # recorded resolved
    assert df.loc[0, "run_id"] == "one" and df.loc[0, "shift_depth"] == 2 and df.loc[0, "top1"] == 0.75
    assert resolve_run("one", tmp_path) == tmp_path / "one" and resolve_run(tmp_path / "one") == tmp_path / "one"
    loaded = load_run("one", tmp_path)   # a run is its folder wherever a path is taken
    assert Path(loaded) == tmp_path / "one" and loaded.metrics["final"] == dict(top1=0.75)
    with pytest.raises(FileNotFoundError, match="tsamlib runs"):
        resolve_run("two", tmp_path)
    out = subprocess.run([sys.executable, "-m", "tsamlib", "runs", "--runs-root", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "one" in out.stdout and "0.750" in out.stdout, out.stderr
    assert "FutureWarning" not in out.stderr  # quiet by default


def test_runs_lists_an_unreadable_run_and_goes_on(tmp_path):
    ok = start_run("ok", RunConfig().settings(), runs_root=tmp_path)
    ok.close()
    for name, text in (("list", "[1, 2]"), ("broken", "{not json")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "params.json").write_text(text)
    df = runs_table(tmp_path).set_index("run_id")
    assert df.loc["ok", "status"] == "empty"
    assert df.loc["list", "status"] == "unreadable: params.json holds a JSON list, not an object"
    assert df.loc["broken", "status"].startswith("unreadable: ")
    out = subprocess.run([sys.executable, "-m", "tsamlib", "runs", "--runs-root", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "unreadable" in out.stdout and "Traceback" not in out.stderr, out.stderr


def test_a_run_id_too_long_for_a_folder_name_is_refused():
    with pytest.raises(ValueError, match=r"run_id is 300 bytes long; at most 235"):
        RunConfig(run_id="r" * 300)
    assert RunConfig(run_id="r" * 235).run_id == "r" * 235


def test_a_record_written_before_epochs_counted_from_1_reads_counted_from_1(tmp_path):
    """One convention for every reader: an older metrics.json (epochs from 0, no ``epochs_from``) is read with its
    epoch numbers raised by one; a new one is read as written."""
    run = start_run("r", dict(a=1), runs_root=tmp_path)
    assert run.metrics["epochs_from"] == 1
    run.close()
    old = dict(run_id="o", finished=True, epochs=[dict(epoch=0, top1=0.1), dict(epoch=1, top1=0.2)],
               final=dict(top1=0.2, best_epoch=1, resumed_from_epoch=1))
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "params.json").write_text("{}")
    (tmp_path / "o" / "metrics.json").write_text(json.dumps(old))
    got = load_run("o", runs_root=tmp_path).metrics
    assert [r["epoch"] for r in got["epochs"]] == [1, 2] and got["epochs_from"] == 1
    assert (got["final"]["best_epoch"], got["final"]["resumed_from_epoch"]) == (2, 2)
    assert read_metrics(tmp_path / "o" / "metrics.json") == got           # the file itself is left as it was
    new = dict(old, epochs_from=1)
    (tmp_path / "o" / "metrics.json").write_text(json.dumps(new))
    assert read_metrics(tmp_path / "o" / "metrics.json")["epochs"] == new["epochs"]
    assert read_metrics(tmp_path / "none.json") == {}
