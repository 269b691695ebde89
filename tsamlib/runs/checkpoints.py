"""Checkpoints of a run: written so that a kill never leaves none, read with faults named, resumed with history.

- :class:`Checkpoint` saves ``checkpoints/last.pth`` after every trained epoch and keeps the one before as
  ``prev.pth``; a full disk is reported as such, and no temporary file is left.
- :func:`load_latest_checkpoint` resumes from ``last.pth``, or from ``prev.pth`` when ``last.pth`` is unreadable;
  :class:`CheckpointError` names the file, what is wrong with it and what to do.
- Each checkpoint also holds the Recorder's curves (:func:`recorder_history`), put back on resume by
  :class:`KeepHistory`, so the learning curve of a resumed run is the whole run's.
- :class:`BestCheckpoint` (``eval_weights="best"``, the authors' choice) also keeps the weights of the best
  validation epoch as ``checkpoints/best.pth`` (:func:`read_best`); resume still starts from ``last.pth``.
- Epochs are counted from 1, as in the terminal and ``metrics.json``: ``last.pth`` saved after the 3rd epoch holds
  ``epoch=3`` (and ``epochs_from=1``); fastai's own ``self.epoch`` inside callbacks still counts from 0.

Everything is read by :func:`safe_load` (``torch.load(..., weights_only=True)``), the one checked loader of tsamlib.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastai.callback.core import Callback
from fastai.learner import Learner
from fastai.torch_core import num_distrib

from .fileio import atomic_path
from .folder import EPOCHS_FROM
from .loader import CheckpointError, safe_load

__all__ = ["TrainedEpochCallback", "Checkpoint", "BestCheckpoint", "KeepHistory", "epoch_number",
           "load_checkpoint", "load_latest_checkpoint", "read_best", "recorder_history", "restore_history",
           "save_checkpoint"]


_HISTORY = ("losses", "iters", "values", "lrs")


def recorder_history(recorder) -> dict[str, list]:
    """The Recorder's curves as plain lists: per-batch training losses and lrs, per-epoch metric rows."""
    plain = lambda v: float(v) if isinstance(v, (torch.Tensor, np.generic, float, int)) else v  # noqa: E731
    sl = recorder.smooth_loss  # the moving average behind `losses`: resumed, the curve goes on as if uninterrupted
    got = {name: vars(recorder).get(name, []) for name in _HISTORY}  # empty before the first fit
    return dict(losses=[float(x) for x in got["losses"]], lrs=[float(x) for x in got["lrs"]],
                iters=[int(x) for x in got["iters"]], values=[[plain(v) for v in row] for row in got["values"]],
                smooth=[int(sl.count), float(sl.val)])


def restore_history(recorder, history: dict[str, list] | None) -> None:
    """Put :func:`recorder_history` back (a Recorder empties its curves at every fit or validate)."""
    for name in _HISTORY:
        if history and name in history:
            setattr(recorder, name, [torch.tensor(x) if name == "losses" else x for x in history[name]])
    if history and history.get("smooth"):
        recorder.smooth_loss.count, recorder.smooth_loss.val = history["smooth"][0], torch.tensor(history["smooth"][1])


class KeepHistory(Callback):
    """On resume, the Recorder starts with the curves of the epochs trained before the interruption (saved in
    each checkpoint), so ``learn.recorder.plot_loss()`` shows the whole run."""

    order = 55  # after the Recorder (50) has emptied its lists in before_fit

    def before_fit(self):
        history = getattr(self.learn, "resumed_history", None)
        if history:
            restore_history(self.recorder, history)
            self.learn.resumed_history = None

    def after_epoch(self):
        r = self.recorder  # an epoch skipped by resume leaves an empty row (and its iteration count): drop it
        if r.values and not r.values[-1]:
            r.values.pop()
            if r.iters:
                r.iters.pop()


_WRITE_FAILED = ("PytorchStreamWriter failed", "basic_ios::clear", "iostream error", "unexpected pos")


def save_checkpoint(obj: Any, path: Path, before_replace=None) -> None:
    """``torch.save`` through :func:`atomic_path`; ``before_replace()`` runs once the new file is complete on disk
    (fsync'd) and before it replaces ``path``. A full disk raises a clear ``OSError(ENOSPC)``; no temp file is left."""
    try:
        with atomic_path(path) as tmp:
            torch.save(obj, tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            if before_replace is not None:
                before_replace()
    except (OSError, RuntimeError) as e:
        import errno
        import shutil
        try:
            free = f"{shutil.disk_usage(path.parent).free / 2**20:.0f} MiB free there"
        except OSError:
            free = "free space unknown"
        no_space = getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or (
            isinstance(e, RuntimeError) and any(m in str(e) for m in _WRITE_FAILED))
        if no_space:
            raise OSError(errno.ENOSPC, f"no space left on device while writing {path}: free space or move runs_root "
                                        f"({free}; {type(e).__name__}: {str(e)[:200]})") from e
        if isinstance(e, OSError):
            raise OSError(e.errno, f"cannot write checkpoint {path}: {e.strerror or e} (check the permissions of "
                                   f"{path.parent}, or move runs_root)") from e
        raise


class TrainedEpochCallback(Callback):
    """The base of every callback that acts once per epoch that really trained (the epochs a resume skips are
    cancelled before they train): :meth:`after_trained_epoch`, with the epoch's optimizer ``steps``, training
    ``clips`` (over all processes: this process's x the world size, as every process takes an equal part of each
    global batch) and seconds (``train_s``; ``t_epoch`` is the epoch's start) at hand."""

    trained = False

    def before_epoch(self):
        self.clips, self.steps, self.t_epoch = 0, 0, time.perf_counter()

    def before_train(self):
        self.trained, self.t_train = True, time.perf_counter()

    def after_batch(self):
        if self.training:
            self.clips += self.yb[0].shape[0] * max(num_distrib(), 1)

    def after_step(self):
        self.steps += 1

    def after_train(self):
        self.train_s = time.perf_counter() - self.t_train

    def after_epoch(self):
        if self.trained:
            self.trained = False
            self.after_trained_epoch()

    def after_trained_epoch(self) -> None:
        raise NotImplementedError

    def epoch_values(self) -> dict[str, Any]:
        """The Recorder's values of the epoch that just trained, by name (train_loss, valid_loss, top1, ...)."""
        return dict(zip(self.recorder.metric_names[1:-1], self.recorder.values[-1]))


class Checkpoint(TrainedEpochCallback):
    """Save ``checkpoints/last.pth`` (model, optimiser, epoch) after every trained epoch, atomically, keeping the
    previous one as ``prev.pth``: the new file is written in full first, then ``last -> prev``, then the new file
    becomes ``last``, so a kill at any moment leaves at least one complete checkpoint (see
    :func:`load_latest_checkpoint`)."""

    order = 80

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def after_trained_epoch(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        last, prev = self.folder / "last.pth", self.folder / "prev.pth"

        def keep_previous():
            if last.is_file():
                os.replace(last, prev)

        save_checkpoint(dict(model=self.model.state_dict(), opt=_plain(self.opt.state_dict()), epoch=self.epoch + 1,
                              epochs_from=EPOCHS_FROM, history=recorder_history(self.recorder)), last, keep_previous)


def read_best(folder: str | Path) -> dict[str, Any] | None:
    """``best.pth`` of a checkpoint folder: ``{model, epoch, top1}`` (epoch counted from 1, also for a file written
    before, :func:`epoch_number`), or None when there is none. An unreadable file raises :class:`CheckpointError`."""
    path = Path(folder) / "best.pth"
    if not path.is_file():
        return None
    ck = safe_load(path, hint="evaluate the last weights (eval_weights='last') or train the run again")
    if not isinstance(ck, dict) or not {"model", "epoch", "top1"} <= set(ck):
        raise CheckpointError(f"{path} is not a best-epoch checkpoint (needs model, epoch, top1)")
    return {**ck, "epoch": epoch_number(ck)}


def epoch_number(ck: dict[str, Any]) -> int:
    """The epoch a checkpoint was saved after, counted from 1 (files written before ``epochs_from`` was recorded
    counted from 0)."""
    return int(ck["epoch"]) + (0 if ck.get("epochs_from") == EPOCHS_FROM else 1)


class BestCheckpoint(TrainedEpochCallback):
    """Save the weights of the best validation epoch so far (highest top-1; the earliest of equal ones, as the
    authors' ``checkpoint_acc``) as ``best.pth`` = ``{model, epoch, top1}``, atomically. With ``resume``, the best
    so far is read back from ``best.pth``. Runs before :class:`Checkpoint`, so a kill between the two files
    leaves ``last.pth`` one epoch behind: that epoch is trained again on resume, never lost."""

    order = 79

    def __init__(self, folder: str | Path, resume: bool = False, metric: str = "top1"):
        self.folder, self.resume, self.metric = Path(folder), resume, metric

    def before_fit(self):
        got = read_best(self.folder) if self.resume else None
        self.best, self.best_epoch = (float(got["top1"]), int(got["epoch"])) if got else (-float("inf"), None)

    def after_trained_epoch(self) -> None:
        value = self.epoch_values().get(self.metric)
        if value is None or not float(value) > self.best:
            return
        self.best, self.best_epoch = float(value), self.epoch + 1
        self.folder.mkdir(parents=True, exist_ok=True)
        save_checkpoint(dict(model=self.model.state_dict(), epoch=self.best_epoch, epochs_from=EPOCHS_FROM,
                             top1=self.best), self.folder / "best.pth")


def _plain(obj: Any) -> Any:
    """fastai's optimiser state holds fastcore ``L`` lists: turn them into plain lists for weights_only loading."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) or type(obj).__name__ == "L":
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint dict of ``path`` (``weights_only``), or :class:`CheckpointError` saying what is wrong."""
    todo = "resume from prev.pth (load_latest_checkpoint does so), or start the run afresh (overwrite=True)"
    ck = safe_load(path, hint=todo)
    missing = [k for k in ("model", "opt", "epoch") if not isinstance(ck, dict) or k not in ck]
    if missing:
        what = ("holds model weights only (like checkpoints/model.pth), not a training checkpoint"
                if isinstance(ck, dict) and ck and all(isinstance(v, torch.Tensor) for v in ck.values())
                else f"is not a training checkpoint: it lacks {missing}")
        raise CheckpointError(f"checkpoint {path} {what}", "resume needs checkpoints/last.pth or prev.pth as "
                              "written by the Checkpoint callback (model, opt, epoch)")
    return ck


def load_checkpoint(learn: Learner, path: str | Path) -> int:
    """Restore model and optimiser from a checkpoint (``last.pth``); return the number of epochs it had trained
    (fastai's ``start_epoch``: the next epoch, counted from 0 as fastai counts).

    A file that is empty, truncated, not a checkpoint or written for a different model raises
    :class:`CheckpointError` naming it; the model is left unchanged then."""
    path = Path(path)
    ck = _read_checkpoint(path)
    own, theirs = learn.model.state_dict(), ck["model"]
    if not isinstance(theirs, dict):
        raise CheckpointError(f"checkpoint {path}: its 'model' entry is not a state dict")
    shapes = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in theirs.items()
              if k in own and isinstance(v, torch.Tensor) and tuple(v.shape) != tuple(own[k].shape)]
    lacking, extra = [k for k in own if k not in theirs], [k for k in theirs if k not in own]
    if shapes or lacking or extra:
        diff = "; ".join(p for p in (f"{len(shapes)} shape mismatches ({', '.join(shapes[:3])})" if shapes else "",
                                     f"{len(lacking)} weights missing ({', '.join(lacking[:3])})" if lacking else "",
                                     f"{len(extra)} unexpected weights ({', '.join(extra[:3])})" if extra else "") if p)
        raise CheckpointError(f"checkpoint {path} was written by a different model ({diff})", "resume with the "
                              "run's own settings (arch, classes, frames, audio), or start afresh (overwrite=True)")
    if learn.opt is None:
        learn.create_opt()
    old_opt = learn.opt.state_dict()
    try:
        learn.opt.load_state_dict(ck["opt"])
    except Exception as e:
        learn.opt.load_state_dict(old_opt)
        raise CheckpointError(f"checkpoint {path}: its optimiser state does not fit this Learner ({type(e).__name__}"
                              f"{': ' + str(e)[:120] if str(e) else ''})", "was it written with another recipe or "
                              "model? Resume with the run's own settings, or start afresh (overwrite=True)") from None
    learn.model.load_state_dict(theirs)
    learn.resumed_history = ck.get("history")  # put back into the Recorder by KeepHistory when fit starts
    return epoch_number(ck)


def load_latest_checkpoint(learn: Learner, folder: str | Path) -> int:
    """Resume from ``folder/last.pth``, or from ``prev.pth`` (with a printed message) when ``last.pth`` is missing
    or unreadable (it is then renamed ``last.unreadable.pth``); return the number of epochs trained (0 when the
    folder holds neither). Both unreadable: :class:`CheckpointError` naming both."""
    folder = Path(folder)
    last, prev = folder / "last.pth", folder / "prev.pth"
    if not last.exists() and not prev.exists():
        return 0
    if last.exists():
        try:
            return load_checkpoint(learn, last)
        except CheckpointError as e:
            if not prev.exists():
                raise
            why = e.problem
    else:
        why = f"{last} is missing (the process was killed while replacing it)"
    try:
        start = load_checkpoint(learn, prev)
    except CheckpointError as e2:
        raise CheckpointError(f"no usable checkpoint in {folder}: {why}; and {e2.problem}",
                              "start the run afresh (overwrite=True)") from None
    aside = ""
    if last.exists():  # out of the way: the next save must not rotate it over the good prev.pth
        os.replace(last, folder / "last.unreadable.pth")
        aside = f" (moved aside to {folder / 'last.unreadable.pth'})"
    print(f"resuming from {prev} (after epoch {start}) because {why}{aside}", flush=True)
    return start
