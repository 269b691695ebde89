"""Predict the class of one raw video file with a trained run: ``python -m tsamlib predict VIDEO --run RUN``.

The views are fixed in advance, as in :mod:`tsamlib.evaluation.views`: ``n_clips`` test clips (frame at offset
``(clip + 0.5) / n_clips`` of each TSN segment) x ``n_crops`` crops (1: centre), resized and normalised
exactly as the run's validation data (``img_size``, ``resize``, and the run's ``video_norm`` and ``valid_view``);
the softmax is averaged over all views. An audio model gets the file's full-clip log-mel frame (``n_mels`` and
``audio_frontend`` from the run); a file without sound gets the silent frame, and a note says so.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from fastai.torch_core import default_device

from ..config import RunConfig
from ..data.audio import DEFAULT_SR, AudioFrame
from ..data.loaders import video_views
from ..data.transforms import ClipTransform, norm_stats
from ..data.decode import VideoReadError
from ..model.tsam import TSAM
from ..runs.folder import open_run
from .views import load_model, run_vocab

__all__ = ["clip_views", "predict", "cmd_predict"]


def clip_views(path: str | os.PathLike, cfg: RunConfig | dict[str, Any], n_clips: int = 2, n_crops: int = 1,
               verbose: bool = True) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """The ``n_clips x n_crops`` views of a video for a run's model (``cfg``: its RunConfig or ``params.json``):
    video ``(V, T, 3, S, S)``, audio ``(V, 1, 3, S, S)`` or None, and whether the file has sound."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such video file or frame folder.")
    cfg = RunConfig.of(cfg)
    sw = cfg.switches()
    mean, std = norm_stats(sw["video_norm"])
    tfm = ClipTransform(cfg.img_size, cfg.resize, train=False, n_crops=n_crops, mean=mean, std=std,
                        valid_view=sw["valid_view"])
    af = (AudioFrame(size=(cfg.img_size, cfg.img_size), n_mels=cfg.n_mels, sr=DEFAULT_SR,
                     frontend=sw["audio_frontend"]) if cfg.audio else None)
    video, audio, has_audio = video_views(path, cfg.n_frames, n_clips, n_crops, tfm, af)
    if not has_audio and verbose:
        dropped = " (this run left such videos out of training: missing_audio='drop')" if (
            sw["missing_audio"] == "drop") else ""
        print(f"note: {path.name} has no audio track: the model gets a silent audio frame{dropped}.")
    return video, audio, has_audio


@torch.no_grad()
def predict(run: str | os.PathLike, video: str | os.PathLike, k: int = 5, n_clips: int = 2, n_crops: int = 1,
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


def cmd_predict(args: argparse.Namespace) -> int:
    """``python -m tsamlib predict``: print the top classes of a video; one-line errors (exit code 1) for a
    missing or unreadable file or run (the parser is in :mod:`tsamlib.__main__`)."""
    import sys
    try:
        if not Path(args.run).is_dir():
            raise FileNotFoundError(f"run folder {args.run} not found (runs live in results/runs/<run_id>/; a "
                                    "package folder from `checkpoint convert` works too).")
        top = predict(args.run, args.video, k=args.top, n_clips=args.n_clips, n_crops=args.n_crops)
    except (FileNotFoundError, VideoReadError, RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    width = max(len(name) for name, _ in top)
    print(f"{args.video}  (run {Path(args.run).name}, {args.n_clips} clips x {args.n_crops} crops)")
    for rank, (name, p) in enumerate(top, 1):
        print(f"{rank:2d}. {name:<{width}s}  {p:.4f}")
    return 0
