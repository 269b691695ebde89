"""What produced a result: package versions, git commit, Python, platform and device."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from typing import Any

from .fileio import repo_root

__all__ = ["PACKAGES", "environment_info", "git"]

PACKAGES = ("torch", "torchvision", "timm", "fastai", "fastcore", "numpy", "librosa", "decord", "av", "pandas",
            "papermill", "accelerate")


def git(*args: str) -> str | None:
    """Output of ``git <args>`` in the repository, or None when git or the repository is missing."""
    try:
        out = subprocess.run(["git", *args], cwd=repo_root(), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def environment_info() -> dict[str, Any]:
    """Package versions, git commit (and whether the tree had changes), Python, platform, device."""
    import torch

    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    status = git("status", "--porcelain", "--untracked-files=no")
    return dict(git_commit=git("rev-parse", "HEAD"), git_dirty=bool(status) if status is not None else None,
                python=sys.version.split()[0], platform=platform.platform(), packages=versions,
                device=torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                torch_threads=torch.get_num_threads(), cpu_count=os.cpu_count())
