"""The TSAM network (report, figure 3): one shared 2D ResNet over T video frames and one audio frame.

    video (B, T, 3, H, W) ─┐
                           ├─ cat → (B·(T+1), 3, H, W) → ResNet with temporal shift on the T video
    audio (B, 1, 3, H, W) ─┘        segments only → pooled features (B, T+1, D) → dropout → mean over
                                    the T+1 segments → Linear(D, num_classes) → logits (B, num_classes)

The shift's settings are one :class:`~tsamlib.model.shift_reference.ShiftSpec`: without audio it is TSM
(``ShiftSpec(depth=1, f_div=8)``, the default) or TSN (``ShiftSpec(depth=0)``) with the same code. ``pad="keep"``
is the authors' border of the shift (github.com/aav-antonov/TSAM): with it, their released checkpoints
(``pretrained=<path>``) give their network (see :mod:`tsamlib.model.pretrained`). ``direction="causal"``
shifts from past segments only, so segment t's features depend on frames up to t alone. Settings as files and a
RunConfig state them (``shift_depth``, ``f_div``, ``shift_pad``, ``shift_direction``) become create_tsam's
keywords in :func:`tsam_kwargs`, and only there.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import timm
import torch
from torch import Tensor, nn

from .formats import inspect_checkpoint, not_recorded
from .pretrained import LoadReport, load_pretrained, resolve_pretrained
from .shift import insert_temporal_shift, shift_kernel
from .shift_reference import ShiftSpec

__all__ = ["TSAM", "create_tsam", "create_tsam_from", "create_backbone", "check_model_settings", "tsam_kwargs",
           "SHIFT_SETTINGS"]

SHIFT_SETTINGS = {"shift_depth": "depth", "f_div": "f_div", "shift_pad": "pad", "shift_direction": "direction"}
"""The shift's settings as a RunConfig, ``params.json`` and checkpoint files name them -> the ShiftSpec fields."""


def tsam_kwargs(settings: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`create_tsam`'s keywords for ``settings`` as a RunConfig (``model_kwargs()``), a run's ``params.json``
    or a checkpoint file state them: the shift's (:data:`SHIFT_SETTINGS`) become ``shift=ShiftSpec(...)`` (checked
    there; defaults for those missing), the others pass as they are. A ``shift`` already given passes too; with
    flat shift settings beside it, ValueError."""
    out = {k: v for k, v in settings.items() if k not in SHIFT_SETTINGS}
    given = {SHIFT_SETTINGS[k]: v for k, v in settings.items() if k in SHIFT_SETTINGS}
    if given and out.get("shift") is not None:
        raise ValueError(f"give shift=ShiftSpec(...) or {sorted(SHIFT_SETTINGS)}, not both (got shift= and "
                         f"{sorted(k for k in settings if k in SHIFT_SETTINGS)}).")
    if given:
        out["shift"] = ShiftSpec(**given)
    return out


def _shift_settings(shift: ShiftSpec) -> dict[str, Any]:
    """The inverse of :func:`tsam_kwargs` for the shift: its settings by their files' names."""
    return {name: getattr(shift, field) for name, field in SHIFT_SETTINGS.items()}

log = logging.getLogger(__name__)


def create_backbone(arch: str, num_classes: int, pretrained: str | os.PathLike | None = None, *,
                    settings: dict[str, Any] | None = None, pretrained_match: str = "strict", copy: bool = True
                    ) -> tuple[nn.Module, nn.Linear, LoadReport | None]:
    """A timm ResNet without its classifier (``num_classes=0``: it returns pooled features), the
    ``Linear(D, num_classes)`` head, and what was loaded into them.

    A checkpoint file is checked against ``settings`` (the model's create_tsam settings, see
    :func:`~tsamlib.model.pretrained.check_fits`); its classifier goes into the head when its shape fits, otherwise
    the head is a new one and the report says so. ``copy=False``: check only (on the meta device)."""
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
        report = load_pretrained(backbone, head, how[1], arch=arch, settings=settings or {},
                                 match=pretrained_match, copy=copy)
    return backbone, head, report


class TSAM(nn.Module):
    """Temporal Shift with Audio Modality. ``forward(video, audio=None) -> logits``.

    ``shift``: the shift's settings (:class:`~tsamlib.model.shift_reference.ShiftSpec`; None: TSM's), on the
    ``n_frames`` video segments (a spec's ``n_shifted`` must be None or ``n_frames``); ``model.shift`` holds them
    with ``n_shifted=n_frames``. ``shift_depth``, ``f_div``, ``shift_pad``, ``shift_direction``: read-only views of
    them, by the settings' names.
    """

    def __init__(self, backbone: nn.Module, *, num_classes: int, n_frames: int, audio: bool = False,
                 shift: ShiftSpec | None = None, n_insert: int = 1, m_insert: int = 0, dropout: float = 0.5,
                 head: nn.Linear | None = None):
        super().__init__()
        self.n_frames, self.audio, self.n_audio = n_frames, audio, int(audio)
        self.shift, self.n_insert, self.m_insert = _on_frames(shift or ShiftSpec(), n_frames), n_insert, m_insert
        self.backbone = backbone
        self.n_shifted_blocks = insert_temporal_shift(backbone, n_frames + self.n_audio, self.shift, n_insert,
                                                      m_insert)
        self.num_features: int = backbone.num_features
        self.dropout = nn.Dropout(dropout)
        self.fc = head if head is not None else nn.Linear(self.num_features, num_classes)
        if self.fc.out_features != num_classes:
            raise ValueError(f"head has {self.fc.out_features} outputs but num_classes={num_classes}.")

    shift_depth = property(lambda self: self.shift.depth, doc="The shift's depth k (``shift.depth``).")
    f_div = property(lambda self: self.shift.f_div, doc="``shift.f_div``.")
    shift_pad = property(lambda self: self.shift.pad, doc="The shift's border (``shift.pad``).")
    shift_direction = property(lambda self: self.shift.direction, doc="``shift.direction``.")

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


def check_model_settings(arch: str, *, pretrained: str | os.PathLike | None = None,
                         pretrained_match: str = "strict", num_classes: int = 2, **settings) -> LoadReport | None:
    """Every model setting checked without building anything real: ``arch`` is a timm model, the shift fits its
    layers (``f_div``, ``shift_depth``, ``n_frames``; ``settings`` as :func:`tsam_kwargs` takes them: by the files'
    names or ``shift=``), ``pretrained`` names weights that exist (a file, a package
    folder, a timm tag, ``in1k``/``in21k``), and a checkpoint file fits this model (its tensors and the settings it
    states, as :func:`create_tsam` will check them). Built on the meta device (no memory for the model, milliseconds
    beyond reading the file); ValueError or FileNotFoundError naming the setting, as :func:`create_tsam` would raise
    them later. Returns what a checkpoint file would load (None for other ``pretrained``)."""
    how = resolve_pretrained(pretrained, arch)
    with torch.device("meta"):
        model = create_tsam(arch, num_classes=num_classes, pretrained=None, **tsam_kwargs(settings))
    if how is None or how[0] != "file":
        return None
    return load_pretrained(model.backbone, model.fc, how[1], arch=arch, settings=_model_settings(model),
                           match=pretrained_match, copy=False)


def _model_settings(model: "TSAM") -> dict[str, Any]:
    """The settings a checkpoint is compared with (:func:`~tsamlib.model.pretrained.check_fits`)."""
    return dict(n_frames=model.n_frames, audio=model.audio, **_shift_settings(model.shift), n_insert=model.n_insert,
                m_insert=model.m_insert)


def _on_frames(shift: ShiftSpec, n_frames: int) -> ShiftSpec:
    """``shift`` on a model's ``n_frames`` video segments (checked there: its depth must fit them)."""
    if not isinstance(shift, ShiftSpec):
        raise ValueError(f"shift={shift!r} must be a ShiftSpec, e.g. shift=ShiftSpec(depth=4, f_div=4).")
    if shift.n_shifted not in (None, n_frames):
        raise ValueError(f"shift has n_shifted={shift.n_shifted} but the model has n_frames={n_frames}: its video "
                         "segments are the ones shifted; leave n_shifted unset.")
    if shift.n_shifted == n_frames:
        return shift
    return ShiftSpec(shift.depth, shift.f_div, n_frames, shift.pad, shift.direction)


def create_tsam(arch: str = "resnet50", *, num_classes: int = 400, n_frames: int = 8, audio: bool = False,
                shift: ShiftSpec | None = None, n_insert: int = 1, m_insert: int = 0, dropout: float = 0.5,
                pretrained: str | os.PathLike | None = None, pretrained_match: str = "strict") -> TSAM:
    """Build a TSAM model on a timm ResNet (resnet10t, resnet18, resnet34, resnet50, resnet50d, resnet101, ...).

    TSM-R50 (8 frames): ``create_tsam("resnet50", num_classes=400, n_frames=8)`` (``shift=None``: TSM's,
    ``ShiftSpec(depth=1, f_div=8)``). The report's Kinetics-400 config: ``create_tsam("resnet50", num_classes=400,
    n_frames=16, audio=True, shift=ShiftSpec(depth=4, f_div=4), n_insert=2, m_insert=0, dropout=0.5,
    pretrained="in21k")``. The authors' released Kinetics-400 model: the same with
    ``ShiftSpec(depth=4, f_div=4, pad="keep")`` and ``pretrained="resnet50_kinetics400.ckpt.pth.tar"`` (their file).
    ``ShiftSpec(direction="causal")``: every shifted group reads past segments only (a segment's features depend on
    frames up to it). Settings by the files' names (``shift_depth=4, f_div=4``): ``**tsam_kwargs(settings)``.

    ``pretrained`` may be any checkpoint of the TSM family (TSM's, mmaction2's, the authors', a tsamlib run's or
    package): the settings it states must equal these, else a ValueError names both (``pretrained_match="weights"``
    takes its weights into another model on purpose); :func:`create_tsam_from` builds the model a file states.
    """
    for name, value in dict(n_frames=n_frames, n_insert=n_insert, m_insert=m_insert, num_classes=num_classes).items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{name}={value!r} must be an integer.")
    if not isinstance(audio, bool):
        raise ValueError(f"audio={audio!r} must be True or False.")
    if n_frames < 1:
        raise ValueError(f"n_frames={n_frames} must be >= 1.")
    shift = _on_frames(shift or ShiftSpec(), n_frames)  # fail early, before building
    shift_kernel()   # an unknown $TSAM_SHIFT_KERNEL is refused here, on any device
    settings = dict(n_frames=n_frames, audio=audio, **_shift_settings(shift), n_insert=n_insert, m_insert=m_insert)
    backbone, head, report = create_backbone(arch, num_classes, pretrained, settings=settings,
                                             pretrained_match=pretrained_match)
    if report is not None:
        log.info("%s", report)
        print(f"pretrained: {report}")
    model = TSAM(backbone, num_classes=num_classes, n_frames=n_frames, audio=audio, shift=shift, n_insert=n_insert,
                 m_insert=m_insert, dropout=dropout, head=head)
    model.load_report = report
    return model


def create_tsam_from(pretrained: str | os.PathLike, **overrides: Any) -> TSAM:
    """The model a checkpoint file (or package folder) states, with its weights: arch, classes and every setting
    the file records (:func:`~tsamlib.model.formats.inspect_checkpoint`), ``overrides`` on top (checked against the
    file as :func:`create_tsam` checks them). A setting the file does not record (TSM's frames and ``f_div``)
    must be given: ValueError naming it, and what the file's name claims.

        model = create_tsam_from("TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment8_e50.pth", n_frames=8,
                                 f_div=8)
    """
    info = inspect_checkpoint(pretrained)
    kwargs = {**info.model_kwargs(), **{k: v for k, v in overrides.items() if v is not None}}
    if "arch" not in kwargs or "num_classes" not in kwargs:
        what = "arch" if "arch" not in kwargs else "num_classes"
        raise ValueError(f"{pretrained} does not say its {what} ({info.arch_text or info.format}): give {what}=.")
    need = not_recorded(info.format, kwargs)
    if need:
        hints = {n: info.name_hints[n] for n in need if n in info.name_hints}
        names = ", ".join(need[:-1]) + " and " + need[-1] if len(need) > 1 else need[0]
        raise ValueError(f"{pretrained} does not record {names} ({info.format} format): give "
                         + ", ".join(f"{n}=" for n in need) + " (CLI: "
                         + " ".join(f"--{n.replace('_', '-')} N" if n != "audio" else "--audio/--no-audio"
                                    for n in need) + ")"
                         + (f"; its file name says {', '.join(f'{k}={v}' for k, v in hints.items())}"
                            if hints else ""))
    arch = kwargs.pop("arch")
    return create_tsam(arch, pretrained=pretrained, **tsam_kwargs(kwargs))
