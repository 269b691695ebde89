"""``python -m tsamlib evaluate RUN``: a run's fixed multi-view evaluation
(:func:`~tsamlib.evaluation.views.evaluate_views`), its metrics printed and its record written to
``<run>/eval_<split>_<C>x<K>.json``; one-line errors (exit code 1)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .args import find_source, number

__all__ = ["add_evaluate", "cmd_evaluate"]


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="fixed multi-view evaluation of a run -> <run>/eval_<split>_<C>x<K>.json")
    p.add_argument("run", help="a run id (python -m tsamlib runs lists them), a run folder, or a package folder "
                               "(checkpoint convert; give --videos)")
    p.add_argument("--split", default="valid", help="the manifest split to score (default valid)")
    p.add_argument("--n-clips", type=number(int, 1), default=2, help="clips per video (default 2; papers: 10)")
    p.add_argument("--n-crops", type=int, default=3, choices=(1, 3), help="crops per clip (papers: 3)")
    p.add_argument("--batch-size", type=number(int, 1), default=8, help="views per batch (default 8)")
    p.add_argument("--num-workers", type=number(int, 0), default=0, help="loader processes (default 0)")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    run = find_source(args.run)
    if run is None:
        return 1
    from ..evaluation.views import eval_path, evaluate_views
    from ..runs.fileio import relative_to_repo
    try:
        res = evaluate_views(run, args.split, args.n_clips, args.n_crops, args.batch_size, args.num_workers)
    except (OSError, RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{Path(run).name} {args.split} {args.n_clips}x{args.n_crops} views: top1 {_fmt(res['top1'])}  "
          f"top5 {_fmt(res['top5'])}  loss {_fmt(res['loss'])}  ({res['n_videos']} videos, {res['n_failed']} failed, "
          f"{res['n_excluded']} excluded)")
    for path, why in res["failed"].items():
        print(f"  failed: {path}: {why}")
    print(f"written: {relative_to_repo(eval_path(run, args.split, args.n_clips, args.n_crops))}")
    return 0


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
