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
:func:`score_views` and :func:`score_authors` (:mod:`tsamlib.evaluation.scoring`) are the same protocols on a model and
settings given directly, no run folder (:mod:`tsamlib.evaluation.released` evaluates checkpoint files with them).
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch
from fastai.torch_core import default_device

from ..config import RunConfig
from ..data.datasets import dataset_manifest
from ..data.manifest import manifest_vocab, read_table
from ..model.formats import is_package_folder
from ..model.tsam import TSAM, create_tsam, create_tsam_from, tsam_kwargs
from ..runs.checkpoints import read_best
from ..runs.fileio import atomic_write_json, writable_folder
from ..runs.folder import RunLock, is_finished, open_run, resolve_run
from ..runs.loader import safe_load
from ..runs.provenance import environment_info
from .interpret import ViewsInterpretation, learner_interpretation
from .protocols import AuthorsPasses, views_protocol
from .scoring import authors_metrics, eval_record, score_authors, score_views
from .specs import Loading

__all__ = ["load_run_model", "load_model", "resolve_source", "has_audio", "run_vocab", "evaluate_views",
           "evaluate_authors", "evaluate_run", "eval_path", "authors_eval_path", "interpretation"]


def run_vocab(cfg: RunConfig | dict[str, Any]) -> list[str]:
    """Class names of the run's dataset, index = label (as `video_dataloaders` builds them)."""
    return manifest_vocab(read_table(dataset_manifest(RunConfig.of(cfg).dataset)))


def load_run_model(run_dir: str | os.PathLike, weights: str | None = None) -> tuple[TSAM, RunConfig]:
    """The trained model of a finished run (eval mode, CPU) and its settings (``params.json`` as a RunConfig).

    ``weights``: ``"last"`` (``checkpoints/model.pth``) or ``"best"`` (``checkpoints/best.pth``, the best validation
    epoch); None: the run's ``eval_weights`` (from its preset)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} not found (runs live in results/runs/<run_id>/).")
    run = open_run(run_dir)
    cfg = RunConfig.of(run.params)
    weights = weights or cfg.switches()["eval_weights"]
    if weights not in ("last", "best"):
        raise ValueError(f"weights={weights!r}: choose one of ['last', 'best'].")
    file = run.checkpoint_dir / ("model.pth" if weights == "last" else "best.pth")
    if not is_finished(run_dir):
        raise RuntimeError(f"run {run_dir} is not finished (metrics.json): train it to the end (resume=True, CLI "
                           "--resume, continues an interrupted run).")
    if not file.is_file() and weights == "best":
        raise RuntimeError(f"run {run_dir} has no checkpoints/best.pth: only runs with eval_weights='best' keep it; "
                           "use the last weights (weights='last', CLI --weights last).")
    if not file.is_file():
        raise RuntimeError(f"run {run_dir} is finished but its weights checkpoints/model.pth are missing (weights "
                           "are never committed: a fresh clone has none): train it again (overwrite=True, CLI "
                           "--overwrite).")
    model = create_tsam(cfg.arch, num_classes=len(run_vocab(cfg)), pretrained=None,
                        **tsam_kwargs(cfg.model_kwargs()))
    state = (read_best(run.checkpoint_dir)["model"] if file.name == "best.pth"
             else safe_load(file, hint="train the run again (overwrite=True)"))
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise RuntimeError(f"{file} does not fit the model rebuilt from {run_dir / 'params.json'} (did the "
                           f"dataset's classes change?): {str(e).splitlines()[0]}") from None
    return model.eval(), cfg


# What a package's config.json "preprocessing" holds that a model's views take (the rest describes the values).
_PACKAGE_VIEW_SETTINGS = ("img_size", "resize", "n_mels", "video_norm", "valid_view", "audio_frontend")


def load_model(source: str | os.PathLike, weights: str | None = None) -> tuple[TSAM, RunConfig, list[str]]:
    """The model of a finished run's folder (:func:`load_run_model`) or of a package folder (``python -m tsamlib
    checkpoint convert``: ``model.safetensors`` + ``config.json``), in eval mode on the CPU, with the settings its
    views take (a RunConfig: frames, sizes, input values, audio front end) and its class names (index = output; a
    package without names gets ``"0"``, ``"1"``, ...). ``weights`` chooses among a run's (``"last"``/``"best"``)."""
    source = Path(source)
    if is_package_folder(source):
        if weights is not None:
            raise ValueError(f"weights={weights!r} (--weights) chooses among a run's weights; {source} is a "
                             "package, which holds one set.")
        model = create_tsam_from(source).eval()
        info = model.load_report.info
        settings = {k: v for k, v in info.model_kwargs().items() if k != "num_classes"}
        settings.update({k: v for k, v in info.preprocessing.items() if k in _PACKAGE_VIEW_SETTINGS})
        vocab = info.classes or [str(i) for i in range(model.fc.out_features)]
        return model, RunConfig.from_params(settings), list(vocab)
    model, cfg = load_run_model(source, weights)
    return model, cfg, run_vocab(cfg)


def resolve_source(source: str | os.PathLike) -> Path:
    """The folder :func:`load_model` takes for ``source``: a package folder as it is, else the run folder of a run
    id or folder (:func:`~tsamlib.runs.folder.resolve_run`: FileNotFoundError naming both places looked at)."""
    return Path(source) if is_package_folder(source) else resolve_run(source)


def has_audio(source: str | os.PathLike) -> bool:
    """Whether the model of a run folder (its params.json) or of a package folder (its config.json, as
    inspect_checkpoint reads it) takes sound."""
    if is_package_folder(source):
        from ..model.formats import inspect_checkpoint
        return bool(inspect_checkpoint(source).settings.get("audio"))
    return RunConfig.of(open_run(source).params).audio


def eval_path(run_dir: str | os.PathLike, split: str = "valid", n_clips: int = 2, n_crops: int = 3) -> Path:
    """Where :func:`evaluate_views` writes its record."""
    return Path(run_dir) / f"eval_{split}_{n_clips}x{n_crops}.json"


def _setup(run_dir: Path, weights: str | TSAM | None) -> dict[str, Any]:
    """The keyword arguments of :func:`score_views` / :func:`score_authors` for a run: its model (eval mode; the
    model ``weights`` is, else the run's weights it names), settings, manifest, vocab and weights label."""
    if isinstance(weights, torch.nn.Module):
        model, cfg, label = weights, RunConfig.of(open_run(run_dir).params), "the model given"
    else:
        model, cfg = load_run_model(run_dir, weights)
        model = model.to(default_device())  # the GPU when there is one
        label = weights or cfg.switches()["eval_weights"]
    return dict(model=model.eval(), cfg=cfg, manifest=dataset_manifest(cfg.dataset), vocab=run_vocab(cfg),
                weights=label)


_EVAL_FIX = ("the evaluation record goes into the run folder: copy the run folder somewhere you can write (Python: "
             "write=False scores without saving)")


@torch.no_grad()
def evaluate_views(run_dir: str | os.PathLike, split: str = "valid", n_clips: int = 2, n_crops: int = 3,
                   batch_size: int = 8, num_workers: int = 0, *, cache_dir: str | os.PathLike | None = "default",
                   write: bool = True, progress: bool = True, weights: str | TSAM | None = None) -> dict[str, Any]:
    """Score every video of `split` by the mean softmax over its ``n_clips x n_crops`` views (a progress bar
    over the batches of videos unless ``progress=False``).

    ``n_crops`` is 1 or 3; the papers' protocol is ``n_clips=10, n_crops=3``. Returns a dict with
    ``top1``, ``top5``, ``loss``, ``probs`` (videos x classes), ``labels``, ``paths``, ``n_views``
    (views averaged per video), ``vocab``, ``protocol``, ``failed`` (path -> reason) and ``excluded``
    (manifest rows with a problem, or without sound when dropped); writes the record to :func:`eval_path` unless
    ``write=False``. ``weights``: ``"last"``, ``"best"`` or None (see :func:`load_run_model`), or a model (a
    :class:`TSAM` already in memory, scored as it is); the views follow the run's data switches. ``batch_size``
    (views per batch), ``num_workers`` and ``cache_dir`` (the log-mel cache; "default": the repository's) change
    the speed, not the result.
    """
    run_dir = Path(run_dir)
    if write:   # before the scoring: the record must have somewhere to go
        writable_folder(run_dir, _EVAL_FIX)
    res = score_views(split=split, protocol=views_protocol(n_clips, n_crops),
                      loading=Loading(batch_size, num_workers, cache_dir, progress),
                      **_setup(run_dir, weights))
    if write:
        _write_record(run_dir, res)
    return res


def interpretation(source, split: str = "valid", n_clips: int = 2, n_crops: int = 3, batch_size: int = 8,
                   num_workers: int = 0) -> ViewsInterpretation:
    """A fastai classification interpretation from a run folder (runs :func:`evaluate_views`), its result
    dict, or a fastai `Learner` (its valid DataLoader: one centre clip per video)."""
    from fastai.learner import Learner
    if isinstance(source, Learner):
        return learner_interpretation(source)
    res = source if isinstance(source, dict) else evaluate_views(source, split, n_clips, n_crops, batch_size,
                                                                 num_workers)
    return ViewsInterpretation(res["probs"], res["labels"], res["vocab"], res["paths"], res["protocol"]["n_frames"],
                               protocol=res["protocol"])


def authors_eval_path(run_dir: str | os.PathLike, split: str = "valid", n_passes: int = 10) -> Path:
    """Where :func:`evaluate_authors` writes its record."""
    return Path(run_dir) / f"eval_{split}_authors{n_passes}.json"


@torch.no_grad()
def evaluate_authors(run_dir: str | os.PathLike, split: str = "valid", n_passes: int = 10, seed: int = 0,
                     batch_size: int = 8, num_workers: int = 0, *, cache_dir: str | os.PathLike | None = "default",
                     write: bool = True, progress: bool = True, weights: str | TSAM | None = None) -> dict[str, Any]:
    """The authors' test protocol (their ``run_MultiClip``), seeded: ``n_passes`` passes over every video of
    `split`; in each, one random training-style clip (a random frame per TSN segment) and one random crop
    (:data:`AUTHORS_EVAL_SCALES` of the short side, adjacent scale pairs, random place), resized to ``img_size``,
    flipped with p = 0.5 when the run flips in training, no colour augmentation; the audio frame uncropped.
    The logits are summed over the passes.

    Returns the keys of :func:`evaluate_views` (``probs`` = softmax of the mean logits, ``loss`` from it) with
    ``top1``/``top5`` the honest figures, all ``n_passes`` summed (fixed in advance), plus ``top1_after_passes``
    (top-1 after 1..n_passes passes), and the authors' printed figure ``top1_best_of_n_selected_on_eval_set`` with
    ``n_passes_selected_on_eval_set``: the best of those, chosen on the very videos it is measured on (optimistic;
    never report it alone). Writes :func:`authors_eval_path` unless ``write=False``. The other keywords as
    :func:`evaluate_views`'s.
    """
    run_dir = Path(run_dir)
    passes = AuthorsPasses(n_passes, seed)
    if write:
        writable_folder(run_dir, _EVAL_FIX)
    res = score_authors(split=split, passes=passes,
                        loading=Loading(batch_size, num_workers, cache_dir, progress),
                        **_setup(run_dir, weights))
    if write:
        _write_record(run_dir, res, authors_eval_path(run_dir, split, n_passes), authors_metrics(res))
    return res


def evaluate_run(run_dir: str | os.PathLike, split: str = "valid", protocol: str | None = None,
                 **kwargs: Any) -> dict[str, Any]:
    """:func:`evaluate_views` or :func:`evaluate_authors`, as ``protocol`` (``"views"`` / ``"authors"``) or, when
    None, the run's ``eval_protocol`` (from its preset) says; ``kwargs`` go to that function."""
    protocol = protocol or RunConfig.of(open_run(run_dir).params).switches()["eval_protocol"]
    if protocol == "views":
        return evaluate_views(run_dir, split, **kwargs)
    if protocol == "authors":
        return evaluate_authors(run_dir, split, **kwargs)
    raise ValueError(f"protocol={protocol!r}: choose one of ['views', 'authors'].")


def _write_record(run_dir: Path, res: dict[str, Any], path: Path | None = None,
                  more_metrics: dict[str, Any] | None = None) -> Path:
    record = dict(run_id=run_dir.name, evaluated_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  **eval_record(res, more_metrics), environment=environment_info())
    p = res["protocol"]
    with RunLock(run_dir, what="evaluation"):  # refused while another process trains or evaluates this run
        return atomic_write_json(path or eval_path(run_dir, p["split"], p["n_clips"], p["n_crops"]), record)
