"""The repository's own training loop timed per batch (``setup_training`` + ``fit``) and ``accelerate launch`` of
``python -m tsamlib train``, both over a small synthetic dataset."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from .settings import REPO
from .timing import shift_kernel_env

__all__ = ["TRAIN_NEEDS", "missing_modules", "synthetic_manifest", "run_settings", "batch_clock", "bench_train_loop",
           "run_accelerate"]


TRAIN_NEEDS = ("fastai", "av", "decord", "librosa")


def missing_modules(*names: str) -> list[str]:
    """Those of ``names`` that cannot be imported here."""
    return [n for n in names if importlib.util.find_spec(n) is None]


def synthetic_manifest(cfg: dict, tmp: Path, workers: int) -> Path:
    """A small synthetic dataset (:func:`tsamlib.data.synthetic.make_synthetic_dataset`, 64 px clips with sound) with
    enough training clips for ``warmup + steps`` steps at the largest clip count; its manifest."""
    from tsamlib.data.synthetic import make_synthetic_dataset
    n_train = max(cfg["clips"]) * (cfg["train_warmup"] + cfg["train_steps"])
    n_classes, valid = 6, 0.2
    per_class = math.ceil(n_train / (1 - valid) / n_classes) + 1
    root = make_synthetic_dataset(tmp / "synthetic", kind="default", n_per_class=per_class, n_classes=n_classes,
                                  seconds=1.5, workers=workers, valid_fraction=valid)
    return root / "manifest.csv"


def run_settings(cfg: dict, manifest: Path, clips: int, workers: int, runs_root: Path, run_id: str) -> dict:
    """The RunConfig settings of TSAM at ``cfg``'s sizes over the synthetic manifest, one epoch (paper recipe)."""
    return dict(dataset=str(manifest), arch=cfg["arch"], n_frames=cfg["frames"], audio=True, shift_depth=cfg["k"],
                f_div=4, n_insert=2, m_insert=0, img_size=cfg["img"], resize=cfg["resize"], batch_size=clips,
                epochs=1, recipe="paper", lr=0.01, num_workers=workers, seed=0, run_id=run_id,
                runs_root=str(runs_root))


def batch_clock():
    """A fastai callback whose ``ticks`` are the time the first epoch's training began and the time after each training
    batch (the GPU synchronised). Validation passes (fastai calls ``before_fit`` for them too) add nothing."""
    from fastai.callback.core import Callback

    class BatchClock(Callback):
        order = 100

        def __init__(self):
            self.ticks: list[float] = []

        def before_train(self):
            if not self.ticks:
                self.ticks.append(time.perf_counter())

        def after_batch(self):
            if self.training:
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                self.ticks.append(time.perf_counter())

    return BatchClock()


def bench_train_loop(cfg: dict, device: str, manifest: Path, workers: int, tmp: Path, bare: dict) -> list[dict]:
    """``tsamlib.training.setup_training`` + ``Training.fit`` (the loop of ``python -m tsamlib train``) for one epoch
    of TSAM at each clip count: the time of each training batch (synchronised), its median after the first
    ``train_warmup`` batches, against the bare eager step of ``tsam`` at the same clip count (``bare``: clips -> ms)."""
    from tsamlib.config import RunConfig
    from tsamlib.training.run import setup_training

    rows = []
    for clips in cfg["clips"]:
        cfg_run = RunConfig(**run_settings(cfg, manifest, clips, workers, tmp / "runs", f"loop-{clips}"))
        t0 = time.perf_counter()
        with shift_kernel_env(None):
            training = setup_training(cfg_run, progress_bars=False)
            setup_s = time.perf_counter() - t0
            cb = batch_clock()
            training.learn.add_cb(cb)
            try:
                t1 = time.perf_counter()
                run = training.fit()
                fit_s = time.perf_counter() - t1
            finally:
                training.run.close()
        gaps = [b - a for a, b in zip(cb.ticks, cb.ticks[1:])]
        timed = gaps[cfg["train_warmup"]:]
        ms = statistics.median(timed) * 1e3 if timed else None
        epoch = (run.metrics.get("epochs") or [{}])[0]
        row = dict(clips=clips, batches=len(gaps), timed_batches=len(timed), ms_per_step=None if ms is None
                   else round(ms, 2), clips_per_s=None if ms is None else round(clips / ms * 1e3, 1),
                   first_batch_s=round(gaps[0], 2) if gaps else None, setup_s=round(setup_s, 1),
                   fit_s=round(fit_s, 1), precision=training.learn.precision, launch=run.metrics.get("launch"),
                   finished=run.metrics.get("finished"), train_steps=epoch.get("train_steps"))
        if ms is not None and bare.get(clips):
            row["bare_ms_per_step"] = bare[clips]
            row["vs_bare_step"] = round(ms / bare[clips], 3)
        rows.append(row)
        print(f"training loop {clips} clips: {row['ms_per_step']} ms/step over {len(timed)} batches "
              f"(bare step {bare.get(clips)} ms)", flush=True)
    return rows


def run_accelerate(cfg: dict, manifest: Path, workers: int, tmp: Path, device: str) -> dict:
    """``accelerate launch --num_processes 1 -m tsamlib train --config params.json``, one epoch over the synthetic
    manifest at the largest clip count (``--cpu`` without CUDA)."""
    exe = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    if exe is None:
        return dict(skipped="accelerate is not installed here")
    clips = max(cfg["clips"])
    params = run_settings(cfg, manifest, clips, workers, tmp / "runs", "accelerate")
    (tmp / "accelerate.json").write_text(json.dumps(params))
    cmd = [exe, "launch", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "-m", "tsamlib", "train", "--config", str(tmp / "accelerate.json")]
    if not device.startswith("cuda"):
        cmd.insert(2, "--cpu")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    env.pop("TSAM_SHIFT_KERNEL", None)
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO, env=env)
    res = dict(command=" ".join(["accelerate"] + cmd[1:-1] + ["params.json"]), clips=clips, returncode=out.returncode,
               wall_s=round(time.perf_counter() - t, 1))
    metrics = tmp / "runs" / "accelerate" / "metrics.json"
    if metrics.is_file():
        m = json.loads(metrics.read_text())
        epoch = (m.get("epochs") or [{}])[0]
        res.update(finished=m.get("finished"), launch=m.get("launch"), train_steps=epoch.get("train_steps"),
                   train_clips_per_s=round(epoch["train_clips_per_s"], 1) if epoch.get("train_clips_per_s") else None,
                   epoch_wall_s=round(epoch["wall_s"], 1) if epoch.get("wall_s") else None)
    if out.returncode:
        res["stderr_tail"] = out.stderr[-1500:]
    return res
