"""The library's progress bar: tqdm's text bar where someone watches it live, none in a notebook that papermill
executes (its saved copy would keep the bar frozen at 0 %)."""
from __future__ import annotations

from typing import Any

from .notebook import executed_by_papermill, in_kernel

__all__ = ["progress"]


def progress(iterable: Any = None, **kwargs: Any):
    """tqdm's text bar over ``iterable`` (``kwargs`` as tqdm's): in the terminal as usual; in a notebook on its
    output, as text (tqdm's widget bar is not saved with the notebook: reopened, it reads "Error displaying widget:
    model not found"; a text bar keeps its last state); none in a notebook that papermill executes (a saved bar
    stays at its first state, 0 %, forever)."""
    import sys

    from tqdm.std import tqdm

    # no monitor thread: a thread alive in this process when a loader or pool forks its workers can hold a lock
    # the child then waits on forever (the monitor only fixes the rate shown after a stall)
    tqdm.monitor_interval = 0
    if in_kernel():
        if executed_by_papermill():
            kwargs["disable"] = True
        kwargs.setdefault("file", sys.stdout)   # the cell's output, not the red stderr box
        kwargs.setdefault("ncols", 100)         # a text bar sized to the notebook's pane, not the kernel's terminal
    return tqdm(iterable, **kwargs)
