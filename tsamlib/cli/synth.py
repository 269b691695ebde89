"""``python -m tsamlib synth``: a synthetic labelled video dataset (mp4 + manifest.csv,
:mod:`tsamlib.data.synthetic`); ``--describe`` prints the classes of a kind."""
from __future__ import annotations

import argparse
import sys

from .args import number

__all__ = ["add_synth", "cmd_synth"]


def add_synth(sub: argparse._SubParsersAction) -> None:
    from ..data.synthetic import KINDS  # light: numpy only
    p = sub.add_parser("synth", help="write a synthetic labelled video dataset (mp4 + manifest.csv)")
    p.add_argument("--kind", choices=KINDS, default="default", help="which synthetic dataset (default: default)")
    p.add_argument("--out", default=None, help="dataset folder")
    p.add_argument("--n-per-class", type=number(int, 1), default=None, help="clips per class (default: the kind's)")
    p.add_argument("--n-classes", type=number(int, 1), default=None, help="classes (default: the kind's)")
    p.add_argument("--seconds", type=number(float, 0, open_lo=True), default=None,
                   help="clip length (default: the kind's)")
    p.add_argument("--size", type=number(int, 8, 4096), nargs=2, metavar=("H", "W"), default=None,
                   help="frame height and width in pixels (default: the kind's)")
    p.add_argument("--fps", type=number(float, 0, 240, open_lo=True), default=None,
                   help="frames per second (default: the kind's)")
    p.add_argument("--seed", type=number(int, 0), default=0, help="seed of the content (default 0)")
    p.add_argument("--no-audio", action="store_true", help="write no audio track")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset made with other parameters")
    p.add_argument("--workers", type=number(int, 1), default=None, help="writer processes (default 2)")
    p.add_argument("--describe", action="store_true", help="print the classes of --kind and exit")
    p.set_defaults(func=cmd_synth)


def cmd_synth(args: argparse.Namespace) -> int:
    from ..data.synthetic import describe, make_synthetic_dataset
    if args.describe:
        for name, text in describe(args.kind):
            print(f"{name:28s} {text}")
        return 0
    if args.out is None:
        raise SystemExit("error: synth needs --out FOLDER (or --describe)")
    size = tuple(args.size) if args.size else None
    try:   # an existing dataset with other parameters, a folder that cannot be written: one line
        make_synthetic_dataset(args.out, kind=args.kind, n_per_class=args.n_per_class, n_classes=args.n_classes,
                               seconds=args.seconds, size=size, fps=args.fps, seed=args.seed, audio=not args.no_audio,
                               overwrite=args.overwrite, workers=args.workers)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
