"""Training TSAM with fastai: a Learner factory, the report's recipe beside one-cycle, and run callbacks.

Two recipes:
- ``"one_cycle"``: fastai's ``fit_one_cycle`` with Adam (the default for quick CPU runs);
- ``"paper"``: the report's code: SGD momentum 0.9, L2 weight decay 1e-4, step decay
  ``lr_decay=[(factor, n), ...]``: lr = factor x base lr once ``n`` epochs are done (no warm-up).
  Kinetics-400: base 0.05, [(0.2, 5), (0.01, 30), (0.002, 45)] -> 0.05 for epochs 1-5, 0.01 from epoch 6,
  5e-4 from 31, 1e-4 from 46 (epochs counted from 1, as everywhere in tsamlib; the authors' configs mean the same).

Callbacks (each with an ``order``, none edits the loop): :class:`EpochSeed` (every epoch's randomness derives
from (seed, epoch), so a resumed run repeats an uninterrupted one exactly on CPU), :class:`RunLogger`
(per-epoch metrics, clips/s, wall time, skipped samples -> ``metrics.json``), :class:`Checkpoint` (model,
optimiser and epoch after every epoch, :mod:`tsamlib.runs.checkpoints`) and, with ``keep_best``,
:class:`BestCheckpoint` (the best validation epoch's weights besides, for ``eval_weights="best"``).

Weight decay: fastai skips BatchNorm and bias parameters (``wd_bn_bias=False``, the default);
``wd_bn_bias=True`` decays every parameter, as the authors' ``torch.optim.SGD(model.parameters(), ...)``.
"""
from __future__ import annotations

import random
import time
from functools import partial
from typing import Any, Sequence

import fastai.callback.schedule  # noqa: F401  (patches Learner.fit_one_cycle, lr_find)
import numpy as np
import torch
from fastai.callback.core import Callback
from fastai.callback.progress import ProgressCallback
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.metrics import accuracy, top_k_accuracy
from fastai.optimizer import SGD, Adam
from fastai.torch_core import rank_distrib
from fastcore.meta import delegates

from ..config import PRECISIONS
from ..model.tsam import create_tsam, tsam_kwargs
from ..runs.checkpoints import (
    BestCheckpoint,
    Checkpoint,
    KeepHistory,
    TrainedEpochCallback,
    load_latest_checkpoint,
    read_best,
    recorder_history,
    restore_history,
    save_checkpoint,
)
from ..runs.folder import Run
from ..runs.notebook import watched_notebook

__all__ = ["top1", "top5", "tsam_learner", "resolve_precision", "BF16Autocast", "EpochSeed", "StepDecay",
           "EpochsFromOne", "ProgressLine", "RunLogger", "fit_run", "finish_run", "plot_learning_curve",
           "seed_everything"]

def top1(inp: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    """Top-1 accuracy: fastai's ``accuracy``, named as every record of this library names it (its table's column)."""
    return accuracy(inp, targ)


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
                 cbs: Sequence[Callback] | None = None, progress_bars: bool = True, wd_bn_bias: bool = False,
                 precision: str = "auto", channels_last: bool | None = None, **kwargs) -> Learner:
    """A fastai Learner over a TSAM model sized from ``dls`` (classes, frames, audio).

    ``recipe="paper"`` uses SGD(momentum 0.9) with L2 weight decay 1e-4 as the report; ``"one_cycle"`` Adam.
    ``wd_bn_bias``: weight decay on BatchNorm and bias parameters too (the authors'; fastai's default skips them).
    ``precision`` (:func:`resolve_precision`): ``"fp16"`` is fastai's mixed precision (CUDA, with a loss scaler),
    ``"bf16"`` autocasts to bfloat16 on the CPU or the GPU, ``"auto"`` is fp16 on a GPU and fp32 on the CPU;
    ``channels_last`` (None: on a GPU). ``learn.precision`` says what was applied. ``progress_bars=False`` drops
    fastai's HTML bars (under papermill nobody sees them; :class:`ProgressLine` prints a line per epoch).
    """
    ds = getattr(getattr(dls, "train", None), "dataset", None)
    n_frames = n_frames if n_frames is not None else getattr(ds, "n_frames", None)
    audio = audio if audio is not None else (getattr(dls, "n_inp", 1) == 2 if ds is not None else None)
    if n_frames is None or audio is None:
        raise ValueError("pass n_frames and audio (the DataLoaders do not say how they were built).")
    model = create_tsam(arch, num_classes=dls.c, n_frames=n_frames, audio=audio, **tsam_kwargs(kwargs))
    if recipe == "paper":
        opt_func, wd = partial(SGD, mom=0.9, decouple_wd=False), 1e-4 if wd is None else wd
    elif recipe == "one_cycle":
        opt_func = Adam
    else:
        raise ValueError(f"recipe={recipe!r}: use 'one_cycle' (fastai) or 'paper' (SGD + step decay).")
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), opt_func=opt_func, wd=wd, wd_bn_bias=wd_bn_bias,
                    metrics=list(metrics) if metrics is not None else [top1, top5], cbs=cbs)
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
        seed_everything(s)
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


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _html_bars() -> bool:
    """fastai draws its epoch table as HTML in a notebook (fastprogress decides when it is imported)."""
    import fastprogress.fastprogress as fp
    return bool(fp.IN_NOTEBOOK)


class ProgressLine(TrainedEpochCallback):
    """One plain text line per trained epoch on stdout, for terminals and logs (``papermill --log-output``,
    ``python -m tsamlib train``), beside fastai's HTML bars in JupyterLab; rank 0 only::

        epoch 2/3  train_loss 1.0412  valid_loss 0.9871  top1 0.6250  31.4 clips/s  elapsed 0:41  ETA 0:20
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
        fmt = lambda k: "n/a" if values.get(k) is None else f"{float(values[k]):.4f}"  # noqa: E731
        self.print_fn(f"epoch {self.epoch + 1}/{self.n_epoch}  train_loss {fmt('train_loss')}  valid_loss "
                      f"{fmt('valid_loss')}  top1 {fmt('top1')}  {self.clips / max(self.train_s, 1e-9):.1f} "
                      f"clips/s  elapsed {_hms(elapsed)}  ETA {_hms(eta)}", flush=True)


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


def plot_learning_curve(learn: Learner, ax=None):
    """The loss per epoch, training and validation, with the training loss of every batch behind them (fastai's
    moving average), against epochs counted from 1 as the terminal counts them. The per-epoch lines stay readable
    when an epoch has a single batch, where fastai's ``recorder.plot_loss`` had next to nothing left to draw."""
    import matplotlib.pyplot as plt
    import numpy as np

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    rec = learn.recorder
    values = [dict(zip(rec.metric_names[1:-1], v)) for v in rec.values]
    epochs = np.arange(1, len(values) + 1)
    if len(rec.losses) > len(values):   # batches between the epochs' ends: their place on the epoch axis
        ends = np.asarray(rec.iters, dtype=float)
        at = np.interp(np.arange(1, len(rec.losses) + 1), np.concatenate([[0.0], ends]), np.arange(len(ends) + 1))
        ax.plot(at, [float(x) for x in rec.losses], color="tab:blue", alpha=0.3, lw=1,
                label="train, every batch (moving average)")
    for key, style, label in (("train_loss", "o-", "train, at the epoch's end"),
                              ("valid_loss", "s-", "valid, whole validation set")):
        ys = [v.get(key) for v in values]
        if any(y is not None for y in ys):
            ax.plot(epochs, [np.nan if y is None else float(y) for y in ys], style, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy loss")
    ax.set_xticks(epochs)
    ax.legend(fontsize=8)
    ax.set_title("learning curve", fontsize=9)
    return ax


def fit_run(learn: Learner, run: Run, epochs: int, lr: float, seed: int = 0, resume: bool = False,
            lr_decay: Sequence[tuple[float, int]] | None = None, cbs: Sequence[Callback] = (),
            finish: bool = True, keep_best: bool = False) -> dict[str, Any]:
    """Train ``epochs`` epochs into ``run`` (continuing from its last checkpoint when ``resume``), then
    :func:`finish_run` and return its final metrics. With ``finish=False`` (e.g. inside a distributed context)
    return this session's facts instead, ``{resumed_from_epoch, wall_s_this_session}``, for :func:`finish_run`.
    ``keep_best``: also keep the best validation epoch's weights as ``checkpoints/best.pth``
    (``eval_weights="best"``)."""
    seed_everything(seed)
    start = load_latest_checkpoint(learn, run.checkpoint_dir) if resume else 0
    cbs = [EpochSeed(seed), EpochsFromOne(), KeepHistory(), RunLogger(run), ProgressLine(),
           Checkpoint(run.checkpoint_dir), *cbs]
    if keep_best:
        cbs.append(BestCheckpoint(run.checkpoint_dir, resume=start > 0))
    t0 = time.perf_counter()
    if start < epochs:
        if learn.recipe == "paper":
            learn.fit(epochs, lr, cbs=cbs + [StepDecay(lr_decay or [])], start_epoch=start, reset_opt=start == 0)
        else:
            learn.fit_one_cycle(epochs, lr, cbs=cbs, start_epoch=start)
    session = dict(resumed_from_epoch=start + 1 if start else None, wall_s_this_session=time.perf_counter() - t0)
    return finish_run(learn, run, epochs, seed, session) if finish else session


def _data_problems(dls, limit: int = 100) -> dict[str, Any]:
    """What ``final`` records about data that was not used as such: training samples replaced, validation samples
    left out, manifest rows excluded (counts, and up to ``limit`` names with reasons)."""
    def first(d):
        return dict(list(d.items())[:limit])

    rep = dls.skip_report() if hasattr(dls, "skip_report") else {}
    train, valid = rep.get("train"), rep.get("valid")
    skipped = train["paths"] if train else (dls.skipped() if hasattr(dls, "skipped") else {})
    dropped = valid["paths"] if valid else {}
    excluded = getattr(dls, "excluded", None) or {}
    excluded_names, left = {}, limit
    for split, paths in excluded.items():
        excluded_names[split] = dict(list(paths.items())[:left])
        left -= len(excluded_names[split])
    return dict(skipped_samples=len(skipped), skipped=first(skipped),
                skipped_replacements=train["events"] if train else None,
                valid_clips=(valid["clips"] - valid["samples"]) if valid else None,
                valid_dropped_samples=len(dropped), valid_dropped=first(dropped),
                manifest_excluded={k: len(v) for k, v in excluded.items()},
                manifest_excluded_paths={k: v for k, v in excluded_names.items() if v})


def finish_run(learn: Learner, run: Run, epochs: int, seed: int = 0,
               session: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate on the whole validation set, save ``checkpoints/model.pth`` (the last epoch's weights) and mark the
    run finished; ``session`` is what :func:`fit_run` returned with ``finish=False``.

    Returns the final metrics (also in ``metrics.json`` under ``final``, with ``finished: true``); ``top1`` is the
    last epoch's. When ``best.pth`` was kept, ``best_epoch`` and ``best_valid_top1_selected_on_valid`` (chosen on
    this very validation set, so optimistic) are recorded beside it."""
    seed_everything(seed)
    history = recorder_history(learn.recorder)
    valid_loss, top1, top5_ = learn.validate()
    restore_history(learn.recorder, history)  # validate() empties the curves; the notebook plots them next
    done = run.metrics["epochs"]
    final = dict(valid_loss=float(valid_loss), top1=float(top1), top5=float(top5_), epochs=epochs,
                 train_wall_s=sum(r["wall_s"] for r in done),
                 train_clips_per_s=float(np.median([r["train_clips_per_s"] for r in done])) if done else None,
                 wall_s_this_session=(session or {}).get("wall_s_this_session"),
                 resumed_from_epoch=(session or {}).get("resumed_from_epoch"),
                 **_data_problems(learn.dls))
    best = read_best(run.checkpoint_dir)
    if best is not None:
        final.update(best_epoch=int(best["epoch"]), best_valid_top1_selected_on_valid=float(best["top1"]))
    run.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(learn.model.state_dict(), run.checkpoint_dir / "model.pth")
    run.finish(final)
    return final
