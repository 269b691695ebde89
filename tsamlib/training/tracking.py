"""Experiment tracking: the numbers of ``metrics.json`` sent where researchers watch runs, with nothing online.

``RunConfig(log="tensorboard,wandb,mlflow")`` (``--log``, notebook 03's ``log``) sends every epoch's row of
``metrics.json`` (losses, top-1/top-5, learning rate, clips/s, wall time, skipped samples), the run's settings as
hyperparameters and, at the end, its final metrics:

- ``tensorboard``: event files in ``<run>/tensorboard/``, so ``tensorboard --logdir results/runs`` shows every run
  side by side (``python -m tsamlib runs --tensorboard`` writes them for runs trained without it);
- ``wandb``: an offline W&B run in ``<run>/wandb/`` (``wandb sync`` uploads it; ``WANDB_MODE`` set by you wins);
- ``mlflow``: a local MLflow store beside the run folders, the SQLite file ``<runs_root>/../mlflow.db`` (``mlflow ui
  --backend-store-uri sqlite:///<that file>``).

Each tracker receives the very row written to ``metrics.json`` (one step per epoch, epochs counted from 1), so both
always agree. Only the process that writes the run folder logs. wandb and mlflow are optional installs.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from ..config import log_targets
from ..runs.checkpoints import TrainedEpochCallback
from ..runs.folder import Run, read_metrics

__all__ = ["Tracking", "TrackEpochs", "epoch_scalars", "write_tensorboard", "ensure_tensorboard", "tensorboard_dir",
           "mlflow_uri"]


def epoch_scalars(row: dict[str, Any]) -> dict[str, float]:
    """The numbers of one ``metrics.json`` epoch row (``epoch`` itself is the step)."""
    return {k: float(v) for k, v in row.items()
            if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool)}


def _final_values(final: dict[str, Any]) -> dict[str, float]:
    """The final metrics the trackers keep (``final/<name>``): top-1, top-5, validation loss, where recorded."""
    return {k: float(final[k]) for k in ("top1", "top5", "valid_loss") if final.get(k) is not None}


def _hparams(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings as tracker hyperparameters: numbers, strings and booleans as they are, the rest (None, lists) as
    text."""
    return {k: v if isinstance(v, (int, float, str, bool)) else json.dumps(v) for k, v in settings.items()}


def tensorboard_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "tensorboard"


def mlflow_uri(runs_root: str | Path) -> str:
    """The local MLflow store of the runs under ``runs_root``: SQLite beside them (MLflow's file store is frozen)."""
    return f"sqlite:///{Path(runs_root).resolve().parent / 'mlflow.db'}"


class _TensorBoard:
    def __init__(self, run: Run):
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        self.writer = SummaryWriter(log_dir=str(tensorboard_dir(run.path)))
        finals = {f"final/{k}": 0.0 for k in ("top1", "top5", "valid_loss")}   # the tags the final values take
        for summary in hparams(_hparams(run.params), finals):   # the settings, in the same event file as the curves
            self.writer.file_writer.add_summary(summary)
        self.writer.add_text("settings", json.dumps(run.params, indent=1))

    def epoch(self, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def final(self, step: int, values: dict[str, float]) -> None:
        self.epoch(step, {f"final/{k}": v for k, v in values.items()})

    def close(self) -> None:
        self.writer.close()


class _Wandb:
    def __init__(self, run: Run):
        import os

        import wandb

        os.environ.setdefault("WANDB_MODE", "offline")   # no network unless the user asks for it
        self.run = wandb.init(project="tsamlib", name=run.run_id, dir=str(run.path), config=run.params,
                              reinit="create_new")

    def epoch(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def final(self, step: int, values: dict[str, float]) -> None:
        self.run.summary.update({f"final/{k}": v for k, v in values.items()})

    def close(self) -> None:
        self.run.finish()


class _MLflow:
    def __init__(self, run: Run):
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=mlflow_uri(run.path.parent))
        exp = self.client.get_experiment_by_name("tsamlib")
        exp_id = exp.experiment_id if exp is not None else self.client.create_experiment("tsamlib")
        self.id = self.client.create_run(exp_id, run_name=run.run_id,
                                         tags={"tsamlib.run_dir": str(run.path)}).info.run_id
        self.client.log_batch(self.id, params=[Param(k, str(v)) for k, v in _hparams(run.params).items()])

    def epoch(self, step: int, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        self.client.log_batch(self.id, metrics=[Metric(k, v, 0, step) for k, v in values.items()])

    def final(self, step: int, values: dict[str, float]) -> None:
        self.epoch(step, {f"final/{k}": v for k, v in values.items()})

    def close(self) -> None:
        self.client.set_terminated(self.id)


_BACKENDS = {"tensorboard": _TensorBoard, "wandb": _Wandb, "mlflow": _MLflow}
_INSTALL = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


class Tracking:
    """The trackers of one run (``log``, as :func:`tsamlib.config.log_targets` reads it): :meth:`epoch` after each
    row of ``metrics.json``, :meth:`final` with the final metrics, :meth:`close`. A tracker that is not installed is
    refused before training starts, naming what to install."""

    def __init__(self, run: Run, log: str | Sequence[str] | None):
        names = log_targets(log if isinstance(log, str) or log is None else ",".join(log))
        self.trackers = []
        for name in names:
            try:
                self.trackers.append(_BACKENDS[name](run))
            except ImportError as e:
                self.close()
                raise ModuleNotFoundError(f"log={name!r} needs the {_INSTALL[name]} package ({e.name} is not "
                                          f"installed): pip install {_INSTALL[name]}, or drop {name!r} from log."
                                          ) from None
        self.names = names

    def epoch(self, row: dict[str, Any]) -> None:
        for t in self.trackers:
            t.epoch(int(row["epoch"]), epoch_scalars(row))

    def final(self, epochs: int, final: dict[str, Any]) -> None:
        for t in self.trackers:
            t.final(epochs, _final_values(final))

    def close(self) -> None:
        while self.trackers:
            self.trackers.pop().close()


class TrackEpochs(TrainedEpochCallback):
    """Sends each epoch's ``metrics.json`` row to the run's :class:`Tracking`, once :class:`RunLogger` wrote it."""

    order = 71   # after RunLogger (70)

    def __init__(self, run: Run, tracking: Tracking):
        self.run, self.tracking = run, tracking

    def after_trained_epoch(self) -> None:
        self.tracking.epoch(self.run.metrics["epochs"][-1])


def write_tensorboard(run_dir: str | Path) -> Path:
    """TensorBoard event files for a run from its ``metrics.json`` (settings, every epoch, the final metrics), in
    ``<run>/tensorboard/`` (earlier event files there replaced): the runs of a grid trained without ``log`` compare
    in one TensorBoard view too. Returns the folder."""
    run_dir = Path(run_dir)
    m = read_metrics(run_dir / "metrics.json")
    folder = tensorboard_dir(run_dir)
    for old in folder.glob("events.out.tfevents.*"):
        old.unlink()
    run = Run(run_id=m.get("run_id", run_dir.name), path=run_dir, params=m.get("params") or {}, metrics=m)
    tb = _TensorBoard(run)
    try:
        for row in m.get("epochs", []):
            tb.epoch(int(row["epoch"]), epoch_scalars(row))
        if isinstance(m.get("final"), dict):
            f = m["final"]
            tb.final(int(f.get("epochs") or len(m.get("epochs", []))), _final_values(f))
    finally:
        tb.close()
    return folder


def ensure_tensorboard(run_dir: str | Path) -> bool:
    """Give a finished run TensorBoard events when it has none (:func:`write_tensorboard`); True when written now."""
    if any(tensorboard_dir(run_dir).glob("events.out.tfevents.*")):
        return False
    write_tensorboard(run_dir)
    return True
