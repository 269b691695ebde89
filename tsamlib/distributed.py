"""Data-parallel training of one run: fastai's ``distrib_ctx`` under ``accelerate launch``.

    accelerate launch --num_processes 4 -m tsamlib.distributed params.json           # 4 GPUs, one machine
    accelerate launch --cpu --num_processes 2 -m tsamlib.distributed params.json     # 2 CPU processes (gloo)

``params.json`` holds parameters of ``notebooks/03_train.ipynb`` (missing ones take the notebook's defaults).
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

__all__ = ["DEFAULTS", "train_distributed", "main"]

DEFAULTS: dict[str, Any] = dict(dataset="default", n_frames=8, shift_depth=1, f_div=8, n_insert=1, m_insert=0,
                                audio=False, pretrained=None, arch="resnet18", img_size=64, resize=72, flip=True,
                                n_mels=64, epochs=3, lr=2e-3, recipe="one_cycle", lr_decay=None, batch_size=8,
                                dropout=0.5, num_workers=0, seed=0, run_id="demo_ddp", resume=False,
                                overwrite=False, runs_root=None)


def _broadcast_on_cpu(self, t, rank):
    """fastai's ``DistributedDL._broadcast`` goes through CUDA (for NCCL); with gloo (CPU) broadcast on CPU."""
    t = torch.tensor(t, dtype=torch.long)
    torch.distributed.broadcast(t, rank)
    return t.tolist()


def train_distributed(params: dict[str, Any]) -> dict[str, Any] | None:
    """Train ``params`` in every launched process; return the final metrics on rank 0 (None elsewhere)."""
    import fastai.distributed  # noqa: F401  (adds Learner.distrib_ctx)
    from fastai.torch_core import num_distrib, rank_distrib

    from .data import video_dataloaders
    from .model import model_kwargs
    from .runs import dataset_manifest, mel_cache_dir, start_run
    from .train import finish_run, fit_run, seed_everything, tsam_learner

    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown parameters {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    p = {**DEFAULTS, **params}
    rank = rank_distrib()
    record = {k: v for k, v in p.items() if k not in ("run_id", "resume", "overwrite", "runs_root")}
    record["world_size"] = max(num_distrib(), 1)
    runs_root = p["runs_root"] if rank == 0 else tempfile.mkdtemp(prefix=f"tsam-rank{rank}-")
    run = start_run(p["run_id"], record, runs_root=runs_root, resume=p["resume"], overwrite=p["overwrite"])
    seed_everything(p["seed"])
    dls = video_dataloaders(dataset_manifest(p["dataset"]), n_frames=p["n_frames"], audio=p["audio"],
                            img_size=p["img_size"], resize=p["resize"], flip=p["flip"], n_mels=p["n_mels"],
                            batch_size=p["batch_size"], num_workers=p["num_workers"], seed=p["seed"],
                            cache_dir=mel_cache_dir())
    seed_everything(p["seed"])  # same initial weights in every process
    learn = tsam_learner(dls, arch=p["arch"], recipe=p["recipe"], pretrained=p["pretrained"], **model_kwargs(p))
    if not torch.cuda.is_available():
        fastai.distributed.DistributedDL._broadcast = _broadcast_on_cpu
    with learn.distrib_ctx(sync_bn=torch.cuda.is_available(), cpu=not torch.cuda.is_available()):
        fit_run(learn, run, p["epochs"], p["lr"], seed=p["seed"], resume=p["resume"], lr_decay=p["lr_decay"],
                finish=False)
    # every process validates the whole set (the metrics gather across processes), only rank 0 keeps the record
    final = finish_run(learn, run, p["epochs"], p["seed"])
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
