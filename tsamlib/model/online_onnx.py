"""One step of :class:`~tsamlib.model.online.StreamingTSAM` as a pure function of explicit state, for ONNX.

``StatefulStep(model)(frame, [audio, audio_new], *state) -> (logits, *new_state)``: what ``StreamingTSAM.step`` keeps
in Python between steps is here a tensor in and a tensor out, so an exported graph streams with a plain loop
(``state = outputs[1:]``). The initial state is all zeros. The state, in order (``B`` the batch of streams):

    shift{i}        (B, k, 2kf, H_i, W_i)  shifted block i's last k inputs' moved channels, newest first
    total           (B, D)                 the sum of the pooled frame features so far
    frames          (B, 1)                 frames seen so far (a float count)
    audio_features  (B, D)                 with audio only: the pooled features of the latest audio image

Audio: ``StreamingTSAM.step`` takes the audio image only when it changes. A graph has fixed inputs, so the step
takes an ``audio`` image every step and an ``audio_new`` flag ``(B, 1)``: 1 where the image is new (its features
replace ``audio_features``), 0 where it is to be ignored (any image, e.g. zeros). Before the first audio image a
stream has a silent one (zeros), as in ``StreamingTSAM``: give zeros with ``audio_new = 1`` on the first step when
there is no sound yet (:class:`~tsamlib.evaluation.onnx_stream.OnnxStream` does). The audio backbone pass runs every
step (the graph has no branch): a stream with audio costs about two frames a step.

``shift_pad="keep"`` (a border group reads the frame's own values) uses ``frames``: distance ``d`` reads the buffer
once ``d`` frames were seen, the current input before.
"""
from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from ..runs.fileio import atomic_path
from .onnx_export import ONNX_OPSET, check_onnx_graph, set_onnx_metadata
from .shift import TemporalShift

__all__ = ["StatefulStep", "export_stream_onnx", "STATE_MEANINGS"]

STATE_MEANINGS = {"shift": "a shifted block's last k inputs' moved channels (2kf of C), newest first",
                  "total": "the sum of the pooled frame features so far",
                  "frames": "the number of frames seen so far",
                  "audio_features": "the pooled features of the latest audio image (audio_new = 1)"}


class _StepShift(nn.Module):
    """A shifted block fed from an explicit buffer: ``io`` holds this step's ``past``/``frames`` and receives
    ``new``; with ``io`` None (the audio image) the block passes through, never shifted, never buffered."""

    def __init__(self, shift: TemporalShift):
        super().__init__()
        self.net, self.spec, self.k = shift.net, shift.shift, shift.shift.depth
        self.io: dict | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.io is None or self.k == 0:
            return self.net(x)
        f = self.spec.fold(x.shape[1])
        moved = 2 * self.k * f
        past = self.io.get("past")
        if past is None:   # asked for the state's shape: an empty buffer
            past = x.new_zeros(x.shape[0], self.k, moved, *x.shape[2:])
        parts = []
        for d in range(1, self.k + 1):            # both groups of distance d read frame t - d
            group = past[:, d - 1, (2 * d - 2) * f:2 * d * f]
            if self.spec.pad == "keep":           # before frame t - d exists: the frame's own values
                seen = (self.io["frames"] >= d).to(x.dtype).view(-1, 1, 1, 1)
                group = seen * group + (1 - seen) * x[:, (2 * d - 2) * f:2 * d * f]
            parts.append(group)
        self.io["new"] = torch.cat([x[:, None, :moved], past[:, :self.k - 1]], dim=1)
        return self.net(torch.cat(parts + [x[:, moved:]], dim=1))


class StatefulStep(nn.Module):
    """``forward(frame, [audio, audio_new], *state) -> (logits, *new_state)`` (see the module's doc); ``model`` a
    causal (or unshifted) TSAM, copied, not changed."""

    def __init__(self, model: nn.Module):
        super().__init__()
        spec = model.shift
        if spec.depth > 0 and spec.direction != "causal":
            raise ValueError(f"a stream needs a causal model: this one shifts {spec.direction} (depth {spec.depth}); "
                             "train with shift_direction='causal' (or shift_depth=0).")
        self.model = copy.deepcopy(model).eval()
        self.audio = bool(self.model.audio)
        self.blocks: list[_StepShift] = []
        for name, module in list(self.model.backbone.named_modules()):
            if isinstance(module, TemporalShift):
                parent_name, _, leaf = name.rpartition(".")
                parent = self.model.backbone.get_submodule(parent_name) if parent_name else self.model.backbone
                block = _StepShift(module)
                setattr(parent, leaf, block)
                self.blocks.append(block)
        self.shifted = [b for b in self.blocks if b.k > 0]

    def input_names(self) -> list[str]:
        return ["frame"] + (["audio", "audio_new"] if self.audio else []) + self.state_names()

    def state_names(self) -> list[str]:
        return [f"shift{i}" for i in range(len(self.shifted))] + ["total", "frames"] + \
            (["audio_features"] if self.audio else [])

    @torch.no_grad()
    def initial_state(self, frame: Tensor) -> list[Tensor]:
        """The zero state for streams of ``frame``'s batch and size ``(B, 3, H, W)``."""
        for b in self.shifted:
            b.io = {"frames": frame.new_zeros(frame.shape[0], 1)}
        try:
            feats = self.model.backbone(frame)
            bufs = [b.io["new"].new_zeros(b.io["new"].shape) for b in self.shifted]
        finally:
            for b in self.shifted:
                b.io = None
        zeros = feats.new_zeros(feats.shape)
        return bufs + [zeros, feats.new_zeros(frame.shape[0], 1)] + ([zeros.clone()] if self.audio else [])

    def forward(self, frame: Tensor, *rest: Tensor) -> tuple[Tensor, ...]:
        if self.audio:
            audio, audio_new, *state = rest
        else:
            state = list(rest)
        n = len(self.shifted)
        bufs, total, frames = state[:n], state[n], state[n + 1]
        for b, past in zip(self.shifted, bufs):
            b.io = {"past": past, "frames": frames}
        try:
            feats = self.model.backbone(frame)
            new_bufs = [b.io["new"] for b in self.shifted]
        finally:
            for b in self.shifted:
                b.io = None
        total, frames = total + feats, frames + 1
        out = [total, frames]
        pooled = total
        if self.audio:   # the audio image passes every block through (io None): never shifted
            audio_features = audio_new * self.model.backbone(audio) + (1 - audio_new) * state[n + 2]
            pooled = total + audio_features
            out.append(audio_features)
        logits = self.model.fc(pooled / (frames + self.model.n_audio))
        return (logits, *new_bufs, *out)


    def state_info(self, frame: Tensor) -> list[dict]:
        """Each state tensor's name, shape (the batch as ``"B"``) and meaning, in the graph's order."""
        shapes = [list(t.shape[1:]) for t in self.initial_state(frame)]
        return [dict(name=n, shape=["B", *s], meaning=STATE_MEANINGS[n.rstrip("0123456789")], initial="zeros")
                for n, s in zip(self.state_names(), shapes)]


def export_stream_onnx(step: StatefulStep, path: str | os.PathLike, frame: Tensor,
                       metadata: dict[str, str] | None = None) -> Path:
    """Trace ``step`` on an example ``frame`` (B, 3, H, W) and the zero state into ``path`` (written atomically, after
    :func:`check_onnx_graph`), every input and output with a dynamic batch axis; outputs ``logits`` then
    ``new_<state name>`` in the state's order."""
    step = step.eval().cpu()
    state = step.initial_state(frame)
    extra = [torch.zeros_like(frame), torch.ones(frame.shape[0], 1)] if step.audio else []
    names = step.input_names()
    outputs = ["logits"] + [f"new_{n}" for n in step.state_names()]
    dynamic = {n: {0: "B"} for n in names + outputs}
    path = Path(path)
    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="The feature will be removed", category=DeprecationWarning)
        torch.onnx.export(step, (frame, *extra, *state), str(tmp), input_names=names, output_names=outputs,
                          dynamic_axes=dynamic, opset_version=ONNX_OPSET, dynamo=False)
        if metadata:
            set_onnx_metadata(tmp, metadata)
        check_onnx_graph(tmp)
    return path
