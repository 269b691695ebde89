"""Command line: ``python -m tsamlib <command> ...`` (also installed as ``tsam``).

Commands: ``index {kinetics400,something-v1,list,folder}`` builds a manifest CSV; ``synth`` writes a
synthetic dataset; ``prepare`` converts a manifest's clips to JPEG frame folders + ``.wav``; ``train`` trains one
run (:mod:`tsamlib.cli.train`); ``notebooks`` runs the notebooks in order; ``runs``, ``evaluate`` and ``predict``
list, score and use finished runs; ``checkpoint`` inspects and converts checkpoint files (:mod:`tsamlib.cli.checkpoint`). To add a
command, write ``add_<name>(subparsers)`` that registers a parser with ``set_defaults(func=cmd_<name>)`` and put
it in ``COMMANDS``; import heavy modules inside ``cmd_<name>``.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Callable, Sequence

from .cli.args import number
from .cli.checkpoint import add_checkpoint
from .cli.train import add_train

__all__ = ["COMMANDS", "build_parser", "main"]


def _split_files(pairs: Sequence[str]) -> dict[str, str]:
    """Parse ``split=path`` pairs (``train=train.txt valid=val.txt``)."""
    out = {}
    for pair in pairs:
        split, sep, path = pair.partition("=")
        if not sep or not path:
            raise SystemExit(f"error: expected split=path (e.g. train=training.txt), got {pair!r}")
        out[split] = path
    return out


def cmd_index(args: argparse.Namespace) -> int:
    try:   # a missing folder, no videos, an annotation file that does not fit: one line, nothing written
        _index(args)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _index(args: argparse.Namespace) -> None:
    from .data import index as m
    from .runs.fileio import writable_folder
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


def cmd_synth(args: argparse.Namespace) -> int:
    from .data.synthetic import describe, make_synthetic_dataset
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


def add_synth(sub: argparse._SubParsersAction) -> None:
    from .data.synthetic import KINDS  # light: numpy only
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


def cmd_notebooks(args: argparse.Namespace) -> int:
    from .cli.notebooks import NotebookFailed, parse_param, run_pipeline

    params = {name: parse_param(value) for name, value in args.param}
    try:
        run_pipeline(args.only or None, params, progress=args.progress_bar, publish=args.publish)
    except NotebookFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as e:   # a notebook or parameter that does not exist, a folder not writable
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def add_notebooks(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("notebooks", help="run notebooks 01-04 in order (the main job), or those given by --only "
                                         "(05: the mini tables, 06: a released checkpoint); executed copies in "
                                         "results/notebooks/local/")
    p.add_argument("--only", nargs="*", help="notebook prefixes to run, e.g. 03 04")
    p.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="a parameter for every notebook that declares it (papermill style)")
    p.add_argument("--publish", action="store_true",
                   help="write the committed copies in results/notebooks/ and train run 'demo' afresh")
    p.add_argument("--progress-bar", action="store_true", help="papermill's cell progress bar (off: the "
                                                              "notebooks print their own progress lines)")
    p.set_defaults(func=cmd_notebooks)


def cmd_runs(args: argparse.Namespace) -> int:
    from .config import settings_help
    from .runs.folder import runs_table

    if args.settings:
        print(settings_help())
        return 0
    df = runs_table(args.runs_root)
    if df.empty:
        print("no runs yet: train one with `papermill notebooks/03_train.ipynb out.ipynb` or `bash run.sh`")
        return 0
    cols = ["run_id", "dataset", "preset", "n_frames", "shift_depth", "f_div", "audio", "arch", "epochs", "status",
            "top1", "date"]
    show = df[[c for c in cols if c in df.columns]].copy()
    show.columns = [{"shift_depth": "k", "n_frames": "frames"}.get(c, c) for c in show.columns]
    if "top1" in show:
        show["top1"] = show["top1"].map(lambda v: "" if v is None or v != v else f"{v:.3f}")
    print(show.fillna("").to_string(index=False))
    return 0


def add_runs(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="list the runs with their settings, status and top-1")
    p.add_argument("--runs-root", default=None, help="folder of the run folders (default results/runs)")
    p.add_argument("--settings", action="store_true", help="print every run setting with its default and meaning")
    p.set_defaults(func=cmd_runs)


def _resolve_run(args: argparse.Namespace) -> bool:
    """Turn ``args.run`` (a run id or a folder) into the run folder (a package folder stays as it is); print a
    one-line error when there is none."""
    from .model.formats import is_package_folder
    from .runs.folder import resolve_run
    if is_package_folder(args.run):
        return True
    try:
        args.run = str(resolve_run(args.run))
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return False
    return True


def cmd_predict(args: argparse.Namespace) -> int:
    mode, others = ("--stream", ("n_clips", "n_crops")) if args.stream else ("a clip prediction",
                                                                            ("rate", "audio_window"))
    given = [f"--{name.replace('_', '-')}" for name in others if getattr(args, name) is not None]
    if given:   # an option of the other mode would be ignored: say so rather than drop it
        print(f"error: {', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply to {mode}: drop "
              f"{'it' if len(given) == 1 else 'them'}{'' if args.stream else ' or add --stream'}", file=sys.stderr)
        return 2
    if args.stream:
        from .evaluation.stream import cmd_stream as run
        args.rate = "auto" if args.rate is None else args.rate   # --audio-window: None (not given) is cmd_stream's
    else:
        from .evaluation.predict import cmd_predict as run
        args.n_clips = 2 if args.n_clips is None else args.n_clips
        args.n_crops = 1 if args.n_crops is None else args.n_crops
    return run(args) if _resolve_run(args) else 1


def _rate_arg(text: str) -> str | float:
    """``--rate``: 'auto', 'native' or a positive number of frames per second."""
    if text in ("auto", "native"):
        return text
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r}: give 'auto', 'native' or a positive number of frames per second")
    return value


def add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="top classes of a video file with a trained run")
    p.add_argument("video", help="video file (or frame folder)")
    p.add_argument("--run", required=True, help="a run id (python -m tsamlib runs lists them), a run folder, or a "
                                               "package folder (checkpoint convert)")
    p.add_argument("--top", type=number(int, 1), default=5, help="how many classes to print (default 5)")
    p.add_argument("--n-clips", type=number(int, 1), default=None, help="test clips averaged (default 2)")
    p.add_argument("--n-crops", type=int, default=None, choices=(1, 3), help="crops per clip (default 1: centre)")
    p.add_argument("--stream", action="store_true",
                   help="classify the video as a stream, one frame at a time (a run with shift_direction causal): a "
                        "line per frame fed with the top classes so far (which frames: --rate)")
    p.add_argument("--rate", type=_rate_arg, default=None,
                   help="with --stream: 'auto' (default: the run's n_frames frames, spaced as in training), 'native' "
                        "(every frame), or frames per second up to the video's own rate")
    p.add_argument("--audio-window", type=number(float, 0, open_lo=True), default=None,
                   help="with --stream, on a run with audio: seconds of sound behind each frame's audio image "
                        "(default 10)")
    p.set_defaults(func=cmd_predict)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation.views import cmd_evaluate as run
    return run(args) if _resolve_run(args) else 1


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


def _fps_arg(text: str) -> float | None:
    """``--fps``: a positive number, or "native" (None: every frame kept)."""
    if text.strip().lower() == "native":
        return None
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of frames per second or 'native', got {text!r}") from None
    if not 0 < v <= 1000:
        raise argparse.ArgumentTypeError(f"fps must be above 0 and at most 1000 (or 'native'), got {text!r}")
    return v


_NATIVE = "native"   # --fps native, kept apart from "not given" (the layout's default)


def _fps_or_native(text: str) -> float | str:
    """``--fps`` of ``prepare``: a positive number, or "native" (every frame kept)."""
    v = _fps_arg(text)
    return _NATIVE if v is None else v


def _prepare_options(args: argparse.Namespace) -> dict:
    """``prepare``'s flags resolved per layout; ValueError (naming the flag and the fix) for a flag the layout has
    no use for. ``--height`` alone selects the authors' layout."""
    from .data.prepare import AUTHORS_FPS, AUTHORS_HEIGHT
    layout = args.layout or ("authors" if args.height is not None else "tsamlib")
    fps = None if args.fps == _NATIVE else args.fps
    if layout == "authors":
        for flag, value, why in (("--short-side", args.short_side, "use --height (their frames are --height pixels "
                                  "high, aspect kept)"),
                                 ("--quality", args.quality, "their JPEGs are ffmpeg's at -q:v 0")):
            if value is not None:
                raise ValueError(f"{flag} belongs to the default layout, not to --layout authors: drop it ({why})")
        return dict(layout=layout, height=AUTHORS_HEIGHT if args.height is None else args.height,
                    fps=AUTHORS_FPS if args.fps is None else fps)
    if args.height is not None:
        raise ValueError("--height is the authors' layout's frame height (ffmpeg scale=-1:H): use --layout authors "
                         "with it, or --short-side for the default layout")
    return dict(layout=layout, short_side=256 if args.short_side is None else args.short_side, fps=fps,
                quality=90 if args.quality is None else args.quality)


def cmd_prepare(args: argparse.Namespace) -> int:
    from .data.prepare import prepare_dataset
    try:   # the manifest, the output folder: the user's to fix, in one line (a clip's problem is recorded instead)
        opts = _prepare_options(args)
        res = prepare_dataset(args.manifest, args.out, workers=args.workers,
                              mels="default" if args.mels is None else args.mels, **opts)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0 if (res.table["problem"] == "").any() else 1


def add_prepare(sub: argparse._SubParsersAction) -> None:
    from .data.prepare import AUTHORS_FPS, AUTHORS_HEIGHT, DEFAULT_MELS, LAYOUTS
    p = sub.add_parser("prepare", help="convert a manifest's clips to JPEG frame folders + .wav + log-mels (fast "
                                       "loading), with OUT/manifest.csv")
    p.add_argument("manifest", help="input manifest CSV")
    p.add_argument("--out", required=True, help="output folder (OUT/<class>/<stem>/00001.jpg, OUT/<class>/<stem>.wav)")
    p.add_argument("--layout", choices=LAYOUTS, default=None,
                   help="'tsamlib' (default: decord frames, --short-side, PIL JPEG at --quality) or 'authors' (their "
                        "ffmpeg -vf \"scale=-1:256,fps=10\" -q:v 0 %%06d.jpg, done with PyAV: --fps default "
                        f"{AUTHORS_FPS:g}, --height default {AUTHORS_HEIGHT}); --height alone selects 'authors'")
    p.add_argument("--short-side", type=number(int, 0), default=None, help="default layout: short side of the frames, "
                   "never upscaled (default 256; 0 keeps the size)")
    p.add_argument("--height", type=number(int, 1, 4320), default=None, help="authors' layout: frame height in "
                   f"pixels (1..4320), aspect kept, up or down (default {AUTHORS_HEIGHT})")
    p.add_argument("--fps", type=_fps_or_native, default=None,
                   help=f"frames per second kept, or 'native' (default: native; {AUTHORS_FPS:g} for --layout authors); "
                        "10 reads as fast as native with about a third of the frame bytes "
                        "(results/benchmarks/data_layouts.md)")
    p.add_argument("--quality", type=number(int, 1, 100), default=None, help="default layout: JPEG quality 1..100 "
                   "(default 90)")
    p.add_argument("--mels", nargs="+", default=None, metavar="FRONTEND:N_MELS",
                   help="log-mels stored per clip for runs with these audio settings (a run's audio_frontend and "
                        f"n_mels), or 'none' (default: {DEFAULT_MELS['tsamlib'][0]}; "
                        f"{DEFAULT_MELS['authors'][0]} for --layout authors); a rerun adds missing ones")
    p.add_argument("--workers", type=number(int, 1), default=None, help="worker processes (default: number of cores)")
    p.set_defaults(func=cmd_prepare)


def cmd_export(args: argparse.Namespace) -> int:
    from .evaluation.export import cmd_export as run
    return run(args) if _resolve_run(args) else 1


def add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="a run's model to ONNX (standard operators, dynamic batch), checked with "
                                      "onnxruntime on real clips first")
    p.add_argument("run", help="a run id (python -m tsamlib runs lists them), a run folder, or a package folder "
                               "(checkpoint convert; give --videos)")
    p.add_argument("--onnx", required=True, help="the ONNX file to write")
    p.add_argument("--videos", nargs="+", default=None,
                   help="clips to check the export on: 6 views, a centre clip of each of the first 6 (fewer are used "
                        "again; default: the run's validation videos, then its training videos)")
    p.add_argument("--atol", type=number(float, 0, 1, open_lo=True), default=1e-4,
                   help="largest logit difference allowed between onnxruntime and PyTorch (default 1e-4)")
    p.add_argument("--weights", choices=("last", "best"), default=None,
                   help="the run's last or best-epoch weights (default: the run's eval_weights)")
    p.set_defaults(func=cmd_export)


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
