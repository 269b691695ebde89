"""A TSAM model as an ONNX graph of standard operators, the temporal shift included.

TSM's export breaks for many users: its shift writes slices in place, which the tracer turns into constants of
the traced batch size (as reported in TSM's issue tracker). Here the model is traced with the shift as plain tensor ops
(:func:`tsamlib.model.shift.autograd_shift`: split, narrow, concatenate, zeros), so the graph holds only
``Split``/``Slice``/``Concat``/``ConstantOfShape``-style nodes of the default ONNX domain: nothing for a runtime to
register, and the batch axis stays free. Both border pads (``zero``, ``keep``) and the audio frame are traced.

Inputs: ``video`` ``(B, T, 3, H, W)`` and, for a model with audio, ``audio`` ``(B, 1, 3, H', W')``; output ``logits``
``(B, classes)``. :func:`export_model_onnx` checks the graph (``onnx.checker``, default domain only) before it
writes; :func:`tsamlib.evaluation.export.export_onnx` also checks onnxruntime against PyTorch on real clips.

The trace uses torch's TorchScript-based exporter (``dynamo=False``), which torch 2.14 deprecates: with the pinned
torch it runs, and in 2 s where the dynamo exporter took 23 s for the same resnet18 8+1 model (it also needs
``onnxscript``; its graph agreed as well, within 3e-8). Revisit when the torch pin moves.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from ..runs.fileio import atomic_path
from .shift import use_shift_kernel

__all__ = ["ONNX_OPSET", "export_model_onnx", "onnx_input_names", "check_onnx_graph", "set_onnx_metadata"]

ONNX_OPSET = 17   # onnxruntime >= 1.13 runs it; every op the trace needs is in it


def onnx_input_names(audio: bool) -> list[str]:
    """The graph's input names: ``["video"]`` or ``["video", "audio"]``."""
    return ["video", "audio"] if audio else ["video"]


def check_onnx_graph(path: str | os.PathLike) -> list[str]:
    """Check the ONNX file (``onnx.checker``) and return its operator types; ValueError naming any node outside
    the default ONNX domain (a custom op a runtime would have to register)."""
    import onnx
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    custom = sorted({f"{n.domain}::{n.op_type}" for n in graph.graph.node if n.domain not in ("", "ai.onnx")})
    if custom:
        raise ValueError(f"{path}: the graph holds custom operators {custom}: it would not run on a plain runtime.")
    return sorted({n.op_type for n in graph.graph.node})


def export_model_onnx(model: nn.Module, path: str | os.PathLike, video: Tensor, audio: Tensor | None = None,
                      metadata: dict[str, str] | None = None) -> Path:
    """Trace ``model`` (eval mode, CPU) on example inputs ``video`` (and ``audio``) into ``path`` (written atomically,
    after :func:`check_onnx_graph`), with a dynamic batch axis; ``metadata`` goes into the file's metadata
    properties (onnxruntime: ``session.get_modelmeta().custom_metadata_map``)."""
    model = model.eval().cpu()
    names = onnx_input_names(audio is not None)
    inputs = (video,) if audio is None else (video, audio)
    dynamic = {name: {0: "batch"} for name in names + ["logits"]}
    path = Path(path)
    with atomic_path(path) as tmp, use_shift_kernel("autograd"), torch.no_grad(), warnings.catch_warnings():
        # the trace fixes T, C, H, W (Python checks on them are the model's, made once); batch stays dynamic
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="The feature will be removed", category=DeprecationWarning)
        torch.onnx.export(model, inputs, str(tmp), input_names=names, output_names=["logits"], dynamic_axes=dynamic,
                          opset_version=ONNX_OPSET, dynamo=False)
        if metadata:
            set_onnx_metadata(tmp, metadata)
        check_onnx_graph(tmp)
    return path


def set_onnx_metadata(path: str | os.PathLike, metadata: dict[str, object]) -> None:
    """Add (or replace) ``metadata`` in the ONNX file's metadata properties, values as text."""
    import onnx
    graph = onnx.load(str(path))
    keep = [(p.key, p.value) for p in graph.metadata_props if p.key not in metadata]
    del graph.metadata_props[:]
    for key, value in keep + [(k, str(v)) for k, v in metadata.items()]:
        entry = graph.metadata_props.add()
        entry.key, entry.value = str(key), value
    onnx.save(graph, str(path))
