"""Export a trained run to ONNX, checked on real clips before the file is written.

    python -m tsamlib export RUN --onnx model.onnx [--videos a.mp4 b.mp4 ...]
    tsamlib.export_onnx(run, "model.onnx")

The graph is :func:`tsamlib.model.onnx_export.export_model_onnx`'s (standard ONNX operators only, dynamic batch).
Before it is kept, onnxruntime runs it on the run's own preprocessing of real clips (the ``videos`` given, else the
first videos of the run's validation split: a centre clip and crop each, as ``predict`` makes them) at batch sizes
other than the traced one, and its logits must agree with PyTorch's (the run's model as it trains and predicts)
within ``atol``; otherwise :class:`ExportCheckError` says by how much, and no file is written.

The file carries what a deployment needs in its metadata (onnxruntime: ``get_modelmeta().custom_metadata_map``):
``classes`` (JSON list, index = logit), ``n_frames``, ``img_size``, ``audio``, ``n_mels``, the normalisation, the
shift (``shift_depth``, ``shift_pad``, ``shift_direction``), the run id and tsamlib's git commit, and the check's
numbers.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..data.datasets import dataset_manifest
from ..data.manifest import read_manifest
from ..data.transforms import norm_stats
from ..model.onnx_export import ONNX_OPSET, check_onnx_graph, export_model_onnx, onnx_input_names, set_onnx_metadata
from ..model.formats import is_package_folder
from ..runs.fileio import relative_to_repo, writable_file, writable_folder
from ..runs.folder import resolve_run
from ..runs.provenance import environment_info
from .predict import clip_views
from .views import load_model

__all__ = ["ExportCheckError", "ExportReport", "export_onnx", "check_views", "cmd_export"]

TRACE_BATCH = 2            # the batch the graph is traced with
CHECK_BATCHES = (1, 3)     # the batches onnxruntime is checked at: other than the traced one


class ExportCheckError(RuntimeError):
    """onnxruntime disagreed with PyTorch on the check's clips: nothing was written."""


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and measured."""

    path: Path
    max_abs_diff: dict[int, float]        # batch size -> max |logit_onnxruntime - logit_pytorch|
    videos: list[str]
    inputs: list[str]
    operators: list[str] = field(default_factory=list)

    def summary(self) -> str:
        diffs = ", ".join(f"batch {b}: {d:.1e}" for b, d in self.max_abs_diff.items())
        return (f"wrote {relative_to_repo(self.path)} (inputs {', '.join(self.inputs)}; onnxruntime vs PyTorch on "
                f"{len(self.videos)} clips as the run preprocesses them, max |logit difference| {diffs})")


def check_views(cfg, videos: Sequence[str | os.PathLike] | None,
                needed: int) -> tuple[torch.Tensor, torch.Tensor | None, list[str]]:
    """``needed`` views (video, audio or None) for the check, a centre clip and crop per video: ``videos`` or,
    when None, the first usable videos of the run's validation split (then its training split)."""
    if not videos:
        df = read_manifest(dataset_manifest(cfg.dataset))
        df = df[df["problem"] == ""]
        df = df.assign(order=(df["split"] != "valid").astype(int)).sort_values("order", kind="stable")
        videos = list(df["path"].head(needed))
        if not videos:
            raise ValueError(f"the run's dataset {cfg.dataset} has no usable video to check the export on: pass "
                             "videos=[...] (CLI: --videos)")
    vs, aus = [], []
    for i in range(needed):   # fewer videos than views: they are used again
        v, a, _ = clip_views(videos[i % len(videos)], cfg, n_clips=1, n_crops=1, verbose=False)
        vs.append(v)
        aus.append(a)
    audio = torch.cat(aus) if cfg.audio else None
    return torch.cat(vs), audio, [str(v) for v in videos[:needed]]


def export_onnx(run: str | os.PathLike, path: str | os.PathLike, videos: Sequence[str | os.PathLike] | None = None,
                atol: float = 1e-4, weights: str | None = None) -> ExportReport:
    """Export the model of a run (``weights`` as :func:`~tsamlib.evaluation.views.load_run_model`) or of a package
    folder (:func:`~tsamlib.evaluation.views.load_model`) to ``path`` after
    checking onnxruntime against PyTorch on real clips (see the module's doc); :class:`ExportCheckError` when they
    differ by more than ``atol``."""
    import onnxruntime as ort

    path = Path(path)
    if not path.name or path.is_dir():
        raise ValueError(f"--onnx {str(path)!r} is {'a folder' if path.name else 'empty'}: give a file name, e.g. "
                         f"{path / 'model.onnx' if path.name else 'model.onnx'}")
    if not (isinstance(atol, (int, float)) and 0 < atol < math.inf):
        raise ValueError(f"atol={atol!r}: a positive finite tolerance on the logits, e.g. 1e-4")
    writable_file(path, "choose another --onnx path")   # a device or a pipe there: refused before any work
    if isinstance(videos, (str, os.PathLike)):
        videos = [videos]
    if is_package_folder(run) and not videos:
        raise ValueError(f"{run} is a package: it names no dataset to check the export on; give videos=[...] (CLI: "
                         "--videos CLIP ...), clips of the kind the model classifies.")
    run = run if is_package_folder(run) else resolve_run(run)
    writable_folder(path.absolute().parent, "choose another --onnx path")
    model, cfg, vocab = load_model(run, weights)
    need = TRACE_BATCH + sum(CHECK_BATCHES)
    video, audio, used = check_views(cfg, videos, need)
    sw = cfg.switches()
    mean, std = norm_stats(sw["video_norm"])
    meta = dict(classes=json.dumps(vocab), n_frames=cfg.n_frames, img_size=cfg.img_size, audio=json.dumps(cfg.audio),
                n_mels=cfg.n_mels, audio_frontend=sw["audio_frontend"], mean=json.dumps(list(mean)),
                std=json.dumps(list(std)), shift_depth=cfg.shift_depth, shift_pad=sw["shift_pad"],
                shift_direction=cfg.shift_direction, opset=ONNX_OPSET, run_id=Path(run).name,
                tsamlib_commit=environment_info().get("git_commit", ""))
    traced = (video[:TRACE_BATCH], None if audio is None else audio[:TRACE_BATCH])
    names = onnx_input_names(audio is not None)
    diffs: dict[int, float] = {}
    tmp = path.with_name(f".{path.stem}.checking{path.suffix}")
    try:
        export_model_onnx(model, tmp, *traced, metadata=meta)
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        start = TRACE_BATCH
        for b in CHECK_BATCHES:
            part = [t[start:start + b] for t in (video, audio) if t is not None]
            start += b
            with torch.no_grad():
                want = model(*part).numpy()
            got = session.run(["logits"], {n: t.numpy() for n, t in zip(names, part)})[0]
            diffs[b] = float(np.abs(got - want).max())
        bad = {b: d for b, d in diffs.items() if not d <= atol}
        if bad:
            raise ExportCheckError(f"onnxruntime's logits differ from PyTorch's by {bad} (batch size: max abs) on "
                                   f"{len(used)} clips, more than atol={atol}: {path} was not written.")
        meta_check = json.dumps({"videos": [relative_to_repo(v) for v in used], "max_abs_diff": diffs, "atol": atol})
        set_onnx_metadata(tmp, {"check": meta_check})
        operators = check_onnx_graph(tmp)
        size = tmp.stat().st_size
        os.replace(tmp, path)
        if path.stat().st_size != size:   # the bytes landed before the report says "wrote"
            raise OSError(f"{path} holds {path.stat().st_size} bytes after writing {size}: the export is incomplete")
    finally:
        tmp.unlink(missing_ok=True)
    return ExportReport(path, diffs, used, names, operators)


def cmd_export(args: Any) -> int:
    """``python -m tsamlib export RUN --onnx OUT``: one line of what was written and checked; one-line errors."""
    import sys
    from ..data.decode import VideoReadError
    try:
        rep = export_onnx(args.run, args.onnx, videos=args.videos, atol=args.atol, weights=args.weights)
    except (OSError, RuntimeError, ValueError, VideoReadError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(rep.summary())
    return 0
