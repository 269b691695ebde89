"""Grids of the report's experiments, the resumable papermill runner, and tables rendered from fake run folders."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from tsamlib.config import PRESET_SWITCHES
from tsamlib.report import experiments as ex
from tsamlib.report import tables as tb
from tsamlib.runs.fileio import repo_root

SHARED_PAPER = repo_root().parent / "shared" / "paper"


# ------------------------------------------------------------------------------------------------ grids
def test_eighteen_rows_and_tsm_settings():
    assert len(ex.TABLE1_ROWS) == 10 and len(ex.TABLE2_ROWS) == 8
    for r in ex.TABLE1_ROWS + ex.TABLE2_ROWS:
        if r.method == "TSM":
            assert (r.shift_depth, r.f_div, r.n_insert, r.audio) == (1, 8, 1, False)
        else:
            assert (r.f_div, r.n_insert, r.m_insert) == (4, 2, 0)
    assert all(r.shift_depth == 4 for r in ex.TABLE1_ROWS if r.method == "TSAM")
    assert [r.shift_depth for r in ex.TABLE2_ROWS] == [1, 1, 1, 2, 3, 4, 5, 4]
    assert len({r.key for r in ex.TABLE1_ROWS}) == 10 and len({r.key for r in ex.TABLE2_ROWS}) == 8


@pytest.mark.skipif(not SHARED_PAPER.is_dir(), reason="../shared/paper not present")
def test_paper_numbers_match_published_csv():
    t1 = pd.read_csv(SHARED_PAPER / "table1_kinetics400.csv")
    t1 = t1[t1["method"].isin(["TSM", "TSAM"])]
    assert [(m, f, bool(a), p, v) for m, f, a, p, v in t1[["method", "frames", "audio_frames", "pretrained", "top1"]]
            .itertuples(index=False)] == [(r.method, r.frames, r.audio, r.pretrained, r.paper_top1)
                                          for r in ex.TABLE1_ROWS]
    t2 = pd.read_csv(SHARED_PAPER / "table2_something_v1.csv")
    t2 = t2[t2["method"].isin(["TSM", "TSAM"])]
    assert [(m, f, int(k), p, v) for m, f, k, p, v in t2[["method", "frames", "shift_depth", "pretrained", "top1"]]
            .itertuples(index=False)] == [(r.method, r.frames, r.shift_depth, r.pretrained, r.paper_top1)
                                          for r in ex.TABLE2_ROWS]


def test_paper_scale_params_are_the_report_configs():
    g = ex.paper_grid("k400.csv", "ssv1.csv", "k400/model.pth")
    assert len(g) == 18 and all(e.reason is None for e in g)
    k = next(e.params for e in g if e.row.key == "tsam-16-av-in21k")
    assert k == dict(dataset="k400.csv", n_frames=16, audio=True, shift_depth=4, f_div=4, n_insert=2, m_insert=0,
                     shift_direction="bidirectional", pretrained_match="strict",
                     pretrained="in21k", arch="resnet50", img_size=224, resize=256, n_mels=224, flip=True, epochs=50,
                     lr=0.05,
                     recipe="paper", lr_decay=[[0.2, 5], [0.01, 30], [0.002, 45]], batch_size=64, sync_bn=False,
                     channels_last=None,
                     dropout=0.5,
                     num_workers=8, video_backend="auto", seed=0, run_id="table1-paper-tsam-16-av-in21k-s0",
                     resume=False,
                     overwrite=False, runs_root=None, log=None, preset="authors", **PRESET_SWITCHES["authors"])
    assert k["shift_pad"] == "keep" and k["video_norm"] == "none" and k["eval_protocol"] == "authors"
    s = next(e.params for e in g if e.row.key == "tsam-16-k4-k400")
    assert (s["dataset"], s["pretrained"], s["flip"], s["epochs"], s["lr"], s["lr_decay"]) == (
        "ssv1.csv", "k400/model.pth", False, 35, 0.1, [[0.1, 20], [0.01, 30], [0.005, 33]])
    assert next(e.params for e in g if e.row.key == "tsm-8-in1k")["pretrained"] == "in1k"
    assert all(e.params["preset"] == "tsamlib" and e.params["shift_pad"] == "zero"   # the committed mini runs
               for e in ex.mini_grid() if e.params)
    assert set(ex.grid_frame(g)["preset"]) == {"authors"}
    assert set(ex.grid_frame(ex.mini_grid())["preset"]) == {"tsamlib"}
    # without paths: placeholders, reported as not run
    g0 = ex.paper_grid()
    assert all(e.reason and e.reason.startswith("not run: needs <") for e in g0)


def test_mini_rows_are_small_and_honest_about_init():
    g = ex.mini_grid(seeds=(0, 1))
    assert len(g) == 2 * 22                  # the report's 18 rows and the 4 causal rows
    run = [e for e in g if e.params is not None]
    assert len(run) == 2 * 18  # the 4 INet21K rows of Table 1 are not run
    for e in run:
        p = e.params
        assert p["arch"] in ("resnet10t", "resnet18") and p["img_size"] <= 64 and p["epochs"] <= 12
        assert p["recipe"] == "one_cycle" and p["dataset"] in ("mini-kinetics-av", "mini-something")
        assert p["flip"] == (p["dataset"] == "mini-kinetics-av")
        assert "scratch" in e.init_used or "mini-kinetics-av run" in e.init_used
    skipped = [e for e in g if e.params is None]
    assert all(e.row.pretrained == "INet21K" and e.row.table == "table1" and "ImageNet-21K" in e.reason
               for e in skipped)
    transfer = next(e for e in g if e.row.key == "tsam-16-k4-k400" and e.seed == 1)
    assert transfer.params["pretrained"].endswith("table1-mini-tsam-16-av-scratch-s1/checkpoints/model.pth")
    order = [e.params["run_id"] for e in run]
    assert order.index("table1-mini-tsam-16-av-scratch-s1") < order.index("table2-mini-tsam-16-k4-k400-s1")


def test_run_ids_deterministic():
    a = [e.params["run_id"] for e in ex.mini_grid(seeds=(0, 3)) if e.params]
    b = [e.params["run_id"] for e in ex.mini_grid(seeds=(0, 3)) if e.params]
    assert a == b and len(set(a)) == len(a)
    assert ex.run_id(ex.TABLE2_ROWS[3], "mini", 2) == "table2-mini-tsam-16-k2-scratch-s2"


def test_run_ids_name_the_init_really_used():
    """A mini run trained from scratch never says in1k/in21k; the paper's runs say the report's init."""
    for e in ex.mini_grid(seeds=(0,)) + ex.paper_grid(seeds=(0,)):
        rid = ex.run_id(e.row, e.scale, e.seed)
        if e.params is not None and e.params["pretrained"] is None:
            assert rid.endswith("-scratch-s0") and "in1k" not in rid and "in21k" not in rid, rid
        elif e.params is not None and e.params["pretrained"] in ("in1k", "in21k"):
            assert rid.endswith(f"-{e.params['pretrained']}-s0"), rid
        elif e.params is not None:                                       # started from a Kinetics checkpoint
            assert rid.endswith("-k400-s0") and e.row.pretrained == "Kinetics400", rid
    assert ex.run_id(ex.TABLE2_ROWS[3], "paper", 0) == "table2-paper-tsam-16-k2-in21k-s0"


# ------------------------------------------------------------------------------------------------ runner
def _write_run(root: Path, params: dict, top1: float | None, finished: bool = True, run_id: str | None = None):
    d = root / (run_id or params["run_id"])
    d.mkdir(parents=True, exist_ok=True)
    (d / "params.json").write_text(json.dumps(params))
    m = dict(finished=finished, epochs=[], environment={})
    if finished:
        m["final"] = dict(top1=top1, top5=1.0, valid_loss=0.5, train_clips_per_s=10.0)
    (d / "metrics.json").write_text(json.dumps(m))
    return d


def test_run_grid_skip_resume_fail(tmp_path, monkeypatch):
    import papermill
    calls = []

    def fake_execute(nb, out, parameters, cwd, kernel_name, progress_bar):
        assert parameters.pop("PAPERMILL_OUTPUT_PATH") == out and Path(cwd) == repo_root()
        calls.append(dict(parameters))
        if parameters["run_id"].endswith("k3-scratch-s0"):
            raise RuntimeError("boom\nKernel died")
        _write_run(Path(parameters["runs_root"]), parameters, 0.5)
        Path(out).write_text("{}")

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    g = ex.mini_grid(runs_root=str(tmp_path))
    params = [e.params for e in g if e.params]
    done, unfinished = params[0], params[1]
    _write_run(tmp_path, done, 0.9)
    _write_run(tmp_path, unfinished, None, finished=False)  # one epoch trained: resumed
    m = json.loads((tmp_path / unfinished["run_id"] / "metrics.json").read_text())
    (tmp_path / unfinished["run_id"] / "metrics.json").write_text(json.dumps(dict(m, epochs=[dict(epoch=0)])))
    logs = []
    summary = ex.run_grid(g, runs_root=tmp_path, log=logs.append)
    st = dict(zip(summary.run_id, summary.status))
    assert list(summary.columns) == ["run_id", "status", "seconds"] and len(summary) == 22
    assert st[done["run_id"]] == "done" and done["run_id"] not in [c["run_id"] for c in calls]
    assert st[unfinished["run_id"]] == "finished (resumed)"
    assert next(c for c in calls if c["run_id"] == unfinished["run_id"])["resume"] is True
    assert all(c["resume"] is False for c in calls if c["run_id"] != unfinished["run_id"])
    assert st["table2-mini-tsam-16-k3-scratch-s0"].startswith("failed: RuntimeError")
    assert st["table2-mini-tsam-16-k4-scratch-s0"] == "finished"  # the grid went on after the failure
    assert st["table1-mini-tsam-8-av-in21k-s0"].startswith("not run: needs ImageNet-21K")
    # second pass: everything finished is skipped; the failed one is tried again
    calls.clear()
    summary2 = ex.run_grid(g, runs_root=tmp_path, log=logs.append, dry_run=True)
    assert not calls
    st2 = dict(zip(summary2.run_id, summary2.status))
    assert st2["table2-mini-tsam-16-k3-scratch-s0"] == "would run"
    assert sum(s == "done" for s in st2.values()) == 17   # 18 run rows with the 4 causal ones, less the failed
    # a finished run with other parameters is reported, not silently taken as this row
    _write_run(tmp_path, dict(done, epochs=99), 0.9)
    s3 = ex.run_grid([done], runs_root=tmp_path, log=logs.append)
    st3 = dict(zip(s3.run_id, s3.status))
    assert st3[done["run_id"]].startswith("done, but with other parameters ['epochs']")


# ------------------------------------------------------------------------------------------------ tables
def _fake_grid_runs(root: Path, seeds=(0, 1), skip=("table2-mini-tsam-16-k5-scratch",)):
    vals = {}
    for e in ex.mini_grid(seeds=seeds, runs_root=str(root)):
        if e.params is None or any(e.params["run_id"].startswith(s) for s in skip):
            continue
        top1 = 0.10 + 0.01 * len(vals) + 0.02 * e.seed  # distinct from every paper value
        vals[e.params["run_id"]] = top1
        p = dict(e.params, runs_root=str(root))
        _write_run(root, p, top1)
    return vals


def test_render_table_values_spread_and_not_run(tmp_path):
    vals = _fake_grid_runs(tmp_path)
    # a moved-aside copy with another value must be ignored; and a run with other params does not match
    p = json.loads((tmp_path / "table2-mini-tsm-8-scratch-s0" / "params.json").read_text())
    _write_run(tmp_path, p, 0.99, run_id="table2-mini-tsm-8-scratch-s0.old-20240101")
    _write_run(tmp_path, dict(p, run_id="other", lr=1.0), 0.98)
    t2 = tb.render_table("table2", "mini", tmp_path, seeds=(0, 1))
    r = t2[t2["ShiftDepth"].eq("k=1") & t2["Method"].eq("TSM") & t2["Frames"].eq("8")].iloc[0]
    a, b = 100 * vals["table2-mini-tsm-8-scratch-s0"], 100 * vals["table2-mini-tsm-8-scratch-s1"]
    import numpy as np
    assert r["Measured top-1"] == f"{(a + b) / 2:.1f} ± {np.std([a, b], ddof=1):.1f}"
    assert r["n seeds"] == 2 and r["Paper top-1"] == 45.6 and r["Status"] == "measured"
    k5 = t2[t2["ShiftDepth"].eq("k=5")].iloc[0]
    assert k5["Measured top-1"] == "" and k5["Status"].startswith("not run")
    t1 = tb.render_table("table1", "mini", tmp_path, seeds=(0, 1))
    in21 = t1[t1["PreTrained (report)"].eq("INet21K") & t1["Method"].eq("TSAM")]
    assert len(in21) == 4 and all(s.startswith("not run: needs ImageNet-21K") for s in in21["Status"])
    ref = t1[t1["Method"].eq("X3D-M")].iloc[0]
    assert ref["Status"] == "not run: other architecture" and ref["Measured top-1"] == ""
    # no paper number anywhere in the measured column
    for t in (t1, t2):
        paper = {f"{v:.1f}" for v in t["Paper top-1"]}
        measured = [m.split(" ± ")[0] for m in t["Measured top-1"] if m]
        assert measured and not paper & set(measured)
        assert all((m == "") == (n == 0) for m, n in zip(t["Measured top-1"], t["n seeds"]))


def test_shape_top1_column_reads_each_runs_one_clip_evaluation(tmp_path):
    """Table 1 at mini scale: "Shape top-1" counts a prediction right when its shape is (hum/beeps aside), from the
    run's eval_valid_1x1.json; runs without that record are left out of it, not counted as zero."""
    _fake_grid_runs(tmp_path, seeds=(0, 1))
    vocab = ["disk_beeps", "disk_hum", "square_beeps", "square_hum"]
    videos = [dict(label=0, pred=1), dict(label=1, pred=1), dict(label=2, pred=3), dict(label=3, pred=0)]
    for seed in (0, 1):
        rec = dict(vocab=vocab, videos=videos[: 4 - seed])  # seed 0: 3 of 4 right shapes; seed 1: 3 of 3
        (tmp_path / f"table1-mini-tsm-8-scratch-s{seed}" / "eval_valid_1x1.json").write_text(json.dumps(rec))
    assert tb.shape_top1(tmp_path / "table1-mini-tsm-8-scratch-s0") == pytest.approx(0.75)
    assert tb.shape_top1(tmp_path / "table1-mini-tsm-16-scratch-s0") is None
    t1 = tb.render_table("table1", "mini", tmp_path, seeds=(0, 1))
    shapes = dict(zip(t1["Run ids"], t1["Shape top-1"]))
    assert shapes["table1-mini-tsm-8-scratch-s0, table1-mini-tsm-8-scratch-s1"] == "87.5 ± 17.7"
    assert shapes["table1-mini-tsm-16-scratch-s0, table1-mini-tsm-16-scratch-s1"] == ""
    assert "Shape top-1" not in tb.render_table("table2", "mini", tmp_path, seeds=(0, 1)).columns
    assert "Shape top-1" in tb.table_markdown(t1, "table1", "mini")


def test_evaluate_shapes_evaluates_only_finished_table1_runs_without_a_record(tmp_path, monkeypatch):
    import tsamlib.evaluation.views as ev
    _fake_grid_runs(tmp_path, seeds=(0,))
    (tmp_path / "table1-mini-tsm-8-scratch-s0" / "eval_valid_1x1.json").write_text("{}")  # already evaluated
    calls = []
    monkeypatch.setattr(ev, "evaluate_views", lambda path, **kw: calls.append((Path(path).name, kw)) or {"top1": 0.5})
    done = tb.evaluate_shapes("mini", tmp_path, seeds=(0,), log=lambda *a: None)
    assert sorted(done) == sorted(n for n, _ in calls)
    assert {n for n, _ in calls} == {"table1-mini-tsam-8-rgb-scratch-s0", "table1-mini-tsam-8-av-scratch-s0",
                                     "table1-mini-tsm-16-scratch-s0", "table1-mini-tsam-16-rgb-scratch-s0",
                                     "table1-mini-tsam-16-av-scratch-s0"}
    assert all(kw["n_clips"] == 1 and kw["n_crops"] == 1 for _, kw in calls)
    assert tb.evaluate_shapes("paper", tmp_path) == []


def test_write_tables_and_figures(tmp_path):
    _fake_grid_runs(tmp_path / "runs", seeds=(0,))
    tables = tb.write_tables("mini", tmp_path / "runs", tmp_path / "tables")
    md = (tmp_path / "tables" / "table1_kinetics400.md").read_text()
    assert md.startswith("Scale **mini**") and "not run: other architecture" in md
    csv = pd.read_csv(tmp_path / "tables" / "table2_something_v1.csv")
    assert len(csv) == 14 and "Measured top-1" in csv.columns   # 8 report rows, 4 causal, 2 references
    assert csv["Paper top-1"].isna().sum() == 4 and not any(c.startswith("_") for c in csv.columns)
    figs = tb.write_figures(tables, tmp_path / "figures")
    assert [f.name for f in figs] == ["top1_vs_shift_depth.png", "audio_gain.png"]
    assert all(f.stat().st_size > 1000 for f in figs)


def test_empty_runs_root_renders_not_run(tmp_path):
    t = tb.render_table("table1", "mini", tmp_path / "nothing")
    assert (t["Measured top-1"] == "").all() and t["Status"].str.startswith("not run").all()


# ------------------------------------------------------------------------------------------------ notebook
def test_05_notebook_parameters_literal_and_no_outputs():
    nb = nbformat.read(repo_root() / "notebooks" / "05_reproduce_tables.ipynb", as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code"
    names = set()
    for node in ast.parse(tagged[0].source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1
        names.add(node.targets[0].id)
        ast.literal_eval(node.value)
    assert {"scale", "seeds", "run", "runs_root", "kinetics_manifest", "something_manifest",
            "kinetics_checkpoint"} <= names
    for c in nb.cells:
        if c.cell_type == "code":
            assert c.outputs == [] and c.execution_count is None
    assert nb.metadata["kernelspec"]["name"] == "python3"


def test_05_notebook_renders_from_finished_runs(tmp_path):
    """Notebook 05 through papermill with run=False: renders tables and figures from existing runs, trains nothing."""
    import papermill as pm

    runs = tmp_path / "runs"
    entry = next(e for e in ex.mini_grid(runs_root=str(runs)) if e.params is not None)
    folder = runs / entry.params["run_id"]
    folder.mkdir(parents=True)
    (folder / "params.json").write_text(json.dumps(entry.params))
    (folder / "metrics.json").write_text(json.dumps(dict(run_id=entry.params["run_id"], finished=True,
                                                         final=dict(top1=0.625))))
    pm.execute_notebook(str(repo_root() / "notebooks" / "05_reproduce_tables.ipynb"), str(tmp_path / "05.ipynb"),
                        parameters=dict(run=False, runs_root=str(runs), out_dir=str(tmp_path / "out")),
                        kernel_name="python3", progress_bar=False, cwd=str(repo_root()))
    md = (tmp_path / "out" / "tables" / "table1_kinetics400.md").read_text()
    assert "62.5" in md and "not run" in md
    assert (tmp_path / "out" / "figures" / "audio_gain.png").is_file()
    assert not (runs / "table2-mini-tsam-16-k4-scratch-s0").exists()  # nothing was trained


def test_05_builds_the_mini_datasets_only_when_it_runs_the_grid():
    """With run=False notebook 05 re-renders: the cell that builds missing datasets is guarded by `run`."""
    import ast
    nb = json.loads((repo_root() / "notebooks" / "05_reproduce_tables.ipynb").read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    builds = [n for n in ast.walk(ast.parse(code)) if isinstance(n, ast.If)
              and any(isinstance(k, ast.keyword) and k.arg == "build_missing" for k in ast.walk(n))]
    assert builds and all("run" in {x.id for x in ast.walk(n.test) if isinstance(x, ast.Name)} for n in builds)


def test_the_grid_and_its_runs_are_shown_summarised():
    """Notebook 05 shows one line per table row (not 54 per-seed lines with NaN) and the runs counted by status."""
    entries = ex.mini_grid(seeds=(0, 1, 2))
    rows = ex.grid_summary(entries)
    assert len(ex.grid_frame(entries)) == 66 and len(rows) == 22 and set(rows["seeds"]) == {"0, 1, 2"}
    assert not rows.isna().any().any()
    assert rows.loc[rows["pre-training (report)"] == "INet21K", "runs"].str.startswith("not run").sum() == 4
    logs = []
    summary = ex.run_grid(entries, runs_root="/nonexistent-runs-root", dry_run=True, log=logs.append)
    counted = ex.run_summary(summary).set_index("status")["runs"].to_dict()
    assert counted == {"would run": 54, "not run": 12}
    assert logs[-1] == "66 runs: 54 would run, 12 not run"


def test_a_grid_of_finished_runs_prints_one_line(tmp_path, monkeypatch):
    """Finished runs are skipped without a line each; the last line counts every status, failed ids included."""
    entries = [e for e in ex.mini_grid(seeds=(0,), runs_root=str(tmp_path)) if e.params][:3]
    for e in entries[:2]:
        _write_run(tmp_path, e.params, 0.5)
    monkeypatch.setattr(ex.RunConfig, "from_params", lambda p: (_ for _ in ()).throw(ValueError("bad setting")))
    logs = []
    ex.run_grid(entries, runs_root=tmp_path, log=logs.append)
    failed = entries[2].params["run_id"]
    assert logs == [f"{failed}: failed: bad setting",
                    f"3 runs: 2 already finished (skipped), 1 failed: {failed}"]


def test_causal_rows_are_mini_table2_rows_beside_the_bidirectional_ones(tmp_path):
    """Beyond the report: TSAM causal k = 1..4 at mini scale, same settings as the bidirectional k rows but the
    direction; not in the paper grid; rendered with "not in the report" for the paper number."""
    mini = [e for e in ex.mini_grid(seeds=(0,)) if e.row in ex.CAUSAL_ROWS]
    assert [e.row.shift_depth for e in mini] == [1, 2, 3, 4]
    for e in mini:
        twin = next(b for b in ex.mini_grid(seeds=(0,)) if b.row.key == f"tsam-16-k{e.row.shift_depth}-in21k")
        diff = {k for k in e.params if e.params[k] != twin.params[k]}
        assert diff == {"shift_direction", "run_id"} and e.params["shift_direction"] == "causal"
        assert e.params["run_id"] == f"table2-mini-tsam-16-k{e.row.shift_depth}-causal-scratch-s0"
    assert not any(e.row in ex.CAUSAL_ROWS for e in ex.paper_grid())
    t2 = tb.render_table("table2", "mini", tmp_path, seeds=(0,))
    causal = t2[t2["ShiftDepth"].str.endswith("causal")]
    assert len(causal) == 4 and causal["Paper top-1"].isna().all()
    assert all(s.endswith("(not in the report: causal shift)") for s in causal["Status"])


def test_table_markdown_keeps_its_columns_narrow(tmp_path):
    """05 renders Table 1/2 from the markdown: run ids of the seeds in one token, an init's explanation once under
    the table (the CSV keeps both whole)."""
    if not (repo_root() / "results" / "runs").is_dir():
        pytest.skip("no committed runs")
    tb.write_tables("mini", None, tmp_path, seeds=[0, 1, 2])
    md = (tmp_path / "table2_something_v1.md").read_text()
    assert "| table2-mini-tsm-8-scratch-s{0,1,2} |" in md and "table2-mini-tsm-8-scratch-s0," not in md
    assert "| scratch [1] |" in md and md.count("no ImageNet weights offline") == 1
    assert "\n[1] stand-in for ImageNet: no ImageNet weights offline" in md
    csv = pd.read_csv(tmp_path / "table2_something_v1.csv")
    assert csv["Run ids"].str.contains("table2-mini-tsm-8-scratch-s0, table2-mini-tsm-8-scratch-s1").any()


def test_the_grid_logs_every_run_the_same_way_and_compares_in_one_tensorboard(tmp_path, monkeypatch):
    """``track`` reaches every run the grid trains as its ``log`` (bookkeeping: a finished run is still "done");
    grid_tensorboard gives every finished run of the grid its events, once, from metrics.json."""
    pytest.importorskip("tensorboard")
    import papermill
    calls = []

    def fake_execute(nb, out, parameters, cwd, kernel_name, progress_bar):
        calls.append(dict(parameters))
        _write_run(Path(parameters["runs_root"]), parameters, 0.5)
        Path(out).write_text("{}")

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    entries = [e for e in ex.mini_grid(seeds=(0,), runs_root=str(tmp_path)) if e.params][:3]
    _write_run(tmp_path, entries[0].params, 0.9)   # finished before: skipped, whatever the trackers
    summary = ex.run_grid(entries, runs_root=tmp_path, log=lambda s: None, track="tensorboard")
    assert list(summary.status) == ["done", "finished", "finished"]
    assert [c["log"] for c in calls] == ["tensorboard", "tensorboard"]
    bad = ex.run_grid(entries[1:2], runs_root=tmp_path / "other", log=lambda s: None, track="tb", dry_run=True)
    assert bad.status[0].startswith("failed: log='tb': 'tb' is not a tracker")

    logs = []
    assert ex.grid_tensorboard(entries, tmp_path, log=logs.append) == tmp_path
    assert all(len(list((tmp_path / e.params["run_id"] / "tensorboard").glob("events.out.tfevents.*"))) == 1
               for e in entries)
    ex.grid_tensorboard(entries, tmp_path, log=logs.append)       # nothing written twice
    assert logs[0].startswith("TensorBoard: 3 finished runs of the grid (3 written now from their metrics.json): "
                              "tensorboard --logdir ")
    assert "(0 written now" in logs[1]
