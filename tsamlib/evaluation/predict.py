"""Predict the class of one raw video file with a trained run (``python -m tsamlib predict VIDEO --run RUN``).

The views are fixed in advance, as in :mod:`tsamlib.evaluation.views`: ``n_clips`` test clips (frame at offset
``(clip + 0.5) / n_clips`` of each TSN segment) x ``n_crops`` crops (1: centre), resized and normalised
exactly as the run's validation data (``img_size``, ``resize``, and the run's ``video_norm`` and ``valid_view``);
the softmax is averaged over all views. An audio model gets the file's full-clip log-mel frame (``n_mels`` and
``audio_frontend`` from the run); a file without sound gets the silent frame, and a note says so.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from fastai.torch_core import default_device

from ..config import RunConfig
from ..data.loaders import video_views
from ..model.tsam import TSAM
from ..runs.folder import open_run
from .specs import ViewsSpec
from .views import load_model, run_vocab

__all__ = ["N_CLIPS", "N_CROPS", "clip_views", "predict"]

N_CLIPS, N_CROPS = 2, 1   # the views predict averages unless told: two test clips, the centre crop


def clip_views(path: str | os.PathLike, cfg: RunConfig | dict[str, Any], n_clips: int = 2, n_crops: int = 1,
               verbose: bool = True) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """The ``n_clips x n_crops`` views of a video for a run's model (``cfg``: its RunConfig or ``params.json``):
    video ``(V, T, 3, S, S)``, audio ``(V, 1, 3, S, S)`` or None, and whether the file has sound."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such video file or frame folder.")
    spec = ViewsSpec.of(cfg)
    video, audio, has_audio = video_views(path, spec.n_frames, n_clips, n_crops, spec.test_transform(n_crops),
                                          spec.audio_frame(), backend=spec.video_backend)
    if not has_audio and verbose:
        dropped = " (this run left such videos out of training: missing_audio='drop')" if (
            spec.missing_audio == "drop") else ""
        print(f"note: {path.name} has no audio track: the model gets a silent audio frame{dropped}.")
    return video, audio, has_audio


@torch.no_grad()
def predict(run: str | os.PathLike, video: str | os.PathLike, k: int = 5, n_clips: int = N_CLIPS,
            n_crops: int = N_CROPS,
            model: TSAM | None = None, verbose: bool = True) -> list[tuple[str, float]]:
    """The `k` most probable classes of a raw video for a finished run (its folder or :class:`Run`; its model,
    unless ``model`` is given, and every setting from it) or a package folder (``checkpoint convert``),
    ``[(class_name, probability), ...]`` sorted by probability (softmax averaged over ``n_clips x n_crops`` fixed
    views)."""
    path = Path(video)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such video file or frame folder.")
    if model is None:
        model, cfg, vocab = load_model(run)
        model = model.to(default_device())  # the GPU when there is one
    else:
        cfg = RunConfig.of(open_run(run).params)
        vocab = run_vocab(cfg)
    video, audio, _ = clip_views(path, cfg, n_clips, n_crops, verbose)
    dev = next(model.parameters()).device
    inputs = (video,) if audio is None else (video, audio)
    logits = model.eval()(*[t.to(dev) for t in inputs]).cpu()
    probs = F.softmax(logits.float(), dim=1).mean(0)
    top = probs.topk(min(k, len(vocab)))
    return [(vocab[int(i)], float(p)) for p, i in zip(top.values, top.indices)]
