"""A fastai Learner over TSAM (:func:`tsam_learner`), with the report's recipe beside one-cycle.

Two recipes:
- ``"one_cycle"``: fastai's ``fit_one_cycle`` with Adam (the default for quick CPU runs);
- ``"paper"``: the report's code: SGD momentum 0.9, L2 weight decay 1e-4, step decay
  ``lr_decay=[(factor, n), ...]``: lr = factor x base lr once ``n`` epochs are done (no warm-up).
  Kinetics-400: base 0.05, [(0.2, 5), (0.01, 30), (0.002, 45)] -> 0.05 for epochs 1-5, 0.01 from epoch 6,
  5e-4 from 31, 1e-4 from 46 (epochs counted from 1, as everywhere in tsamlib; the authors' configs mean the same).

Weight decay: fastai skips BatchNorm and bias parameters (``wd_bn_bias=False``, the default);
``wd_bn_bias=True`` decays every parameter, as the authors' ``torch.optim.SGD(model.parameters(), ...)``.
The callbacks of a run are in :mod:`.callbacks`, fitting and finishing it in :mod:`.fit`.
"""
from __future__ import annotations

from functools import partial
from typing import Sequence

import fastai.callback.schedule  # noqa: F401  (patches Learner.fit_one_cycle, lr_find)
import torch
from fastai.callback.core import Callback
from fastai.callback.progress import ProgressCallback
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.metrics import accuracy, top_k_accuracy
from fastai.optimizer import SGD, Adam
from fastcore.meta import delegates
from torch import nn

from ..config import PRECISIONS
from ..model.tsam import create_tsam, tsam_kwargs
from .callbacks import BF16Autocast

__all__ = ["top1", "top5", "tsam_learner", "resolve_precision"]


def top1(inp: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    """Top-1 accuracy: fastai's ``accuracy``, named as every record of this library names it (its table's column)."""
    return accuracy(inp, targ)


def top5(inp: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    """Top-5 accuracy (top-k with k = number of classes when there are fewer than 5)."""
    return top_k_accuracy(inp, targ, k=min(5, inp.shape[-1]))


def _model_for(dls, arch: str | nn.Module, model_kwargs: dict) -> nn.Module:
    """``arch`` itself when it is a built model; else a TSAM sized from ``dls`` (classes, frames, audio), an
    explicit ``n_frames`` / ``audio`` in ``model_kwargs`` winning."""
    if isinstance(arch, nn.Module):
        if model_kwargs:
            raise ValueError(f"tsam_learner got a built model and model settings {sorted(model_kwargs)}: give the "
                             "settings to create_tsam, or pass the architecture's name instead of the model.")
        return arch
    ds = getattr(getattr(dls, "train", None), "dataset", None)
    n_frames, audio = model_kwargs.pop("n_frames", None), model_kwargs.pop("audio", None)
    n_frames = n_frames if n_frames is not None else getattr(ds, "n_frames", None)
    audio = audio if audio is not None else (getattr(dls, "n_inp", 1) == 2 if ds is not None else None)
    if n_frames is None or audio is None:
        raise ValueError("pass n_frames and audio (the DataLoaders do not say how they were built).")
    return create_tsam(arch, num_classes=dls.c, n_frames=n_frames, audio=audio, **tsam_kwargs(model_kwargs))


@delegates(create_tsam, but=["num_classes"])
def tsam_learner(dls, arch: str | nn.Module = "resnet50", *, recipe: str = "one_cycle", wd: float | None = None,
                 cbs: Sequence[Callback] | None = None, progress_bars: bool = True, wd_bn_bias: bool = False,
                 precision: str = "auto", channels_last: bool | None = None, **model_kwargs) -> Learner:
    """A fastai Learner over a TSAM model: ``arch`` a timm name (the model sized from ``dls``: classes, frames,
    audio; ``model_kwargs`` go to :func:`create_tsam`) or a model already built.

    ``recipe="paper"`` uses SGD(momentum 0.9) with L2 weight decay 1e-4 as the report; ``"one_cycle"`` Adam.
    ``wd_bn_bias``: weight decay on BatchNorm and bias parameters too (the authors'; fastai's default skips them).
    ``precision`` (:func:`resolve_precision`): ``"fp16"`` is fastai's mixed precision (CUDA, with a loss scaler),
    ``"bf16"`` autocasts to bfloat16 on the CPU or the GPU, ``"auto"`` is fp16 on a GPU and fp32 on the CPU;
    ``channels_last`` (None: on a GPU). ``learn.precision`` says what was applied. ``progress_bars=False`` drops
    fastai's HTML bars (under papermill nobody sees them; :class:`ProgressLine` prints a line per epoch).
    The metrics are :func:`top1` and :func:`top5`, the names every run record reads.
    """
    model = _model_for(dls, arch, dict(model_kwargs))
    if recipe == "paper":
        opt_func, wd = partial(SGD, mom=0.9, decouple_wd=False), 1e-4 if wd is None else wd
    elif recipe == "one_cycle":
        opt_func = Adam
    else:
        raise ValueError(f"recipe={recipe!r}: use 'one_cycle' (fastai) or 'paper' (SGD + step decay).")
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), opt_func=opt_func, wd=wd, wd_bn_bias=wd_bn_bias,
                    metrics=[top1, top5], cbs=cbs)
    learn.recipe = recipe
    if not progress_bars:  # without the bars fastai's Recorder would print each epoch as a raw list
        learn.remove_cb(ProgressCallback)
        learn.logger = lambda *args, **kwargs: None
    cuda = torch.cuda.is_available()
    learn.precision = resolve_precision(precision, cuda)
    if learn.precision == "fp16":
        learn.to_fp16()
    elif learn.precision == "bf16":
        learn.add_cb(BF16Autocast("cuda" if cuda else "cpu"))
    if cuda if channels_last is None else channels_last:
        from fastai.callback.channelslast import ChannelsLast
        learn.add_cb(ChannelsLast())
    return learn


def resolve_precision(precision: str, cuda: bool) -> str:
    """``"fp32"``, ``"fp16"`` or ``"bf16"``: ``precision`` with ``"auto"`` resolved (fp16 on a CUDA GPU, fp32 on the
    CPU). ValueError for fp16 without a GPU (float16 autocast is a GPU recipe; on the CPU it is slow and untested
    here) and for an unknown value."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: choose one of {list(PRECISIONS)}.")
    if precision == "auto":
        return "fp16" if cuda else "fp32"
    if precision == "fp16" and not cuda:
        raise ValueError("precision='fp16' needs a CUDA GPU: on the CPU use 'bf16' (autocast to bfloat16) or 'fp32'.")
    return precision
