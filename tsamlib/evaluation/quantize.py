"""A run's ONNX graph as INT8, kept only when it agrees with the fp32 graph on the run's validation set.

    python -m tsamlib export RUN --onnx model.int8.onnx --int8 [--calib-clips 32] [--min-agreement 0.98]
    tsamlib.export_int8(run, "model.int8.onnx")

The fp32 graph is :func:`~tsamlib.evaluation.export.export_onnx`'s (checked against PyTorch first), written to a
temporary file beside ``path``. onnxruntime's static quantization (QDQ, per-channel weights) is calibrated on the
run's own training clips as the run preprocesses them (a centre clip and crop each, as ``predict`` makes them). Then
both graphs classify the run's validation clips: the top-1 agreement and the max |logit difference| go into the
file's metadata (``int8``, JSON), or :class:`~tsamlib.evaluation.export.ExportCheckError` says why nothing was
written. :func:`quantize_checked` is the generic step (any input names: feed dicts in, an evaluation set of feed
dicts), so another graph of this package can be quantized the same way.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from ..data.datasets import dataset_manifest
from ..data.manifest import read_manifest
from ..model.onnx_export import set_onnx_metadata
from ..runs.fileio import relative_to_repo, writable_file
from ..data.shards import is_shard_index
from .export import ExportCheckError, export_onnx, export_onnx_stream
from .onnx_stream import OnnxStream
from .predict import clip_views
from .views import load_model, resolve_source

__all__ = ["Int8Report", "quantize_checked", "export_int8", "CALIBRATION_METHODS"]

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


@dataclass
class Int8Report:
    """What :func:`quantize_checked` measured (and :func:`export_int8` wrote)."""

    path: Path
    agreement: float          # top-1 agreement INT8 vs fp32 on the evaluation set
    max_abs_diff: float       # max |logit_int8 - logit_fp32| there
    n_eval: int
    n_calib: int
    method: str
    fp32_bytes: int
    int8_bytes: int
    calibrated_on: str = ""   # what the n_calib inputs were (default: that many training clips)

    def summary(self) -> str:
        return (f"wrote {relative_to_repo(self.path)} (INT8, {self.int8_bytes} bytes = "
                f"{self.int8_bytes / self.fp32_bytes:.2f}x fp32; top-1 agreement with fp32 {self.agreement:.1%} on "
                f"{self.n_eval} validation clips, max |logit difference| {self.max_abs_diff:.3g}; calibrated on "
                f"{self.calibrated_on or f'{self.n_calib} training clips'}, {self.method})")


class _Reader:
    """A CalibrationDataReader (duck-typed: onnxruntime is imported only when used) over a list of feed dicts."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self.feeds = iter(feeds)

    def get_next(self):
        return next(self.feeds, None)


def _first_outputs(evaluation: Sequence[dict[str, np.ndarray]]) -> Callable[[Path], np.ndarray]:
    def logits(graph: Path) -> np.ndarray:
        import onnxruntime as ort
        s = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
        return np.concatenate([s.run(None, f)[0] for f in evaluation])
    return logits


def quantize_checked(fp32: str | os.PathLike, out: str | os.PathLike, calibration: Iterable[dict[str, np.ndarray]],
                     evaluation: Sequence[dict[str, np.ndarray]] | Callable[[Path], np.ndarray], *,
                     method: str = "minmax", min_agreement: float = 0.98, extra: dict | None = None) -> Int8Report:
    """Quantize ``fp32`` to ``out`` (static, QDQ, per-channel weights, calibrated on the ``calibration`` feeds), then
    compare the logits of both graphs: their first output on the ``evaluation`` feeds, or what ``evaluation(graph)``
    gives, (N, classes), for each graph (a stream: the last step of each clip); below ``min_agreement`` top-1
    agreement ``out`` is removed and :class:`ExportCheckError` says why. The report's numbers (and ``extra``) go
    into ``out``'s metadata."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method {method!r}: one of {', '.join(CALIBRATION_METHODS)}")
    calib = list(calibration)
    if not calib or not (callable(evaluation) or len(evaluation)):
        raise ValueError("INT8 needs at least one calibration and one evaluation input")
    logits = evaluation if callable(evaluation) else _first_outputs(evaluation)
    fp32, out = Path(fp32), Path(out)
    prep = out.with_name(f".{out.stem}.prep{out.suffix}")
    try:
        quant_pre_process(str(fp32), str(prep), skip_symbolic_shape=True)   # shapes known: better QDQ placement
        cal = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}[method]
        quantize_static(str(prep), str(out), _Reader(calib), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, calibrate_method=cal)
    finally:
        prep.unlink(missing_ok=True)
    a, b = logits(fp32), logits(out)
    agreement = float((a.argmax(1) == b.argmax(1)).mean())
    rep = Int8Report(out, agreement, float(np.abs(a - b).max()), len(a), len(calib), method,
                     fp32.stat().st_size, out.stat().st_size)
    if not agreement >= min_agreement:
        out.unlink(missing_ok=True)
        other = "entropy" if method != "entropy" else "percentile"
        raise ExportCheckError(f"INT8 top-1 agreement with fp32 is {agreement:.1%} on {len(a)} validation clips "
                               f"(max |logit difference| {rep.max_abs_diff:.3g}), below --min-agreement "
                               f"{min_agreement:.1%}: nothing was written. Try more calibration clips (--calib-clips, "
                               f"{(extra or {}).get('n_calib_clips', len(calib))} now) or another method "
                               f"(--calib-method {other}).")
    set_onnx_metadata(out, {"int8": json.dumps(dict(
        agreement=agreement, max_abs_diff=rep.max_abs_diff, n_eval=len(a), n_calib=len(calib), method=method,
        min_agreement=min_agreement, format="QDQ", per_channel=True, onnxruntime=ort.__version__, **(extra or {})))})
    rep.int8_bytes = out.stat().st_size
    return rep


def _split_clips(cfg, split: str, n: int | None) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """(video (1, T, 3, H, W), audio (1, 1, 3, H, W) or None) per usable video of ``split`` (the first ``n``; None:
    all), a centre clip and crop each, as ``predict`` makes them."""
    if is_shard_index(cfg.dataset):
        raise ValueError(f"the run's dataset {cfg.dataset} is a shard dataset: INT8 reads its calibration and "
                         "evaluation clips from a manifest; export from a run on the prepared folders' manifest")
    df = read_manifest(dataset_manifest(cfg.dataset))
    paths = list(df[(df["problem"] == "") & (df["split"] == split)]["path"])[:n]
    if not paths:
        raise ValueError(f"the run's dataset {cfg.dataset} has no usable {split} video for INT8 "
                         f"{'calibration' if split == 'train' else 'evaluation'}")
    clips = []
    for p in paths:
        v, a, _ = clip_views(p, cfg, n_clips=1, n_crops=1, verbose=False)
        clips.append((v.numpy(), None if a is None else a.numpy()))
    return clips


def _clip_feeds(clips, names: list[str]) -> list[dict[str, np.ndarray]]:
    return [dict(zip(names, (v,) if a is None else (v, a))) for v, a in clips]


def _streamed(stream, clip) -> np.ndarray:
    """Stream one clip (its audio image with the first frame) from a fresh state; the last step's logits."""
    v, a = clip
    stream.reset()
    for t in range(v.shape[1]):
        logits = stream.step(v[:, t], None if a is None or t else a[:, 0])
    return logits


def _stream_feeds(graph: Path, clips) -> Iterator[dict[str, np.ndarray]]:
    """Every step's feed (frame, audio, state) of the fp32 stream graph streaming ``clips``: the calibration set."""
    stream = OnnxStream(graph)
    for clip in clips:
        stream.record = []
        _streamed(stream, clip)
        yield from stream.record


def _stream_logits(clips) -> Callable[[Path], np.ndarray]:
    def logits(graph: Path) -> np.ndarray:
        stream = OnnxStream(graph)
        return np.concatenate([_streamed(stream, clip) for clip in clips])
    return logits


def export_int8(run: str | os.PathLike, path: str | os.PathLike, *, calib_clips: int | None = 32,
                min_agreement: float = 0.98, method: str = "minmax", weights: str | None = None,
                stream: bool = False) -> Int8Report:
    """The run's clip model (``stream``: its stream graph, :func:`~tsamlib.evaluation.export.export_onnx_stream`)
    as a checked INT8 ONNX file at ``path`` (see the module's doc); ``calib_clips`` training clips calibrate it (None
    or more than there are: all). A stream graph is calibrated on every step's inputs (frame and state) of the fp32
    stream over those clips, and compared at the last step of each validation clip, each graph carrying its own
    state from zeros."""
    path = writable_file(Path(path), "choose another --onnx path")
    if not 0 < min_agreement:
        raise ValueError(f"min_agreement={min_agreement!r}: a positive fraction, e.g. 0.98")
    if calib_clips is not None and calib_clips < 1:
        raise ValueError(f"calib_clips={calib_clips}: at least 1 training clip")
    run = resolve_source(run)
    fp32 = path.with_name(f".{path.stem}.fp32{path.suffix}")
    tmp = path.with_name(f".{path.stem}.int8{path.suffix}")
    try:
        rep32 = (export_onnx_stream if stream else export_onnx)(run, fp32, weights=weights)
        _, cfg, _ = load_model(run, weights)
        calib, valid = _split_clips(cfg, "train", calib_clips), _split_clips(cfg, "valid", None)
        if stream:
            rep = quantize_checked(fp32, tmp, _stream_feeds(fp32, calib), _stream_logits(valid), method=method,
                                   min_agreement=min_agreement,
                                   extra=dict(graph="stream", n_calib_clips=len(calib), compared="last step"))
            rep.calibrated_on = f"{rep.n_calib} steps of {len(calib)} training clips"
        else:
            rep = quantize_checked(fp32, tmp, _clip_feeds(calib, rep32.inputs), _clip_feeds(valid, rep32.inputs),
                                   method=method, min_agreement=min_agreement)
        os.replace(tmp, path)
        rep.path = path
    finally:
        fp32.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return rep
