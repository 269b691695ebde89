"""Evaluate a finished run with a fixed multi-view protocol, and interpret its errors with fastai.

The protocol is chosen before looking at any result and written beside the numbers:

- every video of `split` gives ``n_clips x n_crops`` views: clip ``i`` takes, in each of the T TSN
  segments, the frame at relative offset ``(i + 0.5) / n_clips``; each clip is resized (shorter side
  ``resize``) and cut into ``n_crops`` squares of ``img_size`` (1: centre; 3: start/centre/end along
  the long side). With audio, every view carries the same full-clip audio frame (no crop);
- the score of a video is the **mean of the softmax over all its views** (never the best view or the
  best number of clips); top-1/top-5 and the loss (``-log`` of the averaged probability of the true
  class) are computed from it;
- CPU default ``n_clips=2, n_crops=3``; the TSM/TSAM papers use ``n_clips=10, n_crops=3``.

A video whose file fails to load is not scored: it is counted and reported with its reason (as are
manifest rows with a ``problem``). Results go to ``<run>/eval_<split>_<n_clips>x<n_crops>.json``.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from fastai.interpret import ClassificationInterpretation
from tqdm.auto import tqdm

from .data import _limit_threads, clip_views_dataset, manifest_vocab, read_table, video_views
from .model import TSAM, create_tsam, model_kwargs
from .datasets import dataset_manifest
from .fileio import atomic_write_json, mel_cache_dir, relative_to_repo
from .provenance import environment_info
from .runs import RunLock, is_finished, open_run

__all__ = ["load_run_model", "run_vocab", "evaluate_views", "eval_path", "per_class_accuracy",
           "ViewsInterpretation", "interpretation", "plot_top_losses", "cmd_evaluate"]


def run_vocab(params: dict[str, Any]) -> list[str]:
    """Class names of the run's dataset, index = label (as `video_dataloaders` builds them)."""
    return manifest_vocab(read_table(dataset_manifest(params["dataset"])))


def load_run_model(run_dir: str | os.PathLike) -> tuple[TSAM, dict[str, Any]]:
    """The trained model of a finished run (eval mode, CPU) and its ``params.json``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} not found (runs live in results/runs/<run_id>/).")
    run = open_run(run_dir)
    weights = run.checkpoint_dir / "model.pth"
    if not is_finished(run_dir) or not weights.is_file():
        why = "has no checkpoints/model.pth" if not weights.is_file() else "is not finished (metrics.json)"
        raise RuntimeError(f"run {run_dir} {why}: train it to the end with notebooks/03_train.ipynb "
                           "(resume=True continues an interrupted run).")
    p = run.params
    model = create_tsam(p["arch"], num_classes=len(run_vocab(p)), pretrained=None, **model_kwargs(p))
    state = torch.load(weights, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise RuntimeError(f"{weights} does not fit the model rebuilt from {run_dir / 'params.json'} (did the "
                           f"dataset's classes change?): {str(e).splitlines()[0]}") from e
    return model.eval(), p


def eval_path(run_dir: str | os.PathLike, split: str = "valid", n_clips: int = 2, n_crops: int = 3) -> Path:
    """Where :func:`evaluate_views` writes its record."""
    return Path(run_dir) / f"eval_{split}_{n_clips}x{n_crops}.json"


class _SafeVideoViews(torch.utils.data.Dataset):
    """All views of each video of a `clip_views_dataset` (one decode per clip); a failed load gives zeros and
    ``ok=False``."""
    def __init__(self, ds, n_clips: int, n_crops: int):
        self.ds, self.n_clips, self.n_crops = ds, n_clips, n_crops

    def __len__(self) -> int:
        return len(self.ds.paths)

    def __getitem__(self, r: int):
        path, ds = self.ds.paths[r], self.ds
        try:
            video, audio, _ = video_views(path, ds.n_frames, self.n_clips, self.n_crops, ds.tfm, ds.audio)
            ok = True
        except Exception as e:
            ds.log.record(path, f"{type(e).__name__}: {str(e).replace(path + ': ', '')}")
            v, s = self.n_clips * self.n_crops, ds.tfm.img_size
            video, audio, ok = torch.zeros(v, ds.n_frames, 3, s, s), torch.zeros(v, 1, 3, s, s), False
        return (video, *([audio] if ds.audio else []), r, ok)


def _worker_init(_: int) -> None:
    _limit_threads()


def _topk_correct(probs: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    k = min(k, probs.shape[1])
    return (probs.topk(k, dim=1).indices == labels[:, None]).any(1)


@torch.no_grad()
def evaluate_views(run_dir: str | os.PathLike, split: str = "valid", n_clips: int = 2, n_crops: int = 3,
                   batch_size: int = 8, num_workers: int = 0, model: TSAM | None = None,
                   cache_dir: str | os.PathLike | None = "default", write: bool = True,
                   progress: bool = True) -> dict[str, Any]:
    """Score every video of `split` by the mean softmax over its ``n_clips x n_crops`` views (a progress bar
    over the batches of videos unless ``progress=False``).

    ``n_crops`` is 1 or 3; the papers' protocol is ``n_clips=10, n_crops=3``. Returns a dict with
    ``top1``, ``top5``, ``loss``, ``probs`` (videos x classes), ``labels``, ``paths``, ``n_views``
    (views averaged per video), ``vocab``, ``protocol``, ``failed`` (path -> reason) and ``excluded``
    (manifest rows with a problem); writes the record to :func:`eval_path` unless ``write=False``.
    """
    run_dir = Path(run_dir)
    if model is None:
        model, params = load_run_model(run_dir)
    else:
        params = open_run(run_dir).params
    model = model.eval()
    vocab = run_vocab(params)
    if cache_dir == "default":
        cache_dir = mel_cache_dir()
    manifest = dataset_manifest(params["dataset"])
    df = read_table(manifest)
    excluded = {p: q for p, q, s in zip(df["path"], df["problem"], df["split"]) if q and s == split}
    ds = clip_views_dataset(manifest, split, n_clips, n_crops, n_frames=params["n_frames"], audio=bool(params["audio"]),
                            img_size=params["img_size"], resize=params["resize"], n_mels=params["n_mels"],
                            cache_dir=cache_dir, replace_bad=False)
    n_views = n_clips * n_crops  # batch_size counts views: whole videos of n_views views each go in a batch
    dl = torch.utils.data.DataLoader(_SafeVideoViews(ds, n_clips, n_crops), batch_size=max(1, batch_size // n_views),
                                     shuffle=False, num_workers=num_workers, worker_init_fn=_worker_init)
    n_videos, c = len(ds.paths), len(vocab)
    sums, counts = torch.zeros(n_videos, c, dtype=torch.float64), torch.zeros(n_videos, dtype=torch.long)
    bad_rows: set[int] = set()
    t0 = time.perf_counter()
    bar = tqdm(dl, total=len(dl), desc=f"evaluate {split}: {n_videos} videos x {n_views} views", unit="batch",
               disable=not progress)
    for *x, rows, ok in bar:
        b = len(rows)
        probs = F.softmax(model(*[t.flatten(0, 1) for t in x]).float(), dim=1).double().view(b, n_views, -1)
        bad_rows.update(rows[~ok].tolist())
        sums.index_add_(0, rows[ok], probs[ok].sum(1))
        counts.index_add_(0, rows[ok], torch.full((int(ok.sum()),), n_views, dtype=torch.long))
    wall = time.perf_counter() - t0
    reasons = ds.log.skipped()
    failed = {ds.paths[r]: reasons.get(ds.paths[r], "failed to load") for r in sorted(bad_rows)}
    keep = torch.tensor([r not in bad_rows for r in range(n_videos)])
    probs = (sums[keep] / counts[keep, None]).float()
    labels = torch.tensor(ds.labels)[keep]
    paths = [p for p, k in zip(ds.paths, keep.tolist()) if k]
    labelled = bool(len(labels)) and bool((labels >= 0).all())
    top1 = top5 = loss = None
    if labelled:
        top1 = float(_topk_correct(probs, labels, 1).float().mean())
        top5 = float(_topk_correct(probs, labels, 5).float().mean())
        loss = float(-probs.gather(1, labels[:, None]).clamp_min(1e-12).log().mean())
    protocol = dict(split=split, n_clips=n_clips, n_crops=n_crops, views_per_video=n_clips * n_crops,
                    aggregation="mean of softmax over all views", n_frames=params["n_frames"],
                    img_size=params["img_size"], resize=params["resize"], audio=bool(params["audio"]),
                    clip_sampling="frame at offset (clip + 0.5) / n_clips in each of n_frames segments",
                    crops="centre" if n_crops == 1 else "start/centre/end along the long side",
                    manifest=relative_to_repo(manifest))
    res = dict(top1=top1, top5=top5, loss=loss, probs=probs, labels=labels, paths=paths,
               n_views=counts[keep], vocab=vocab, protocol=protocol, n_videos=int(keep.sum()),
               n_failed=len(failed), failed=failed, n_excluded=len(excluded), excluded=excluded,
               wall_s=wall, views_per_s=len(ds.paths) * n_views / max(wall, 1e-9))
    if write:
        _write_record(run_dir, res)
    return res


def per_class_accuracy(res: dict[str, Any] | ClassificationInterpretation) -> pd.DataFrame:
    """Per class: videos, correct (top-1) and accuracy, from an :func:`evaluate_views` result or interpretation."""
    if isinstance(res, ViewsInterpretation):
        probs, labels, vocab = res.preds, res.targs, list(res.vocab)
    else:
        probs, labels, vocab = res["probs"], res["labels"], list(res["vocab"])
    pred = probs.argmax(1)
    rows = []
    for i, name in enumerate(vocab):
        m = labels == i
        n, correct = int(m.sum()), int((pred[m] == i).sum())
        rows.append(dict(label=i, class_name=name, n=n, correct=correct, accuracy=correct / n if n else math.nan))
    return pd.DataFrame(rows).set_index("label")


def _write_record(run_dir: Path, res: dict[str, Any]) -> Path:
    pca = per_class_accuracy(res) if res["top1"] is not None else None
    pred = res["probs"].argmax(1) if len(res["probs"]) else torch.zeros(0, dtype=torch.long)
    videos = [dict(path=relative_to_repo(p), label=int(y), pred=int(k), p_pred=float(pr[k]),
                   p_true=float(pr[y]) if y >= 0 else None)
              for p, y, k, pr in zip(res["paths"], res["labels"].tolist(), pred.tolist(), res["probs"])]
    record = dict(run_id=run_dir.name, evaluated_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), protocol=res["protocol"],
                  metrics=dict(top1=res["top1"], top5=res["top5"], loss=res["loss"], n_videos=res["n_videos"],
                               n_failed=res["n_failed"], n_excluded=res["n_excluded"]),
                  per_class=None if pca is None else pca.reset_index().replace({np.nan: None}).to_dict("records"),
                  failed={relative_to_repo(k): v for k, v in res["failed"].items()},
                  excluded={relative_to_repo(k): v for k, v in res["excluded"].items()}, vocab=res["vocab"],
                  videos=videos,
                  wall_s=res["wall_s"], views_per_s=res["views_per_s"], environment=environment_info())
    p = res["protocol"]
    with RunLock(run_dir, what="evaluation"):  # refused while another process trains or evaluates this run
        return atomic_write_json(eval_path(run_dir, p["split"], p["n_clips"], p["n_crops"]), record)


class _VocabHolder:
    """Stands in for the DataLoader fastai's interpretation reads ``vocab`` from."""
    def __init__(self, vocab, paths):
        self.vocab, self.items = list(vocab), list(paths)


class ViewsInterpretation(ClassificationInterpretation):
    """fastai `ClassificationInterpretation` over stored probabilities (one row per video).

    ``plot_confusion_matrix``, ``most_confused``, ``confusion_matrix``, ``top_losses`` work as in fastai;
    ``plot_top_losses(k)`` shows each video's frames with label, prediction, loss and probability.
    """
    def __init__(self, probs: torch.Tensor, labels: torch.Tensor, vocab: Sequence[str], paths: Sequence[str],
                 n_frames: int = 8, learn=None, protocol: dict | None = None):
        self.preds, self.targs = probs.float(), labels.long()
        losses = -self.preds.gather(1, self.targs[:, None]).clamp_min(1e-12).log()[:, 0]
        super().__init__(learn, _VocabHolder(vocab, paths), losses)
        self.vocab = list(vocab)   # fastai takes the last item of a plain list (multi-category vocab)
        self.paths, self.n_frames, self.protocol = list(paths), n_frames, protocol or {}

    def confusion_matrix(self) -> np.ndarray:
        c, cm = len(self.vocab), np.zeros((len(self.vocab), len(self.vocab)), dtype=np.int64)
        np.add.at(cm, (self.targs.numpy(), self.preds.argmax(1).numpy()), 1)
        return cm[:c, :c]

    def most_confused(self, min_val: int = 1) -> list[tuple[str, str, int]]:
        """(actual class, predicted class, number of videos), largest first, as plain Python str/int
        (fastai's version returns numpy integers)."""
        return [(str(a), str(b), int(n)) for a, b, n in super().most_confused(min_val)]

    def plot_top_losses(self, k: int = 4, largest: bool = True, **kwargs):
        return plot_top_losses(self, k, largest, **kwargs)


def interpretation(source, split: str = "valid", n_clips: int = 2, n_crops: int = 3, batch_size: int = 8,
                   num_workers: int = 0) -> ViewsInterpretation:
    """A fastai classification interpretation from a run folder (runs :func:`evaluate_views`), its result
    dict, or a fastai `Learner` (its valid DataLoader: one centre clip per video)."""
    from fastai.learner import Learner
    if isinstance(source, Learner):
        preds, targs = source.get_preds(dl=source.dls.valid)
        ds = source.dls.valid.dataset
        dropped = source.dls.skipped("valid") if hasattr(source.dls, "skipped") else {}
        paths = [p for p in getattr(ds, "paths", [""] * len(targs)) if p not in dropped]  # in step with preds
        return ViewsInterpretation(preds, targs, source.dls.vocab, paths,
                                   getattr(ds, "n_frames", 8), learn=source,
                                   protocol=dict(split="valid", n_clips=1, n_crops=1))
    res = source if isinstance(source, dict) else evaluate_views(source, split, n_clips, n_crops, batch_size,
                                                                 num_workers)
    return ViewsInterpretation(res["probs"], res["labels"], res["vocab"], res["paths"], res["protocol"]["n_frames"],
                               protocol=res["protocol"])


def plot_top_losses(interp: ViewsInterpretation, k: int = 4, largest: bool = True, n_show: int | None = None,
                    figsize=None):
    """Rows of the `k` largest (or smallest) losses: the clip's centre frames, titled with label /
    prediction / loss / probability of the prediction. Returns the matplotlib figure.

    Each row is a subfigure whose title is wrapped to the figure's width, and the layout is constrained,
    so no title is clipped or hidden under the row above."""
    import matplotlib.pyplot as plt
    from .fileio import relative_to_repo
    from .video import load_clip
    from .viz import wrap_to_width
    shown = lambda q: (lambda rel: Path(q).name if Path(rel).is_absolute() else rel)(relative_to_repo(q))
    losses, idx = interp.top_losses(min(k, len(interp.losses)), largest)
    t = n_show or interp.n_frames
    n_rows = max(1, len(idx))
    fig = plt.figure(figsize=figsize or (max(1.3 * t, 5.5), 1.75 * n_rows + 0.9), layout="constrained")
    width = fig.get_figwidth()
    which = "largest" if largest else "smallest"
    fig.suptitle(wrap_to_width(f"Videos with the {which} loss: true class → predicted class; "
                               "loss = -log p(true class) of the mean softmax over the evaluated views; "
                               "p = probability of the prediction. "
                               f"Frames: the centre frame of each of {t} segments.", width, 9), fontsize=9)
    subfigs = np.atleast_1d(fig.subfigures(n_rows, 1))
    for r, sub in enumerate(subfigs):
        axes = sub.subplots(1, t, squeeze=False)[0]
        for ax in axes:
            ax.axis("off")
        if r >= len(idx):
            continue
        i, loss = int(idx[r]), float(losses[r])
        p, y = interp.preds[i], int(interp.targs[i])
        k_pred = int(p.argmax())
        try:
            frames, _ = load_clip(interp.paths[i], t, "valid")
            for c, ax in enumerate(axes):
                ax.imshow(frames[c].numpy())
        except Exception as e:
            msg = str(e).replace(str(Path(interp.paths[i])), shown(interp.paths[i]))
            axes[0].text(0, 0.5, wrap_to_width(f"cannot show: {msg}"[:200], width, 7), fontsize=7,
                         transform=axes[0].transAxes, va="center").set_in_layout(False)
        sub.suptitle(wrap_to_width(f"{shown(interp.paths[i]) if interp.paths[i] else ''}\n"
                                   f"{interp.vocab[y]} → {interp.vocab[k_pred]} / loss {loss:.2f} / "
                                   f"p {float(p[k_pred]):.2f}", width, 8).lstrip("\n"), fontsize=8)
    return fig


def cmd_evaluate(args) -> int:
    """``python -m tsamlib evaluate RUN``: run :func:`evaluate_views` and print the metrics."""
    import sys
    try:
        res = evaluate_views(args.run, args.split, args.n_clips, args.n_crops, args.batch_size, args.num_workers)
    except (FileNotFoundError, RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"
    print(f"{Path(args.run).name} {args.split} {args.n_clips}x{args.n_crops} views: top1 {fmt(res['top1'])}  "
          f"top5 {fmt(res['top5'])}  loss {fmt(res['loss'])}  ({res['n_videos']} videos, {res['n_failed']} failed, "
          f"{res['n_excluded']} excluded)")
    for path, why in res["failed"].items():
        print(f"  failed: {path}: {why}")
    print(f"written: {relative_to_repo(eval_path(args.run, args.split, args.n_clips, args.n_crops))}")
    return 0
