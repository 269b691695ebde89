"""The TSAM network (report, figure 3): one shared 2D ResNet over T video frames and one audio frame.

    video (B, T, 3, H, W) ─┐
                           ├─ cat → (B·(T+1), 3, H, W) → ResNet with temporal shift on the T video
    audio (B, 1, 3, H, W) ─┘        segments only → pooled features (B, T+1, D) → dropout → mean over
                                    the T+1 segments → Linear(D, num_classes) → logits (B, num_classes)

Without audio it is TSM (shift_depth=1, f_div=8) or TSN (shift_depth=0) with the same code. ``shift_pad="keep"``
is the authors' border of the shift (github.com/aav-antonov/TSAM): with it, their released checkpoints
(``pretrained=<path>``) give their network (see :mod:`tsamlib.model.pretrained`). ``shift_direction="causal"``
shifts from past segments only, so segment t's features depend on frames up to t alone.
"""
from __future__ import annotations

import logging
import os
import warnings

import timm
import torch
from torch import Tensor, nn

from .pretrained import AUTHORS_LAYOUT, LoadReport, load_backbone_weights, read_checkpoint, resolve_pretrained
from .shift import insert_temporal_shift, shift_kernel
from .shift_reference import check_shift_direction, check_shift_pad, check_shift_settings

__all__ = ["TSAM", "create_tsam", "create_backbone", "check_model_settings"]

log = logging.getLogger(__name__)


def create_backbone(arch: str, num_classes: int, pretrained: str | os.PathLike | None = None
                    ) -> tuple[nn.Module, nn.Linear, LoadReport | None]:
    """A timm ResNet without its classifier (``num_classes=0``: it returns pooled features), the
    ``Linear(D, num_classes)`` head, and what was loaded into them.

    A local checkpoint's ``fc`` (the authors' ``last_fc``) goes into the head when its shape fits; otherwise it is
    skipped and reported.
    """
    how = resolve_pretrained(pretrained, arch)
    if not timm.is_model(arch):
        raise ValueError(f"arch={arch!r} is not a timm model: use a ResNet timm knows (resnet10t, resnet18, resnet34, "
                         "resnet50, resnet101, ...; timm.list_models('resnet*') lists them).")
    if how is not None and how[0] == "timm":
        try:
            backbone = timm.create_model(how[1], pretrained=True, num_classes=0)
        except Exception as e:
            raise RuntimeError(
                f"timm could not load pretrained weights {how[1]!r} ({type(e).__name__}: {e}). It needs its hub "
                "cache or the network; offline, download the weights once and pass the file path as "
                "`pretrained`.") from e
        report = LoadReport(source=f"timm:{how[1]}", loaded=len(backbone.state_dict()))
    else:
        backbone, report = timm.create_model(arch, pretrained=False, num_classes=0), None
    head = nn.Linear(backbone.num_features, num_classes)
    if how is not None and how[0] == "file":
        state_dict, report = read_checkpoint(how[1])
        report = load_backbone_weights(backbone, head, state_dict, source=how[1], report=report)
        if report.loaded == 0:
            raise ValueError(f"no tensor of {how[1]} matches {arch}: {report}")
    return backbone, head, report


class TSAM(nn.Module):
    """Temporal Shift with Audio Modality. ``forward(video, audio=None) -> logits``.

    ``shift_pad``: the border of the shift, ``"zero"`` (TSM) or ``"keep"`` (the authors' code); ``shift_direction``:
    ``"bidirectional"`` (the report's) or ``"causal"`` (from the past only); see
    :func:`tsamlib.model.shift.temporal_shift`.
    """

    def __init__(self, backbone: nn.Module, *, num_classes: int, n_frames: int, audio: bool = False,
                 shift_depth: int = 1, f_div: int = 8, n_insert: int = 1, m_insert: int = 0,
                 dropout: float = 0.5, head: nn.Linear | None = None, shift_pad: str = "zero",
                 shift_direction: str = "bidirectional"):
        super().__init__()
        self.n_frames, self.audio, self.n_audio = n_frames, audio, int(audio)
        self.shift_depth, self.f_div, self.shift_pad = shift_depth, f_div, shift_pad
        self.shift_direction = shift_direction
        self.backbone = backbone
        self.n_shifted_blocks = insert_temporal_shift(backbone, n_frames + self.n_audio, n_frames, shift_depth,
                                                      f_div, n_insert, m_insert, shift_pad, shift_direction)
        self.num_features: int = backbone.num_features
        self.dropout = nn.Dropout(dropout)
        self.fc = head if head is not None else nn.Linear(self.num_features, num_classes)
        if self.fc.out_features != num_classes:
            raise ValueError(f"head has {self.fc.out_features} outputs but num_classes={num_classes}.")

    def features(self, video: Tensor, audio: Tensor | None = None) -> Tensor:
        """Per-segment pooled features (B, T + n_audio, D), before dropout and averaging."""
        if video.dim() != 5 or video.shape[1] != self.n_frames:
            raise ValueError(f"video must be (B, {self.n_frames}, 3, H, W), got {tuple(video.shape)}.")
        if self.audio:
            if audio is None:
                raise ValueError("this model was built with audio=True: pass the audio frame (B, 1, 3, H, W) "
                                 "(a silent spectrogram for videos without sound).")
            if audio.shape[0] != video.shape[0] or audio.shape[1] != 1 or audio.shape[2:] != video.shape[2:]:
                raise ValueError(f"audio must be (B, 1, 3, H, W) = {(video.shape[0], 1, *video.shape[2:])}, "
                                 f"got {tuple(audio.shape)}.")
            video = torch.cat([video, audio], dim=1)
        elif audio is not None:
            raise ValueError("this model was built with audio=False but got an audio frame; build it with "
                             "audio=True or drop the audio input.")
        b, s = video.shape[:2]
        return self.backbone(video.flatten(0, 1)).view(b, s, -1)

    def forward(self, video: Tensor, audio: Tensor | None = None) -> Tensor:
        x = self.dropout(self.features(video, audio))  # (B, T+1, D)
        return self.fc(x.mean(dim=1))                  # average the T+1 segments, then one FC layer


def check_model_settings(arch: str, *, pretrained: str | os.PathLike | None = None, **settings) -> None:
    """Every model setting checked without building anything real: ``arch`` is a timm model, the shift fits its
    layers (``f_div``, ``shift_depth``, ``n_frames``), ``pretrained`` names weights that exist (a file, a timm tag,
    ``in1k``/``in21k``). The model is built on the meta device (no memory, no weights read, milliseconds);
    ValueError or FileNotFoundError naming the setting, as :func:`create_tsam` would raise them later."""
    resolve_pretrained(pretrained, arch)
    with torch.device("meta"):
        create_tsam(arch, num_classes=2, pretrained=None, **settings)


def create_tsam(arch: str = "resnet50", *, num_classes: int = 400, n_frames: int = 8, audio: bool = False,
                shift_depth: int = 1, f_div: int = 8, n_insert: int = 1, m_insert: int = 0,
                dropout: float = 0.5, pretrained: str | os.PathLike | None = None,
                shift_pad: str = "zero", shift_direction: str = "bidirectional") -> TSAM:
    """Build a TSAM model on a timm ResNet (resnet10t, resnet18, resnet34, resnet50, resnet50d, resnet101, ...).

    TSM-R50 (8 frames): ``create_tsam("resnet50", num_classes=400, n_frames=8, shift_depth=1, f_div=8)``.
    The report's Kinetics-400 config: ``create_tsam("resnet50", num_classes=400, n_frames=16, audio=True,
    shift_depth=4, f_div=4, n_insert=2, m_insert=0, dropout=0.5, pretrained="in21k")``.
    The authors' released Kinetics-400 model: the same with ``shift_pad="keep"`` and
    ``pretrained="resnet50_kinetics400.ckpt.pth.tar"`` (their file). ``shift_direction="causal"``: every shifted
    group reads past segments only (a segment's features depend on frames up to it).
    """
    if n_frames < 1:
        raise ValueError(f"n_frames={n_frames} must be >= 1.")
    check_shift_settings(n_frames, shift_depth, f_div)  # fail early, before building
    check_shift_pad(shift_pad)
    check_shift_direction(shift_direction)
    shift_kernel()   # an unknown $TSAM_SHIFT_KERNEL is refused here, on any device
    backbone, head, report = create_backbone(arch, num_classes, pretrained)
    if report is not None:
        log.info("%s", report)
        print(f"pretrained: {report}")
        if report.layout == AUTHORS_LAYOUT and shift_pad != "keep":
            warnings.warn(f"{report.source} is the authors' checkpoint, trained with their shift border "
                          f"(shift_pad='keep'); this model uses shift_pad={shift_pad!r}.", stacklevel=2)
    model = TSAM(backbone, num_classes=num_classes, n_frames=n_frames, audio=audio, shift_depth=shift_depth,
                 f_div=f_div, n_insert=n_insert, m_insert=m_insert, dropout=dropout, head=head,
                 shift_pad=shift_pad, shift_direction=shift_direction)
    model.load_report = report
    return model
