"""The main job: execute the notebooks in order through papermill, executed copies under ``results/notebooks/``.

    python -m tsamlib notebooks                  # 01 -> 04 on the embedded default dataset
    python -m tsamlib notebooks --only 03 -p epochs 5
    python -m tsamlib notebooks --only 05        # the mini Table 1 / Table 2 grid (about 30 minutes), then the tables

Each notebook reads only what the lower-numbered ones wrote. The training run of notebook 03 is
``results/runs/<run_id>``; a finished run is not trained again (its notebook is skipped with a message).
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, Sequence

from .runs import is_finished, repo_root, runs_dir

__all__ = ["NOTEBOOKS", "MAIN_JOB", "run_notebook", "run_pipeline", "parse_param"]

NOTEBOOKS = ("01_build_datasets", "02_visualize", "03_train", "04_evaluate", "05_reproduce_tables")
MAIN_JOB = NOTEBOOKS[:4]  # 05 trains the whole mini grid: only when asked for


def parse_param(text: str) -> Any:
    """A ``-p name value`` value as papermill reads it: a Python literal, else the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def run_notebook(name: str, parameters: dict[str, Any] | None = None, out_dir: str | Path | None = None,
                 cwd: str | Path | None = None, progress: bool = True) -> Path:
    """Execute ``notebooks/<name>.ipynb`` with ``parameters``; the executed copy goes to ``out_dir``."""
    import papermill as pm

    root = repo_root()
    out_dir = Path(out_dir) if out_dir is not None else root / "results" / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{name}.ipynb"
    parameters = dict(parameters or {})
    if name == "03_train":  # lets the notebook copy itself into its run folder
        parameters["PAPERMILL_OUTPUT_PATH"] = str(out)
    pm.execute_notebook(str(root / "notebooks" / f"{name}.ipynb"), str(out), parameters=parameters,
                        cwd=str(cwd or root), kernel_name="python3", progress_bar=progress)
    return out


def run_pipeline(only: Sequence[str] | None = None, parameters: dict[str, Any] | None = None,
                 out_dir: str | Path | None = None, progress: bool = True) -> list[Path]:
    """Run the notebooks in order (``only``: prefixes such as ``["03", "04"]``); ``parameters`` go to each
    notebook that declares them in its ``parameters`` cell."""
    import papermill as pm

    root = repo_root()
    done = []
    for name in NOTEBOOKS if only else MAIN_JOB:
        if only and not any(name.startswith(o) for o in only):
            continue
        declared = set(pm.inspect_notebook(str(root / "notebooks" / f"{name}.ipynb")))
        params = {k: v for k, v in (parameters or {}).items() if k in declared}
        if name == "03_train":
            run_id = params.get("run_id", "demo")
            runs_root = runs_dir(params.get("runs_root"))
            if is_finished(runs_root / run_id) and not params.get("overwrite"):
                print(f"{name}: run {run_id} already finished in {runs_root}; not trained again "
                      "(pass -p run_id NEW or -p overwrite True).")
                continue
        print(f"== {name} {params or ''}", flush=True)
        done.append(run_notebook(name, params, out_dir, progress=progress))
        print(f"   executed copy: {done[-1]}")
    return done
