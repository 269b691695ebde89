"""``python -m tsamlib predict VIDEO --run RUN``: the top classes of a video with a run's (or a package's) model
(:func:`~tsamlib.evaluation.predict.predict`), or, with ``--stream``, a line per frame fed to a causal run
(:func:`~tsamlib.evaluation.stream.stream_video`). An option of the other mode is refused rather than ignored;
a missing or unreadable file or run is said in one line (exit code 1)."""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from .args import find_source, number

__all__ = ["add_predict", "cmd_predict"]

_CLIP_ONLY, _STREAM_ONLY = ("n_clips", "n_crops"), ("rate", "audio_window")   # None in the parser: not given


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


def cmd_predict(args: argparse.Namespace) -> int:
    mode, others = ("--stream", _CLIP_ONLY) if args.stream else ("a clip prediction", _STREAM_ONLY)
    given = [f"--{name.replace('_', '-')}" for name in others if getattr(args, name) is not None]
    if given:   # an option of the other mode would be ignored: say so rather than drop it
        print(f"error: {', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply to {mode}: drop "
              f"{'it' if len(given) == 1 else 'them'}{'' if args.stream else ' or add --stream'}", file=sys.stderr)
        return 2
    run = find_source(args.run)
    if run is None:
        return 1
    return _stream(run, args) if args.stream else _predict(run, args)


def _predict(run: Path, args: argparse.Namespace) -> int:
    from ..data.decode import VideoReadError
    from ..evaluation.predict import N_CLIPS, N_CROPS, predict
    n_clips = N_CLIPS if args.n_clips is None else args.n_clips
    n_crops = N_CROPS if args.n_crops is None else args.n_crops
    try:
        top = predict(run, args.video, k=args.top, n_clips=n_clips, n_crops=n_crops)
    except (FileNotFoundError, VideoReadError, RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    width = max(len(name) for name, _ in top)
    print(f"{args.video}  (run {run.name}, {n_clips} clips x {n_crops} crops)")
    for rank, (name, p) in enumerate(top, 1):
        print(f"{rank:2d}. {name:<{width}s}  {p:.4f}")
    return 0


def _stream(run: Path, args: argparse.Namespace) -> int:
    from ..data.decode import VideoReadError
    from ..evaluation.stream import AUDIO_WINDOW, RATE, stream_video
    from ..evaluation.views import has_audio
    rate = RATE if args.rate is None else args.rate
    try:
        if args.audio_window is not None and not has_audio(run):
            # as a clip prediction refuses the stream's options: an option that would be ignored is said
            print(f"error: --audio-window does not apply to run {run.name}: it has no audio (audio=False): drop it",
                  file=sys.stderr)
            return 2
        window = AUDIO_WINDOW if args.audio_window is None else args.audio_window
        print(f"{args.video}  (run {run.name}, stream: rate {rate}, audio window {window} s)")
        for step in stream_video(run, args.video, rate=rate, k=args.top, audio_window=window):
            tops = "  ".join(f"{name} {p:.3f}" for name, p in step.top)
            print(f"{step.time:7.2f} s  frame {step.frame:5d}  {tops}", flush=True)
    except (OSError, VideoReadError, RuntimeError, ValueError) as e:   # OSError: an unreadable image file too
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
