"""What the commands share: typed command-line values with their ranges (a wrong one ends at argument parsing, in
one line naming the option: argparse's ``error: argument --n-clips: 0 is out of range: allowed 1 or more``, exit
code 2), and a run or package named on the command line, found or said in one line."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

__all__ = ["number", "find_source"]


def number(kind: type = int, lo: float | None = None, hi: float | None = None, open_lo: bool = False,
           open_hi: bool = False) -> Callable[[str], float]:
    """An argparse ``type``: ``kind`` (int or float) within [lo, hi] (``open_lo``/``open_hi`` exclude the ends; no
    bound given: any value but NaN)."""
    what = "an integer" if kind is int else "a number"
    if lo is not None and hi is not None:
        allowed = f"{'(' if open_lo else '['}{lo}, {hi}{')' if open_hi else ']'}"
    elif lo is not None:
        allowed = f"more than {lo}" if open_lo else f"{lo} or more"
    elif hi is not None:
        allowed = f"less than {hi}" if open_hi else f"{hi} or less"
    else:
        allowed = "a finite value"   # no range: only NaN is refused

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        below = lo is not None and (value <= lo if open_lo else value < lo)
        above = hi is not None and (value >= hi if open_hi else value > hi)
        if below or above or value != value:   # NaN is never in range
            raise argparse.ArgumentTypeError(f"{text} is out of range: allowed {allowed}")
        return value

    parse.__name__ = kind.__name__   # argparse names the type in some messages
    return parse


def find_source(run: str) -> Path | None:
    """The folder of ``run`` (a run id, a run folder or a package folder:
    :func:`~tsamlib.evaluation.views.resolve_source`), or None after a one-line error when there is none."""
    from ..evaluation.views import resolve_source
    try:
        return resolve_source(run)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return None
