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

import os
import random
import time
import warnings
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import fastai.callback.schedule  # noqa: F401  (patches Learner.fit_one_cycle, lr_find)
from fastai.callback.core import Callback
from fastai.callback.progress import ProgressCallback
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.metrics import accuracy, top_k_accuracy
from fastai.optimizer import SGD, Adam
from fastcore.meta import delegates

from .model import create_tsam
from .fileio import atomic_path
from .runs import Run

__all__ = ["top5", "tsam_learner", "EpochSeed", "StepDecay", "ProgressLine", "KeepHistory", "recorder_history",
           "restore_history", "RunLogger", "Checkpoint", "CheckpointError", "load_checkpoint", "load_latest_checkpoint",
           "fit_run", "finish_run", "plot_learning_curve", "seed_everything"]

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
                 cbs: Sequence[Callback] | None = None, progress_bars: bool = True, **kwargs) -> Learner:
    """A fastai Learner over a TSAM model sized from ``dls`` (classes, frames, audio).

    ``recipe="paper"`` uses SGD(momentum 0.9) with L2 weight decay 1e-4 as the report; ``"one_cycle"`` Adam.
    On a GPU, mixed precision and channels_last are switched on; on CPU neither. ``progress_bars=False`` drops
    fastai's HTML bars (under papermill nobody sees them; :class:`ProgressLine` prints a line per epoch).
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
    if not progress_bars:  # without the bars fastai's Recorder would print each epoch as a raw list
        learn.remove_cb(ProgressCallback)
        learn.logger = lambda *args, **kwargs: None
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


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class _TrainedEpochs(Callback):
    """Counts the clips and training seconds of each epoch that really trains (epochs skipped by resume are
    cancelled before they train); :meth:`_finished_training` tells, once per epoch, whether this one did."""

    def __init__(self):
        self.trained = False

    def before_epoch(self):
        self.clips, self.t_epoch = 0, time.perf_counter()

    def before_train(self):
        self.trained, self.t_train = True, time.perf_counter()

    def after_batch(self):
        if self.training:
            self.clips += self.yb[0].shape[0]

    def after_train(self):
        self.train_s = time.perf_counter() - self.t_train

    def _finished_training(self) -> bool:
        trained, self.trained = self.trained, False
        return trained

    def _epoch_values(self) -> dict[str, Any]:
        return dict(zip(self.recorder.metric_names[1:-1], self.recorder.values[-1]))


class ProgressLine(_TrainedEpochs):
    """One plain text line per trained epoch on stdout, for terminals and logs (``papermill --log-output``,
    ``python -m tsamlib notebooks``), beside fastai's HTML bars in JupyterLab::

        epoch 2/3  train_loss 1.0412  valid_loss 0.9871  top1 0.6250  31.4 clips/s  elapsed 0:41  ETA 0:20
    """

    order = 75  # after the Recorder (50) has the epoch's values

    def __init__(self, print_fn=print):
        super().__init__()
        self.print_fn = print_fn

    def before_fit(self):
        self.t0, self.done = time.perf_counter(), 0

    def after_epoch(self):
        if not self._finished_training():
            return
        self.done += 1
        values = self._epoch_values()
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / self.done * (self.n_epoch - self.epoch - 1)
        fmt = lambda k: "n/a" if values.get(k) is None else f"{float(values[k]):.4f}"  # noqa: E731
        self.print_fn(f"epoch {self.epoch + 1}/{self.n_epoch}  train_loss {fmt('train_loss')}  valid_loss "
                      f"{fmt('valid_loss')}  top1 {fmt('accuracy')}  {self.clips / max(self.train_s, 1e-9):.1f} "
                      f"clips/s  elapsed {_hms(elapsed)}  ETA {_hms(eta)}", flush=True)


class RunLogger(_TrainedEpochs):
    """After each trained epoch: losses, top-1/top-5, lr, training clips/s, wall time, skipped samples."""

    order = 70  # after fastai's Recorder (50) has the epoch's values

    def __init__(self, run: Run):
        super().__init__()
        self.run = run

    def after_epoch(self):
        if not self._finished_training():
            return
        values = self._epoch_values()
        skips = self.dls.skip_report() if hasattr(self.dls, "skip_report") else {}
        skipped = skips["train"]["paths"] if "train" in skips else {}  # replaced training samples
        self.run.log_epoch(dict(
            epoch=self.epoch, train_loss=values.get("train_loss"), valid_loss=values.get("valid_loss"),
            top1=values.get("accuracy"), top5=values.get("top5"), lr=self.opt.hypers[-1]["lr"],
            train_clips=self.clips, train_clips_per_s=self.clips / max(self.train_s, 1e-9),
            wall_s=time.perf_counter() - self.t_epoch, skipped_samples=len(skipped),
            valid_dropped_samples=skips["valid"]["samples"] if "valid" in skips else 0))


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


def plot_learning_curve(learn: Learner, ax=None):
    """fastai's loss plot (``recorder.plot_loss``) with the epochs marked and its axes explained."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    learn.recorder.plot_loss(skip_start=min(5, max(len(learn.recorder.losses) - 1, 0)), show_epochs=True, ax=ax)
    ax.set_xlabel("training batches (dotted lines: ends of epochs)")
    ax.set_ylabel("cross-entropy loss")
    ax.set_title("learning curve: train = moving average over batches, valid = whole validation set per epoch",
                 fontsize=9)
    return ax


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: the message names the file, what is wrong (``problem``) and what to do
    (``hint``)."""

    def __init__(self, problem: str, hint: str = ""):
        super().__init__(f"{problem}; {hint}" if hint else problem)
        self.problem, self.hint = problem, hint


_WRITE_FAILED = ("PytorchStreamWriter failed", "basic_ios::clear", "iostream error", "unexpected pos")


def _save_checkpoint(obj: Any, path: Path, before_replace=None) -> None:
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


class Checkpoint(Callback):
    """Save ``checkpoints/last.pth`` (model, optimiser, epoch) after every trained epoch, atomically, keeping the
    previous one as ``prev.pth``: the new file is written in full first, then ``last -> prev``, then the new file
    becomes ``last``, so a kill at any moment leaves at least one complete checkpoint (see
    :func:`load_latest_checkpoint`)."""

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
        last, prev = self.folder / "last.pth", self.folder / "prev.pth"

        def keep_previous():
            if last.is_file():
                os.replace(last, prev)

        _save_checkpoint(dict(model=self.model.state_dict(), opt=_plain(self.opt.state_dict()), epoch=self.epoch,
                              history=recorder_history(self.recorder)), last, keep_previous)


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
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist: nothing to resume from") from None
    except OSError as e:
        raise CheckpointError(f"checkpoint {path} cannot be read ({e.strerror or e})") from None
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): its writer was killed or the disk was full",
                              todo)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")   # garbage: named below
            ck = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError) as e:
        why = str(e).split(". ")[0].splitlines()[0][:150] if str(e).strip() else "unexpected end of file"
        raise CheckpointError(f"checkpoint {path} ({size} bytes) is truncated or corrupt ({type(e).__name__}: {why})",
                              todo) from None
    except OSError as e:
        raise CheckpointError(f"checkpoint {path} cannot be read ({e.strerror or e})") from None
    except Exception as e:  # UnpicklingError ("Weights only load failed" too), KeyError, ValueError...
        raise CheckpointError(f"{path} is not a PyTorch checkpoint written by tsamlib ({type(e).__name__} while "
                              "reading it with weights_only=True; do not load it with weights_only=False unless you "
                              "trust its origin)", todo) from None
    missing = [k for k in ("model", "opt", "epoch") if not isinstance(ck, dict) or k not in ck]
    if missing:
        what = ("holds model weights only (like checkpoints/model.pth), not a training checkpoint"
                if isinstance(ck, dict) and ck and all(isinstance(v, torch.Tensor) for v in ck.values())
                else f"is not a training checkpoint: it lacks {missing}")
        raise CheckpointError(f"checkpoint {path} {what}", "resume needs checkpoints/last.pth or prev.pth as "
                              "written by the Checkpoint callback (model, opt, epoch)")
    return ck


def load_checkpoint(learn: Learner, path: str | Path) -> int:
    """Restore model and optimiser from a checkpoint (``last.pth``); return the next epoch to train.

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
    return int(ck["epoch"]) + 1


def load_latest_checkpoint(learn: Learner, folder: str | Path) -> int:
    """Resume from ``folder/last.pth``, or from ``prev.pth`` (with a printed message) when ``last.pth`` is missing
    or unreadable (it is then renamed ``last.unreadable.pth``); return the next epoch to train (0 when the folder
    holds neither). Both unreadable: :class:`CheckpointError` naming both."""
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
    print(f"resuming from {prev} (epoch {start - 1}) because {why}{aside}", flush=True)
    return start


def fit_run(learn: Learner, run: Run, epochs: int, lr: float, seed: int = 0, resume: bool = False,
            lr_decay: Sequence[tuple[float, int]] | None = None, cbs: Sequence[Callback] = (),
            finish: bool = True) -> dict[str, Any]:
    """Train ``epochs`` epochs into ``run`` (continuing from its last checkpoint when ``resume``), then
    :func:`finish_run` (skip that with ``finish=False``, e.g. inside a distributed context)."""
    seed_everything(seed)
    start = load_latest_checkpoint(learn, run.checkpoint_dir) if resume else 0
    cbs = [EpochSeed(seed), KeepHistory(), RunLogger(run), ProgressLine(), Checkpoint(run.checkpoint_dir), *cbs]
    t0 = time.perf_counter()
    if start < epochs:
        if learn.recipe == "paper":
            learn.fit(epochs, lr, cbs=cbs + [StepDecay(lr_decay or [])], start_epoch=start, reset_opt=start == 0)
        else:
            learn.fit_one_cycle(epochs, lr, cbs=cbs, start_epoch=start)
    run.metrics["resumed_from_epoch"] = start or None
    run.metrics["wall_s_this_session"] = time.perf_counter() - t0
    return finish_run(learn, run, epochs, seed) if finish else {}


def _data_problems(dls, limit: int = 100) -> dict[str, Any]:
    """What ``final`` records about data that was not used as such: training samples replaced, validation samples
    left out, manifest rows excluded (counts, and up to ``limit`` names with reasons)."""
    first = lambda d: dict(list(d.items())[:limit])
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


def finish_run(learn: Learner, run: Run, epochs: int, seed: int = 0) -> dict[str, Any]:
    """Validate on the whole validation set, save ``checkpoints/model.pth`` and mark the run finished.

    Returns the final metrics (also in ``metrics.json`` under ``final``, with ``finished: true``)."""
    seed_everything(seed)
    history = recorder_history(learn.recorder)
    valid_loss, top1, top5_ = learn.validate()
    restore_history(learn.recorder, history)  # validate() empties the curves; the notebook plots them next
    done = run.metrics["epochs"]
    final = dict(valid_loss=float(valid_loss), top1=float(top1), top5=float(top5_), epochs=epochs,
                 train_wall_s=sum(r["wall_s"] for r in done),
                 train_clips_per_s=float(np.median([r["train_clips_per_s"] for r in done])) if done else None,
                 wall_s_this_session=run.metrics.pop("wall_s_this_session", None),
                 resumed_from_epoch=run.metrics.pop("resumed_from_epoch", None),
                 **_data_problems(learn.dls))
    run.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    _save_checkpoint(learn.model.state_dict(), run.checkpoint_dir / "model.pth")
    run.finish(final)
    return final
