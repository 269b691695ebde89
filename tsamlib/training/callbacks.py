"""The callbacks of a run, each with an ``order`` and none editing fastai's loop.

- :class:`EpochSeed`: every epoch's randomness derives from (seed, epoch), so a resumed run repeats an
  uninterrupted one exactly on CPU;
- :class:`EpochsFromOne`: fastai's table counts epochs from 1, as every record of tsamlib;
- :class:`StepDecay`: the report's step schedule (``recipe="paper"``);
- :class:`BF16Autocast`: bfloat16 autocast on the CPU too;
- :class:`ProgressLine`: one text line per epoch for terminals and logs;
- :class:`RunLogger`: the per-epoch row of ``metrics.json``.
"""
from __future__ import annotations

import random
import time
from typing import Sequence

import torch
from fastai.callback.core import Callback
from fastai.callback.progress import ProgressCallback
from fastai.torch_core import rank_distrib, set_seed
from fastprogress.fastprogress import format_time

from ..runs.checkpoints import TrainedEpochCallback
from ..runs.folder import Run
from ..runs.notebook import watched_notebook

__all__ = ["BF16Autocast", "EpochSeed", "EpochsFromOne", "StepDecay", "ProgressLine", "RunLogger"]


class BF16Autocast(Callback):
    """Forward and loss under ``torch.autocast(device_type, bfloat16)``, on the CPU too (fastai's ``to_bf16``
    autocasts CUDA only, so on a CPU it would train in fp32 while saying bf16). bfloat16 has fp32's range: no loss
    scaler."""

    order = 10   # where fastai's MixedPrecision sits

    def __init__(self, device_type: str):
        self.device_type = device_type

    def before_batch(self):
        self.autocast = torch.autocast(self.device_type, dtype=torch.bfloat16)
        self.autocast.__enter__()

    def after_pred(self):
        self.learn.pred = self.pred.float()

    def after_loss(self):
        self.autocast.__exit__(None, None, None)
        self.autocast = None

    def after_cancel_batch(self):   # a batch cancelled before its loss: leave the autocast region all the same
        if getattr(self, "autocast", None) is not None:
            self.after_loss()


class EpochSeed(Callback):
    """Seed python, numpy, torch and the loaders' shuffling from (seed, epoch) at the start of every epoch."""

    order = -20

    def __init__(self, seed: int):
        self.seed = seed

    def before_epoch(self):
        s = self.seed * 100_003 + self.epoch
        set_seed(s)
        for dl in self.dls.loaders:
            if hasattr(dl, "rng"):
                dl.rng = random.Random(s)
            if hasattr(getattr(dl, "dataset", None), "epoch"):  # tsamlib.data draws per-item randomness
                dl.dataset.epoch = self.epoch * 1000             # from (seed, dataset.epoch, index)


class EpochsFromOne(Callback):
    """fastai's progress table numbers its rows from 0; tsamlib counts epochs from 1 everywhere (the terminal
    line, ``metrics.json``, checkpoints), so the table's ``epoch`` column does too. Display only."""

    order = 51  # after the Recorder (50) starts the epoch's row with fastai's 0-based epoch

    def before_epoch(self):
        if getattr(self.learn, "recorder", None) is not None and len(self.recorder.log):
            self.recorder.log[0] = self.epoch + 1


class StepDecay(Callback):
    """lr = factor x base lr once ``n`` epochs are done; ``decay=[(factor, n), ...]`` as the report's configs."""

    order = 60

    def __init__(self, decay: Sequence[tuple[float, int]]):
        self.decay = sorted(((float(f), int(e)) for f, e in decay), key=lambda p: p[1])

    def factor(self, epoch: int) -> float:
        """The factor of the epoch that has ``epoch`` epochs done before it (fastai's 0-based ``self.epoch``)."""
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


def _html_bars() -> bool:
    """fastai draws its epoch table as HTML in a notebook (fastprogress decides when it is imported)."""
    import fastprogress.fastprogress as fp
    return bool(fp.IN_NOTEBOOK)


class ProgressLine(TrainedEpochCallback):
    """One plain text line per trained epoch on stdout, for terminals and logs (``papermill --log-output``,
    ``python -m tsamlib train``), beside fastai's HTML bars in JupyterLab; rank 0 only::

        epoch 2/3  train_loss 1.0412  valid_loss 0.9871  top1 0.6250  31.4 clips/s  elapsed 00:41  ETA 00:20
    """

    order = 75  # after the Recorder (50) has the epoch's values

    def __init__(self, print_fn=print):
        self.print_fn = print_fn

    def before_fit(self):
        self.t0, self.done = time.perf_counter(), 0

    def after_trained_epoch(self):
        self.done += 1
        if rank_distrib() or (watched_notebook() and _html_bars()
                              and any(isinstance(cb, ProgressCallback) for cb in self.learn.cbs)):
            return   # several processes: rank 0 prints; in JupyterLab fastai's table already shows the epoch
        values = self.epoch_values()
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / self.done * (self.n_epoch - self.epoch - 1)
        def fmt(key: str) -> str:
            return "n/a" if values.get(key) is None else f"{float(values[key]):.4f}"
        self.print_fn(f"epoch {self.epoch + 1}/{self.n_epoch}  train_loss {fmt('train_loss')}  valid_loss "
                      f"{fmt('valid_loss')}  top1 {fmt('top1')}  {self.clips / max(self.train_s, 1e-9):.1f} "
                      f"clips/s  elapsed {format_time(elapsed)}  ETA {format_time(eta)}", flush=True)


class RunLogger(TrainedEpochCallback):
    """After each trained epoch: losses, top-1/top-5, lr, optimizer steps, training clips and clips/s, wall time,
    skipped samples, into the run's ``metrics.json`` (:meth:`Run.log_epoch`)."""

    order = 70  # after fastai's Recorder (50) has the epoch's values

    def __init__(self, run: Run):
        self.run = run

    def after_trained_epoch(self):
        values = self.epoch_values()
        skips = self.dls.skip_report() if hasattr(self.dls, "skip_report") else {}
        skipped = skips["train"]["paths"] if "train" in skips else {}  # replaced training samples
        self.run.log_epoch(dict(
            epoch=self.epoch + 1, train_loss=values.get("train_loss"), valid_loss=values.get("valid_loss"),
            top1=values.get("top1"), top5=values.get("top5"), lr=self.opt.hypers[-1]["lr"],
            train_steps=self.steps, train_clips=self.clips, train_clips_per_s=self.clips / max(self.train_s, 1e-9),
            wall_s=time.perf_counter() - self.t_epoch, skipped_samples=len(skipped),
            valid_dropped_samples=skips["valid"]["samples"] if "valid" in skips else 0))
