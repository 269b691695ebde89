"""``python -m tsamlib predict VIDEO --run RUN``: the top classes of a video with a run's (or a package's) model
(:func:`~tsamlib.evaluation.predict.predict`), or, with ``--stream``, a line per frame fed to a causal run
(:func:`~tsamlib.evaluation.stream.stream_video`; a live source: :func:`~tsamlib.evaluation.stream.stream_live`).
An option of the other mode is refused rather than ignored; a missing or unreadable file or run, a stalled live
source, is said in one line (exit code 1)."""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from .args import find_source, number

__all__ = ["add_predict", "cmd_predict"]

# None in the parser: not given
_CLIP_ONLY, _STREAM_ONLY = ("n_clips", "n_crops"), ("rate", "audio_window", "live", "stall_timeout")


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
    p.add_argument("video", help="video file (or frame folder); with --stream also a live source: - (stdin), a "
                                 "named pipe, a URL (rtsp://, http://, ...), a capture device")
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
    p.add_argument("--live", action="store_true", default=None,
                   help="with --stream: read the video as a live source, as its frames arrive (taken without it for "
                        "-, pipe:, URLs, named pipes and devices; give it for a file still being written, in a "
                        "streamable container such as MPEG-TS). Frames chosen by their timestamps (--rate auto: the "
                        "run's n_frames per its median training clip); when the model falls behind, the oldest "
                        "waiting frame is dropped (counted at the end). A run with audio is refused (no live sound)")
    p.add_argument("--stall-timeout", type=number(float, 0, open_lo=True), default=None, metavar="SECONDS",
                   help="with --stream of a live source: give up when no frame came for this long (default 10)")
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
    from ..evaluation.stream import is_live_source
    if is_live_source(args.video):   # a clip prediction reads a finished file
        print(f"error: {args.video} is a live source (a pipe, URL or device): add --stream", file=sys.stderr)
        return 2
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
    from ..evaluation.stream import AUDIO_WINDOW, RATE, is_live_source, stream_video
    from ..evaluation.views import has_audio
    rate = RATE if args.rate is None else args.rate
    if args.live or is_live_source(args.video):
        return _stream_live(run, args, rate)
    if args.stall_timeout is not None:
        print(f"error: --stall-timeout does not apply to the finished file {args.video}: drop it, or add --live "
              "(a file still being written)", file=sys.stderr)
        return 2
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


def _stream_live(run: Path, args: argparse.Namespace, rate) -> int:
    from ..data.decode import VideoReadError
    from ..evaluation.stream import LIVE_QUEUE, STALL_TIMEOUT, stream_live
    stall = STALL_TIMEOUT if args.stall_timeout is None else args.stall_timeout
    if args.audio_window is not None:   # a live source's sound is not read
        print(f"error: --audio-window does not apply to a live source ({args.video}): its sound is not read; drop "
              "it", file=sys.stderr)
        return 2
    live = None
    try:
        live = stream_live(run, args.video, rate=rate, k=args.top, stall_timeout=stall)
        chosen = "every frame" if live.rate is None else f"{live.rate:g} fps" + (
            f" (auto: {live.cfg.n_frames} frames per {live.clip_seconds:g} s training clip)" if rate == "auto" else "")
        print(f"{args.video}  (run {run.name}, live stream: {chosen}, stall timeout {stall:g} s, queue of "
              f"{LIVE_QUEUE} frames, the oldest dropped when the model falls behind)", flush=True)
        for step in live:
            tops = "  ".join(f"{name} {p:.3f}" for name, p in step.top)
            print(f"{step.time:7.2f} s  frame {step.frame:5d}  {tops}", flush=True)
    except KeyboardInterrupt:   # how an endless source is stopped: what it gave is said, no Traceback
        print(f"stopped: {live.summary() if live else 'before the first frame'}", file=sys.stderr)
        return 130
    except (OSError, VideoReadError, RuntimeError, ValueError) as e:   # SourceStalled is a RuntimeError
        print(f"error: {e}", file=sys.stderr)
        return 1
    few = live.fed < live.cfg.n_frames
    print(f"end of source: {live.summary()}" + (f"; fewer frames than the run's n_frames={live.cfg.n_frames}: the "
          "last step saw less than a training clip" if few else ""), flush=True)
    return 0
