"""Command-line values out of range end at argument parsing: exit code 2, one line naming the option and the range,
nothing run, nothing written."""
import re
from pathlib import Path

import pytest

from tsamlib.__main__ import main
from tsamlib.data.synthetic import make_synthetic_dataset


@pytest.mark.parametrize("argv, option, says", [
    (["evaluate", "RUN", "--n-clips", "0"], "--n-clips", "0 is out of range: allowed 1 or more"),
    (["evaluate", "RUN", "--batch-size", "0"], "--batch-size", "allowed 1 or more"),
    (["evaluate", "RUN", "--num-workers", "-1"], "--num-workers", "allowed 0 or more"),
    (["predict", "v.mp4", "--run", "RUN", "--top", "0"], "--top", "allowed 1 or more"),
    (["predict", "v.mp4", "--run", "RUN", "--n-clips", "two"], "--n-clips", "'two' is not an integer"),
    (["prepare", "m.csv", "--out", "OUT", "--short-side", "-5"], "--short-side", "allowed 0 or more"),
    (["prepare", "m.csv", "--out", "OUT", "--workers", "-1"], "--workers", "allowed 1 or more"),
    (["prepare", "m.csv", "--out", "OUT", "--quality", "101"], "--quality", r"allowed \[1, 100\]"),
    (["index", "folder", "ROOT", "--out", "o.csv", "--valid-fraction", "1.5"], "--valid-fraction",
     r"allowed \(0, 1\)"),
    (["index", "folder", "ROOT", "--out", "o.csv", "--workers", "0"], "--workers", "allowed 1 or more"),
    (["synth", "--out", "OUT", "--n-per-class", "0"], "--n-per-class", "allowed 1 or more"),
    (["synth", "--out", "OUT", "--fps", "0"], "--fps", r"allowed \(0, 240\]"),
    (["synth", "--out", "OUT", "--fps", "-5"], "--fps", r"allowed \(0, 240\]"),
    (["synth", "--out", "OUT", "--size", "0", "0"], "--size", r"allowed \[8, 4096\]"),
    (["synth", "--out", "OUT", "--seconds", "nan"], "--seconds", "out of range"),
])
def test_out_of_range_values_are_refused_at_parsing(argv, option, says, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert e.value.code == 2 and f"argument {option}" in err
    assert re.search(says, err), err
    assert list(tmp_path.iterdir()) == []   # nothing written


@pytest.mark.parametrize("bad", [dict(n_per_class=0), dict(fps=-5), dict(size=(0, 0)), dict(seconds=0)])
def test_make_synthetic_dataset_refuses_what_it_used_to_replace_by_defaults(tmp_path, bad):
    with pytest.raises(ValueError, match=f"{list(bad)[0]}.*must be positive"):
        make_synthetic_dataset(tmp_path / "d", **bad)
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("argv, says", [
    (["notebooks", "-p", "shift_dept", "4"], "-p shift_dept: no notebook of 01_build_datasets, 02_visualize, "
                                             "03_train, 04_evaluate has this parameter; did you mean shift_depth?"),
    (["notebooks", "--only", "99"], "--only 99 names no notebook: choose among 01_build_datasets"),
    (["notebooks", "--only", "04", "-p", "epochs", "2"], "-p epochs: no notebook of 04_evaluate has this parameter"),
])
def test_notebook_runner_refuses_what_would_run_nothing_or_the_defaults(argv, says, capsys, monkeypatch):
    import tsamlib.cli.notebooks as runner
    monkeypatch.setattr(runner, "run_notebook", lambda *a, **k: pytest.fail("a notebook ran"))
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().startswith(f"error: {says}")


def test_a_latin1_manifest_is_named_with_its_line_and_the_fix(tmp_path, capsys):
    csv = tmp_path / "latin1.csv"
    csv.write_bytes("path,label,label_name,split,n_frames,fps,duration,has_audio,problem\n"
                    "/videos/café.mp4,0,café,train,8,8.0,1.0,True,\n".encode("latin-1"))
    assert main(["prepare", str(csv), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: Manifest {csv} is not UTF-8: line 2 holds byte 0xe9 (b'/videos/caf\\xe9.mp4")
    assert err.endswith("save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8 OLD.csv > NEW.csv`).")
    assert not (tmp_path / "out").exists()


def test_index_on_a_folder_without_videos_says_so_and_writes_nothing(tmp_path, capsys):
    for c in ("cats", "dogs"):
        (tmp_path / "root" / c).mkdir(parents=True)
        (tmp_path / "root" / c / "notes.txt").write_text("not a video")
    assert main(["index", "folder", str(tmp_path / "root"), "--out", str(tmp_path / "m.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: No videos found under {tmp_path / 'root'} (looked for .mp4") and "2 class" in err
    assert not (tmp_path / "m.csv").exists()


@pytest.mark.parametrize("command", [["index", "folder"], ["index", "kinetics400"], ["index", "list"],
                                     ["index", "something-v1"], ["synth"], ["notebooks"], ["runs"], ["predict"],
                                     ["evaluate"], ["prepare"], ["train"]])
def test_every_option_has_a_plain_help_text(command):
    """--help: every option explained, no reST markup (backticks) in what a terminal shows."""
    from tsamlib.__main__ import build_parser
    parser = build_parser()
    for name in command:   # walk down to the subcommand's parser
        parser = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices[name]
    for action in parser._actions:
        if action.dest != "help":
            assert action.help, f"{' '.join(command)}: {action.option_strings or action.dest} has no help"
    text = parser.format_help()
    assert "`" not in text, text


def test_publishing_a_notebook_without_run_id_is_not_refused(monkeypatch):
    """--publish adds run_id/overwrite for notebook 03; for 05 alone they are not the user's typo."""
    import tsamlib.cli.notebooks as runner
    ran = []
    monkeypatch.setattr(runner, "run_notebook", lambda name, params, *a, **k: ran.append((name, params)) or Path("x"))
    assert main(["notebooks", "--only", "05", "--publish", "-p", "run", "False"]) == 0
    assert ran == [("05_reproduce_tables", {"run": False})]
    ran.clear()   # the reference run "demo" is 03's and 04's: 07 (which declares run_id too) gets none of it
    assert main(["notebooks", "--only", "04", "07", "--publish"]) == 0
    assert ran == [("04_evaluate", {"run_id": "demo"}), ("07_online", {})]


def test_publishing_notebook_03_trains_the_reference_run_afresh(monkeypatch, tmp_path, capsys):
    """The published 03 shows a fresh run "demo", never a folder moved aside (results/runs/demo.old-...)."""
    import tsamlib.cli.notebooks as runner
    old = tmp_path / "demo"
    (old / "checkpoints").mkdir(parents=True)
    (old / "metrics.json").write_text('{"finished": true}')
    seen = []
    monkeypatch.setattr(runner, "run_notebook", lambda name, params, *a, **k: seen.append(old.exists()) or Path("x"))
    runner.run_pipeline(["03"], {"runs_root": str(tmp_path)}, out_dir=tmp_path / "out", publish=True)
    assert seen == [False] and not list(tmp_path.glob("demo.old-*"))
    assert "is trained again" in capsys.readouterr().out


def test_train_shift_direction_flag(tmp_path, capsys):
    """``--shift-direction causal`` reaches the run's settings; a bad value ends in one line naming the choices,
    exit code 2 and nothing written."""
    from tsamlib.__main__ import build_parser
    from tsamlib.cli.train import _settings
    from tsamlib.config import RunConfig
    args = build_parser().parse_args(["train", "--shift-direction", "causal", "--shift-depth", "2"])
    cfg = RunConfig.from_params(_settings(args))
    assert cfg.shift_direction == "causal" and cfg.model_kwargs()["shift_direction"] == "causal"
    train = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction").choices["train"]
    assert "--shift-direction {bidirectional,causal}" in train.format_help()
    assert main(["train", "--shift-direction", "forward", "--runs-root", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: shift_direction='forward': choose one of ['bidirectional', 'causal']."]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("argv, what", [
    (["predict", "v.mp4", "--run", "demo", "--rate", "5"], "--rate does not apply to a clip prediction"),
    (["predict", "v.mp4", "--run", "demo", "--stream", "--n-clips", "3"], "--n-clips does not apply to --stream"),
    (["prepare", "m.csv", "--out", "o", "--layout", "authors", "--height", "99999"], "4320"),
    (["prepare", "m.csv", "--out", "o", "--fps", "inf"], "at most 1000"),
    (["prepare", "m.csv", "--out", "o", "--mels", "none", "tsamlib:64"], "'none' stands alone"),
    (["export", "demo", "--onnx", "m.onnx", "--atol", "inf"], "--atol"),
])
def test_options_that_would_be_ignored_or_absurd_are_refused(argv, what, capsys, tmp_path):
    (tmp_path / "m.csv").write_text("path,label\n")
    try:
        rc = main([a.replace("m.csv", str(tmp_path / "m.csv")) for a in argv])
    except SystemExit as e:
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2 and what in err and "Traceback" not in err, err


def _config(tmp_path, text):
    path = tmp_path / "deep.json"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("argv, says", [
    (["--config", "{deep}"], "is nested too deeply to be read: a config is a flat JSON object of settings"),
    (["--config", "[list]"], "holds a JSON array, not an object of settings: a config is a flat JSON object"),
    (["--config", "number"], "holds a JSON number, not an object of settings: a config is a flat JSON object"),
    (["--config", "lr_decay"], "'lr_decay' is nested 300 levels deep: a config is a flat JSON object of settings"),
    (["--run-id", "nope", "--resume"], "error: no run 'nope' to resume under {runs}; drop resume=True (--resume) to "
                                       "start it"),
])
def test_train_refuses_a_config_that_is_not_settings_or_a_resume_of_nothing(argv, says, tmp_path, capsys):
    """A config nested 100000 levels deep ended in a RecursionError traceback from json; a value nested a few
    hundred levels (as deep as json reads, which depends on the stack) in one from RunConfig's checks: any value
    deeper than lr_decay's [[factor, epoch], ...] is refused. --resume of a run that is not there started a new
    run in silence."""
    texts = {"{deep}": '{"a": ' * 100_000 + "1" + "}" * 100_000, "[list]": "[1, 2]", "number": "5",
             "lr_decay": '{"lr_decay": ' + "[" * 300 + "]" * 300 + "}"}
    argv = [_config(tmp_path, texts[a]) if a in texts else a for a in argv]
    assert main(["train", *argv, "--runs-root", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and says.format(runs=tmp_path / "runs") in err[0], err
    assert not (tmp_path / "runs").exists()   # nothing written


def test_train_lr_decay_flag_nested_too_deeply_is_refused_at_parsing(capsys):
    for text, says in (("[" * 5000 + "]" * 5000, "nested too deeply"), ("[[[0.1, 2]]]", "nested 3 levels deep")):
        with pytest.raises(SystemExit) as e:
            main(["train", "--lr-decay", text])
        err = capsys.readouterr().err
        assert e.value.code == 2 and f"argument --lr-decay: {says}: a list of [factor, epoch] pairs" in err, err


def test_train_on_one_class_is_refused_before_the_run_folder(tmp_path, capsys):
    """Every row of one label trained and reported top-1 1.0000."""
    import pandas as pd

    from tsamlib.data.manifest import COLUMNS, write_manifest
    clips = tmp_path / "clips"
    clips.mkdir()
    recs = [dict(path=str(clips / f"{k}.mp4"), label=0, label_name="only", split="valid" if k == 2 else "train",
                 n_frames=12, fps=12.0, duration=1.0, has_audio=False, problem="") for k in range(3)]
    for r in recs:
        Path(r["path"]).touch()
    csv = write_manifest(pd.DataFrame(recs, columns=COLUMNS), tmp_path / "one_class.csv")
    assert main(["train", "--dataset", str(csv), "--runs-root", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: Manifest {csv} has 1 problem:") and "Traceback" not in err
    assert "the usable train rows hold 1 class (label 0 'only', 2 rows): training needs at least 2 classes" in err
    assert not (tmp_path / "runs").exists()
