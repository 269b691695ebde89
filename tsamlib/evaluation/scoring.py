"""The evaluation protocols on a model and data settings given directly (no run folder), and their records.

:func:`score_views`: the fixed multi-view protocol (``n_clips x n_crops`` views per video, mean of the softmax);
:func:`score_authors`: the authors' protocol (``n_passes`` random training-style passes, logits summed; the honest
all-passes figure, and their best-of-1..n figure only under a name that says it was selected on the evaluation set).
:mod:`tsamlib.evaluation.views` runs them on a finished run (its model, settings and dataset) and writes the record
beside it; :mod:`tsamlib.evaluation.released` runs them on a checkpoint file. :func:`eval_record` is the JSON-ready
record of a result.
"""
from __future__ import annotations

import math
import os
import time
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from fastai.interpret import ClassificationInterpretation

from ..config import RunConfig
from ..data.audio import AudioFrame
from ..data.loaders import NoAudioError, clip_views_dataset, limit_threads, video_views
from ..data.manifest import NO_AUDIO_DROPPED, manifest_vocab, read_table, split_rows, usable_rows
from ..data.transforms import ClipTransform
from ..data.video import load_clip
from ..model.tsam import TSAM
from ..runs.fileio import relative_to_repo
from ..runs.progress import progress as progress_bar
from .interpret import ViewsInterpretation
from .protocols import AGGREGATIONS, AuthorsPasses, TestProtocol, check_protocol, protocol_named
from .specs import Loading, ViewsSpec

__all__ = ["AUTHORS_EVAL_SCALES", "score_views", "score_authors", "authors_metrics", "per_class_accuracy",
           "eval_record"]

# The crop scales of the authors' multi-clip test (lib/dataset/video.py): 1, 0.99, ..., 0.9.
AUTHORS_EVAL_SCALES = tuple(round(1 - 0.01 * i, 2) for i in range(11))


class _SafeVideoViews(torch.utils.data.Dataset):
    """All views of each video of a `clip_views_dataset` (one decode per video); a failed load gives zeros and
    ``ok=False``."""
    def __init__(self, ds, n_clips: int, n_crops: int, sampling: str = "segments"):
        self.ds, self.n_clips, self.n_crops, self.sampling = ds, n_clips, n_crops, sampling

    def __len__(self) -> int:
        return len(self.ds.paths)

    def __getitem__(self, r: int):
        path, ds = self.ds.paths[r], self.ds
        try:
            video, audio, _ = video_views(path, ds.n_frames, self.n_clips, self.n_crops, ds.tfm, ds.audio,
                                          drop_silent=ds.drop_silent, sampling=self.sampling, backend=ds.backend)
            ok = True
        except Exception as e:
            ds.log.record(path, f"{type(e).__name__}: {str(e).replace(path + ': ', '')}")
            v, s = self.n_clips * self.n_crops, ds.tfm.img_size
            video, audio, ok = torch.zeros(v, ds.n_frames, 3, s, s), torch.zeros(v, 1, 3, s, s), False
        return (video, *([audio] if ds.audio else []), r, ok)


def _worker_init(_: int) -> None:
    limit_threads()


def _topk_correct(probs: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    k = min(k, probs.shape[1])
    return (probs.topk(k, dim=1).indices == labels[:, None]).any(1)


def _check_vocab(model: TSAM, manifest, vocab: list[str] | None) -> list[str]:
    """The class names (index = model output); by default the manifest's. Their number must be the model's."""
    vocab = manifest_vocab(read_table(manifest)) if vocab is None else list(vocab)
    if model.fc.out_features != len(vocab):
        raise ValueError(f"the model has {model.fc.out_features} outputs but {len(vocab)} class names are given "
                         f"(manifest {relative_to_repo(manifest)}): pass vocab with one name per output.")
    return vocab


def _excluded(manifest, split: str, spec: ViewsSpec) -> dict[str, str]:
    """Manifest rows of ``split`` the run does not use (a problem; no sound with missing_audio='drop')."""
    return usable_rows(read_table(manifest), spec.audio, spec.missing_audio)[1].get(split, {})


def _kept(paths: list[str], labels: torch.Tensor, bad_rows: set[int], log) -> tuple[dict[str, str], torch.Tensor,
                                                                                      torch.Tensor, list[str]]:
    """The videos scored, given the rows that failed to load: ``failed`` (path -> reason, from ``log``), the mask
    of the others, their labels and paths."""
    reasons = log.skipped()
    failed = {paths[r]: reasons.get(paths[r], "failed to load") for r in sorted(bad_rows)}
    keep = torch.tensor([r not in bad_rows for r in range(len(paths))], dtype=torch.bool)
    return failed, keep, labels[keep], [p for p, k in zip(paths, keep.tolist()) if k]


def _loss(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """``-log`` of the probability of the true class, averaged over the videos."""
    return float(-probs.gather(1, labels[:, None]).clamp_min(1e-12).log().mean())


def _views_dataset(manifest, split: str, spec: ViewsSpec, proto: TestProtocol, cache_dir):
    """The `clip_views_dataset` of ``proto``'s views of ``split``: its crop and short side; its own crops (never
    the run's short-side validation view) for a protocol other than this library's."""
    crop, short = proto.sizes(spec.img_size, spec.resize)
    tfm = spec.test_transform(proto.n_crops, crop, short, None if proto.name == "views" else "center_crop",
                              proto.crop_layout)
    return clip_views_dataset(manifest, split, proto.n_clips, spec.n_frames, tfm,
                              spec.audio_frame(crop, cache_dir), spec.missing_audio, on_bad="raise",
                              backend=spec.video_backend)


def _sum_views(model: TSAM, dl, n_videos: int, n_classes: int, proto: TestProtocol, desc: str,
               progress: bool) -> tuple[torch.Tensor, torch.Tensor, set[int]]:
    """Per video, the sum of its views' scores (softmax or logits, as ``proto`` combines them) and their count;
    the rows that failed to load."""
    n_views, dev = proto.views_per_video, next(model.parameters()).device
    sums, counts = torch.zeros(n_videos, n_classes, dtype=torch.float64), torch.zeros(n_videos, dtype=torch.long)
    bad_rows: set[int] = set()
    bar = progress_bar(dl, total=len(dl), desc=desc, unit="batch", disable=not progress)
    for *x, rows, ok in bar:
        b = len(rows)
        logits = model(*[t.flatten(0, 1).to(dev) for t in x]).float().cpu()
        scores = (F.softmax(logits, dim=1) if proto.aggregation == "prob" else logits).double().view(b, n_views, -1)
        bad_rows.update(rows[~ok].tolist())
        sums.index_add_(0, rows[ok], scores[ok].sum(1))
        counts.index_add_(0, rows[ok], torch.full((int(ok.sum()),), n_views, dtype=torch.long))
    return sums, counts, bad_rows


def _views_record(proto: TestProtocol, spec: ViewsSpec, split: str, manifest, weights: str) -> dict[str, Any]:
    """The ``protocol`` of a :func:`score_views` result: the views, their combination, the run's settings."""
    crop, short = proto.sizes(spec.img_size, spec.resize)
    if proto.name == "views":
        sampling = "frame at offset (clip + 0.5) / n_clips in each of n_frames segments"
        crops = "centre" if proto.n_crops == 1 else "start/centre/end along the long side"
    else:
        sampling, crops = proto.clips_text(), proto.crops_text()
    protocol = dict(split=split, n_clips=proto.n_clips, n_crops=proto.n_crops, views_per_video=proto.views_per_video,
                    aggregation=f"{AGGREGATIONS[proto.aggregation]} over all views", n_frames=spec.n_frames,
                    img_size=crop, resize=short, audio=spec.audio, clip_sampling=sampling, crops=crops,
                    manifest=relative_to_repo(manifest), weights=weights,
                    **spec.switches("preset", "video_norm", "valid_view", "audio_frontend", "missing_audio"))
    if proto.name != "views":
        protocol.update(name=proto.name, source=proto.source, notes=list(proto.notes), valid_view="center_crop",
                        description=proto.describe(), crop_layout=proto.crop_layout, sampling=proto.sampling)
    return protocol


@torch.no_grad()
def score_views(model: TSAM, cfg: RunConfig | Mapping[str, Any], manifest: str | os.PathLike, split: str = "valid",
                protocol: TestProtocol | str | None = "views", loading: Loading = Loading(cache_dir=None),
                vocab: list[str] | None = None, weights: str = "the model given") -> dict[str, Any]:
    """The fixed multi-view protocol of :func:`tsamlib.evaluation.views.evaluate_views` (described there), same result
    keys, on ``model`` (on its device) with the run's settings ``cfg`` (a :class:`RunConfig` or the run's recorded
    ``params.json``: its views take :class:`~tsamlib.evaluation.specs.ViewsSpec`) on ``manifest``'s ``split``.
    ``protocol``: the views and their combination, a :class:`~tsamlib.evaluation.protocols.TestProtocol` or one of
    its names (``"views"``: :func:`~tsamlib.evaluation.protocols.views_protocol`, 2 clips x 3 crops, mean softmax;
    ``views_protocol(n_clips, n_crops)`` for others; TSM's, mmaction2's). ``vocab`` (one name per model output)
    defaults to the manifest's classes. ``loading`` (batch size in views, workers, log-mel cache, progress bar)
    changes the speed, not the result. Writes nothing."""
    model.eval()
    spec, vocab = ViewsSpec.of(cfg), _check_vocab(model, manifest, vocab)
    proto = protocol_named("views" if protocol is None else protocol, n_frames=spec.n_frames)
    excluded = _excluded(manifest, split, spec)
    check_protocol(proto, spec.img_size, spec.resize, spec.n_frames)   # before any video is read
    ds = _views_dataset(manifest, split, spec, proto, loading.mel_cache())
    n_views = proto.views_per_video  # batch_size counts views: whole videos of n_views views each go in a batch
    dl = torch.utils.data.DataLoader(_SafeVideoViews(ds, proto.n_clips, proto.n_crops, proto.sampling),
                                     batch_size=max(1, loading.batch_size // n_views), shuffle=False,
                                     num_workers=loading.num_workers, worker_init_fn=_worker_init)
    t0 = time.perf_counter()
    desc = f"evaluate {split}: {len(ds.paths)} videos x {n_views} views"
    sums, counts, bad_rows = _sum_views(model, dl, len(ds.paths), len(vocab), proto, desc, loading.progress)
    wall = time.perf_counter() - t0
    failed, keep, labels, paths = _kept(ds.paths, torch.tensor(ds.labels), bad_rows, ds.log)
    mean = sums[keep] / counts[keep, None]
    probs = (mean if proto.aggregation == "prob" else F.softmax(mean, dim=1)).float()  # same argmax as the mean
    top1 = top5 = loss = None
    if bool(len(labels)) and bool((labels >= 0).all()):
        top1 = float(_topk_correct(probs, labels, 1).float().mean())
        top5 = float(_topk_correct(probs, labels, 5).float().mean())
        loss = _loss(probs, labels)
    return dict(top1=top1, top5=top5, loss=loss, probs=probs, labels=labels, paths=paths,
                n_views=counts[keep], vocab=vocab, protocol=_views_record(proto, spec, split, manifest, weights),
                n_videos=int(keep.sum()), n_failed=len(failed), failed=failed, n_excluded=len(excluded),
                excluded=excluded, wall_s=wall, views_per_s=len(ds.paths) * n_views / max(wall, 1e-9))


class _AuthorsPass(torch.utils.data.Dataset):
    """One pass of the authors' multi-clip test: video ``r`` -> a random training-style clip and crop drawn from
    ``(seed, pass_index, r)``, and its full-clip audio frame (no training crop, as theirs); a failed load gives
    zeros and ``ok=False`` (recorded in ``log``, shared with worker processes)."""

    def __init__(self, paths: list[str], n_frames: int, tfm: ClipTransform, audio: AudioFrame | None, seed: int,
                 drop_silent: bool):
        from ..data.skiplog import SkipLog
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


def authors_metrics(res: dict[str, Any]) -> dict[str, Any]:
    """The metrics of :func:`score_authors` beyond those of :func:`score_views` (for :func:`eval_record`)."""
    return {k: res[k] for k in ("top1_after_passes", "top1_best_of_n_selected_on_eval_set",
                                "n_passes_selected_on_eval_set")}


def _sum_passes(model: TSAM, ds: _AuthorsPass, labels: torch.Tensor, n_classes: int, passes: AuthorsPasses,
                loading: Loading) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, set[int]]:
    """The logits summed over the passes per video; after each pass, which videos are right at top-1 and top-5
    (all False when the videos are not all labelled); the rows that failed to load."""
    n, dev = len(ds), next(model.parameters()).device
    sums = torch.zeros(n, n_classes, dtype=torch.float64)
    labelled = bool(n) and bool((labels >= 0).all())
    hit1, hit5 = (torch.zeros(passes.n_passes, n, dtype=torch.bool) for _ in range(2))
    bad_rows: set[int] = set()
    for m in range(passes.n_passes):
        ds.pass_index = m   # set before the loader's iterator copies the dataset into its workers
        dl = torch.utils.data.DataLoader(ds, batch_size=loading.batch_size, shuffle=False,
                                         num_workers=loading.num_workers, worker_init_fn=_worker_init)
        for *x, rows, ok in progress_bar(dl, desc=f"authors' protocol, pass {m + 1}/{passes.n_passes}",
                                         disable=not loading.progress):
            bad_rows.update(rows[~ok].tolist())
            sums.index_add_(0, rows[ok], model(*[t.to(dev) for t in x]).double().cpu()[ok])
        if labelled:
            hit1[m], hit5[m] = _topk_correct(sums, labels, 1), _topk_correct(sums, labels, 5)
    return sums, hit1, hit5, bad_rows


def _passes_record(passes: AuthorsPasses, spec: ViewsSpec, split: str, manifest, weights: str) -> dict[str, Any]:
    """The ``protocol`` of a :func:`score_authors` result."""
    return dict(split=split, name="authors", n_passes=passes.n_passes, seed=passes.seed,
                views_per_video=passes.n_passes,
                aggregation="sum of logits over all passes (top1/top5); the best of 1..n passes is selected "
                            "on the evaluation set and labelled so", n_frames=spec.n_frames,
                img_size=spec.img_size, resize=spec.resize, audio=spec.audio,
                clip_sampling="a random frame in each of n_frames segments, per pass (training-style)",
                crops=f"random multi-scale crop, scales {list(AUTHORS_EVAL_SCALES)} of the short side, "
                      f"flip {'p=0.5' if spec.flip else 'off'}, no colour augmentation; audio uncropped",
                manifest=relative_to_repo(manifest), weights=weights,
                **spec.switches("preset", "video_norm", "audio_frontend", "missing_audio"))


@torch.no_grad()
def score_authors(model: TSAM, cfg: RunConfig | Mapping[str, Any], manifest: str | os.PathLike, split: str = "valid",
                  passes: AuthorsPasses = AuthorsPasses(), loading: Loading = Loading(cache_dir=None),
                  vocab: list[str] | None = None, weights: str = "the model given") -> dict[str, Any]:
    """The authors' protocol of :func:`tsamlib.evaluation.views.evaluate_authors` (described there), same result keys,
    on ``model`` with the run's settings ``cfg`` (as :func:`score_views`; its training view, ``flip`` included) on
    ``manifest``'s ``split``: ``passes`` (:class:`~tsamlib.evaluation.protocols.AuthorsPasses`) says how many
    passes and their seed. Writes nothing."""
    model.eval()
    spec, vocab = ViewsSpec.of(cfg), _check_vocab(model, manifest, vocab)
    excluded = _excluded(manifest, split, spec)
    part = split_rows(usable_rows(read_table(manifest), spec.audio, spec.missing_audio)[0], split)
    ds = _AuthorsPass(part["path"].tolist(), spec.n_frames, spec.train_transform(AUTHORS_EVAL_SCALES),
                      spec.audio_frame(cache_dir=loading.mel_cache()), passes.seed, spec.drop_silent)
    labels_all = torch.tensor(part["label"].astype(int).tolist())
    t0 = time.perf_counter()
    sums, hit1, hit5, bad_rows = _sum_passes(model, ds, labels_all, len(vocab), passes, loading)
    wall = time.perf_counter() - t0
    failed, keep, labels, paths = _kept(ds.paths, labels_all, bad_rows, ds.log)
    probs = F.softmax(sums[keep] / passes.n_passes, dim=1).float()
    res: dict[str, Any] = dict(top1=None, top5=None, loss=None, top1_after_passes=None,
                               top1_best_of_n_selected_on_eval_set=None, n_passes_selected_on_eval_set=None)
    if bool(len(ds)) and bool((labels_all >= 0).all()) and bool(keep.any()):
        after = [float(v) for v in hit1[:, keep].float().mean(1)]
        best = max(range(passes.n_passes), key=lambda i: after[i])   # the first of equal ones, as their max(dict)
        res.update(top1=after[-1], top5=float(hit5[-1, keep].float().mean()), top1_after_passes=after,
                   loss=_loss(probs, labels), top1_best_of_n_selected_on_eval_set=after[best],
                   n_passes_selected_on_eval_set=best + 1)
    res.update(probs=probs, labels=labels, paths=paths, n_views=torch.full((len(paths),), passes.n_passes),
               vocab=vocab, protocol=_passes_record(passes, spec, split, manifest, weights), n_videos=int(keep.sum()),
               n_failed=len(failed), failed=failed, n_excluded=len(excluded), excluded=excluded, wall_s=wall,
               views_per_s=len(ds) * passes.n_passes / max(wall, 1e-9))
    return res


def per_class_accuracy(res: dict[str, Any] | ClassificationInterpretation) -> pd.DataFrame:
    """Per class: videos, correct (top-1) and accuracy, from a :func:`score_views` / :func:`score_authors` result
    or an interpretation."""
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


def eval_record(res: dict[str, Any], more_metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON-ready record of a :func:`score_views` / :func:`score_authors` result: protocol, metrics (with
    ``more_metrics``), per-class accuracy, failed and excluded files, vocab, one entry per scored video, speed."""
    pca = per_class_accuracy(res) if res["top1"] is not None else None
    pred = res["probs"].argmax(1) if len(res["probs"]) else torch.zeros(0, dtype=torch.long)
    videos = [dict(path=relative_to_repo(p), label=int(y), pred=int(k), p_pred=float(pr[k]),
                   p_true=float(pr[y]) if y >= 0 else None)
              for p, y, k, pr in zip(res["paths"], res["labels"].tolist(), pred.tolist(), res["probs"])]
    return dict(protocol=res["protocol"],
                metrics=dict(top1=res["top1"], top5=res["top5"], loss=res["loss"], n_videos=res["n_videos"],
                             n_failed=res["n_failed"], n_excluded=res["n_excluded"], **(more_metrics or {})),
                per_class=None if pca is None else pca.reset_index().replace({np.nan: None}).to_dict("records"),
                failed={relative_to_repo(k): v for k, v in res["failed"].items()},
                excluded={relative_to_repo(k): v for k, v in res["excluded"].items()}, vocab=res["vocab"],
                videos=videos, wall_s=res["wall_s"], views_per_s=res["views_per_s"])
