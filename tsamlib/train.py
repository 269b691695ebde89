"""Training TSAM with fastai: a Learner factory, the report's recipe beside one-cycle, and run callbacks.

Two recipes:
- ``"one_cycle"``: fastai's ``fit_one_cycle`` with Adam (the default for quick CPU runs);
- ``"paper"``: the report's code: SGD momentum 0.9, L2 weight decay 1e-4, step decay
  ``lr_decay=[(factor, epoch), ...]``: lr = factor x base lr from that epoch on (no warm-up).
  Kinetics-400: base 0.05, [(0.2, 5), (0.01, 30), (0.002, 45)] -> 0.05, 0.01 from epoch 5, 5e-4, 1e-4.

Callbacks (each with an ``order``, none edits the loop): :class:`EpochSeed` (every epoch's randomness derives
from (seed, epoch), so a resumed run repeats an uninterrupted one exactly on CPU), :class:`RunLogger`
(per-epoch metrics, clips/s, wall time, skipped samples -> ``metrics.json``), :class:`Checkpoint` (model,
optimiser and epoch after every epoch).
"""
from __future__ import annotations

import random
import time
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import fastai.callback.schedule  # noqa: F401  (patches Learner.fit_one_cycle, lr_find)
from fastai.callback.core import Callback
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.metrics import accuracy, top_k_accuracy
from fastai.optimizer import SGD, Adam
from fastcore.meta import delegates

from .model import create_tsam
from .runs import Run, atomic_path

__all__ = ["PAPER_LR_DECAY", "top5", "tsam_learner", "EpochSeed", "StepDecay", "RunLogger", "Checkpoint",
           "load_checkpoint", "fit_run", "finish_run", "seed_everything"]

# (factor, epoch) pairs of the report's configs (../shared/reference-configs)
PAPER_LR_DECAY = {"kinetics400": [(0.2, 5), (0.01, 30), (0.002, 45)],
                  "something_v1": [(0.1, 20), (0.01, 30), (0.005, 33)]}


def top5(inp: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    """Top-5 accuracy (top-k with k = number of classes when there are fewer than 5)."""
    return top_k_accuracy(inp, targ, k=min(5, inp.shape[-1]))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@delegates(create_tsam, but=["num_classes", "n_frames", "audio"])
def tsam_learner(dls, arch: str = "resnet50", recipe: str = "one_cycle", n_frames: int | None = None,
                 audio: bool | None = None, wd: float | None = None, metrics: Sequence | None = None,
                 cbs: Sequence[Callback] | None = None, **kwargs) -> Learner:
    """A fastai Learner over a TSAM model sized from ``dls`` (classes, frames, audio).

    ``recipe="paper"`` uses SGD(momentum 0.9) with L2 weight decay 1e-4 as the report; ``"one_cycle"`` Adam.
    On a GPU, mixed precision and channels_last are switched on; on CPU neither.
    """
    ds = getattr(getattr(dls, "train", None), "dataset", None)
    n_frames = n_frames if n_frames is not None else getattr(ds, "n_frames", None)
    audio = audio if audio is not None else (getattr(dls, "n_inp", 1) == 2 if ds is not None else None)
    if n_frames is None or audio is None:
        raise ValueError("pass n_frames and audio (the DataLoaders do not say how they were built).")
    model = create_tsam(arch, num_classes=dls.c, n_frames=n_frames, audio=audio, **kwargs)
    if recipe == "paper":
        opt_func, wd = partial(SGD, mom=0.9, decouple_wd=False), 1e-4 if wd is None else wd
    elif recipe == "one_cycle":
        opt_func = Adam
    else:
        raise ValueError(f"recipe={recipe!r}: use 'one_cycle' (fastai) or 'paper' (SGD + step decay).")
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), opt_func=opt_func, wd=wd,
                    metrics=list(metrics) if metrics is not None else [accuracy, top5], cbs=cbs)
    learn.recipe = recipe
    if torch.cuda.is_available():
        from fastai.callback.channelslast import ChannelsLast
        learn.to_fp16()
        learn.add_cb(ChannelsLast())
    return learn


class EpochSeed(Callback):
    """Seed python, numpy, torch and the loaders' shuffling from (seed, epoch) at the start of every epoch."""

    order = -20

    def __init__(self, seed: int):
        self.seed = seed

    def before_epoch(self):
        s = self.seed * 100_003 + self.epoch
        seed_everything(s)
        for dl in self.dls.loaders:
            if hasattr(dl, "rng"):
                dl.rng = random.Random(s)
            if hasattr(getattr(dl, "dataset", None), "epoch"):  # tsamlib.data draws per-item randomness
                dl.dataset.epoch = self.epoch * 1000             # from (seed, dataset.epoch, index)


class StepDecay(Callback):
    """lr = factor x base lr from each milestone epoch on; ``decay=[(factor, epoch), ...]`` as the report."""

    order = 60

    def __init__(self, decay: Sequence[tuple[float, int]]):
        self.decay = sorted(((float(f), int(e)) for f, e in decay), key=lambda p: p[1])

    def factor(self, epoch: int) -> float:
        f = 1.0
        for factor, start in self.decay:
            if epoch >= start:
                f = factor
        return f

    def before_fit(self):
        self.base = [h["lr"] for h in self.opt.hypers]

    def before_epoch(self):
        f = self.factor(self.epoch)
        for h, base in zip(self.opt.hypers, self.base):
            h["lr"] = base * f


class RunLogger(Callback):
    """After each trained epoch: losses, top-1/top-5, lr, training clips/s, wall time, skipped samples."""

    order = 70  # after fastai's Recorder (50) has the epoch's values

    def __init__(self, run: Run):
        self.run, self.trained = run, False  # epochs skipped by resume are cancelled before they train

    def before_epoch(self):
        self.clips, self.t_epoch = 0, time.perf_counter()

    def before_train(self):
        self.trained, self.t_train = True, time.perf_counter()

    def after_batch(self):
        if self.training:
            self.clips += self.yb[0].shape[0]

    def after_train(self):
        self.train_s = time.perf_counter() - self.t_train

    def after_epoch(self):
        if not self.trained:
            return
        self.trained = False
        names = self.recorder.metric_names[1:-1]
        values = dict(zip(names, self.recorder.values[-1]))
        skipped = self.dls.skipped() if hasattr(self.dls, "skipped") else {}
        self.run.log_epoch(dict(
            epoch=self.epoch, train_loss=values.get("train_loss"), valid_loss=values.get("valid_loss"),
            top1=values.get("accuracy"), top5=values.get("top5"), lr=self.opt.hypers[-1]["lr"],
            train_clips=self.clips, train_clips_per_s=self.clips / max(self.train_s, 1e-9),
            wall_s=time.perf_counter() - self.t_epoch, skipped_samples=len(skipped)))


class Checkpoint(Callback):
    """Save ``checkpoints/last.pth`` (model, optimiser, epoch) after every trained epoch, atomically."""

    order = 80

    def __init__(self, folder: str | Path):
        self.folder, self.trained = Path(folder), False

    def before_train(self):
        self.trained = True

    def after_epoch(self):
        if not self.trained:  # an epoch skipped by resume
            return
        self.trained = False
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.folder / "last.pth") as tmp:
            torch.save(dict(model=self.model.state_dict(), opt=_plain(self.opt.state_dict()), epoch=self.epoch), tmp)


def _plain(obj: Any) -> Any:
    """fastai's optimiser state holds fastcore ``L`` lists: turn them into plain lists for weights_only loading."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) or type(obj).__name__ == "L":
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def load_checkpoint(learn: Learner, path: str | Path) -> int:
    """Restore model and optimiser from ``last.pth``; return the next epoch to train."""
    ck = torch.load(path, map_location="cpu", weights_only=True)
    learn.model.load_state_dict(ck["model"])
    if learn.opt is None:
        learn.create_opt()
    learn.opt.load_state_dict(ck["opt"])
    return int(ck["epoch"]) + 1


def fit_run(learn: Learner, run: Run, epochs: int, lr: float, seed: int = 0, resume: bool = False,
            lr_decay: Sequence[tuple[float, int]] | None = None, cbs: Sequence[Callback] = (),
            finish: bool = True) -> dict[str, Any]:
    """Train ``epochs`` epochs into ``run`` (continuing from its last checkpoint when ``resume``), then
    :func:`finish_run` (skip that with ``finish=False``, e.g. inside a distributed context)."""
    seed_everything(seed)
    last = run.checkpoint_dir / "last.pth"
    start = load_checkpoint(learn, last) if resume and last.is_file() else 0
    cbs = [EpochSeed(seed), RunLogger(run), Checkpoint(run.checkpoint_dir), *cbs]
    t0 = time.perf_counter()
    if start < epochs:
        if learn.recipe == "paper":
            learn.fit(epochs, lr, cbs=cbs + [StepDecay(lr_decay or [])], start_epoch=start, reset_opt=start == 0)
        else:
            learn.fit_one_cycle(epochs, lr, cbs=cbs, start_epoch=start)
    run.metrics["resumed_from_epoch"] = start or None
    run.metrics["wall_s_this_session"] = time.perf_counter() - t0
    return finish_run(learn, run, epochs, seed) if finish else {}


def finish_run(learn: Learner, run: Run, epochs: int, seed: int = 0) -> dict[str, Any]:
    """Validate on the whole validation set, save ``checkpoints/model.pth`` and mark the run finished.

    Returns the final metrics (also in ``metrics.json`` under ``final``, with ``finished: true``)."""
    seed_everything(seed)
    valid_loss, top1, top5_ = learn.validate()
    done = run.metrics["epochs"]
    skipped = learn.dls.skipped() if hasattr(learn.dls, "skipped") else {}
    final = dict(valid_loss=float(valid_loss), top1=float(top1), top5=float(top5_), epochs=epochs,
                 train_wall_s=sum(r["wall_s"] for r in done),
                 train_clips_per_s=float(np.median([r["train_clips_per_s"] for r in done])) if done else None,
                 wall_s_this_session=run.metrics.pop("wall_s_this_session", None),
                 resumed_from_epoch=run.metrics.pop("resumed_from_epoch", None),
                 skipped_samples=len(skipped), skipped=dict(list(skipped.items())[:100]))
    run.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    torch.save(learn.model.state_dict(), run.checkpoint_dir / "model.pth")
    run.finish(final)
    return final
