"""``python -m tsamlib runs``: the runs with their settings, status and top-1; ``--settings``: every run setting
with its default and meaning."""
from __future__ import annotations

import argparse

__all__ = ["add_runs", "cmd_runs"]

_COLUMNS = ["run_id", "dataset", "preset", "n_frames", "shift_depth", "f_div", "audio", "arch", "epochs", "status",
            "top1", "date"]


def add_runs(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="list the runs with their settings, status and top-1")
    p.add_argument("--runs-root", default=None, help="folder of the run folders (default results/runs)")
    p.add_argument("--settings", action="store_true", help="print every run setting with its default and meaning")
    p.add_argument("--tensorboard", action="store_true", help="give every finished run TensorBoard events (from its "
                   "metrics.json, for runs trained without --log tensorboard) and print the tensorboard command")
    p.set_defaults(func=cmd_runs)


def cmd_runs(args: argparse.Namespace) -> int:
    from ..config import settings_help
    from ..runs.folder import runs_table

    if args.settings:
        print(settings_help())
        return 0
    if args.tensorboard:
        return _tensorboard(args.runs_root)
    df = runs_table(args.runs_root)
    if df.empty:
        print("no runs yet: train one with `papermill notebooks/03_train.ipynb out.ipynb` or `bash run.sh`")
        return 0
    show = df[[c for c in _COLUMNS if c in df.columns]].copy()
    show.columns = [{"shift_depth": "k", "n_frames": "frames"}.get(c, c) for c in show.columns]
    if "top1" in show:
        show["top1"] = show["top1"].map(lambda v: "" if v is None or v != v else f"{v:.3f}")
    print(show.fillna("").to_string(index=False))
    return 0


def _tensorboard(runs_root: str | None) -> int:
    from ..runs.fileio import relative_to_repo
    from ..runs.folder import is_finished, runs_dir
    from ..training.tracking import ensure_tensorboard

    root = runs_dir(runs_root)
    finished = [d for d in sorted(root.iterdir()) if d.is_dir() and is_finished(d)] if root.is_dir() else []
    written = sum(ensure_tensorboard(d) for d in finished)
    print(f"{len(finished)} finished runs under {relative_to_repo(root)} ({written} given their events now, from "
          f"metrics.json); view them side by side: tensorboard --logdir {relative_to_repo(root)}")
    return 0
