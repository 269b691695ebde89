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
- a path to a local ``.pth``/``.pt``/``.bin``/``.safetensors`` file: loaded with ``weights_only=True``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

__all__ = ["IN21K_FILENAME", "LoadReport", "resolve_pretrained", "read_state_dict", "canonical_key",
           "load_backbone_weights", "weight_dirs"]

IN21K_FILENAME = "resnet50_miil_21k.pth"
TV_IN1K_ARCHS = {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152"}
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")


@dataclass
class LoadReport:
    """What happened when weights were loaded: where from, and which keys did not fit."""

    source: str
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    skipped_classifier: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        s = f"loaded {self.loaded} tensors from {self.source}"
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


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read tensors from a checkpoint safely (``weights_only=True`` / safetensors), unnesting
    ``state_dict``/``model``."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        sd = load_file(str(path), device="cpu")
    else:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # pickle with arbitrary objects, or not a checkpoint at all
            raise ValueError(f"cannot read {path} as a weights-only checkpoint ({type(e).__name__}: {e}); "
                             "save it with torch.save(model.state_dict(), ...) or as .safetensors.") from e
    for key in ("state_dict", "model", "state_dict_ema", "model_state"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
            break
    if not isinstance(sd, dict) or not all(torch.is_tensor(v) for v in sd.values()):
        keys = list(sd)[:10] if isinstance(sd, dict) else type(sd).__name__
        raise ValueError(f"{path} holds no state dict of tensors (top-level keys: {keys}).")
    return sd


def canonical_key(key: str) -> str:
    """Backbone key as timm names it: drop ``module.`` (DataParallel), ``backbone.`` and the shift wrapper's
    ``.net``."""
    for prefix in ("module.", "backbone."):
        if key.startswith(prefix):
            key = key[len(prefix):]
    return key.replace(".conv1.net.", ".conv1.")


def load_backbone_weights(backbone: nn.Module, head: nn.Linear | None, state_dict: dict[str, torch.Tensor],
                          source: str) -> LoadReport:
    """Copy matching tensors into ``backbone`` (and ``head`` for ``fc.*`` keys when shapes agree)."""
    report = LoadReport(source)
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
