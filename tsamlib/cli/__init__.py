"""The command line's machinery (``python -m tsamlib``, in ``tsamlib/__main__.py``): the notebook runner and the
notebooks' Jupyter kernel (imports every layer below, lazily).

    notebooks   the main job: notebooks 01 -> 04 (or any) executed in order through papermill
    kernel      the Jupyter kernel the notebooks run on (quiet about loopback sockets)
    train       ``python -m tsamlib train``: a flag for every RunConfig setting
    checkpoint  ``python -m tsamlib checkpoint inspect / convert``: any TSM-family checkpoint
"""
from .._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    ".notebooks": ["NOTEBOOKS", "MAIN_JOB", "run_notebook", "run_pipeline", "NotebookFailed"],
})
