#!/usr/bin/env bash
# Create .venv (if missing) and install tsamlib with its dev extras. Idempotent; used by run.sh and .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch/torchvision are pinned exactly (pyproject.toml); pip takes them from a local wheel cache when one is set up
python -m pip install -q -e ".[dev]"
python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (tsam)" >/dev/null
python -c "import torch, torchvision, fastai, timm, decord, av, librosa; print('tsam env ok: torch', torch.__version__)"
