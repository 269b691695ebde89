"""Data-parallel training that keeps the recipe: several processes train one run as one process would.

:func:`tsamlib.training.run.train` uses it when launched in several processes (``accelerate launch`` or
``torchrun``; see ``python -m tsamlib train --help``)::

    accelerate launch --num_processes 4 -m tsamlib train --config params.json          # 4 GPUs, one machine
    torchrun --nproc_per_node 2 -m tsamlib train --config params.json                  # 2 CPU processes (gloo)
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \
        -m tsamlib train --config params.json                                          # on each of 2 machines

``batch_size`` is the global batch: with N processes each loads ``batch_size / N`` clips of every step (a batch size
that N does not divide is refused before anything is written), DDP averages the N gradients, so one step sees the
same clips, at the same learning rate, as one process does: the same steps per epoch, the same schedule.
:class:`GlobalBatchDL` makes it exact: global batch i is the single-process batch i (same shuffle, same per-clip
augmentation), cut into N equal pieces. BatchNorm statistics are per process by default, as the authors'
DataParallel; ``sync_bn=True`` uses SyncBatchNorm over the global batch (CUDA only). The run records the launch
(``world_size``, ``per_process_batch_size``, ``batchnorm``) in ``metrics.json``; only rank 0 writes the run folder.
Per-epoch validation is sharded and gathered by fastai; the final validation runs on the whole validation set.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
from fastai.callback.core import Callback
from fastai.distributed import DistributedDL, DistributedTrainer  # also adds Learner.distrib_ctx

from .learner import resolve_precision

__all__ = ["per_process_batch", "launch_record", "GlobalBatchDL", "GlobalBatches", "data_parallel"]


def per_process_batch(batch_size: int, world_size: int) -> int:
    """``batch_size / world_size``: the clips each process loads per step; ValueError when it does not divide."""
    if batch_size % world_size:
        lower, upper = batch_size // world_size * world_size, -(-batch_size // world_size) * world_size
        raise ValueError(f"batch_size={batch_size} is the global batch and must divide evenly among the "
                         f"{world_size} processes launched: use batch_size={lower or upper} or {upper}, or launch "
                         f"a number of processes that divides {batch_size}.")
    return batch_size // world_size


def launch_record(cfg, world_size: int, cuda: bool, per_node: int | None = None) -> dict[str, Any]:
    """What the run records of its launch: ``world_size``, ``nodes`` and ``processes_per_node`` (``per_node``: the
    launcher's ``LOCAL_WORLD_SIZE``; None: all on one node), ``per_process_batch_size``, ``batchnorm``
    (``"per_process"`` or ``"sync"``), ``device`` and the ``precision`` and ``channels_last`` resolved for it.
    ValueError, before anything is written, for a launch that cannot train ``cfg``'s recipe: a batch size the
    processes do not divide, SyncBatchNorm or fp16 without CUDA."""
    world = max(world_size, 1)
    per_node = min(max(per_node or world, 1), world)
    if cfg.sync_bn and world > 1 and not cuda:
        raise ValueError("sync_bn=True needs CUDA GPUs (torch's SyncBatchNorm does not run on CPU processes): "
                         "set sync_bn=False (BatchNorm per process, the authors' behaviour) or launch on GPUs.")
    return dict(world_size=world, nodes=-(-world // per_node), processes_per_node=per_node,
                per_process_batch_size=per_process_batch(cfg.batch_size, world),
                batchnorm="sync" if cfg.sync_bn and world > 1 else "per_process", device="cuda" if cuda else "cpu",
                precision=resolve_precision(cfg.switches()["precision"], cuda),
                channels_last=cuda if cfg.channels_last is None else cfg.channels_last)


class GlobalBatchDL(DistributedDL):
    """The training loader of one process: global batch i is the single-process batch i (the same shuffled order,
    broadcast from rank 0), this process taking its ``bs`` clips of it (rank r: clips r*bs .. (r+1)*bs - 1).

    With ``drop_last`` every global batch is whole (len(dataset) // global batch steps, as one process); without
    it (a training set smaller than one global batch) the last global batch is padded with repeated clips to a
    multiple of the world size, as fastai's DistributedDL pads, so that every process takes the same number."""

    def __init__(self, dl, rank: int | None = None, world_size: int | None = None, device=None):
        super().__init__(dl, rank=rank, world_size=world_size, device=device)
        self.global_bs = self.bs * self.world_size
        # a training set smaller than one global batch trains one (partial) step, as one process would
        self.drop_last = self.dl.drop_last = self.dl.drop_last and len(self.dataset) >= self.global_bs

    def __len__(self) -> int:
        n, g = self.dl.n, self.global_bs
        return n // g if self.drop_last else -(-n // g)

    def get_idxs(self) -> list:
        idxs = self._broadcast(list(self.dl.get_idxs()), 0)  # rank 0's order everywhere
        g, ws, mine = self.global_bs, self.world_size, []
        for start in range(0, len(idxs) // g * g if self.drop_last else len(idxs), g):
            batch = idxs[start:start + g]
            pad = -len(batch) % ws                     # a partial last batch: repeat clips up to a multiple of ws
            batch += (batch * ws)[:pad]
            per = len(batch) // ws
            mine += batch[self.rank * per:(self.rank + 1) * per]
        return mine

    def to_detach(self, b, cpu: bool = True, gather: bool = True):
        """Gather without fastai's unpadding (written for contiguous shards): every process has equal batches."""
        return self._to_detach(b, cpu, gather)


def _broadcast_on_cpu(self, t, rank):
    """fastai's ``DistributedDL._broadcast`` goes through CUDA (for NCCL); with gloo (CPU) broadcast on CPU."""
    t = torch.tensor(t, dtype=torch.long)
    torch.distributed.broadcast(t, rank)
    return t.tolist()


class GlobalBatches(Callback):
    """Puts a :class:`GlobalBatchDL` in place of the training loader that fastai's ``DistributedTrainer`` wrapped
    (which gives each process ``batch_size`` clips of a contiguous shard); the validation loader stays fastai's."""

    order = DistributedTrainer.order + 1   # after DistributedTrainer has prepared the model and wrapped the loaders

    def before_fit(self):
        dl = self.dls.loaders[0]
        self.learn.dls.loaders[0] = GlobalBatchDL(getattr(dl, "dl", dl), device=self.learn.model.device)


@contextmanager
def data_parallel(learn, launch: dict[str, Any]) -> Iterator[list[Callback]]:
    """fastai's ``distrib_ctx`` (DDP through ``accelerate``) with the recipe kept, when ``launch`` (from
    :func:`launch_record`) has several processes; yields the callbacks to pass to the fit (none for one process)."""
    if launch["world_size"] <= 1:
        yield []
        return
    cuda = torch.cuda.is_available()
    nccl_broadcast = DistributedDL._broadcast
    if not cuda:   # fastai wraps the validation loader in its own DistributedDL: swap the method for the fit only
        DistributedDL._broadcast = _broadcast_on_cpu
    try:
        with learn.distrib_ctx(sync_bn=launch["batchnorm"] == "sync", cpu=not cuda):
            yield [GlobalBatches()]
    finally:
        DistributedDL._broadcast = nccl_broadcast
