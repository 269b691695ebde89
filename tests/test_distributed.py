"""Data-parallel training through fastai's distrib_ctx: a 2-process CPU run (gloo) of a smoke configuration."""
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_two_process_cpu_run(tmp_path):
    if not (ROOT / "data" / "default" / "manifest.csv").is_file():
        from tsamlib.synthetic import make_synthetic_dataset
        make_synthetic_dataset(ROOT / "data" / "default", kind="default")
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun not found beside the Python interpreter")
    params = dict(n_frames=4, arch="resnet10t", img_size=32, resize=36, epochs=1, batch_size=4, run_id="ddp",
                  runs_root=str(tmp_path / "runs"))
    (tmp_path / "p.json").write_text(json.dumps(params))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", str(port), "-m", "tsamlib.distributed",
                          str(tmp_path / "p.json")], cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "runs" / "ddp"
    assert json.loads((run / "params.json").read_text())["world_size"] == 2
    m = json.loads((run / "metrics.json").read_text())
    assert m["finished"] and 0 <= m["final"]["top1"] <= 1
    n_train = sum(1 for line in (ROOT / "data" / "default" / "manifest.csv").read_text().splitlines()
                  if ",train," in line)
    # each process trains on its half of every epoch
    assert m["epochs"][0]["train_clips"] == pytest.approx(n_train / 2, abs=4)
    assert list((tmp_path / "runs").iterdir()) == [run]  # rank 1 wrote nothing here
