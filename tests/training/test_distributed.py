"""Data-parallel training keeps the recipe: ``batch_size`` is the global batch, split among the processes.

A 2-process CPU run (gloo) against a 1-process run of the same settings, and the same 2 processes as two "nodes"
(two torchrun launchers meeting through c10d rendezvous on 127.0.0.1) against one node; the global-batch loader
alone, with the broadcast replaced by the identity (no process group needed); the launches that are refused."""
import json
import os
import random
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fastai.data.load import DataLoader

from tsamlib.__main__ import main
from tsamlib.config import RunConfig
from tsamlib.training.distributed import GlobalBatchDL, launch_record, per_process_batch

ROOT = Path(__file__).resolve().parents[2]


def _loader(n: int, bs: int, seed: int = 0) -> DataLoader:
    """The training loader shape of tsamlib.data.video_dataloaders over clips 0..n-1."""
    dl = DataLoader(list(range(n)), bs=bs, shuffle=True, drop_last=n >= bs)
    dl.rng = random.Random(seed)
    return dl


def _rank_batches(n: int, global_bs: int, world: int, rank: int) -> list[list[int]]:
    dl = GlobalBatchDL(_loader(n, global_bs // world), rank=rank, world_size=world)
    dl._broadcast = lambda t, r: t   # every rank computes rank 0's order here: the same seed
    batches = [b.tolist() for b in dl]
    assert len(batches) == len(dl)
    return batches


@pytest.mark.parametrize("n, global_bs, world", [(103, 8, 2), (103, 8, 4), (96, 8, 2), (64, 64, 8)])
def test_global_batch_i_is_the_single_process_batch_i(n, global_bs, world):
    single = [b.tolist() for b in _loader(n, global_bs)]
    per_rank = [_rank_batches(n, global_bs, world, r) for r in range(world)]
    assert all(len(b) == len(single) == n // global_bs for b in per_rank)   # same optimizer steps per epoch
    for i, batch in enumerate(single):
        pieces = [per_rank[r][i] for r in range(world)]
        assert all(len(p) == global_bs // world for p in pieces)
        assert sum(pieces, []) == batch          # rank r holds clips r*bs..(r+1)*bs-1 of the global batch


def test_a_training_set_smaller_than_the_global_batch_trains_one_padded_step():
    single = [b.tolist() for b in _loader(5, 8)]   # one process: one step of all 5 clips
    assert len(single) == 1 and sorted(single[0]) == list(range(5))
    r0, r1 = (_rank_batches(5, 8, 2, r) for r in (0, 1))
    assert len(r0) == len(r1) == 1 and len(r0[0]) == len(r1[0]) == 3   # 5 padded to 6, 3 each
    assert r0[0] + r1[0][:2] == single[0] and r1[0][2] == single[0][0]  # the repeat is the batch's first clip


def test_launches_that_would_change_the_recipe_are_refused():
    assert per_process_batch(64, 8) == 8
    with pytest.raises(ValueError, match=r"batch_size=64 .* 3 processes.*batch_size=63 or 66"):
        per_process_batch(64, 3)
    rec = launch_record(RunConfig(batch_size=8), world_size=2, cuda=False)
    assert rec == dict(world_size=2, nodes=1, processes_per_node=2, per_process_batch_size=4, batchnorm="per_process",
                       device="cpu", precision="fp32", channels_last=False)
    assert launch_record(RunConfig(batch_size=16), 16, cuda=False, per_node=8)["nodes"] == 2   # LOCAL_WORLD_SIZE 8
    assert launch_record(RunConfig(batch_size=8, sync_bn=True), 2, cuda=True)["batchnorm"] == "sync"
    assert launch_record(RunConfig(batch_size=8, sync_bn=True), 0, cuda=False)["batchnorm"] == "per_process"
    assert launch_record(RunConfig(batch_size=8, sync_bn=True), 0, cuda=False)["world_size"] == 1   # nothing to sync
    with pytest.raises(ValueError, match="sync_bn=True needs CUDA"):
        launch_record(RunConfig(sync_bn=True), 2, cuda=False)


def test_cli_refuses_a_bad_launch_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "3")   # what torchrun/accelerate set: fastai's num_distrib reads it
    monkeypatch.setenv("RANK", "0")
    p = tmp_path / "p.json"
    p.write_text(json.dumps(dict(batch_size=8, runs_root=str(tmp_path / "runs"))))
    assert main(["train", "--config", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: batch_size=8 is the global batch") and "3 processes" in err
    assert main(["train", "--config", str(p), "--sync-bn", "--batch-size", "9"]) == 2   # flags win over the file
    assert "sync_bn=True needs CUDA" in capsys.readouterr().err
    p.write_text("{not json")
    assert main(["train", "--config", str(p)]) == 2 and f"error: {p}: " in capsys.readouterr().err
    p.write_text("[1, 2]")
    assert main(["train", "--config", str(p)]) == 2 and "not an object" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()   # nothing written


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun() -> str:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun not found beside the Python interpreter")
    return torchrun


def _launch(tmp_path: Path, params: dict, nproc: int, nodes: int = 1) -> dict:
    """Train ``params`` in ``nproc`` processes on each of ``nodes`` launchers (one plain process for 1 x 1)."""
    p = tmp_path / f"{params['run_id']}.json"
    p.write_text(json.dumps(params))
    train = ["-m", "tsamlib", "train", "--config", str(p)]
    if nproc == nodes == 1:   # a plain process: no launcher, no process group
        cmds = [[sys.executable, *train]]
    elif nodes == 1:
        cmds = [[_torchrun(), "--nproc_per_node", str(nproc), "--master_port", str(_free_port()), *train]]
    else:   # one launcher per "node", meeting as a multi-node job would, through c10d rendezvous
        rdzv = ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{_free_port()}", "--rdzv-id",
                params["run_id"]]
        cmds = [[_torchrun(), "--nnodes", str(nodes), "--nproc_per_node", str(nproc), *rdzv, *train]] * nodes
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=dict(os.environ, OMP_NUM_THREADS="1")) for cmd in cmds]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    run = Path(params["runs_root"]) / params["run_id"]
    return dict(params=json.loads((run / "params.json").read_text()),
                metrics=json.loads((run / "metrics.json").read_text()),
                weights=torch.load(run / "checkpoints" / "model.pth", weights_only=True))


def test_two_processes_train_the_steps_of_one(tmp_path):
    if not (ROOT / "data" / "default" / "manifest.csv").is_file():
        from tsamlib.data.synthetic import make_synthetic_dataset
        make_synthetic_dataset(ROOT / "data" / "default", kind="default")
    base = dict(n_frames=4, arch="resnet10t", img_size=32, resize=36, epochs=1, batch_size=8,
                runs_root=str(tmp_path / "runs"))
    two = _launch(tmp_path, {**base, "run_id": "ddp"}, nproc=2)
    one = _launch(tmp_path, {**base, "run_id": "single"}, nproc=1)
    nodes = _launch(tmp_path, {**base, "run_id": "nodes"}, nproc=1, nodes=2)
    launch = two["metrics"]["launch"]
    assert launch["world_size"] == 2 and launch["batchnorm"] == "per_process"
    assert (launch["nodes"], launch["processes_per_node"]) == (1, 2)
    assert {**nodes["metrics"]["launch"], "nodes": 1, "processes_per_node": 2} == launch
    assert (nodes["metrics"]["launch"]["nodes"], nodes["metrics"]["launch"]["processes_per_node"]) == (2, 1)
    # two nodes of one process train exactly what one node of two does: the same steps, the same weights
    steps = [[r["train_steps"] for r in m["metrics"]["epochs"]] for m in (nodes, two)]
    assert steps[0] == steps[1]
    assert nodes["weights"].keys() == two["weights"].keys()
    for k, w in two["weights"].items():
        assert torch.allclose(nodes["weights"][k].float(), w.float(), rtol=1e-5, atol=1e-6), k
    assert two["params"]["batch_size"] == 2 * launch["per_process_batch_size"] == 8   # global = 2 x each
    assert one["metrics"]["launch"] == dict(world_size=1, nodes=1, processes_per_node=1, per_process_batch_size=8,
                                            batchnorm="per_process", device="cpu", precision="fp32",
                                            channels_last=False)
    assert two["params"] == one["params"]   # the same settings: the launch is recorded apart, in metrics.json
    e2, e1 = two["metrics"]["epochs"][0], one["metrics"]["epochs"][0]
    n_train = sum(1 for line in (ROOT / "data" / "default" / "manifest.csv").read_text().splitlines()
                  if ",train," in line)
    assert e1["train_steps"] == n_train // 8 > 1
    assert e2["train_steps"] == e1["train_steps"] and e2["train_clips"] == e1["train_clips"] == n_train // 8 * 8
    assert e2["lr"] == pytest.approx(e1["lr"])   # the same schedule, at the same point
    assert two["metrics"]["finished"] and 0 <= two["metrics"]["final"]["top1"] <= 1
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["ddp", "nodes", "single"]   # rank 1: nothing
