#!/usr/bin/env bash
# Set up a fresh machine and run the main job: notebooks 01 -> 04 on the embedded default dataset.
# Executed notebooks: results/notebooks/; the training run: results/runs/demo/.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
. .venv/bin/activate
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
python -m tsamlib notebooks "$@"
