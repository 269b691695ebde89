#!/usr/bin/env bash
# Create .venv (if missing) and install tsamlib with its dev extras; used by run.sh and .ci/run.
# Idempotent and quick on reruns: when .venv already holds this checkout's tsamlib and the packages that
# pyproject.toml asked for at its last install (a stamp of its hash), nothing is installed again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.tsam-installed
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && python - <<'PY' 2>/dev/null
import pathlib, tsamlib
assert pathlib.Path(tsamlib.__file__).resolve().parents[1] == pathlib.Path.cwd().resolve()
PY
then
  # the notebooks' kernel launches a module of this checkout: reinstall its spec when it names another one
  python - <<'PY' 2>/dev/null || python -m tsamlib.cli.kernel install >/dev/null
import json, pathlib, sys
spec = json.loads((pathlib.Path(sys.prefix) / "share/jupyter/kernels/python3/kernel.json").read_text())
assert spec["argv"][:3] == [sys.executable, "-m", "tsamlib.cli.kernel"]
PY
  echo "tsam env ready (.venv, installed for this pyproject.toml): nothing to install"
  exit 0
fi
start=$SECONDS
step() { echo "[$1/4 $(( SECONDS - start )) s] $2"; }
step 1 "pip itself, in .venv"
python -m pip install -q --upgrade pip
# torch/torchvision are pinned exactly (pyproject.toml); pip takes them from a local wheel cache when one is set up
step 2 "tsamlib and its pinned dependencies: torch 2.14.1, torchvision 0.29.1, fastai, timm, PyAV (decord where it has wheels), librosa,
       papermill, JupyterLab, pytest (a few minutes on a fresh machine; pip's own lines follow only on errors)"
python -m pip install -q -e ".[dev]"
step 3 "the Jupyter kernel the notebooks run on"
python -m tsamlib.cli.kernel install >/dev/null
step 4 "checking that everything imports"
python -c "import torch, torchvision, fastai, timm, av, librosa; print('tsam env ok: torch', torch.__version__)"
echo "installed in $(( SECONDS - start )) s"
echo "$want" > "$stamp"
