"""``python -m tsamlib export RUN --onnx OUT``: a run's (or a package's) model to ONNX, checked with onnxruntime on
real clips first (:func:`~tsamlib.evaluation.export.export_onnx`); one line of what was written and checked, or a
one-line error (exit code 1; 2 for ``--stream`` of a run that is not causal)."""
from __future__ import annotations

import argparse
import sys

from .args import find_source, number

__all__ = ["add_export", "cmd_export"]


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
    p.add_argument("--stream", action="store_true",
                   help="a causal run: one step of StreamingTSAM with its state as explicit inputs and outputs, "
                        "checked by streaming the clips frame by frame")
    p.add_argument("--weights", choices=("last", "best"), default=None,
                   help="the run's last or best-epoch weights (default: the run's eval_weights)")
    p.add_argument("--int8", action="store_true", help="static INT8 (QDQ), kept only when its top-1 agrees with "
                                                       "fp32 on the run's validation clips (--min-agreement)")
    p.add_argument("--calib-clips", type=number(int, 1, 100000), default=32,
                   help="--int8: training clips to calibrate on (default 32, all when fewer)")
    p.add_argument("--calib-method", choices=("minmax", "entropy", "percentile"), default="minmax",
                   help="--int8: onnxruntime's calibration method (default minmax)")
    p.add_argument("--min-agreement", type=number(float, 0, 2, open_lo=True), default=0.98,
                   help="--int8: least top-1 agreement with fp32 on the validation clips (default 0.98)")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    run = find_source(args.run)
    if run is None:
        return 1
    from ..data.decode import VideoReadError
    from ..evaluation.export import NotCausalError, export_onnx, export_onnx_stream
    from ..evaluation.quantize import export_int8
    try:
        if args.int8:
            rep = export_int8(run, args.onnx, calib_clips=args.calib_clips, min_agreement=args.min_agreement,
                              method=args.calib_method, weights=args.weights, stream=args.stream)
        else:
            export = export_onnx_stream if args.stream else export_onnx
            rep = export(run, args.onnx, videos=args.videos, atol=args.atol, weights=args.weights)
    except NotCausalError as e:   # the user's choice of run, not a failure of the export
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError, ValueError, VideoReadError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(rep.summary())
    return 0
