"""Executed notebooks: no progress bar in a kernel that nobody watches (its saved copy would keep it at 0 %)."""
import os
import sys

from tsamlib.runs.notebook import UNATTENDED, executed_by_papermill, progress, unattended_kernels


def test_progress_bars_only_where_someone_watches(monkeypatch):
    monkeypatch.delenv(UNATTENDED, raising=False)
    monkeypatch.setitem(sys.modules, "ipykernel", sys)   # as inside a Jupyter kernel
    assert not executed_by_papermill() and not progress(range(3)).disable   # JupyterLab: the bar is shown
    with unattended_kernels():                           # what `python -m tsamlib notebooks` and the grids do
        assert executed_by_papermill() and progress(range(3)).disable
        assert list(progress(range(3))) == [0, 1, 2]      # iterates all the same
    assert UNATTENDED not in os.environ                   # restored after the block
    monkeypatch.setenv(UNATTENDED, "1")
    monkeypatch.delitem(sys.modules, "ipykernel")        # a terminal: its text bar is kept
    assert not progress(range(3)).disable
