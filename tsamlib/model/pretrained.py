"""Pretrained weights for the backbone: timm tags, local checkpoint files, and the ``in1k``/``in21k`` shorthands.

Kept apart from the architecture (as timm keeps pretrained configs apart from ``resnet.py``).

``pretrained`` may be
- ``None``: random initialisation;
- ``"in1k"``: ImageNet-1K. For the archs TSM used (resnet18/34/50/101) the torchvision weights
  ``<arch>.tv_in1k`` (what the TSM paper started from); for any other arch timm's default tag;
- ``"in21k"``: ImageNet-21K, as the report: the MIIL ResNet-50 ImageNet-21K-P checkpoint
  ``resnet50_miil_21k.pth`` (Ridnik et al. 2021) as a local file, looked up in ``$TSAM_WEIGHTS`` and
  ``./weights/``; download it once by hand and put it there;
- a timm tag such as ``"resnet50.a1_in1k"``: loaded through timm (hub cache or network);
- a path to a local ``.pth``/``.pt``/``.bin``/``.tar``/``.safetensors`` file: loaded with ``weights_only=True``.

A local file may hold a plain state dict (timm, torchvision, tsamlib's own ``TSAM``), one nested under
``state_dict``/``model``/``state_dict_ema``/``model_state``, or the authors' checkpoint (github.com/aav-antonov/TSAM,
``lib/utils/saveloadmodels.py``, ``save_timepoint``; the released ``resnet50_kinetics400.ckpt.pth.tar`` and
``resnet50_something_v1.tar``)::

    {"data_state": {"epoch": int, "best_score <ID>": float},      # numpy.float64 from sklearn's accuracy
     "model_state": {"nn_input": {},                               # their input module: no tensors
                     "nn_backbone": {"base_model.conv1.weight", ..., "base_model.layer1.0.conv1.layer.weight",
                                     ...},                         # timm/torchvision ResNet, fc = Identity;
                                                                   # their shift wrapper holds conv1 as ``.layer``
                     "last_fc": {"weight", "bias"}},               # the classifier
     "optimizer_state_dict": {...}}                                # SGD state: ignored

Its backbone keys map to ``backbone.layerX.Y.conv1.net.*`` (tsamlib's :class:`~tsamlib.model.shift.TemporalShift`
holds the conv as ``.net``) and ``last_fc`` to the head ``fc``. The authors' shift keeps the border values
(``shift_pad="keep"``): build the model with that setting to reproduce their network.

:func:`save_authors_checkpoint` goes the other way: it writes a tsamlib model in that layout (keys named as their
model names them), e.g. to hand weights trained here to their code, or to exercise the released-checkpoint pipeline
(:mod:`tsamlib.evaluation.released`, notebook 06) without their file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..runs.loader import safe_load

__all__ = ["IN21K_FILENAME", "AUTHORS_LAYOUT", "LoadReport", "resolve_pretrained", "read_checkpoint",
           "read_state_dict", "canonical_key", "authors_key", "load_backbone_weights", "weight_dirs",
           "authors_model_state", "save_authors_checkpoint"]

IN21K_FILENAME = "resnet50_miil_21k.pth"
TV_IN1K_ARCHS = {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152"}
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt", ".tar")
AUTHORS_LAYOUT = "authors"
AUTHORS_PARTS = ("nn_input", "nn_backbone", "last_fc")


@dataclass
class LoadReport:
    """What happened when weights were loaded: where from, and which keys did not fit."""

    source: str
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    skipped_classifier: list[str] = field(default_factory=list)
    layout: str = ""  # AUTHORS_LAYOUT for the authors' {data_state, model_state, optimizer_state_dict} file
    data_state: dict[str, Any] | None = None  # the authors' checkpoint: its training state (epoch, best score)

    def __str__(self) -> str:
        s = f"loaded {self.loaded} tensors from {self.source}"
        if self.layout == AUTHORS_LAYOUT:
            s += f" (the authors' checkpoint layout, data_state {self.data_state})"
        if self.skipped_classifier:
            s += f"; classifier skipped (shape differs): {', '.join(self.skipped_classifier)}"
        if self.missing:
            s += (f"; {len(self.missing)} missing: {', '.join(self.missing[:8])}"
                  + (" ..." if len(self.missing) > 8 else ""))
        if self.unexpected:
            s += (f"; {len(self.unexpected)} unexpected: {', '.join(self.unexpected[:8])}"
                  + (" ..." if len(self.unexpected) > 8 else ""))
        return s


def weight_dirs() -> list[Path]:
    """Folders searched for local weight files: ``$TSAM_WEIGHTS`` (os.pathsep-separated), then ``./weights``."""
    dirs = [Path(p) for p in os.environ.get("TSAM_WEIGHTS", "").split(os.pathsep) if p]
    return dirs + [Path("weights")]


def resolve_pretrained(pretrained: str | os.PathLike | None, arch: str) -> tuple[str, str] | None:
    """Turn ``pretrained`` into ``("file", path)`` or ``("timm", tag)``; ``None`` stays ``None``."""
    if pretrained is None or str(pretrained).lower() in ("", "none", "scratch"):
        return None
    p = str(pretrained)
    if p == "in1k":
        return ("timm", f"{arch}.tv_in1k" if arch in TV_IN1K_ARCHS else arch)
    if p == "in21k":
        for d in weight_dirs():
            if (d / IN21K_FILENAME).is_file():
                return ("file", str(d / IN21K_FILENAME))
        if arch.startswith("resnetv2_50x1_bit"):
            return ("timm", "resnetv2_50x1_bit.goog_in21k")
        raise FileNotFoundError(
            f"pretrained='in21k' needs the ImageNet-21K ResNet-50 weights as a local file: put "
            f"{IN21K_FILENAME} (MIIL ImageNet-21K-P, the report's choice) in one of "
            f"{[str(d) for d in weight_dirs()]} or set TSAM_WEIGHTS to its folder; or pass a checkpoint path.")
    if p.endswith(CHECKPOINT_SUFFIXES) or Path(p).exists() or os.sep in p:
        if not Path(p).is_file():
            raise FileNotFoundError(f"pretrained checkpoint {p!r} does not exist; give an existing .pth/.pt/"
                                    ".safetensors file, a timm tag like 'resnet50.a1_in1k', 'in1k' or 'in21k'.")
        return ("file", p)
    tag_arch = p.split(".")[0]
    if tag_arch != arch:
        raise ValueError(f"pretrained tag {p!r} is for arch {tag_arch!r} but arch={arch!r}; use arch={tag_arch!r} "
                         f"or a tag of {arch!r} (timm.list_pretrained('{arch}.*')).")
    return ("timm", p)


def _authors_safe_globals() -> list[Any]:
    """What the authors' ``data_state`` needs beyond plain Python types: numpy float64 scalars (sklearn's
    accuracy). Exactly numpy's scalar constructor (under its numpy 1 and numpy 2 names), ``numpy.dtype`` and the
    class of the float64 dtype (``numpy.dtypes.Float64DType`` since numpy 1.25) that unpickling builds."""
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy 1
        from numpy.core.multiarray import scalar
    return [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"),
            (np.dtype, "numpy.dtype"), type(np.dtype(np.float64))]


def _is_authors_checkpoint(obj: Any) -> bool:
    """Whether ``obj`` is the authors' ``{data_state, model_state: {nn_input, nn_backbone, last_fc}, ...}``."""
    model_state = obj.get("model_state") if isinstance(obj, dict) else None
    return isinstance(model_state, dict) and isinstance(model_state.get("nn_backbone"), dict)


def authors_key(key: str) -> str:
    """A key of the authors' model (``<part>.<key>``) in timm/tsamlib names: ``nn_backbone.base_model.X`` -> ``X``
    with their shift wrapper's ``.conv1.layer.`` -> ``.conv1.``, ``last_fc.*`` -> ``fc.*``; anything else as is."""
    backbone = "nn_backbone.base_model."
    if key.startswith(backbone):
        return key[len(backbone):].replace(".conv1.layer.", ".conv1.")
    if key.startswith("last_fc."):
        return "fc." + key[len("last_fc."):]
    return key


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], LoadReport]:
    """Read tensors from a checkpoint safely (``weights_only=True`` / safetensors) as one flat state dict, and an
    empty :class:`LoadReport` that records the layout found (see the module docstring)."""
    path = Path(path)
    report = LoadReport(str(path))
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        sd = load_file(str(path), device="cpu")
    else:
        sd = safe_load(path, _authors_safe_globals(), hint="save weights with torch.save(model.state_dict(), ...) "
                       "or as .safetensors")
    if _is_authors_checkpoint(sd):
        report.layout = AUTHORS_LAYOUT
        data_state = sd.get("data_state")
        if isinstance(data_state, dict):  # numpy scalars as Python numbers
            report.data_state = {k: v.item() if isinstance(v, np.generic) else v for k, v in data_state.items()}
        parts = sd["model_state"]
        unknown = sorted(set(parts) - set(AUTHORS_PARTS))
        if unknown or not all(isinstance(v, dict) for v in parts.values()):
            raise ValueError(f"{path}: model_state holds parts {sorted(parts)}; the authors' layout has "
                             f"{list(AUTHORS_PARTS)}, each a state dict.")
        sd = {authors_key(f"{part}.{k}"): v for part, part_sd in parts.items() for k, v in part_sd.items()}
    else:
        for key in ("state_dict", "model", "state_dict_ema", "model_state"):
            if isinstance(sd, dict) and isinstance(sd.get(key), dict):
                sd = sd[key]
                break
        if isinstance(sd, dict) and any(str(k).startswith("nn_backbone.") for k in sd):
            report.layout = AUTHORS_LAYOUT  # their whole model's state_dict(): nn_backbone.*, last_fc.*
            sd = {authors_key(k): v for k, v in sd.items()}
    if not isinstance(sd, dict) or not all(torch.is_tensor(v) for v in sd.values()):
        keys = list(sd)[:10] if isinstance(sd, dict) else type(sd).__name__
        raise ValueError(f"{path} holds no state dict of tensors (top-level keys: {keys}).")
    return sd, report


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint as one flat state dict (:func:`read_checkpoint` without its report)."""
    return read_checkpoint(path)[0]


def canonical_key(key: str) -> str:
    """Backbone key as timm names it: drop ``module.`` (DataParallel), ``backbone.`` and the shift wrapper's
    ``.net``."""
    for prefix in ("module.", "backbone."):
        if key.startswith(prefix):
            key = key[len(prefix):]
    return key.replace(".conv1.net.", ".conv1.")


def load_backbone_weights(backbone: nn.Module, head: nn.Linear | None, state_dict: dict[str, torch.Tensor],
                          source: str, report: LoadReport | None = None) -> LoadReport:
    """Copy matching tensors into ``backbone`` (and ``head`` for ``fc.*`` keys when shapes agree); fill ``report``
    (a new one when ``None``)."""
    report = LoadReport(source) if report is None else report
    target = {canonical_key(k): v for k, v in backbone.state_dict().items()}
    if head is not None:
        target.update({f"fc.{k}": v for k, v in head.state_dict().items()})
    seen = set()
    with torch.no_grad():
        for k, v in state_dict.items():
            ck = canonical_key(k)
            if ck in ("classifier.weight", "classifier.bias", "head.fc.weight", "head.fc.bias"):
                ck = "fc." + ck.rsplit(".", 1)[1]
            if ck not in target:
                (report.skipped_classifier if ck.startswith("fc.") else report.unexpected).append(k)
                continue
            if target[ck].shape != v.shape:
                if ck.startswith("fc."):
                    report.skipped_classifier.append(f"{k} {tuple(v.shape)}->{tuple(target[ck].shape)}")
                    seen.add(ck)
                    continue
                raise ValueError(f"{source}: tensor {k} has shape {tuple(v.shape)} but the backbone expects "
                                 f"{tuple(target[ck].shape)}; is the checkpoint for another arch?")
            target[ck].copy_(v)
            seen.add(ck)
            report.loaded += 1
    report.missing = [k for k in target if k not in seen and not k.endswith("num_batches_tracked")]
    return report


def authors_model_state(model: nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """The ``model_state`` of the authors' layout for a tsamlib ``TSAM`` (anything with ``.backbone`` and ``.fc``):
    ``nn_input`` empty, ``nn_backbone`` the backbone as ``base_model.*`` with shifted convs as ``.conv1.layer.*``,
    ``last_fc`` the head; tensors detached, on the CPU. :func:`read_checkpoint` maps it back key for key."""
    backbone = {"base_model." + k.replace(".conv1.net.", ".conv1.layer."): v.detach().cpu().clone()
                for k, v in model.backbone.state_dict().items()}
    head = {k: v.detach().cpu().clone() for k, v in model.fc.state_dict().items()}
    return {"nn_input": {}, "nn_backbone": backbone, "last_fc": head}


def save_authors_checkpoint(model: nn.Module, path: str | os.PathLike,
                            data_state: dict[str, Any] | None = None) -> Path:
    """Write ``model`` as the authors' saver writes theirs (``save_timepoint``): ``{data_state, model_state:
    {nn_input, nn_backbone, last_fc}, optimizer_state_dict}``, atomically. ``data_state`` (default ``{"epoch":
    0}``) should hold plain Python values; the optimizer state is an SGD one (their optimizer: lr 0.01, momentum
    0.9, weight decay 1e-4) with no momentum buffers, over the parameters in tsamlib's order. Their ``fine_tune``
    reads only ``model_state``; their ``load_model`` restores the optimizer too, which needs their parameter
    groups (not checked here)."""
    from ..runs.fileio import atomic_path

    params = [p for p in model.parameters()]
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4) if params else None
    record = {"data_state": dict(data_state) if data_state is not None else {"epoch": 0},
              "model_state": authors_model_state(model),
              "optimizer_state_dict": optimizer.state_dict() if optimizer is not None else {}}
    with atomic_path(path, fsync=True) as tmp:
        torch.save(record, tmp)
    return Path(path)
