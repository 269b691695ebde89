"""Command line: ``python -m tsamlib <command> ...`` (also installed as ``tsam``).

Commands: ``index {kinetics400,something-v1,list,folder}`` builds a manifest CSV; ``synth`` writes a
synthetic dataset; ``prepare`` converts a manifest's clips to JPEG frame folders + ``.wav``; ``train`` trains one
run; ``notebooks`` runs the notebooks in order; ``runs``, ``evaluate`` and ``predict`` list, score and use finished
runs; ``export`` writes a run's model to ONNX; ``checkpoint`` inspects and converts checkpoint files. Each lives in
its own module, ``tsamlib/cli/<command>.py``: ``add_<command>(subparsers)`` registers its parser with
``set_defaults(func=cmd_<command>)``, and ``cmd_<command>`` imports the heavy modules it needs. To add a command,
write that module and put its ``add_<command>`` in ``COMMANDS``.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from .cli.checkpoint import add_checkpoint
from .cli.evaluate import add_evaluate
from .cli.export import add_export
from .cli.index import add_index
from .cli.notebooks import add_notebooks
from .cli.predict import add_predict
from .cli.prepare import add_prepare
from .cli.runs import add_runs
from .cli.synth import add_synth
from .cli.train import add_train

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS: dict[str, Callable[[argparse._SubParsersAction], None]] = {
    "index": add_index, "synth": add_synth, "notebooks": add_notebooks, "runs": add_runs, "predict": add_predict,
    "evaluate": add_evaluate, "prepare": add_prepare, "train": add_train, "export": add_export,
    "checkpoint": add_checkpoint}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tsamlib", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS.values():
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run the command; returns the exit code."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
