"""Data-parallel training of one run: fastai's ``distrib_ctx`` under ``accelerate launch``.

    accelerate launch --num_processes 4 -m tsamlib.distributed params.json           # 4 GPUs, one machine
    accelerate launch --cpu --num_processes 2 -m tsamlib.distributed params.json     # 2 CPU processes (gloo)

``params.json`` holds settings of :class:`tsamlib.config.RunConfig` (the parameters of ``notebooks/03_train.ipynb``;
missing ones take their defaults, unknown ones are refused).
Every process trains on its shard of each batch; only rank 0 writes the run folder. Per-epoch validation is
sharded and gathered by fastai; the final validation runs on the whole validation set.
On CPU (the test), launch with ``torchrun --nproc_per_node 2 -m tsamlib.distributed params.json`` (gloo).
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["train_distributed", "main"]


def _broadcast_on_cpu(self, t, rank):
    """fastai's ``DistributedDL._broadcast`` goes through CUDA (for NCCL); with gloo (CPU) broadcast on CPU."""
    t = torch.tensor(t, dtype=torch.long)
    torch.distributed.broadcast(t, rank)
    return t.tolist()


def train_distributed(params: dict[str, Any]) -> dict[str, Any] | None:
    """Train ``params`` (settings of :class:`tsamlib.config.RunConfig`) in every launched process; return the
    final metrics on rank 0 (None elsewhere)."""
    import fastai.distributed  # noqa: F401  (adds Learner.distrib_ctx)
    from fastai.torch_core import num_distrib, rank_distrib

    from .config import RunConfig
    from .data import video_dataloaders
    from .fileio import mel_cache_dir
    from .runs import begin_run
    from .train import finish_run, fit_run, seed_everything, tsam_learner

    cfg = RunConfig.from_params(params)  # unknown or bad settings raise here, in every process
    rank = rank_distrib()
    if rank != 0:  # only rank 0 writes the run folder; the others record into a scratch folder
        cfg = cfg.replace(runs_root=tempfile.mkdtemp(prefix=f"tsam-rank{rank}-"), run_id=cfg.run_id or "rank")
    # no process builds a missing dataset (they would race): run notebook 01 first
    run, manifest = begin_run(cfg, build_missing=False, extra=dict(world_size=max(num_distrib(), 1)))
    seed_everything(cfg.seed)
    dls = video_dataloaders(manifest, **cfg.data_kwargs(), cache_dir=mel_cache_dir())
    seed_everything(cfg.seed)  # same initial weights in every process
    sw = cfg.switches()
    learn = tsam_learner(dls, arch=cfg.arch, recipe=cfg.recipe, pretrained=cfg.pretrained,
                         wd_bn_bias=sw["wd_bn_bias"], **cfg.model_kwargs())
    if not torch.cuda.is_available():
        fastai.distributed.DistributedDL._broadcast = _broadcast_on_cpu
    with learn.distrib_ctx(sync_bn=torch.cuda.is_available(), cpu=not torch.cuda.is_available()):
        fit_run(learn, run, cfg.epochs, cfg.lr, seed=cfg.seed, resume=cfg.resume, lr_decay=cfg.lr_decay,
                finish=False, keep_best=sw["eval_weights"] == "best")
    # every process validates the whole set (the metrics gather across processes), only rank 0 keeps the record
    final = finish_run(learn, run, cfg.epochs, cfg.seed)
    run.close()
    return final if rank == 0 else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__)
        return 2
    final = train_distributed(json.loads(Path(argv[0]).read_text()))
    if final is not None:
        print(json.dumps({k: v for k, v in final.items() if k != "skipped"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
