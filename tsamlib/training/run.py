"""One training run from a :class:`tsamlib.config.RunConfig`: the only training loop of tsamlib.

    run = train(RunConfig(shift_depth=4, epochs=5))      # checks, run folder, data, Learner, fit, final weights

Notebook 03, ``python -m tsamlib train``, a launch in several processes and the Table 1/2 grids (through notebook
03) all come here. To look at the data and the Learner before fitting, take the two steps apart::

    t = setup_training(cfg)      # every check, the run folder, the DataLoaders, the Learner, the model's size
    t.dls.show_batch()
    run = t.fit()                # epochs (checkpoint after each), the final validation, checkpoints/model.pth

What a step does, in order (the seeds are what make a run repeatable, and a resumed run equal to an uninterrupted
one on CPU):

1. :func:`begin_run`: settings checked, the dataset's manifest checked (a missing synthetic dataset is built; its
   files looked for on disk), a run to resume looked for, the run folder created and locked; nothing is written
   before every check passed. With N processes the launch is checked too (``batch_size`` divisible by N,
   :func:`tsamlib.training.distributed.launch_record`) and only rank 0 writes the run folder.
2. ``seed``; the DataLoaders (``batch_size / N`` clips per process and step); ``seed`` again, so every process starts
   from the same weights; the Learner (:func:`tsam_learner`); the model's parameters and MACs into ``metrics.json``.
3. :func:`fit_run` (inside fastai's ``distrib_ctx`` when N > 1), then :func:`finish_run`: the whole validation set,
   ``checkpoints/model.pth``, ``finished: true``.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from fastai.learner import Learner
from fastai.torch_core import num_distrib, rank_distrib, set_seed

from ..config import RunConfig
from ..data.datasets import dataset_manifest
from ..data.decode import resolve_backend
from ..data.loaders import DataSpec, TSAMDataLoaders, video_dataloaders
from ..data.manifest import check_manifest
from ..data.shards import is_shard_index, read_index, split_shards
from ..model.complexity import clip_cost
from ..model.tsam import check_model_settings
from ..runs.fileio import mel_cache_dir, relative_to_repo
from ..runs.folder import Run, run_state, runs_dir, start_run, unique_run_id
from .distributed import data_parallel, launch_record
from .fit import finish_run, fit_run
from .learner import tsam_learner
from .tracking import TrackEpochs, Tracking

__all__ = ["begin_run", "check_resume", "Training", "setup_training", "train"]


def check_resume(cfg: RunConfig) -> None:
    """With ``cfg.resume``, the run to continue must exist: ``run_id`` given and a run of that id under
    ``runs_root``; otherwise FileNotFoundError (a new run would start in silence instead)."""
    if not cfg.resume:
        return
    root = relative_to_repo(runs_dir(cfg.runs_root))
    if cfg.run_id is None:
        raise FileNotFoundError(f"resume=True (--resume) needs the run_id (--run-id) of the run to continue under "
                                f"{root}; drop resume to start a new run (`python -m tsamlib runs` lists the runs).")
    if run_state(runs_dir(cfg.runs_root) / cfg.run_id) == "new":   # no metrics.json: nothing was ever started
        raise FileNotFoundError(f"no run {cfg.run_id!r} to resume under {root}; drop resume=True (--resume) to "
                                "start it (`python -m tsamlib runs` lists the runs).")


def _note_missing_files(info: dict) -> None:
    """One line when some files of the manifest are not on disk (all of a split: check_manifest refused)."""
    missing = {s: n for s, n in info["missing"].items() if n}
    if not missing:
        return
    n = sum(missing.values())
    counts = ", ".join(f"{s} {k} of {info['rows'][s]}" for s, k in missing.items())
    shown = ", ".join(info["missing_examples"][:3]) + (", ..." if n > 3 else "")
    print(f"note: {n} file{'s' if n > 1 else ''} of {info['manifest']} {'are' if n > 1 else 'is'} missing on disk "
          f"({counts}: {shown}); training replaces a missing clip by the next one that loads, validation leaves it "
          "out, both counted in the run's metrics.json.", flush=True)


def begin_run(cfg: RunConfig, build_missing: bool = True) -> tuple[Run, Path]:
    """Check everything, then open the run: the settings (on creating ``cfg``), the model they make (arch, shift,
    pretrained weights: :func:`check_model_settings`), the dataset's manifest (built first when it is a missing
    synthetic dataset; its files looked for on disk: a split without any is refused, missing ones are counted in a
    line), the run to resume (:func:`check_resume`), the run id (``None``: a new readable one). Nothing is written
    before every check passed. Returns the run and the manifest path."""
    cfg.check()
    check_resume(cfg)
    check_model_settings(cfg.arch, pretrained=cfg.pretrained, pretrained_match=cfg.pretrained_match,
                         **cfg.model_kwargs())
    if is_shard_index(cfg.dataset):   # shards (prepare --format shards): their index, read before anything is written
        manifest, index = cfg.dataset, read_index(cfg.dataset)
        for split in ("train", "valid"):
            split_shards(index, split)
    else:
        manifest = dataset_manifest(cfg.dataset, build_missing=build_missing)
        _note_missing_files(check_manifest(manifest, check_files=True))
    run_id = cfg.run_id or unique_run_id(cfg, cfg.runs_root)
    run = start_run(run_id, cfg.settings(), cfg.runs_root, resume=cfg.resume, overwrite=cfg.overwrite)
    print(f"run {run_id}: {relative_to_repo(run.path)}", flush=True)
    return run, manifest


@dataclass
class Training:
    """A run ready to fit: its settings, folder, DataLoaders, Learner and launch (:func:`setup_training`)."""

    cfg: RunConfig
    run: Run
    dls: TSAMDataLoaders
    learn: Learner
    launch: dict[str, Any] = field(default_factory=dict)
    tracking: Tracking | None = None

    def fit(self) -> Run:
        """Train the epochs (continuing the last checkpoint when ``cfg.resume``), validate on the whole validation
        set, save ``checkpoints/model.pth``; return the finished run (``run.metrics["final"]``)."""
        cfg, sw = self.cfg, self.cfg.switches()
        track = [TrackEpochs(self.run, self.tracking)] if self.tracking and self.tracking.trackers else []
        try:
            with data_parallel(self.learn, self.launch) as cbs:
                session = fit_run(self.learn, self.run, cfg.epochs, cfg.lr, seed=cfg.seed, resume=cfg.resume,
                                  lr_decay=cfg.lr_decay, finish=False, keep_best=sw["eval_weights"] == "best",
                                  cbs=cbs + track)
            # every process validates the whole set; only rank 0's record is the run's
            final = finish_run(self.learn, self.run, cfg.epochs, cfg.seed, session)
            if self.tracking is not None:
                self.tracking.final(cfg.epochs, final)
        finally:
            if self.tracking is not None:
                self.tracking.close()
        return self.run


def setup_training(cfg: RunConfig, progress_bars: bool = True) -> Training:
    """Steps 1 and 2 of a run (see the module): checks, run folder, DataLoaders, Learner. ``progress_bars=False``
    drops fastai's HTML bars (a line per epoch is printed either way)."""
    resolve_backend(cfg.video_backend)   # a backend not installed is refused before the run folder is written
    rank = rank_distrib()
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", 0)) or None   # set by torchrun and accelerate
    launch = launch_record(cfg, num_distrib(), torch.cuda.is_available(), per_node=per_node)
    several = launch["world_size"] > 1
    if several and is_shard_index(cfg.dataset):
        # each rank would read its own shards, whose sample counts differ: unequal steps stall DDP's all-reduce
        raise ValueError(f"dataset={cfg.dataset!r}: a shard dataset trains in one process for now; with "
                         f"{launch['world_size']} processes train on the prepared folders' manifest (OUT/folders/"
                         "manifest.csv beside the shards)")
    if rank != 0:  # only rank 0 writes the run folder; the others record into a scratch folder
        check_resume(cfg)   # every process refuses a run that is not there, as rank 0 does
        # resume=False: a scratch folder has no run to resume (its checkpoints were never there either)
        cfg = cfg.replace(runs_root=tempfile.mkdtemp(prefix=f"tsam-rank{rank}-"), run_id=cfg.run_id or "rank",
                          resume=False)
    # with several processes none builds a missing dataset (they would race): build it first (notebook 01)
    run, manifest = begin_run(cfg, build_missing=not several)
    try:
        return _prepare(cfg, run, manifest, launch, progress_bars)
    except BaseException:
        run.close()   # a run that failed to start is not left locked
        raise


def _prepare(cfg: RunConfig, run: Run, manifest: Path, launch: dict[str, Any], progress_bars: bool) -> Training:
    """Step 2 of :func:`setup_training` on an open run: the DataLoaders, the Learner, the model's size."""
    run.note(launch=launch)
    set_seed(cfg.seed)
    dls = video_dataloaders(manifest, DataSpec.of(cfg), batch_size=launch["per_process_batch_size"],
                            num_workers=cfg.num_workers, seed=cfg.seed, cache_dir=mel_cache_dir())
    say = print if rank_distrib() == 0 else (lambda *a, **k: None)
    say(f"{len(dls.train.dataset)} training clips, {len(dls.valid.dataset)} validation clips, {dls.c} classes")
    set_seed(cfg.seed)  # the same initial weights in every process
    learn = tsam_learner(dls, arch=cfg.arch, recipe=cfg.recipe, pretrained=cfg.pretrained,
                         pretrained_match=cfg.pretrained_match, wd_bn_bias=cfg.switches()["wd_bn_bias"],
                         progress_bars=progress_bars and rank_distrib() == 0,   # one bar per run, not per process
                         precision=launch["precision"], channels_last=launch["channels_last"], **cfg.model_kwargs())
    report = learn.model.load_report
    if report is not None:   # where the weights came from, and what was done with a head of another size
        run.note(pretrained=report.record())
        if report.skipped_classifier:
            say(f"pretrained: the backbone from {report.source} ({report.layout} format); its classifier "
                f"({report.info.num_classes} classes) replaced by a new one for this dataset's {dls.c}", flush=True)
    cost = clip_cost(learn.model, cfg.img_size)   # the run's own model, counted on a meta copy
    run.note(model=dict(params=cost["params"], gmacs_per_clip=cost["gmacs"],
                        n_shifted_blocks=learn.model.n_shifted_blocks))
    say(f"{cfg.arch}: {cost['params']:,} parameters, {cost['gmacs']:.2f} GMACs per clip, "
        f"{learn.model.n_shifted_blocks} shifted blocks", flush=True)
    tracking = Tracking(run, cfg.log if rank_distrib() == 0 else None)   # the process writing the run logs
    if tracking.names:
        run.note(log=list(tracking.names))
        say(f"logging each epoch to {', '.join(tracking.names)} too", flush=True)
    return Training(cfg, run, dls, learn, launch, tracking)


def train(cfg: RunConfig | None = None, *, progress_bars: bool = False, **settings: Any) -> Run:
    """Train one run and return it, finished: ``train(cfg)``, or ``train(shift_depth=4, epochs=5)`` (settings of
    :class:`RunConfig`, checked; given with ``cfg`` they replace its values). In several processes (``accelerate
    launch``, ``torchrun``) each calls it with the same settings."""
    cfg = (cfg or RunConfig()).replace(**settings) if settings else (cfg or RunConfig())
    training = setup_training(cfg, progress_bars=progress_bars)
    try:
        return training.fit()
    finally:
        training.run.close()
