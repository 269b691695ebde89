"""Online TSAM: classify a stream frame by frame with a causally shifted model (TSM's online idea, for depth k).

A model trained with ``shift_direction="causal"`` gives frame ``t`` features that depend on frames ``<= t`` only:
every shifted channel group of distance ``d`` reads frame ``t - d``. So a stream needs, per shifted block, only the
last ``k`` inputs' moved channels (``2 k f`` of the block's ``C`` input channels, ``f = (C // f_div) // k``):

    step(frame):  for each shifted block, input x_t (B, C, H, W) ->
                  [x_{t-1}, ..., x_{t-k}] moved channels of each group (zeros, or x_t's own, before the clip starts)
                  + x_t's unmoved channels -> the block's conv1; then x_t's moved channels join the buffer
                  pooled features of frame t -> running sum over the frames so far
                  logits = fc((sum of frame features + audio features) / (frames + audio frames))

After ``T`` steps the logits are the offline causal model's on those ``T`` frames (and the same audio image), and the
features of step ``t`` are the offline model's at segment ``t`` (tests check both within 1e-5). The audio frame is
the log-mel image of a trailing window of sound, given with :meth:`StreamingTSAM.step` when it changes (the
caller makes it; ``predict --stream`` does); its features are kept until the next one.

Memory per stream: the buffers, :meth:`StreamingTSAM.state_bytes` (``sum over shifted blocks of k x 2kf x H x W``
floats), plus one feature vector, independent of how long the stream runs. Measured (fp32, one stream, after
k frames): ResNet-50 at 224 px with the report's shift (k = 4, f_div = 4, every 2nd block) 26.5 MB; TSM (k = 1,
f_div = 8, every block) 5.6 MB.
"""
from __future__ import annotations

import copy
from collections import deque

import torch
from torch import Tensor, nn

from .shift import TemporalShift

__all__ = ["StreamingTSAM", "StreamingShift"]


class StreamingShift(nn.Module):
    """One shifted block of a stream: its ``conv1`` fed with the causal shift of the current frame's input, taken
    from the buffer of the last ``k`` inputs' moved channels."""

    def __init__(self, shift: TemporalShift):
        super().__init__()
        self.net, self.spec = shift.net, shift.shift
        self.k = self.spec.depth
        self.past: deque[Tensor] = deque(maxlen=max(self.k, 1))   # newest first: past[d - 1] is frame t - d
        self.through = False   # the audio frame: never shifted, never buffered

    def reset(self) -> None:
        self.past.clear()

    def forward(self, x: Tensor) -> Tensor:   # x: (B, C, H, W), one frame per stream
        if self.k == 0 or self.through:
            return self.net(x)
        f = self.spec.fold(x.shape[1])
        moved = 2 * self.k * f
        parts = []
        for d in range(1, self.k + 1):            # both groups of distance d read frame t - d
            group = slice((2 * d - 2) * f, 2 * d * f)
            if d <= len(self.past):
                parts.append(self.past[d - 1][:, group.start:group.stop])
            elif self.spec.pad == "keep":              # before the clip: the frame's own values
                parts.append(x[:, group])
            else:
                parts.append(x.new_zeros(x.shape[0], 2 * f, *x.shape[2:]))
        out = torch.cat(parts + [x[:, moved:]], dim=1)
        self.past.appendleft(x[:, :moved].detach().clone())
        return self.net(out)

    def state_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.past)


class StreamingTSAM(nn.Module):
    """A TSAM model run frame by frame: ``step(frame, audio=None) -> logits`` for ``B`` streams at once.

    ``model`` must shift causally (``shift_direction="causal"``) or not at all (TSN); it is copied, not changed.
    ``frame`` is one preprocessed frame ``(B, 3, H, W)`` (or ``(3, H, W)``), normalised as the model was trained;
    ``audio``, for a model with audio, the log-mel image ``(B, 3, H, W)`` of the trailing window, whenever it is
    new (until the first one, a model with audio gets a silent image, as for a video without sound: zeros). After
    each step ``features`` holds the frame's pooled features ``(B, D)``, ``frames`` the frames seen.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        spec = model.shift
        if spec.depth > 0 and spec.direction != "causal":
            raise ValueError(f"a stream needs a causal model: this one shifts {spec.direction} (depth "
                             f"{spec.depth}), so a frame's features need frames after it; train with "
                             "shift_direction='causal' (or shift_depth=0).")
        self.model = copy.deepcopy(model).eval()
        self.blocks: list[StreamingShift] = []
        for name, module in list(self.model.backbone.named_modules()):
            if isinstance(module, TemporalShift):
                parent = self.model.backbone.get_submodule(name.rsplit(".", 1)[0]) if "." in name else \
                    self.model.backbone
                streaming = StreamingShift(module)
                setattr(parent, name.rsplit(".", 1)[-1], streaming)
                self.blocks.append(streaming)
        self.reset()

    def reset(self) -> None:
        """Start a new stream: empty buffers, no frame, no audio."""
        for block in self.blocks:
            block.reset()
        self.frames, self.total, self.features, self.audio_features, self.shape = 0, None, None, None, None

    @torch.no_grad()
    def step(self, frame: Tensor, audio: Tensor | None = None) -> Tensor:
        """Feed one frame (and, when it changed, the audio image); return the logits of the stream so far."""
        frame = self._check(frame, "frame")
        if audio is not None:
            audio = self._check(audio, "audio")
        if audio is not None and not self.model.audio:
            raise ValueError("this model was built without audio: step(frame) takes no audio image.")
        if audio is not None:   # the audio frame never shifts: the backbone alone, no buffer touched
            self.audio_features = self._audio(audio)
        elif self.model.audio and self.audio_features is None:
            self.audio_features = self._audio(torch.zeros_like(frame))
        self.features = self.model.backbone(frame)
        self.total = self.features if self.total is None else self.total + self.features
        self.frames += 1
        pooled = self.total if not self.model.audio else self.total + self.audio_features
        return self.model.fc(pooled / (self.frames + self.model.n_audio))

    def _check(self, x: Tensor, what: str) -> Tensor:
        """``x`` as ``(B, 3, H, W)`` floats; ValueError naming what is wrong (shape, type, a batch or size other
        than the stream's so far)."""
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise ValueError(f"{what} must be a float tensor (3, H, W) or (B, 3, H, W), preprocessed as in training; "
                             f"got {type(x).__name__}{' of ' + str(x.dtype) if isinstance(x, Tensor) else ''}.")
        x = x.unsqueeze(0) if x.dim() == 3 else x
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"{what} must be (3, H, W) or (B, 3, H, W), one image per stream; got {tuple(x.shape)}.")
        x = x.to(next(self.model.parameters()).dtype)
        if self.shape is None:
            self.shape = (x.shape[0], *x.shape[2:])
        elif (x.shape[0], *x.shape[2:]) != self.shape:
            raise ValueError(f"{what} {tuple(x.shape)}: this stream runs {self.shape[0]} stream(s) of "
                             f"{self.shape[1]}x{self.shape[2]} images since its first step; reset() to start others.")
        return x

    def _audio(self, image: Tensor) -> Tensor:
        for b in self.blocks:
            b.through = True
        try:
            return self.model.backbone(image)
        finally:
            for b in self.blocks:
                b.through = False

    def state_bytes(self) -> int:
        """Bytes held per stream set between steps: the shifted blocks' buffers (full after ``k`` frames)."""
        return sum(b.state_bytes() for b in self.blocks)
