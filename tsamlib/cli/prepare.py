"""``python -m tsamlib prepare``: a manifest's clips as JPEG frame folders + ``.wav`` + log-mels
(:mod:`tsamlib.data.prepare`), in the default layout or the authors'. A flag the layout has no use for is refused,
naming the fix; the manifest and the output folder are the user's to fix, in one line (exit code 2); a clip's own
problem is recorded in ``OUT/manifest.csv`` instead (exit code 1 when no clip could be prepared)."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from .args import number

__all__ = ["add_prepare", "cmd_prepare", "prepare_options"]

_NATIVE = "native"   # --fps native, kept apart from "not given" (the layout's default)


def _fps_or_native(text: str) -> float | str:
    """``--fps``: a positive number up to 1000, or "native" (every frame kept)."""
    if text.strip().lower() == _NATIVE:
        return _NATIVE
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of frames per second or 'native', got {text!r}") from None
    if not 0 < v <= 1000:
        raise argparse.ArgumentTypeError(f"fps must be above 0 and at most 1000 (or 'native'), got {text!r}")
    return v


def add_prepare(sub: argparse._SubParsersAction) -> None:
    from ..data.prepare import AUTHORS_FPS, AUTHORS_HEIGHT, DEFAULT_MELS, LAYOUTS
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
    p.add_argument("--format", choices=("folders", "shards"), default="folders",
                   help="'folders' (default) or 'shards': WebDataset tar shards OUT/shard-NNNNNN.tar + OUT/index.json "
                        "(for network storage), packed from the frame folders prepared into OUT/folders")
    p.add_argument("--shard-size", type=_size, default=256e6, metavar="SIZE",
                   help="--format shards: about this many bytes per shard, e.g. 256MB (default) or 1GB")
    p.set_defaults(func=cmd_prepare)


def prepare_options(layout: str | None = None, height: int | None = None, short_side: int | None = None,
                    fps: float | str | None = None, quality: int | None = None) -> dict[str, Any]:
    """``prepare``'s flags (None: not given) as :func:`~tsamlib.data.prepare.prepare_dataset`'s keywords: the
    layout (``--height`` alone selects the authors'), the frame rate ("native": every frame; not given: native, or
    the authors' rate for their layout) and the flags given; what is not given takes prepare_dataset's default.
    ValueError (naming the flag and the fix) for a flag the layout has no use for."""
    from ..data.prepare import AUTHORS_FPS
    layout = layout or ("authors" if height is not None else "tsamlib")
    every = None if fps == _NATIVE else fps
    if layout == "authors":
        for flag, value, why in (("--short-side", short_side, "use --height (their frames are --height pixels "
                                  "high, aspect kept)"),
                                 ("--quality", quality, "their JPEGs are ffmpeg's at -q:v 0")):
            if value is not None:
                raise ValueError(f"{flag} belongs to the default layout, not to --layout authors: drop it ({why})")
        return dict(layout=layout, fps=AUTHORS_FPS if fps is None else every, **_given(height=height))
    if height is not None:
        raise ValueError("--height is the authors' layout's frame height (ffmpeg scale=-1:H): use --layout authors "
                         "with it, or --short-side for the default layout")
    return dict(layout=layout, fps=every, **_given(short_side=short_side, quality=quality))


def _size(text: str) -> float:
    """``--shard-size``: bytes, with an optional KB/MB/GB suffix (powers of 1000)."""
    t = text.strip().upper().removesuffix("B")
    scale = {"K": 1e3, "M": 1e6, "G": 1e9}.get(t[-1:], 1)
    try:
        v = float(t[:-1] if scale != 1 else t) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size such as 256MB, got {text!r}") from None
    if not v >= 1e4:
        raise argparse.ArgumentTypeError(f"a shard must hold at least 10KB, got {text!r}")
    return v


def _given(**options: Any) -> dict[str, Any]:
    """The options given (not None): the others take the library's defaults."""
    return {k: v for k, v in options.items() if v is not None}


def cmd_prepare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..data.prepare import prepare_dataset
    from ..data.shards import write_shards
    shards = getattr(args, "format", "folders") == "shards"
    try:   # the manifest, the output folder: the user's to fix, in one line (a clip's problem is recorded instead)
        opts = prepare_options(args.layout, args.height, args.short_side, args.fps, args.quality)
        # shards are packed from frame folders kept in OUT/folders, so a rerun resumes and skips the clips done
        folders = Path(args.out) / "folders" if shards else args.out
        res = prepare_dataset(args.manifest, folders, workers=args.workers, **_given(mels=args.mels), **opts)
        if shards and (res.table["problem"] == "").any():
            index = write_shards(res.manifest, args.out, shard_bytes=args.shard_size)
            print(f"shards written: {index} ({len(res.table)} clips, skipped ones as counted above); train on them "
                  f"with: python -m tsamlib train --dataset {index}")
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0 if (res.table["problem"] == "").any() else 1
