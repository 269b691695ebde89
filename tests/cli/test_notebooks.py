"""Notebooks 01-03 run through papermill with small parameters (as recommenders does), and stay commit-clean.

Notebook 02 with its defaults runs in test_front_door.py (the main job), 04 in test_evaluate.py and 05 in
test_experiments.py (they need a finished run).
"""
import ast
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import papermill as pm
import pytest

ROOT = Path(__file__).resolve().parents[2]
NB = ROOT / "notebooks"

SMALL_TRAIN = dict(dataset="default", n_frames=4, arch="resnet10t", img_size=32, resize=36, n_mels=32, epochs=1,
                   batch_size=8, lr=2e-3)


@pytest.fixture(autouse=True)
def inline_figures(monkeypatch):
    """A kernel started with MPLBACKEND=Agg would not show figures inline: let it pick its own backend."""
    monkeypatch.delenv("MPLBACKEND", raising=False)


def execute(name, out, cwd=ROOT, **params):
    if name == "03_train":
        params["PAPERMILL_OUTPUT_PATH"] = str(out)  # what `papermill --inject-paths` adds
    return pm.execute_notebook(str(NB / f"{name}.ipynb"), str(out), parameters=params, cwd=str(cwd),
                               kernel_name="python3", progress_bar=False)


def _shipped_notebooks() -> list[Path]:
    """The notebooks the repository ships (tracked by git), not a user's executed ``out.ipynb`` beside them (the
    design card's ``papermill 03_train.ipynb out.ipynb`` writes one there)."""
    tracked = subprocess.run(["git", "ls-files", "notebooks/*.ipynb"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode != 0:  # not a git checkout: every notebook there
        return sorted(NB.glob("*.ipynb"))
    return sorted(ROOT / p for p in tracked.stdout.split())


def test_the_pipeline_lists_every_shipped_notebook():
    from tsamlib.cli.notebooks import NOTEBOOKS
    assert [p.stem for p in _shipped_notebooks()] == list(NOTEBOOKS)


@pytest.mark.parametrize("path", _shipped_notebooks(), ids=lambda p: p.name)
def test_notebooks_are_clean_and_parameterised(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "commit notebooks with outputs stripped"
    tagged = [i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", [])]
    assert tagged == [1], "the first code cell after the imports is the one tagged 'parameters'"
    for node in ast.parse(code[1].source).body:  # literals only
        assert isinstance(node, ast.Assign), ast.dump(node)
        ast.literal_eval(node.value)


def _tracked(pattern: str) -> list[Path]:
    tracked = subprocess.run(["git", "ls-files", pattern], cwd=ROOT, capture_output=True, text=True)
    return sorted(ROOT / p for p in tracked.stdout.split()) if tracked.returncode == 0 else sorted(ROOT.glob(pattern))


def test_every_notebook_opens_in_jupyterlab_with_nothing_to_rewrite():
    """The kernel and language JupyterLab writes on open are the ones in the files (sources, committed executed
    copies, runs' train.ipynb), so opening one leaves no change to save; the installed kernel names itself so."""
    from tsamlib.runs.notebook import KERNEL_DISPLAY_NAME, notebook_metadata
    want = notebook_metadata()
    files = _shipped_notebooks() + _tracked("results/notebooks/*.ipynb") + _tracked("results/runs/*/train.ipynb")
    assert len(files) > 14
    for f in files:
        nb = nbformat.read(f, as_version=4)
        meta = nb.metadata
        assert (meta["kernelspec"], meta["language_info"]) == (want["kernelspec"], want["language_info"]), f
        views = [o for c in nb.cells for o in c.get("outputs", [])
                 if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
        assert not views or "widgets" in meta, f"{f}: a widget view without its saved state"
    spec = ROOT / ".venv" / "share" / "jupyter" / "kernels" / "python3" / "kernel.json"
    if spec.is_file():   # the kernel run.sh / .ci/run installs
        assert json.loads(spec.read_text())["display_name"] == KERNEL_DISPLAY_NAME


def test_an_executed_copy_made_portable_gets_this_kernels_metadata(tmp_path):
    from tsamlib.runs.notebook import make_portable, notebook_metadata
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}, "papermill": {"x": 1}})
    nbformat.write(nb, tmp_path / "a.ipynb")
    meta = nbformat.read(make_portable(tmp_path / "a.ipynb"), as_version=4).metadata
    assert meta["kernelspec"] == notebook_metadata()["kernelspec"] and meta["papermill"] == {"x": 1}


@pytest.fixture(scope="module")
def default_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("nb") / "01.ipynb"
    execute("01_build_datasets", out, kinds=["default"])
    manifest = ROOT / "data" / "default" / "manifest.csv"
    assert manifest.is_file()
    return manifest


@pytest.mark.parametrize("cwd,audio", [(ROOT, True)], ids=["repo-root-audio"])  # from notebooks/: test_front_door
def test_03_train_writes_run(default_dataset, tmp_path, cwd, audio):
    runs = tmp_path / "runs"
    execute("03_train", tmp_path / "out.ipynb", cwd=cwd, runs_root=str(runs), run_id="nbtest", audio=audio,
            shift_depth=2, f_div=4, **SMALL_TRAIN)
    run = runs / "nbtest"
    params = json.loads((run / "params.json").read_text())
    assert params["audio"] is audio and params["shift_depth"] == 2
    m = json.loads((run / "metrics.json").read_text())
    assert m["finished"] and len(m["epochs"]) == 1
    f = m["final"]
    assert 0 <= f["top1"] <= 1 and f["top5"] >= f["top1"] and f["valid_loss"] > 0
    assert f["train_clips_per_s"] > 0 and f["skipped_samples"] == 0
    assert m["environment"]["packages"]["fastai"] and m["environment"]["git_commit"] is not None
    assert m["model"]["n_shifted_blocks"] == 4  # resnet10t: one block per stage
    assert (run / "train.ipynb").is_file() and (run / "checkpoints" / "model.pth").is_file()
    # the final record is shown as a table, not a raw dict of floats, and the copy beside the run has it
    copy = nbformat.read(run / "train.ipynb", as_version=4)
    shown = [o for c in copy.cells if c.cell_type == "code" for o in c.outputs]
    assert any("text/html" in o.get("data", {}) and "valid_loss" in o["data"]["text/html"] for o in shown)
    assert not any("{'valid_loss':" in "".join(o.get("text", "")) for o in shown)
    # a finished run is never overwritten silently
    with pytest.raises(pm.PapermillExecutionError, match="FileExistsError"):
        execute("03_train", tmp_path / "again.ipynb", runs_root=str(runs), run_id="nbtest", **SMALL_TRAIN)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_jupyter_lab_serves_the_notebooks(tmp_path):
    requests = pytest.importorskip("requests")
    port, token = _free_port(), "tsam-test-token"
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"), JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"))
    proc = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
                             f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={ROOT}",
                             "--ServerApp.open_browser=False", "--allow-root"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/api/contents/notebooks"
        for _ in range(120):
            try:
                r = requests.get(url, headers={"Authorization": f"token {token}"}, timeout=2)
                if r.status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("jupyter lab did not answer on loopback within 60 s")
        names = {c["name"] for c in r.json()["content"]}
        assert {"01_build_datasets.ipynb", "02_visualize.ipynb", "03_train.ipynb"} <= names
        nb = requests.get(f"{url}/03_train.ipynb", headers={"Authorization": f"token {token}"}, timeout=5).json()
        assert any("parameters" in c["metadata"].get("tags", []) for c in nb["content"]["cells"])
        assert requests.get(f"http://127.0.0.1:{port}/lab", headers={"Authorization": f"token {token}"},
                            timeout=5).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_pipeline_order_params_and_finished_run_skip(tmp_path, monkeypatch):
    from tsamlib.cli import notebooks as pipeline
    from tsamlib.runs.folder import start_run

    calls = []
    monkeypatch.setattr(pipeline, "run_notebook",
                        lambda name, params, out_dir, progress=False: calls.append((name, params)) or tmp_path)
    pipeline.run_pipeline(parameters=dict(epochs=2, runs_root=str(tmp_path), run_id="x", kinds=["default"]))
    assert [c[0] for c in calls] == list(pipeline.MAIN_JOB)  # 05 only when asked for
    assert calls[2][1] == dict(epochs=2, runs_root=str(tmp_path), run_id="x")  # only what 03 declares
    assert calls[3][1] == dict(runs_root=str(tmp_path), run_id="x")  # 04 evaluates the run 03 trained
    assert calls[0][1] == dict(kinds=["default"])
    run = start_run("x", {}, runs_root=tmp_path)
    run.finish({})
    run.close()
    calls.clear()  # finished, but its weights are missing (as in a fresh clone): trained again
    pipeline.run_pipeline(only=["03"], parameters=dict(runs_root=str(tmp_path), run_id="x"))
    assert calls == [("03_train", dict(runs_root=str(tmp_path), run_id="x", overwrite=True))]
    (tmp_path / "x" / "checkpoints").mkdir()
    (tmp_path / "x" / "checkpoints" / "model.pth").write_bytes(b"")
    calls.clear()
    pipeline.run_pipeline(only=["03", "05"], parameters=dict(runs_root=str(tmp_path), run_id="x"))
    assert [c[0] for c in calls] == ["05_reproduce_tables"]  # the finished run is not trained again
    calls.clear()  # no run_id: a new one, the same for 03 and 04
    pipeline.run_pipeline(only=["03", "04"], parameters=dict(runs_root=str(tmp_path), shift_depth=4))
    rid = calls[0][1]["run_id"]
    assert rid.startswith("k4-fdiv8-8f-rgb-") and calls[1][1]["run_id"] == rid


def test_a_failed_notebook_changes_no_copy(tmp_path):
    """A failing notebook leaves <name>.failed.ipynb and a short message; the previous copy stays as it was."""
    from tsamlib.cli.notebooks import NotebookFailed, run_notebook

    (tmp_path / "03_train.ipynb").write_text("previous copy")
    with pytest.raises(NotebookFailed) as e:
        run_notebook("03_train", dict(epochs=0, runs_root=str(tmp_path / "runs")), tmp_path)
    msg = str(e.value)
    assert "epochs=0 is out of range" in msg and "03_train.failed.ipynb" in msg and len(msg.splitlines()) < 8
    assert (tmp_path / "03_train.ipynb").read_text() == "previous copy"
    assert (tmp_path / "03_train.failed.ipynb").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["03_train.failed.ipynb", "03_train.ipynb"]
    assert not (tmp_path / "runs").exists()  # checked before any run folder exists
