"""Experiment tracking: a run with ``log="tensorboard"`` writes event files that hold exactly ``metrics.json``'s
per-epoch numbers (read back with TensorBoard's own reader); W&B offline and MLflow's local store when installed;
unknown or missing trackers refused before anything trains."""
import importlib.util
import json

import numpy as np
import pytest

from tsamlib.config import RunConfig, log_targets

SMALL = dict(n_classes=2, n_per_class=4, seconds=1.0, size=(40, 48), fps=8)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    from tsamlib.data.synthetic import make_synthetic_dataset
    return make_synthetic_dataset(tmp_path_factory.mktemp("track") / "d", kind="default", workers=1, **SMALL) \
        / "manifest.csv"


def _cfg(tmp_path, manifest, **settings):
    return RunConfig(dataset=str(manifest), runs_root=str(tmp_path / "runs"), arch="resnet10t", n_frames=4,
                     img_size=32, resize=36, n_mels=32, audio=True, epochs=2, batch_size=4, **settings)


def _scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}, acc


def _expected(metrics):
    out = {}
    for row in metrics["epochs"]:
        for k, v in row.items():
            if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool):
                out.setdefault(k, []).append((row["epoch"], float(np.float32(v))))
    return out


def test_log_names_trackers_and_is_bookkeeping():
    assert log_targets("tensorboard, mlflow,tensorboard") == ("tensorboard", "mlflow")
    assert log_targets(None) == log_targets("") == ()
    with pytest.raises(ValueError, match=r"log='tb': 'tb' is not a tracker; choose from \['tensorboard'"):
        RunConfig(log="tb")
    assert "log" not in RunConfig(log="tensorboard").settings()   # how a run is watched is not what it is


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="tensorboard is not installed")
def test_tensorboard_events_equal_metrics_json(tmp_path, manifest):
    import tsamlib
    from tsamlib.training import write_tensorboard

    run = tsamlib.train(_cfg(tmp_path, manifest, run_id="tb", log="tensorboard"))
    m = json.loads((run.path / "metrics.json").read_text())
    assert m["log"] == ["tensorboard"] and len(m["epochs"]) == 2
    scalars, acc = _scalars(run.path / "tensorboard")
    expected = _expected(m)
    assert {"train_loss", "valid_loss", "top1", "top5", "lr", "train_clips_per_s"} <= set(expected)
    for tag, points in expected.items():
        assert scalars[tag] == points, tag                  # every epoch, exactly (float32, as TensorBoard keeps)
    assert scalars["final/top1"] == [(2, float(np.float32(m["final"]["top1"])))]
    assert "settings" in acc.Tags()["tensors"] or "settings/text_summary" in acc.Tags()["tensors"]

    # a run trained without log gets the same events afterwards, from its metrics.json
    plain = tsamlib.train(_cfg(tmp_path, manifest, run_id="plain"))
    assert not (plain.path / "tensorboard").exists()
    folder = write_tensorboard(plain.path)
    again = write_tensorboard(plain.path)                   # rewritten, not appended
    assert folder == again and len(list(folder.glob("events.out.tfevents.*"))) == 1
    pm = json.loads((plain.path / "metrics.json").read_text())
    scalars, _ = _scalars(folder)
    assert all(scalars[tag] == points for tag, points in _expected(pm).items())


def test_a_tracker_that_is_not_installed_is_refused_before_training(tmp_path, manifest, monkeypatch):
    import builtins

    import tsamlib
    real_import = builtins.__import__

    def no_wandb(name, *args, **kwargs):
        if name == "wandb" or name.startswith("wandb."):
            raise ImportError(f"No module named {name!r}", name="wandb")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    with pytest.raises(ModuleNotFoundError, match=r"log='wandb' needs the wandb package \(wandb is not installed\): "
                                                  r"pip install wandb, or drop 'wandb' from log"):
        tsamlib.train(_cfg(tmp_path, manifest, run_id="nowandb", log="wandb"))
    m = json.loads((tmp_path / "runs" / "nowandb" / "metrics.json").read_text())
    assert m["epochs"] == [] and not m.get("finished")     # refused before the first epoch


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None or importlib.util.find_spec("sqlalchemy") is None,
                    reason="mlflow (with its SQLite store) is not installed (optional)")
def test_mlflow_local_store_holds_the_epochs(tmp_path, manifest):
    import tsamlib
    from mlflow.tracking import MlflowClient

    from tsamlib.training.tracking import mlflow_uri

    run = tsamlib.train(_cfg(tmp_path, manifest, run_id="ml", log="mlflow"))
    m = json.loads((run.path / "metrics.json").read_text())
    client = MlflowClient(tracking_uri=mlflow_uri(tmp_path / "runs"))
    (found,) = client.search_runs([client.get_experiment_by_name("tsamlib").experiment_id])
    assert found.info.run_name == "ml" and found.data.params["shift_depth"] == "1"
    history = [(h.step, h.value) for h in client.get_metric_history(found.info.run_id, "top1")]
    assert history == [(r["epoch"], r["top1"]) for r in m["epochs"]]


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb is not installed (optional)")
def test_wandb_offline_run_in_the_run_folder(tmp_path, manifest, monkeypatch):
    import tsamlib
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tsamlib.train(_cfg(tmp_path, manifest, run_id="wb", log="wandb"))
    offline = list((run.path / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and list(offline[0].glob("*.wandb"))   # the run's records, to `wandb sync` later
