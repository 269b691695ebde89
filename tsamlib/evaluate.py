"""Evaluate a finished run with a fixed multi-view protocol (or the authors' one), and interpret its errors.

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

:func:`evaluate_authors` is the authors' protocol (their ``run_MultiClip``), for comparison: ``n_passes`` (10)
passes over the videos, each a random training-style clip and crop (scales 1 to 0.9, flip as in training, no
colour augmentation), logits summed over the passes. Its ``top1`` is the honest figure (all passes, a number
fixed in advance); their printed figure, the best accuracy over 1..10 passes, is returned only under names that
say it was selected on the evaluation set. Results go to ``<run>/eval_<split>_authors<n_passes>.json``.
:func:`evaluate_run` runs the protocol the run's ``eval_protocol`` names. Both use the weights the run's
``eval_weights`` names (``model.pth``: last epoch; ``best.pth``: best validation epoch) and its data switches.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from fastai.interpret import ClassificationInterpretation
from fastai.torch_core import default_device
from tqdm.auto import tqdm

from .audio import AudioFrame
from .checkpoints import read_best
from .config import resolve_switches
from .data import NoAudioError, _limit_threads, clip_views_dataset, manifest_vocab, read_table, video_views
from .interpret import ViewsInterpretation, interpretation, plot_top_losses
from .model import TSAM, create_tsam, model_kwargs
from .datasets import dataset_manifest
from .fileio import atomic_write_json, mel_cache_dir, relative_to_repo
from .provenance import environment_info
from .rows import NO_AUDIO_DROPPED, split_rows, usable_rows
from .runs import RunLock, is_finished, open_run
from .transforms import ClipTransform, norm_stats
from .video import load_clip

__all__ = ["load_run_model", "run_vocab", "evaluate_views", "evaluate_authors", "evaluate_run", "eval_path",
           "authors_eval_path", "per_class_accuracy", "AUTHORS_EVAL_SCALES", "ViewsInterpretation",
           "interpretation", "plot_top_losses", "cmd_evaluate"]

# The crop scales of the authors' multi-clip test (lib/dataset/video.py): 1, 0.99, ..., 0.9.
AUTHORS_EVAL_SCALES = tuple(round(1 - 0.01 * i, 2) for i in range(11))


def run_vocab(params: dict[str, Any]) -> list[str]:
    """Class names of the run's dataset, index = label (as `video_dataloaders` builds them)."""
    return manifest_vocab(read_table(dataset_manifest(params["dataset"])))


def load_run_model(run_dir: str | os.PathLike, weights: str | None = None) -> tuple[TSAM, dict[str, Any]]:
    """The trained model of a finished run (eval mode, CPU) and its ``params.json``.

    ``weights``: ``"last"`` (``checkpoints/model.pth``) or ``"best"`` (``checkpoints/best.pth``, the best validation
    epoch); None: the run's ``eval_weights`` (from its preset)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} not found (runs live in results/runs/<run_id>/).")
    run = open_run(run_dir)
    p = run.params
    weights = weights or resolve_switches(p)["eval_weights"]
    if weights not in ("last", "best"):
        raise ValueError(f"weights={weights!r}: choose one of ['last', 'best'].")
    file = run.checkpoint_dir / ("model.pth" if weights == "last" else "best.pth")
    if not is_finished(run_dir) or not file.is_file():
        why = f"has no checkpoints/{file.name}" if not file.is_file() else "is not finished (metrics.json)"
        hint = (" (best.pth is kept only by runs with eval_weights='best'; pass weights='last')"
                if weights == "best" else "")
        raise RuntimeError(f"run {run_dir} {why}: train it to the end with notebooks/03_train.ipynb "
                           f"(resume=True continues an interrupted run){hint}.")
    model = create_tsam(p["arch"], num_classes=len(run_vocab(p)), pretrained=None, **model_kwargs(p))
    weights = file
    state = (read_best(run.checkpoint_dir)["model"] if file.name == "best.pth"
             else torch.load(file, map_location="cpu", weights_only=True))
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
            video, audio, _ = video_views(path, ds.n_frames, self.n_clips, self.n_crops, ds.tfm, ds.audio,
                                          drop_silent=ds.drop_silent)
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


def _setup(run_dir: Path, model: TSAM | None, weights: str | None, cache_dir) -> tuple:
    """(model in eval mode, params, resolved switches, vocab, cache_dir, manifest, weights label) of a run."""
    if model is None:
        model, params = load_run_model(run_dir, weights)
        model = model.to(default_device())  # the GPU when there is one
        label = weights or resolve_switches(params)["eval_weights"]
    else:
        params, label = open_run(run_dir).params, "the model given"
    sw = resolve_switches(params)
    cache_dir = mel_cache_dir() if cache_dir == "default" else cache_dir
    return model.eval(), params, sw, run_vocab(params), cache_dir, dataset_manifest(params["dataset"]), label


def _excluded(manifest, split: str, sw: dict[str, Any]) -> dict[str, str]:
    """Manifest rows of ``split`` the run does not use (a problem; no sound with missing_audio='drop')."""
    return usable_rows(read_table(manifest), bool(sw["audio"]), sw["missing_audio"])[1].get(split, {})


@torch.no_grad()
def evaluate_views(run_dir: str | os.PathLike, split: str = "valid", n_clips: int = 2, n_crops: int = 3,
                   batch_size: int = 8, num_workers: int = 0, model: TSAM | None = None,
                   cache_dir: str | os.PathLike | None = "default", write: bool = True,
                   progress: bool = True, weights: str | None = None) -> dict[str, Any]:
    """Score every video of `split` by the mean softmax over its ``n_clips x n_crops`` views (a progress bar
    over the batches of videos unless ``progress=False``).

    ``n_crops`` is 1 or 3; the papers' protocol is ``n_clips=10, n_crops=3``. Returns a dict with
    ``top1``, ``top5``, ``loss``, ``probs`` (videos x classes), ``labels``, ``paths``, ``n_views``
    (views averaged per video), ``vocab``, ``protocol``, ``failed`` (path -> reason) and ``excluded``
    (manifest rows with a problem, or without sound when dropped); writes the record to :func:`eval_path` unless
    ``write=False``. ``weights``: see :func:`load_run_model`; the views follow the run's data switches.
    """
    run_dir = Path(run_dir)
    model, params, sw, vocab, cache_dir, manifest, weights = _setup(run_dir, model, weights, cache_dir)
    dev = next(model.parameters()).device
    excluded = _excluded(manifest, split, sw)
    ds = clip_views_dataset(manifest, split, n_clips, n_crops, n_frames=params["n_frames"], audio=bool(params["audio"]),
                            img_size=params["img_size"], resize=params["resize"], n_mels=params["n_mels"],
                            cache_dir=cache_dir, replace_bad=False, video_norm=sw["video_norm"],
                            audio_frontend=sw["audio_frontend"], missing_audio=sw["missing_audio"],
                            valid_view=sw["valid_view"])
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
        logits = model(*[t.flatten(0, 1).to(dev) for t in x]).float().cpu()
        probs = F.softmax(logits, dim=1).double().view(b, n_views, -1)
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
                    manifest=relative_to_repo(manifest), weights=weights,
                    **{k: sw[k] for k in ("preset", "video_norm", "valid_view", "audio_frontend", "missing_audio")})
    res = dict(top1=top1, top5=top5, loss=loss, probs=probs, labels=labels, paths=paths,
               n_views=counts[keep], vocab=vocab, protocol=protocol, n_videos=int(keep.sum()),
               n_failed=len(failed), failed=failed, n_excluded=len(excluded), excluded=excluded,
               wall_s=wall, views_per_s=len(ds.paths) * n_views / max(wall, 1e-9))
    if write:
        _write_record(run_dir, res)
    return res


def authors_eval_path(run_dir: str | os.PathLike, split: str = "valid", n_passes: int = 10) -> Path:
    """Where :func:`evaluate_authors` writes its record."""
    return Path(run_dir) / f"eval_{split}_authors{n_passes}.json"


class _AuthorsPass(torch.utils.data.Dataset):
    """One pass of the authors' multi-clip test: video ``r`` -> a random training-style clip and crop drawn from
    ``(seed, pass_index, r)``, and its full-clip audio frame (no training crop, as theirs); a failed load gives
    zeros and ``ok=False`` (recorded in ``log``, shared with worker processes)."""

    def __init__(self, paths: list[str], n_frames: int, tfm: ClipTransform, audio: AudioFrame | None, seed: int,
                 drop_silent: bool):
        from .skiplog import SkipLog
        self.paths, self.n_frames, self.tfm, self.audio, self.seed = paths, n_frames, tfm, audio, seed
        self.drop_silent, self.pass_index, self.log = drop_silent, 0, SkipLog(action="not scored")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, r: int):
        path, s = self.paths[r], self.tfm.img_size
        rng = np.random.default_rng([self.seed, self.pass_index, r])
        try:
            frames, _ = load_clip(path, self.n_frames, "train", rng)
            video, spec = self.tfm(frames, rng), None
            if self.audio is not None:
                spec, has_audio = self.audio(path, train=False)
                if self.drop_silent and not has_audio:
                    raise NoAudioError(f"{path}: {NO_AUDIO_DROPPED}")
            ok = True
        except Exception as e:  # noqa: BLE001  (counted and reported, never scored)
            self.log.record(path, f"{type(e).__name__}: {str(e).replace(path + ': ', '')}")
            video, spec, ok = torch.zeros(self.n_frames, 3, s, s), torch.zeros(3, s, s), False
        return (video, *([spec[None]] if self.audio is not None else []), r, ok)


@torch.no_grad()
def evaluate_authors(run_dir: str | os.PathLike, split: str = "valid", n_passes: int = 10, seed: int = 0,
                     batch_size: int = 8, num_workers: int = 0, model: TSAM | None = None,
                     cache_dir: str | os.PathLike | None = "default", write: bool = True, progress: bool = True,
                     weights: str | None = None) -> dict[str, Any]:
    """The authors' test protocol (their ``run_MultiClip``), seeded: ``n_passes`` passes over every video of
    `split`; in each, one random training-style clip (a random frame per TSN segment) and one random crop
    (:data:`AUTHORS_EVAL_SCALES` of the short side, adjacent scale pairs, random place), resized to ``img_size``,
    flipped with p = 0.5 when the run flips in training, no colour augmentation; the audio frame uncropped.
    The logits are summed over the passes.

    Returns the keys of :func:`evaluate_views` (``probs`` = softmax of the mean logits, ``loss`` from it) with
    ``top1``/``top5`` the honest figures, all ``n_passes`` summed (fixed in advance), plus ``top1_after_passes``
    (top-1 after 1..n_passes passes), and the authors' printed figure ``top1_best_of_n_selected_on_eval_set`` with
    ``n_passes_selected_on_eval_set``: the best of those, chosen on the very videos it is measured on (optimistic;
    never report it alone). Writes :func:`authors_eval_path` unless ``write=False``.
    """
    run_dir = Path(run_dir)
    model, params, sw, vocab, cache_dir, manifest, weights = _setup(run_dir, model, weights, cache_dir)
    dev = next(model.parameters()).device
    excluded = _excluded(manifest, split, sw)
    audio = bool(params["audio"])
    part = split_rows(usable_rows(read_table(manifest), audio, sw["missing_audio"])[0], split)
    mean, std = norm_stats(sw["video_norm"])
    tfm = ClipTransform(params["img_size"], params["resize"], train=True, flip=bool(params["flip"]),
                        scales=AUTHORS_EVAL_SCALES, max_distort=1, mean=mean, std=std)
    af = (AudioFrame(size=(params["img_size"],) * 2, n_mels=params["n_mels"], cache_dir=cache_dir,
                     frontend=sw["audio_frontend"]) if audio else None)
    ds = _AuthorsPass(part["path"].tolist(), params["n_frames"], tfm, af, seed, audio and sw["missing_audio"] == "drop")
    labels_all = torch.tensor(part["label"].astype(int).tolist())
    n, c = len(ds), len(vocab)
    sums = torch.zeros(n, c, dtype=torch.float64)
    labelled = bool(n) and bool((labels_all >= 0).all())
    hit1, hit5 = torch.zeros(n_passes, n, dtype=torch.bool), torch.zeros(n_passes, n, dtype=torch.bool)
    bad_rows: set[int] = set()
    t0 = time.perf_counter()
    for m in range(n_passes):
        ds.pass_index = m   # set before the loader's iterator copies the dataset into its workers
        dl = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                         worker_init_fn=_worker_init)
        for *x, rows, ok in tqdm(dl, desc=f"authors' protocol, pass {m + 1}/{n_passes}", disable=not progress):
            bad_rows.update(rows[~ok].tolist())
            sums.index_add_(0, rows[ok], model(*[t.to(dev) for t in x]).double().cpu()[ok])
        if labelled:
            hit1[m], hit5[m] = _topk_correct(sums, labels_all, 1), _topk_correct(sums, labels_all, 5)
    wall = time.perf_counter() - t0
    reasons = ds.log.skipped()
    failed = {ds.paths[r]: reasons.get(ds.paths[r], "failed to load") for r in sorted(bad_rows)}
    keep = torch.tensor([r not in bad_rows for r in range(n)], dtype=torch.bool)
    probs = F.softmax(sums[keep] / max(n_passes, 1), dim=1).float()
    labels = labels_all[keep]
    paths = [p for p, k in zip(ds.paths, keep.tolist()) if k]
    res: dict[str, Any] = dict(top1=None, top5=None, loss=None, top1_after_passes=None,
                               top1_best_of_n_selected_on_eval_set=None, n_passes_selected_on_eval_set=None)
    if labelled and bool(keep.any()):
        after = [float(v) for v in hit1[:, keep].float().mean(1)]
        best = max(range(n_passes), key=lambda i: after[i])   # the first of equal ones, as their max(dict)
        res.update(top1=after[-1], top5=float(hit5[-1, keep].float().mean()), top1_after_passes=after,
                   loss=float(-probs.gather(1, labels[:, None]).clamp_min(1e-12).log().mean()),
                   top1_best_of_n_selected_on_eval_set=after[best], n_passes_selected_on_eval_set=best + 1)
    protocol = dict(split=split, name="authors", n_passes=n_passes, seed=seed, views_per_video=n_passes,
                    aggregation="sum of logits over all passes (top1/top5); the best of 1..n passes is selected "
                                "on the evaluation set and labelled so", n_frames=params["n_frames"],
                    img_size=params["img_size"], resize=params["resize"], audio=audio,
                    clip_sampling="a random frame in each of n_frames segments, per pass (training-style)",
                    crops=f"random multi-scale crop, scales {list(AUTHORS_EVAL_SCALES)} of the short side, "
                          f"flip {'p=0.5' if params['flip'] else 'off'}, no colour augmentation; audio uncropped",
                    manifest=relative_to_repo(manifest), weights=weights,
                    **{k: sw[k] for k in ("preset", "video_norm", "audio_frontend", "missing_audio")})
    res.update(probs=probs, labels=labels, paths=paths, n_views=torch.full((len(paths),), n_passes), vocab=vocab,
               protocol=protocol, n_videos=int(keep.sum()), n_failed=len(failed), failed=failed,
               n_excluded=len(excluded), excluded=excluded, wall_s=wall, views_per_s=n * n_passes / max(wall, 1e-9))
    if write:
        _write_record(run_dir, res, authors_eval_path(run_dir, split, n_passes),
                      {k: res[k] for k in ("top1_after_passes", "top1_best_of_n_selected_on_eval_set",
                                           "n_passes_selected_on_eval_set")})
    return res


def evaluate_run(run_dir: str | os.PathLike, split: str = "valid", protocol: str | None = None,
                 **kwargs: Any) -> dict[str, Any]:
    """:func:`evaluate_views` or :func:`evaluate_authors`, as ``protocol`` (``"views"`` / ``"authors"``) or, when
    None, the run's ``eval_protocol`` (from its preset) says; ``kwargs`` go to that function."""
    protocol = protocol or resolve_switches(open_run(run_dir).params)["eval_protocol"]
    if protocol == "views":
        return evaluate_views(run_dir, split, **kwargs)
    if protocol == "authors":
        return evaluate_authors(run_dir, split, **kwargs)
    raise ValueError(f"protocol={protocol!r}: choose one of ['views', 'authors'].")


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


def _write_record(run_dir: Path, res: dict[str, Any], path: Path | None = None,
                  more_metrics: dict[str, Any] | None = None) -> Path:
    pca = per_class_accuracy(res) if res["top1"] is not None else None
    pred = res["probs"].argmax(1) if len(res["probs"]) else torch.zeros(0, dtype=torch.long)
    videos = [dict(path=relative_to_repo(p), label=int(y), pred=int(k), p_pred=float(pr[k]),
                   p_true=float(pr[y]) if y >= 0 else None)
              for p, y, k, pr in zip(res["paths"], res["labels"].tolist(), pred.tolist(), res["probs"])]
    record = dict(run_id=run_dir.name, evaluated_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), protocol=res["protocol"],
                  metrics=dict(top1=res["top1"], top5=res["top5"], loss=res["loss"], n_videos=res["n_videos"],
                               n_failed=res["n_failed"], n_excluded=res["n_excluded"], **(more_metrics or {})),
                  per_class=None if pca is None else pca.reset_index().replace({np.nan: None}).to_dict("records"),
                  failed={relative_to_repo(k): v for k, v in res["failed"].items()},
                  excluded={relative_to_repo(k): v for k, v in res["excluded"].items()}, vocab=res["vocab"],
                  videos=videos,
                  wall_s=res["wall_s"], views_per_s=res["views_per_s"], environment=environment_info())
    p = res["protocol"]
    with RunLock(run_dir, what="evaluation"):  # refused while another process trains or evaluates this run
        return atomic_write_json(path or eval_path(run_dir, p["split"], p["n_clips"], p["n_crops"]), record)


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
