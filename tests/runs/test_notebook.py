"""Executed notebooks: no progress bar in a kernel that nobody watches (its saved copy would keep it at 0 %)."""
import os
import sys

from tsamlib.runs.notebook import UNATTENDED, executed_by_papermill, unattended_kernels
from tsamlib.runs.progress import progress


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


def test_a_notebooks_bar_is_text_that_a_saved_notebook_keeps(monkeypatch, capsys):
    """In JupyterLab the bar is tqdm's text bar on the cell's output (a widget bar is not saved with the notebook:
    reopened, it is "Error displaying widget"), ending on its last state."""
    from tqdm.notebook import tqdm as widget_bar
    monkeypatch.delenv(UNATTENDED, raising=False)
    monkeypatch.setitem(sys.modules, "ipykernel", sys)
    bar = progress(range(3), desc="clips")
    assert not isinstance(bar, widget_bar) and bar.fp is not None
    list(bar)
    bar.close()
    out = capsys.readouterr().out
    assert "clips: 100%" in out and "3/3" in out
