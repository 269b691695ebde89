"""Fitting a run and finishing it: :func:`fit_run` trains the epochs into a run folder (checkpoint after each),
:func:`finish_run` validates on the whole validation set and writes the final weights and record;
:func:`plot_learning_curve` draws the losses per epoch."""
from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
from fastai.callback.core import Callback
from fastai.learner import Learner
from fastai.torch_core import set_seed

from ..runs.checkpoints import (
    BestCheckpoint,
    Checkpoint,
    KeepHistory,
    load_latest_checkpoint,
    read_best,
    recorder_history,
    restore_history,
    save_checkpoint,
)
from ..runs.folder import Run
from .callbacks import EpochSeed, EpochsFromOne, ProgressLine, RunLogger, StepDecay

__all__ = ["fit_run", "finish_run", "plot_learning_curve"]


def fit_run(learn: Learner, run: Run, epochs: int, lr: float, seed: int = 0, resume: bool = False,
            lr_decay: Sequence[tuple[float, int]] | None = None, cbs: Sequence[Callback] = (),
            finish: bool = True, keep_best: bool = False) -> dict[str, Any]:
    """Train ``epochs`` epochs into ``run`` (continuing from its last checkpoint when ``resume``), then
    :func:`finish_run` and return its final metrics. With ``finish=False`` (e.g. inside a distributed context)
    return this session's facts instead, ``{resumed_from_epoch, wall_s_this_session}``, for :func:`finish_run`.
    ``keep_best``: also keep the best validation epoch's weights as ``checkpoints/best.pth``
    (``eval_weights="best"``)."""
    set_seed(seed)
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
    def first(d: dict) -> dict:
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
    set_seed(seed)
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


def plot_learning_curve(learn: Learner, ax=None):
    """The loss per epoch, training and validation, with the training loss of every batch behind them (fastai's
    moving average), against epochs counted from 1 as the terminal counts them. The per-epoch lines stay readable
    when an epoch has a single batch, where fastai's ``recorder.plot_loss`` had next to nothing left to draw."""
    import matplotlib.pyplot as plt

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
