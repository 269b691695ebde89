"""A finished run folder with random weights, made in milliseconds: what export, predict and stream read."""
from __future__ import annotations

from pathlib import Path

import torch

from tsamlib.config import RunConfig
from tsamlib.evaluation.views import run_vocab
from tsamlib.model.tsam import create_tsam, tsam_kwargs
from tsamlib.runs.checkpoints import save_checkpoint
from tsamlib.runs.folder import start_run


def finished_run(root: Path, manifest: Path, run_id: str | None = None, seed: int = 1, **settings) -> Path:
    """``root/<run_id>``: params of a small resnet18 run over ``manifest`` (``settings`` on top), random weights
    (``seed``) as ``checkpoints/model.pth``, marked finished."""
    base = dict(arch="resnet18", img_size=32, resize=36, n_mels=32, n_frames=8, epochs=1)
    cfg = RunConfig(dataset=str(manifest), runs_root=str(root), **{**base, **settings},
                    run_id=run_id or "-".join(f"{k}{v}" for k, v in sorted(settings.items())) or "r")
    run = start_run(cfg.run_id, cfg.settings(), runs_root=root)
    torch.manual_seed(seed)
    model = create_tsam(cfg.arch, num_classes=len(run_vocab(cfg)), pretrained=None, **tsam_kwargs(cfg.model_kwargs()))
    run.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model.state_dict(), run.checkpoint_dir / "model.pth")
    run.finish({"top1": 0.0})
    run.close()
    return run.path
