"""Export a trained run to ONNX, checked on real clips before the file is written.

    python -m tsamlib export RUN --onnx model.onnx [--videos a.mp4 b.mp4 ...]
    python -m tsamlib export RUN --onnx stream.onnx --stream        (a causal run: one step of StreamingTSAM)
    tsamlib.export_onnx(run, "model.onnx"); tsamlib.export_onnx_stream(run, "stream.onnx")

The graph is :func:`tsamlib.model.onnx_export.export_model_onnx`'s (standard ONNX operators only, dynamic batch).
Before it is kept, onnxruntime runs it on the run's own preprocessing of real clips (the ``videos`` given, else the
first videos of the run's validation split: a centre clip and crop each, as ``predict`` makes them) at batch sizes
other than the traced one, and its logits must agree with PyTorch's (the run's model as it trains and predicts)
within ``atol``; otherwise :class:`ExportCheckError` says by how much, and no file is written.

The file carries what a deployment needs in its metadata (onnxruntime: ``get_modelmeta().custom_metadata_map``):
``classes`` (JSON list, index = logit), ``n_frames``, ``img_size``, ``audio``, ``n_mels``, the normalisation, the
shift (``shift_depth``, ``shift_pad``, ``shift_direction``), the run id and tsamlib's git commit, and the check's
numbers.

``--stream`` writes one step of :class:`~tsamlib.model.online.StreamingTSAM` instead
(:mod:`tsamlib.model.online_onnx`: inputs ``frame`` [, ``audio``, ``audio_new``] then the state, outputs ``logits``
then the new state, the initial state zeros; the ``state`` metadata lists each tensor's name, shape and meaning).
Before it is kept, :class:`~tsamlib.evaluation.onnx_stream.OnnxStream` streams the check's clips frame by frame
beside ``StreamingTSAM`` at batch sizes other than the traced one, and every step's logits must agree within
``atol``. :func:`write_stream_onnx` (unchecked) and :func:`check_stream` (given a file) serve other exports.
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
from ..model.online import StreamingTSAM
from ..model.online_onnx import StatefulStep, export_stream_onnx
from ..runs.fileio import relative_to_repo, writable_file, writable_folder
from ..runs.provenance import environment_info
from .onnx_stream import OnnxStream
from .predict import clip_views
from .views import load_model, resolve_source

__all__ = ["ExportCheckError", "ExportReport", "export_onnx", "check_views", "export_onnx_stream", "NotCausalError",
           "write_stream_onnx", "check_stream"]

TRACE_BATCH = 2            # the batch the graph is traced with
CHECK_BATCHES = (1, 3)     # the batches onnxruntime is checked at: other than the traced one


class ExportCheckError(RuntimeError):
    """onnxruntime disagreed with PyTorch on the check's clips: nothing was written."""


class NotCausalError(ValueError):
    """A stream export of a run whose shift reads later frames: nothing was written."""


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


def _metadata(cfg, vocab: list[str], run_id: str) -> dict[str, Any]:
    """What a deployment needs to know, for the file's metadata (see the module's doc)."""
    sw = cfg.switches()
    mean, std = norm_stats(sw["video_norm"])
    return dict(classes=json.dumps(vocab), n_frames=cfg.n_frames, img_size=cfg.img_size, audio=json.dumps(cfg.audio),
                n_mels=cfg.n_mels, audio_frontend=sw["audio_frontend"], mean=json.dumps(list(mean)),
                std=json.dumps(list(std)), shift_depth=cfg.shift_depth, shift_pad=sw["shift_pad"],
                shift_direction=cfg.shift_direction, opset=ONNX_OPSET, run_id=run_id,
                tsamlib_commit=environment_info().get("git_commit", ""))


def _differences(model: torch.nn.Module, onnx_file: Path, names: list[str], video: torch.Tensor,
                 audio: torch.Tensor | None) -> dict[int, float]:
    """Batch size -> max |logit difference| between onnxruntime on ``onnx_file`` and PyTorch, on the views after
    the traced ones, in batches of :data:`CHECK_BATCHES`."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    diffs, start = {}, TRACE_BATCH
    for b in CHECK_BATCHES:
        part = [t[start:start + b] for t in (video, audio) if t is not None]
        start += b
        with torch.no_grad():
            want = model(*part).numpy()
        got = session.run(["logits"], {n: t.numpy() for n, t in zip(names, part)})[0]
        diffs[b] = float(np.abs(got - want).max())
    return diffs


def _prepare(run, path: Path, videos, atol: float, weights: str | None):
    """Checks made before any work (see :func:`export_onnx`); the run's (model, cfg, vocab, run folder, videos)."""
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
    run = resolve_source(run)
    writable_folder(path.absolute().parent, "choose another --onnx path")
    model, cfg, vocab = load_model(run, weights)
    return model, cfg, vocab, run, videos


def _keep(tmp: Path, path: Path, check: dict[str, Any]) -> list[str]:
    """Record ``check`` in ``tmp``'s metadata and move it to ``path``; its operator types."""
    set_onnx_metadata(tmp, {"check": json.dumps(check)})
    operators = check_onnx_graph(tmp)
    size = tmp.stat().st_size
    os.replace(tmp, path)
    if path.stat().st_size != size:   # the bytes landed before the report says "wrote"
        raise OSError(f"{path} holds {path.stat().st_size} bytes after writing {size}: the export is incomplete")
    return operators


def export_onnx(run: str | os.PathLike, path: str | os.PathLike, videos: Sequence[str | os.PathLike] | None = None,
                atol: float = 1e-4, weights: str | None = None) -> ExportReport:
    """Export the model of a run (``weights`` as :func:`~tsamlib.evaluation.views.load_run_model`) or of a package
    folder (:func:`~tsamlib.evaluation.views.load_model`) to ``path`` after
    checking onnxruntime against PyTorch on real clips (see the module's doc); :class:`ExportCheckError` when they
    differ by more than ``atol``."""
    import onnxruntime  # noqa: F401  (not installed: ImportError before any work)

    path = Path(path)
    model, cfg, vocab, run, videos = _prepare(run, path, videos, atol, weights)
    need = TRACE_BATCH + sum(CHECK_BATCHES)
    video, audio, used = check_views(cfg, videos, need)
    traced = (video[:TRACE_BATCH], None if audio is None else audio[:TRACE_BATCH])
    names = onnx_input_names(audio is not None)
    tmp = path.with_name(f".{path.stem}.checking{path.suffix}")
    try:
        export_model_onnx(model, tmp, *traced, metadata=_metadata(cfg, vocab, Path(run).name))
        diffs = _differences(model, tmp, names, video, audio)
        bad = {b: d for b, d in diffs.items() if not d <= atol}
        if bad:
            raise ExportCheckError(f"onnxruntime's logits differ from PyTorch's by {bad} (batch size: max abs) on "
                                   f"{len(used)} clips, more than atol={atol}: {path} was not written.")
        operators = _keep(tmp, path, {"videos": [relative_to_repo(v) for v in used], "max_abs_diff": diffs,
                                      "atol": atol})
    finally:
        tmp.unlink(missing_ok=True)
    return ExportReport(path, diffs, used, names, operators)


def write_stream_onnx(model: torch.nn.Module, path: str | os.PathLike, frame: torch.Tensor,
                      metadata: dict[str, Any] | None = None) -> Path:
    """The fp32 stream graph of ``model`` (causal) traced on ``frame`` (B, 3, H, W) into ``path``, unchecked, with
    the state's names, shapes and meanings (initial: zeros) in its ``state`` metadata beside ``metadata``."""
    step = StatefulStep(model)
    meta = dict(metadata or {}, graph="stream", state=json.dumps(step.state_info(frame)), initial_state="zeros",
                audio_input="audio (B,3,H,W) every step + audio_new (B,1): 1 where the image is new" if step.audio
                else "none")
    return export_stream_onnx(step, path, frame, metadata=meta)


def check_stream(model: torch.nn.Module, onnx_file: str | os.PathLike, video: torch.Tensor,
                 audio: torch.Tensor | None) -> dict[int, float]:
    """Batch size -> max |logit difference| over every step between :class:`OnnxStream` on ``onnx_file`` and
    :class:`StreamingTSAM`, streaming the clips ``video`` (N, T, 3, H, W) frame by frame (their audio image, if
    any, given with the first frame), in batches of :data:`CHECK_BATCHES` from the first view."""
    torch_stream, onnx_stream = StreamingTSAM(model), OnnxStream(onnx_file)
    diffs, start = {}, 0
    for b in CHECK_BATCHES:
        v, a = video[start:start + b], None if audio is None else audio[start:start + b, 0]
        start += b
        torch_stream.reset()
        onnx_stream.reset()
        worst = 0.0
        for t in range(v.shape[1]):
            given = a if t == 0 else None
            want = torch_stream.step(v[:, t], given).numpy()
            got = onnx_stream.step(v[:, t].numpy(), None if given is None else given.numpy())
            worst = max(worst, float(np.abs(got - want).max()))
        diffs[b] = worst
    return diffs


def export_onnx_stream(run: str | os.PathLike, path: str | os.PathLike,
                       videos: Sequence[str | os.PathLike] | None = None, atol: float = 1e-4,
                       weights: str | None = None) -> ExportReport:
    """Export one step of a causal run's :class:`StreamingTSAM` to ``path`` (see the module's doc) after streaming
    real clips with onnxruntime beside it: every step's logits within ``atol``, else :class:`ExportCheckError` and
    nothing written; ValueError for a run that does not shift causally."""
    import onnxruntime  # noqa: F401  (not installed: ImportError before any work)

    path = Path(path)
    model, cfg, vocab, run, videos = _prepare(run, path, videos, atol, weights)
    if model.shift.depth > 0 and model.shift.direction != "causal":
        raise NotCausalError(f"{run} shifts {model.shift.direction} (depth {model.shift.depth}): a stream needs a "
                             "causal run; train one with shift_direction='causal' (or drop --stream: the clip model).")
    video, audio, used = check_views(cfg, videos, TRACE_BATCH + sum(CHECK_BATCHES))
    tmp = path.with_name(f".{path.stem}.checking{path.suffix}")
    try:
        write_stream_onnx(model, tmp, video[:TRACE_BATCH, 0], metadata=_metadata(cfg, vocab, Path(run).name))
        diffs = check_stream(model, tmp, video[TRACE_BATCH:], None if audio is None else audio[TRACE_BATCH:])
        bad = {b: d for b, d in diffs.items() if not d <= atol}
        if bad:
            raise ExportCheckError(f"the onnxruntime stream's logits differ from StreamingTSAM's by {bad} (batch "
                                   f"size: max abs over every step) on {len(used)} clips, more than atol={atol}: "
                                   f"{path} was not written.")
        operators = _keep(tmp, path, {"videos": [relative_to_repo(v) for v in used], "max_abs_diff": diffs,
                                      "atol": atol, "steps": int(video.shape[1])})
    finally:
        tmp.unlink(missing_ok=True)
    return ExportReport(path, diffs, used, StatefulStep(model).input_names(), operators)
