"""``python -m tsamlib index {kinetics400,something-v1,list,folder}``: a manifest CSV for a real dataset
(:mod:`tsamlib.data.index`). A missing folder, no videos, an annotation file that does not fit: one line, exit
code 2, nothing written."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from .args import number

__all__ = ["add_index", "cmd_index"]


def _split_files(pairs: Sequence[str]) -> dict[str, str]:
    """Parse ``split=path`` pairs (``train=train.txt valid=val.txt``)."""
    out = {}
    for pair in pairs:
        split, sep, path = pair.partition("=")
        if not sep or not path:
            raise SystemExit(f"error: expected split=path (e.g. train=training.txt), got {pair!r}")
        out[split] = path
    return out


def add_index(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="build a manifest CSV (path,label,...,problem) for a real dataset")
    ds = p.add_subparsers(dest="dataset", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("root", help="dataset folder")
        q.add_argument("--out", required=True, help="manifest CSV to write")
        q.add_argument("--workers", type=number(int, 1), default=None, help="probe processes (default min(4, cores))")
        q.set_defaults(func=cmd_index)

    q = ds.add_parser("kinetics400", help="official CSVs label,youtube_id,time_start,time_end,split")
    common(q)
    q.add_argument("--annotations", nargs="+", required=True,
                   help="a folder with train.csv/validate.csv[/test.csv], or split=csv pairs")
    q = ds.add_parser("something-v1", help="frame folders root/<id>/00001.jpg and the official id;label CSVs")
    common(q)
    q.add_argument("--annotation-dir", required=True, help="folder with something-something-v1-*.csv")
    q = ds.add_parser("list", help="'id label' list files (the TSAM authors' format)")
    common(q)
    q.add_argument("--lists", nargs="+", required=True, help="split=list.txt pairs, e.g. train=training.txt")
    q.add_argument("--video-ext", default=".mp4", help="extension of the video files named by ids (default .mp4)")
    q.add_argument("--class-names", default=None, help="text file, one class name per line (line = label)")
    q = ds.add_parser("folder", help="root/<class>/<video> or root/train|valid/<class>/<video>")
    common(q)
    q.add_argument("--valid-fraction", type=number(float, 0, 1, open_lo=True, open_hi=True), default=0.2,
                   help="share of each class held out for validation when there is no train/valid split (default 0.2)")
    q.add_argument("--seed", type=number(int, 0), default=0, help="seed of the validation split (default 0)")


def cmd_index(args: argparse.Namespace) -> int:
    try:   # a missing folder, no videos, an annotation file that does not fit: one line, nothing written
        _index(args)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _index(args: argparse.Namespace) -> None:
    from ..data import index as m
    from ..runs.fileio import writable_folder
    writable_folder(Path(args.out).absolute().parent, "write the manifest to a folder you can write (index --out)")
    if args.dataset == "kinetics400":
        ann = _split_files(args.annotations) if "=" in args.annotations[0] else args.annotations[0]
        m.index_kinetics400(args.root, ann, args.out, workers=args.workers)
    elif args.dataset == "something-v1":
        m.index_something_v1(args.root, args.annotation_dir, args.out, workers=args.workers)
    elif args.dataset == "list":
        names = None
        if args.class_names:
            names = [ln.strip() for ln in Path(args.class_names).read_text(encoding="utf-8").splitlines() if ln.strip()]
        m.index_list(args.root, _split_files(args.lists), args.out, video_ext=args.video_ext, class_names=names,
                     workers=args.workers)
    else:
        m.index_folder(args.root, args.out, valid_fraction=args.valid_fraction, seed=args.seed, workers=args.workers)
