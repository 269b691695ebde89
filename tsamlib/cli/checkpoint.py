"""``python -m tsamlib checkpoint``: look inside any TSM-family checkpoint, and convert it into a portable package.

    python -m tsamlib checkpoint inspect TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment8_e50.pth
    python -m tsamlib checkpoint inspect FILE --json                     # the same as one JSON object
    python -m tsamlib checkpoint convert FILE --out DIR --n-frames 8 --f-div 8 --dataset kinetics-400
    python -m tsamlib checkpoint convert RUN_ID --out DIR                # a finished run: everything from the run

``inspect`` prints the format (told from the keys), the model the tensors make, every setting the file records
with where it was read, what its name claims (never taken as a value), its records, and what would load into the
model it states. ``convert`` writes ``DIR/model.safetensors``, ``DIR/config.json`` and a model card
``DIR/README.md`` (:mod:`tsamlib.evaluation.package`), checked before it is kept. A mistake ends in one line and
exit code 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .args import number

__all__ = ["add_checkpoint", "cmd_inspect", "cmd_convert"]

_EXAMPLES = """examples:
  python -m tsamlib checkpoint inspect TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment8_e50.pth
  python -m tsamlib checkpoint convert TSM_...segment8_e50.pth --out packages/tsm-r50 --n-frames 8 --f-div 8
  python -m tsamlib checkpoint convert demo --out packages/demo          # a finished run (id or folder)
  python -m tsamlib train --pretrained packages/tsm-r50 --arch resnet50 --dataset my.csv    # fine-tune from it"""


def add_checkpoint(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("checkpoint", help="inspect a checkpoint of the TSM family (TSM, mmaction2, the authors', a "
                                          "run's, a package) or convert it into a safetensors package with a card",
                       description=__doc__.splitlines()[0], epilog=_EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_subparsers(dest="action", required=True)
    q = what.add_parser("inspect", help="format, arch, classes, frames, shift settings, records, what would load")
    q.add_argument("file", help="a checkpoint file or a package folder")
    q.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    q.set_defaults(func=cmd_inspect)
    c = what.add_parser("convert", help="DIR/model.safetensors + config.json + README.md (a model card)",
                        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("source", help="a checkpoint file, a package folder, or a finished run (id or folder)")
    c.add_argument("--out", required=True, help="the package folder to write (must not exist, or be empty)")
    g = c.add_argument_group("settings the file does not record (checked against those it does)")
    g.add_argument("--arch", default=None, help="timm name, for a ResNet variant the tensors cannot name")
    g.add_argument("--n-frames", type=number(int, 1, 256), default=None, help="frames per clip (TSM's files: the "
                   "segment count of their name)")
    g.add_argument("--f-div", type=number(int, 2, 1024), default=None, help="C // f_div channels move each way "
                   "(TSM's files: the 'shift' number of their name)")
    g.add_argument("--audio", action=argparse.BooleanOptionalAction, default=None, help="the model has the audio "
                   "frame")
    g.add_argument("--shift-depth", type=number(int, 0, 64), default=None, help="k (the authors' files: 4)")
    c.add_argument("--classes", default=None, metavar="FILE", help="class names, one per line, line i = output i")
    c.add_argument("--dataset", default=None, help="what the weights were trained on, for the card (e.g. "
                   "kinetics-400)")
    c.add_argument("--name", default=None, help="the model's name in the card (default: the folder's name)")
    c.add_argument("--weights", choices=("last", "best"), default=None, help="a run's last or best-epoch weights "
                   "(default: the run's eval_weights)")
    c.add_argument("--runs-root", default=None, help="where to look up a run id (default results/runs)")
    c.add_argument("--overwrite", action="store_true", help="replace an existing package folder")
    c.set_defaults(func=cmd_convert)


def _inspect(path: str) -> dict[str, Any]:
    """What ``inspect`` shows: the file's info, and what would load into the model it states (a dry run on the
    meta device; settings it does not record filled from its name's hints or defaults, and said so)."""
    from ..model.formats import inspect_checkpoint, not_recorded
    from ..model.tsam import check_model_settings

    info = inspect_checkpoint(path)
    kwargs = info.model_kwargs()
    defaults = dict(n_frames=8, f_div=8, shift_depth=1, audio=False)
    assumed = {n: info.name_hints.get(n, defaults[n]) for n in not_recorded(info.format, kwargs)}
    arch = kwargs.pop("arch", None)
    would = None
    if arch is not None:
        settings = {**kwargs, **assumed}
        settings.setdefault("num_classes", 2)
        report = check_model_settings(arch, pretrained=path, **settings)
        would = dict(loaded=report.loaded, missing=report.missing, unexpected=report.unexpected,
                     head=report.head, not_weights=list(info.ignored), assumed_for_the_dry_run=assumed)
    return dict(info=info, would_load=would)


def cmd_inspect(args: argparse.Namespace) -> int:
    try:   # UnsupportedCheckpoint and CheckpointError are ValueErrors
        out = _inspect(args.file)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    info, would = out["info"], out["would_load"]
    if args.json:
        record = dict(vars(info))
        record["would_load"] = would
        print(json.dumps(record, indent=2, default=str))
        return 0
    print(f"{info.path}")
    for line in info.describe():
        print(f"  {line}")
    if would is None:
        print("  would load: nothing without an arch (a ResNet variant): give arch= to create_tsam")
    else:
        from ..model.tsam import tsam_kwargs
        kwargs = tsam_kwargs({**info.model_kwargs(), **would["assumed_for_the_dry_run"]})   # create_tsam's
        call = ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if k != "arch")
        print(f"  would load: {would['loaded']} tensors, {len(would['missing'])} missing, "
              f"{len(would['unexpected'])} unexpected, head {would['head']}"
              + (f"; {len(would['not_weights'])} not weights" if would["not_weights"] else "")
              + f", into create_tsam({kwargs.get('arch')!r}, {call}, pretrained=...)"
              + (f" (assumed for this dry run, not recorded: {would['assumed_for_the_dry_run']})"
                 if would["assumed_for_the_dry_run"] else ""))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from ..evaluation.package import convert_checkpoint
    from ..runs.folder import resolve_run

    source = Path(args.source)
    if not source.exists():
        try:   # a run id
            source = resolve_run(args.source, args.runs_root)
        except FileNotFoundError:
            print(f"error: {args.source} is neither a file, a folder nor a run id (python -m tsamlib runs lists "
                  "the runs)", file=sys.stderr)
            return 2
    overrides = {k: v for k, v in dict(arch=args.arch, n_frames=args.n_frames, f_div=args.f_div, audio=args.audio,
                                       shift_depth=args.shift_depth).items() if v is not None}
    try:
        classes = None
        if args.classes:
            where = Path(args.classes)
            why = ("no such file" if not where.exists() else "not a regular file" if not where.is_file()  # a pipe
                   else "over 10 MB, not a list of names" if where.stat().st_size > 10_000_000 else None)  # a device
            if why:
                raise ValueError(f"--classes {where}: {why} (one class name per line)")
            try:
                text = where.read_text(encoding="utf-8-sig")   # a byte-order mark is not part of the first name
            except UnicodeDecodeError:
                raise ValueError(f"--classes {args.classes} is not UTF-8 text (one class name per line)") from None
            classes = [ln.strip() for ln in text.splitlines() if ln.strip()]
            if not classes:
                raise ValueError(f"--classes {args.classes} holds no class names (one per line, line i = output i)")
        out = convert_checkpoint(source, args.out, classes=classes, dataset=args.dataset, name=args.name,
                                 overwrite=args.overwrite, weights=args.weights, **overrides)
    except (ValueError, OSError) as e:   # UnsupportedCheckpoint and CheckpointError are ValueErrors
        print(f"error: {e}", file=sys.stderr)
        return 2
    files = ", ".join(f"{p.name} ({p.stat().st_size:,} bytes)" for p in sorted(Path(out).iterdir()))
    print(f"wrote {out}: {files}; checked: it reads back to the same logits")
    return 0
