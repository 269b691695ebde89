"""The front door, as a newcomer meets it: a fresh ``git clone`` runs the README's main command (``bash run.sh``)
and the papermill command of the design card twice, from ``notebooks/`` and from the root, and no tracked file
changes. The clone reuses this test's installed environment (its ``.venv`` is linked, so ``scripts/setup.sh``
finds everything installed and installs nothing); the clone's own ``tsamlib`` is the one imported.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _sh(args, cwd, env, timeout=900):
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(map(str, args))} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.mark.slow
def test_fresh_clone_runs_the_main_job_and_papermill_twice(tmp_path):
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    venv = Path(sys.prefix)
    if not (venv / "bin" / "python").exists() or venv == Path(sys.base_prefix):
        pytest.skip("runs inside the project's virtual environment only (bash .ci/run)")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=300)
    import hashlib
    stamp = venv / ".tsam-installed"  # written by scripts/setup.sh: without it setup.sh would reinstall into it
    want = hashlib.sha256((clone / "pyproject.toml").read_bytes()).hexdigest()
    if not stamp.is_file() or stamp.read_text().strip() != want:
        pytest.fail(f"{venv} was not installed by scripts/setup.sh for this pyproject.toml: run "
                    "`bash scripts/setup.sh`")
    (clone / ".venv").symlink_to(venv, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PYTHONPATH=str(clone), OMP_NUM_THREADS="1", PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")

    main = _sh(["bash", "run.sh"], clone, env)  # the README's main command
    assert "nothing to install" in main.stdout
    assert "== 04_evaluate" in main.stdout and "epoch 3/3" in main.stdout and "ETA" in main.stdout  # progress
    assert "Traceback" not in main.stderr and "Warning" not in main.stderr and "WARNING" not in main.stderr, main.stderr
    assert (clone / "results" / "notebooks" / "local" / "04_evaluate.ipynb").is_file()
    import nbformat  # 02's figures: shift pattern, shift on features, sampled frames, mel channels
    nb02 = nbformat.read(clone / "results" / "notebooks" / "local" / "02_visualize.ipynb", as_version=4)
    assert sum("image/png" in o.get("data", {}) for c in nb02.cells for o in c.get("outputs", [])) == 4

    # the design card's command, from notebooks/ and from the root (one epoch the second time, to keep CI short)
    first = _sh(["papermill", "03_train.ipynb", "out.ipynb", "-p", "shift_depth", "4"], clone / "notebooks", env)
    again = _sh(["papermill", "notebooks/03_train.ipynb", "out.ipynb", "-p", "shift_depth", "4", "-p", "epochs", "1",
                 "--log-output"], clone, env)
    for out in (first, again):  # quiet: no transport warning, no deprecation warning
        assert "without encryption" not in out.stderr and "FutureWarning" not in out.stderr, out.stderr[-2000:]
    assert "epoch 1/1  train_loss" in again.stderr + again.stdout and "<progress" not in again.stderr + again.stdout

    committed = set(subprocess.run(["git", "ls-files", "results/runs"], cwd=clone, capture_output=True, text=True,
                                   check=True).stdout.split())
    new = [d for d in (clone / "results" / "runs").iterdir()
           if d.is_dir() and not any(f.startswith(f"results/runs/{d.name}/") for f in committed)]
    finished = [d for d in new if (d / "checkpoints" / "model.pth").is_file()
                and '"finished": true' in (d / "metrics.json").read_text()]
    assert len(finished) == 3 == len(new), sorted(d.name for d in new)  # three distinct, finished runs
    assert sum(d.name.startswith("k4-fdiv8-8f-rgb-") for d in finished) == 2
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True,
                            check=True).stdout
    assert status == "", f"the main job and the papermill commands left the tree unclean:\n{status}"
    frozen = [p.name for p in (clone / "results" / "notebooks" / "local").glob("*.ipynb") if "0%|" in p.read_text()]
    assert not frozen, f"executed notebooks keep a progress bar frozen at 0 %: {frozen}"
