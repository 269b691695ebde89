"""The main job: execute the notebooks in order through papermill, and what a notebook needs to know about it.

    python -m tsamlib notebooks                  # 01 -> 04 on the embedded default dataset, a new run
    python -m tsamlib notebooks --only 03 -p epochs 5
    python -m tsamlib notebooks --only 05        # the mini Table 1 / Table 2 grid, then the tables
    python -m tsamlib notebooks --only 06 -p checkpoint weights/resnet50_kinetics400.ckpt.pth.tar -p manifest M.csv
    python -m tsamlib notebooks --publish        # refresh the committed copies (results/notebooks/, run "demo")

Executed copies go to ``results/notebooks/local/`` (git-ignored) or, with ``--publish``, to the committed
``results/notebooks/``. Each is written to a temporary file and replaces the previous copy only when the notebook
succeeded; a failure leaves ``<name>.failed.ipynb`` beside it (git-ignored) and a few lines naming the cell and
the error. Notebook 03 trains a new run (``run_id`` from its settings and the time) unless ``-p run_id`` names
one; a finished run with its weights is not trained again; 04 evaluates the run that 03 made.
"""
from __future__ import annotations

import argparse
import ast
import difflib
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from ..config import RunConfig
# light imports only: the parser of python -m tsamlib is built from this module (runs.folder, runs.notebook
# and papermill are imported where they are used)
from ..runs.fileio import relative_to_repo, repo_root, writable_folder

__all__ = ["add_notebooks", "cmd_notebooks", "NOTEBOOKS", "MAIN_JOB", "NotebookFailed", "local_out_dir",
           "published_out_dir", "run_notebook", "run_pipeline", "parse_param", "selected_notebooks",
           "check_parameters"]

NOTEBOOKS = ("01_build_datasets", "02_visualize", "03_train", "04_evaluate", "05_reproduce_tables",
             "06_released_checkpoint", "07_online")
MAIN_JOB = NOTEBOOKS[:4]  # 05 trains the whole mini grid, 06 evaluates a released checkpoint: only when asked for


def local_out_dir() -> Path:
    """Executed copies of your own runs of the notebooks (git-ignored)."""
    return repo_root() / "results" / "notebooks" / "local"


def published_out_dir() -> Path:
    """The committed executed copies (``--publish``)."""
    return repo_root() / "results" / "notebooks"


class NotebookFailed(RuntimeError):
    """A notebook raised: the message names the notebook, the cell and the error; the executed copy with the
    full traceback is ``failed_copy``."""

    def __init__(self, name: str, error: Exception, failed_copy: Path):
        self.name, self.error, self.failed_copy = name, error, failed_copy
        cell = getattr(error, "exec_count", None) or getattr(error, "cell_index", "?")
        ename, evalue = getattr(error, "ename", type(error).__name__), getattr(error, "evalue", str(error))
        evalue = "\n    ".join(str(evalue).strip().splitlines()[:6])
        super().__init__(f"notebook {name} failed in cell [{cell}]: {ename}: {evalue}\n"
                         f"  the executed copy with the full traceback: {relative_to_repo(failed_copy)}")


def parse_param(text: str) -> Any:
    """A ``-p name value`` value as papermill reads it: a Python literal, else the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def run_notebook(name: str, parameters: dict[str, Any] | None = None, out_dir: str | Path | None = None,
                 cwd: str | Path | None = None, progress: bool = False, echo: bool = True) -> Path:
    """Execute ``notebooks/<name>.ipynb`` with ``parameters`` into ``out_dir/<name>.ipynb`` (default
    :func:`local_out_dir`), replacing the previous copy only on success; raise :class:`NotebookFailed`.
    ``echo``: what the notebook prints (its stdout and stderr streams, e.g. one line per epoch) shows in the
    terminal too."""
    import papermill as pm

    from ..runs.notebook import make_portable, unattended_kernels

    root = repo_root()
    out_dir = writable_folder(Path(out_dir) if out_dir is not None else local_out_dir(),
                              "the executed copies go there: make it writable")
    out, failed = out_dir / f"{name}.ipynb", out_dir / f"{name}.failed.ipynb"
    tmp = out_dir / f".{name}.running-{os.getpid()}.ipynb"
    parameters = dict(parameters or {})
    if name == "03_train":  # lets the notebook copy itself into its run folder
        parameters["PAPERMILL_OUTPUT_PATH"] = str(tmp)
    try:
        with unattended_kernels():   # no progress bar that the saved copy would keep frozen at 0 %
            pm.execute_notebook(str(root / "notebooks" / f"{name}.ipynb"), str(tmp), parameters=parameters,
                                cwd=str(cwd or root), kernel_name="python3", progress_bar=progress,
                                stdout_file=sys.stdout if echo else None, stderr_file=sys.stderr if echo else None)
    except pm.PapermillExecutionError as e:
        os.replace(tmp, failed)
        raise NotebookFailed(name, e, failed) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    make_portable(tmp, final_name=out.name)
    os.replace(tmp, out)
    failed.unlink(missing_ok=True)
    return out


def _train_run_id(params: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Notebook 03's parameters with a run id fixed in advance (so that 04 evaluates the same run), or
    ``None`` when the named run is finished with its weights and is not trained again."""
    from ..runs.folder import run_state, runs_dir, unique_run_id

    params = dict(params)
    cfg = RunConfig.from_params(params)
    if cfg.run_id is None:
        params["run_id"] = unique_run_id(cfg, cfg.runs_root)
        return params, params["run_id"]
    state = run_state(runs_dir(cfg.runs_root) / cfg.run_id)
    if state == "finished" and not cfg.overwrite:
        print(f"03_train: run {cfg.run_id} is already finished; not trained again (-p run_id NEW, or "
              "-p overwrite True to retrain it).")
        return params, None
    if state == "finished-no-weights" and not cfg.overwrite:
        print(f"03_train: run {cfg.run_id} is finished but its weights are missing (checkpoints are not "
              "committed): training it again; the old folder is moved aside.")
        params["overwrite"] = True
    return params, cfg.run_id


def _clear_published_run(run_id: str, runs_root: str | None) -> None:
    """Publishing trains the committed reference run again: its folder is removed first (its record stays in git
    history), so the published 03 shows a fresh run, not a folder moved aside."""
    import shutil

    from ..runs.folder import runs_dir

    path = runs_dir(runs_root) / str(run_id)
    if path.is_dir():
        print(f"publish: {relative_to_repo(path)} is trained again (the committed record stays in git history)",
              flush=True)
        shutil.rmtree(path)


def selected_notebooks(only: Sequence[str] | None = None) -> list[str]:
    """The notebooks ``only`` names by prefix (``["03", "04"]``), in order; the main job when None. ValueError
    naming the notebooks when a prefix matches none (nothing would run)."""
    if not only:
        return list(MAIN_JOB)
    unknown = [o for o in only if not any(name.startswith(o) for name in NOTEBOOKS)]
    if unknown:
        raise ValueError(f"--only {' '.join(unknown)} names no notebook: choose among {', '.join(NOTEBOOKS)} "
                         "(a prefix such as 03 is enough).")
    return [name for name in NOTEBOOKS if any(name.startswith(o) for o in only)]


def check_parameters(parameters: dict[str, Any], declared: dict[str, set[str]]) -> None:
    """ValueError, before anything runs, for a parameter that no notebook to run declares (a typo would otherwise
    be dropped silently and run the defaults), naming the nearest declared one."""
    known = set().union(*declared.values()) - {"PAPERMILL_OUTPUT_PATH"}
    for name in parameters:
        if name not in known:
            near = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"did you mean {near[0]}?" if near else f"their parameters are {', '.join(sorted(known))}."
            raise ValueError(f"-p {name}: no notebook of {', '.join(declared)} has this parameter; {hint}")


def run_pipeline(only: Sequence[str] | None = None, parameters: dict[str, Any] | None = None,
                 out_dir: str | Path | None = None, progress: bool = False, publish: bool = False) -> list[Path]:
    """Run the notebooks in order (``only``: prefixes such as ``["03", "04"]``); ``parameters`` go to each
    notebook that declares them in its ``parameters`` cell. ``publish``: into the committed
    ``results/notebooks/``, training run ``demo`` afresh."""
    import papermill as pm

    root = repo_root()
    parameters = dict(parameters or {})
    names = selected_notebooks(only)
    declared = {name: set(pm.inspect_notebook(str(root / "notebooks" / f"{name}.ipynb"))) for name in names}
    check_parameters(parameters, declared)   # the user's; publishing's own below go where they are declared
    demo = {}   # publishing trains the reference run "demo" afresh (03) and evaluates it (04); others as given
    if publish:
        out_dir = out_dir or published_out_dir()
        demo = {k: v for k, v in dict(run_id="demo", overwrite=True).items() if k not in parameters}
        if "03_train" in names:
            _clear_published_run(parameters.get("run_id", "demo"), parameters.get("runs_root"))
    out_dir = Path(out_dir) if out_dir is not None else local_out_dir()
    done, trained_id = [], None
    for name in names:
        given = {**parameters, **(demo if name in ("03_train", "04_evaluate") else {})}
        params = {k: v for k, v in given.items() if k in declared[name]}
        if name == "03_train":
            params, trained_id = _train_run_id(params)
            if trained_id is None:
                trained_id = params["run_id"]
                continue
        if name == "04_evaluate" and trained_id and "run_id" not in parameters:
            params["run_id"] = trained_id
        print(f"== {name} {params or ''}", flush=True)
        done.append(run_notebook(name, params, out_dir, progress=progress))
        print(f"   executed copy: {relative_to_repo(done[-1])}", flush=True)
    return done


def add_notebooks(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("notebooks", help="run notebooks 01-04 in order (the main job), or those given by --only "
                                         "(05: the mini tables, 06: a released checkpoint); executed copies in "
                                         "results/notebooks/local/")
    p.add_argument("--only", nargs="*", help="notebook prefixes to run, e.g. 03 04")
    p.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="a parameter for every notebook that declares it (papermill style)")
    p.add_argument("--publish", action="store_true",
                   help="write the committed copies in results/notebooks/ and train run 'demo' afresh")
    p.add_argument("--progress-bar", action="store_true", help="papermill's cell progress bar (off: the "
                                                              "notebooks print their own progress lines)")
    p.set_defaults(func=cmd_notebooks)


def cmd_notebooks(args: argparse.Namespace) -> int:
    params = {name: parse_param(value) for name, value in args.param}
    try:
        run_pipeline(args.only or None, params, progress=args.progress_bar, publish=args.publish)
    except NotebookFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as e:   # a notebook or parameter that does not exist, a folder not writable
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
