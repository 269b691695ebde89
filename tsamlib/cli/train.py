"""``python -m tsamlib train``: one run from the command line, a flag for every setting of :class:`RunConfig`.

    python -m tsamlib train --shift-depth 4 --epochs 5
    python -m tsamlib train --config params.json --seed 1                  # settings from a JSON object; flags win
    accelerate launch --num_processes 4 -m tsamlib train --config params.json          # 4 GPUs: one run
    torchrun --nproc_per_node 2 -m tsamlib train --config params.json                  # 2 CPU processes (gloo)

The flags are made from the fields of :class:`RunConfig` (``shift_depth`` -> ``--shift-depth``; a yes/no setting
has ``--audio`` and ``--no-audio``; ``None`` or ``none`` gives None where a setting takes it; ``--lr-decay`` takes
JSON), so a new setting is a new flag without a line here. Every value is checked, with the launch and the dataset,
before the run folder exists; a mistake ends in one line and exit code 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable

from ..config import RunConfig
from .args import number

__all__ = ["add_train", "cmd_train"]

_EXAMPLES = """examples:
  python -m tsamlib train --shift-depth 4 --epochs 5
  python -m tsamlib train --config params.json --seed 1       # settings from a JSON object; flags win
  accelerate launch --num_processes 4 -m tsamlib train --config params.json    # 4 GPUs, one run
  torchrun --nproc_per_node 2 -m tsamlib train --config params.json            # 2 CPU processes (gloo)
batch_size is the global batch: N processes load batch_size / N clips each per step."""


_FLAT = "a config is a flat JSON object of settings, e.g. {\"shift_depth\": 4, \"epochs\": 5} (a run's params.json)"
_JSON_KINDS = {"list": "array", "int": "number", "float": "number", "str": "string", "bool": "true/false",
               "NoneType": "null"}


def _depth(value: Any) -> int:
    """How deeply ``value`` nests lists and objects (0: a number, text, true/false or null); without recursion, so
    that a value nested thousands of levels deep is measured, not a RecursionError."""
    deepest, todo = 0, [(value, 0)]
    while todo:
        v, d = todo.pop()
        if isinstance(v, (list, dict)):
            deepest = max(deepest, d + 1)
            todo.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


def _parser_of(kinds: list[str]) -> Callable[[str], Any]:
    """A setting's value from its text, by its type: ``int``/``float`` as :func:`tsamlib.cli.args.number` reads
    them (the ranges are RunConfig's to check), ``list`` as JSON, ``str`` as is; ``none`` where None is allowed."""
    number_of = {"int": number(int), "float": number(float)}

    def parse(text: str) -> Any:
        if "None" in kinds and text.strip().lower() == "none":
            return None
        if "list" in kinds:
            try:
                value = json.loads(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{text!r} is not JSON") from None
            except RecursionError:   # json gives up on thousands of nested brackets with this, not a ValueError
                raise argparse.ArgumentTypeError("nested too deeply: a list of [factor, epoch] pairs, e.g. "
                                                 "[[0.2, 5], [0.01, 30]]") from None
            if _depth(value) > 2:   # deeper than [[factor, epoch], ...]: RunConfig's checks would recurse on it
                raise argparse.ArgumentTypeError(f"nested {_depth(value)} levels deep: a list of [factor, epoch] "
                                                 "pairs, e.g. [[0.2, 5], [0.01, 30]]")
            return value
        kind = next((k for k in kinds if k in number_of), None)
        return number_of[kind](text) if kind else text
    return parse


def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one run (notebook 03's settings, each a flag); several processes too",
                       description="Train one run: every setting of notebook 03 (RunConfig) is a flag; all are "
                       "checked, with the launch and the dataset, before the run folder exists.",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EXAMPLES,
                       allow_abbrev=False)   # --shift-dept is a typo, not --shift-depth
    p.add_argument("--config", metavar="JSON", help="a file holding a JSON object of settings (e.g. a run's "
                   "params.json); flags given beside it replace its values")
    g = p.add_argument_group("settings", "RunConfig's; what is not given takes its default")
    for f in fields(RunConfig):
        kinds = [k.strip() for k in str(f.type).split("|")]
        flag, help_ = "--" + f.name.replace("_", "-"), f"{f.metadata['help']} (default: {f.default!r})"
        if "bool" in kinds:
            g.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_)
        else:
            choices = f.metadata.get("choices")
            g.add_argument(flag, type=_parser_of(kinds), default=argparse.SUPPRESS, help=help_,
                           metavar="{" + ",".join(choices) + "}" if choices else kinds[0].upper())
    p.set_defaults(func=cmd_train)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The JSON object of ``--config`` (if any) with the flags given on top; ValueError naming the file."""
    params: dict[str, Any] = {}
    if args.config:
        try:
            params = json.loads(Path(args.config).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ValueError(f"{args.config}: {e}") from None
        except RecursionError:   # json gives up on thousands of nested levels with this, not a ValueError
            raise ValueError(f"{args.config} is nested too deeply to be read: {_FLAT}") from None
        if not isinstance(params, dict):
            kind = _JSON_KINDS.get(type(params).__name__, type(params).__name__)
            raise ValueError(f"{args.config} holds a JSON {kind}, not an object of settings: {_FLAT}")
        for name, value in params.items():   # lr_decay, [[factor, epoch], ...], is the deepest setting
            if _depth(value) > 2:   # RunConfig's checks would recurse on it
                raise ValueError(f"{args.config}: {name!r} is nested {_depth(value)} levels deep: {_FLAT}")
    names = {f.name for f in fields(RunConfig)}
    return {**params, **{k: v for k, v in vars(args).items() if k in names}}


def cmd_train(args: argparse.Namespace) -> int:
    from fastai.torch_core import rank_distrib

    from ..runs.fileio import relative_to_repo
    from ..runs.folder import RunLockedError
    from ..training.run import setup_training

    try:   # the settings, the launch, the dataset and the run folder: the user's to fix, in one line
        training = setup_training(RunConfig.from_params(_settings(args)), progress_bars=False)
    except (ValueError, OSError, RunLockedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        run = training.fit()
    finally:
        training.run.close()
    if rank_distrib() == 0:
        final = run.metrics["final"]
        print(f"run {run.run_id} finished: top1 {final['top1']:.4f}, top5 {final['top5']:.4f}, valid_loss "
              f"{final['valid_loss']:.4f} ({relative_to_repo(run.path)})")
    return 0
