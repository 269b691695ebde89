"""Executed notebooks: where papermill writes one, a copy beside its run, paths made portable, progress bars.

Notebook 03 calls :func:`save_notebook_copy` at its end, so ``<run>/train.ipynb`` holds the executed notebook;
:func:`make_portable` rewrites an executed notebook so it names no folder of the machine it ran on (the notebook
runner and the experiment grids use it too); :func:`watched_notebook` tells a kernel someone watches from one that
papermill executes.
"""
from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .fileio import atomic_path, relative_to_repo, repo_root
from .folder import Run

__all__ = ["make_portable", "papermill_output_path", "executed_by_papermill", "save_notebook_copy", "in_kernel",
           "unattended_kernels", "watched_notebook", "UNATTENDED", "KERNEL_NAME", "KERNEL_DISPLAY_NAME",
           "notebook_metadata", "set_notebook_metadata"]

UNATTENDED = "TSAM_UNATTENDED"   # set to 1 for the kernels that the notebook runners start: nobody watches them
KERNEL_NAME, KERNEL_DISPLAY_NAME = "python3", "Python 3 (tsam)"   # what `python -m tsamlib.cli.kernel install` makes


def notebook_metadata() -> dict[str, Any]:
    """The ``kernelspec`` and ``language_info`` JupyterLab writes into a notebook run on this environment's kernel:
    a notebook holding them opens unmodified (anything else is rewritten on open and shows as a change)."""
    from ipykernel.ipkernel import IPythonKernel

    return {"kernelspec": {"display_name": KERNEL_DISPLAY_NAME, "language": "python", "name": KERNEL_NAME},
            "language_info": dict(IPythonKernel.language_info)}


def set_notebook_metadata(nb: Any) -> Any:
    """``nb`` (an nbformat notebook or its dict) with :func:`notebook_metadata`, every other metadata key kept."""
    nb.setdefault("metadata", {}).update(notebook_metadata())
    return nb


def make_portable(notebook: str | Path, final_name: str | None = None) -> Path:
    """Rewrite an executed notebook so that it names no folder of the machine it ran on: paths under the
    repository become relative to its root (papermill's metadata, injected parameters, printed outputs), and the
    temporary name it was written under becomes ``final_name``; its kernel metadata is this environment's
    (:func:`notebook_metadata`)."""
    path = Path(notebook)
    text = path.read_text(encoding="utf-8")
    root = str(repo_root())
    text = text.replace(root + os.sep, "").replace(root, ".")
    if final_name:
        text = text.replace(path.name, final_name)
    nb = set_notebook_metadata(json.loads(text))   # opens in JupyterLab unmodified
    text = json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"   # nbformat's layout
    with atomic_path(path) as tmp:   # a failed rewrite keeps the executed notebook as it was
        tmp.write_text(text, encoding="utf-8")
    return path


def papermill_output_path(injected: str | None = None) -> Path | None:
    """Where papermill writes this executed notebook: ``PAPERMILL_OUTPUT_PATH`` when injected
    (``--inject-paths`` or :func:`run_notebook`), else the output argument of a ``papermill IN OUT`` command
    that started this kernel."""
    if injected:
        return Path(injected).resolve()
    try:
        import psutil

        for proc in psutil.Process().parents():
            args = proc.cmdline()
            names = [a for a in args if a.endswith(".ipynb")]
            if any(Path(a).name == "papermill" or a.endswith("papermill/__main__.py") or a == "papermill"
                   for a in args) and len(names) >= 2:
                return (Path(proc.cwd()) / names[1]).resolve()
    except Exception:
        return None
    return None


def executed_by_papermill(injected: str | None = None) -> bool:
    """True when this kernel runs under papermill (no person watches the HTML progress bars): started by
    ``python -m tsamlib notebooks`` or a grid (:data:`UNATTENDED`), or by a ``papermill`` command."""
    return os.environ.get(UNATTENDED) == "1" or papermill_output_path(injected) is not None


@contextmanager
def unattended_kernels() -> Iterator[None]:
    """Kernels started inside this block know that nobody watches them (:func:`executed_by_papermill`)."""
    before = os.environ.get(UNATTENDED)
    os.environ[UNATTENDED] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(UNATTENDED, None)
        else:
            os.environ[UNATTENDED] = before


def watched_notebook() -> bool:
    """Running in a notebook kernel a person watches (JupyterLab), not one papermill executes."""
    return in_kernel() and not executed_by_papermill()


def in_kernel() -> bool:
    """Running inside a Jupyter kernel (JupyterLab or papermill)."""
    import sys

    return "ipykernel" in sys.modules


def save_notebook_copy(run: Run, injected: str | None = None) -> Path | None:
    """Copy the executed notebook (as papermill has saved it so far) to ``<run>/train.ipynb``."""
    src = papermill_output_path(injected)
    dst = run.path / "train.ipynb"
    if src is None or not src.is_file():
        print(f"this notebook was not run by papermill, so no copy of it was put in the run folder: save it (File > "
              f"Save Notebook) and copy it to {relative_to_repo(dst)} to keep it beside the run; papermill and "
              "`python -m tsamlib notebooks --only 03` put the executed copy there themselves.")
        return None
    if src != dst.resolve():
        shutil.copyfile(src, dst)
        make_portable(dst, final_name=dst.name)
    run.note(notebook=str(dst.relative_to(run.path)))
    return dst
