"""Parameters and multiply-accumulates (MACs) of a TSAM configuration, counted by torch.utils.flop_counter.

The count runs on the ``meta`` device: shapes only, no arithmetic, so ResNet-50 at 16+1 frames costs
well under a second. torch counts a multiply-add as 2 FLOPs; MACs = FLOPs / 2.

Arithmetic for the anchors (ResNet-50, 224 px, 400 classes):
    one frame ≈ 4.11 GMACs → TSM 8 frames ≈ 32.9 G, 16 frames ≈ 65.8 G, TSAM 16+1 = 17/16 of that;
    params = 23,508,032 (backbone) + 2048·400 + 400 (fc) = 24,327,632.
The shift is pure data movement: it adds no MACs.

:func:`temporal_reach` measures how many segments apart two frames can be and still meet in one segment's
features: every shifted block moves channels up to ``k`` segments, so with ``n`` shifted blocks the reach is
``min(T - 1, n * k)``: TSM on resnet18 (8 blocks, k = 1) reaches 8 segments, all of an 8-frame clip but only
about half of a 16-frame one; TSAM (every 2nd block, k = 4) reaches 4 * 4 = 16 >= 15.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from .tsam import create_tsam, tsam_kwargs

__all__ = ["count_params", "count_macs", "model_complexity", "clip_cost", "temporal_reach"]


def count_params(model: torch.nn.Module) -> int:
    """Number of parameters (trainable or not; BatchNorm running stats are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: torch.nn.Module, *inputs: torch.Tensor) -> int:
    """MACs of one forward pass on ``inputs`` (any device, ``meta`` included)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(*inputs)
    return counter.get_total_flops() // 2


def model_complexity(arch: str = "resnet50", num_classes: int = 400, n_frames: int = 8, audio: bool = False,
                     img_size: int = 224, batch_size: int = 1, **model_kwargs: Any) -> dict[str, Any]:
    """Parameters and GMACs per clip of a configuration (``model_kwargs`` go to :func:`create_tsam`, through
    :func:`tsam_kwargs`: the shift's settings by their files' names or as ``shift=``)."""
    model_kwargs.pop("pretrained", None)  # weights do not change the count
    with torch.device("meta"):
        model = create_tsam(arch, num_classes=num_classes, n_frames=n_frames, audio=audio,
                            **tsam_kwargs(model_kwargs)).eval()
        video = torch.empty(batch_size, n_frames, 3, img_size, img_size)
        audio_in = torch.empty(batch_size, 1, 3, img_size, img_size) if audio else None
    macs = count_macs(model, video, *([audio_in] if audio else []))
    return dict(arch=arch, n_frames=n_frames, audio=audio, img_size=img_size, num_classes=num_classes,
                params=count_params(model), macs=macs // batch_size, gmacs=macs / batch_size / 1e9,
                **{k: v for k, v in model_kwargs.items()})


def clip_cost(model: torch.nn.Module, img_size: int) -> dict[str, Any]:
    """Parameters and MACs per clip of a built TSAM ``model``, counted on a ``meta`` copy of it (the model itself,
    its weights and its BatchNorm statistics, untouched)."""
    meta = copy.deepcopy(model).to("meta").eval()
    video = torch.empty(1, model.n_frames, 3, img_size, img_size, device="meta")
    audio = [torch.empty(1, 1, 3, img_size, img_size, device="meta")] if model.audio else []
    macs = count_macs(meta, video, *audio)
    return dict(params=count_params(model), macs=macs, gmacs=macs / 1e9)


def temporal_reach(model: torch.nn.Module, img_size: int = 32) -> int:
    """Largest ``|s - t|`` such that segment ``t``'s pooled features can depend on video frame ``s``: measured
    with gradients through ``model.features`` of a copy in eval mode (BatchNorm mixes no frames) whose BatchNorm
    scales are set to 1 (timm starts each block's last one at 0, which would hide the residual branches). 0 for
    TSN. A property of the architecture, not of trained weights."""
    model = copy.deepcopy(model).eval()
    for mod in model.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm) and mod.weight is not None:
            torch.nn.init.ones_(mod.weight)
    with torch.enable_grad():
        p = next(model.parameters())
        video = torch.randn(1, model.n_frames, 3, img_size, img_size, device=p.device, requires_grad=True)
        audio = torch.randn(1, 1, 3, img_size, img_size, device=p.device) if model.audio else None
        reach = 0
        for t in range(model.n_frames):
            grad, = torch.autograd.grad(model.features(video, audio)[0, t].abs().sum(), video)
            seen = (grad[0].flatten(1).abs().amax(1) > 0).nonzero().flatten().tolist()
            reach = max(reach, *(abs(s - t) for s in seen))
    return reach
