"""check_manifest (every problem listed before a run starts) and probe workers that die with `index`."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import psutil
import pytest
from conftest import REPO_ROOT, make_video

from tsamlib.data import manifest as m
from tsamlib.data import workers


def rows(n_classes: int = 6, per_class: int = 3, **extra) -> list[dict]:
    """A clean manifest's rows: per class two train clips and one valid clip (paths need not exist)."""
    out = []
    for c in range(n_classes):
        for i in range(per_class):
            out.append(dict(path=f"/data/{c}/{i}.mp4", label=c, label_name=f"class{c}",
                            split="valid" if i == per_class - 1 else "train", n_frames=12, fps=12.0,
                            duration=1.0, has_audio=True, problem="", **extra))
    return out


def write(tmp_path, records, name="manifest.csv"):
    df = pd.DataFrame(records, columns=m.COLUMNS)
    return m.write_manifest(df, tmp_path / name)


def problems_of(manifest, **options) -> str:
    with pytest.raises(m.ManifestError) as info:
        m.check_manifest(manifest, **options)
    assert isinstance(info.value, ValueError)
    return str(info.value)


def test_clean_manifest_passes_with_counts(tmp_path):
    recs = rows()
    recs[0]["problem"] = "missing file"  # excluded, not an error
    recs.append(dict(path="/data/t.mp4", label=-1, label_name="", split="test", n_frames=5, fps=5.0, duration=1.0,
                     has_audio=False, problem=""))  # -1 = unknown label: fine in the test split
    csv = write(tmp_path, recs)
    got = m.check_manifest(csv)
    assert got["manifest"] == str(csv) and got["n_rows"] == 19
    assert got["rows"] == {"train": 11, "valid": 6, "test": 1}
    assert got["n_classes"] == 6 and got["classes"] == [f"class{c}" for c in range(6)]
    assert got["n_excluded"] == 1 and got["excluded_reasons"] == {"missing file": 1}
    assert got["excluded"] == [dict(path="/data/0/0.mp4", split="train", problem="missing file")]
    # a DataFrame with only the columns the loaders need is accepted too
    df = pd.DataFrame(rows(2))[["path", "label", "split"]]
    got = m.check_manifest(df)
    assert got["n_classes"] == 2 and got["classes"] == ["0", "1"] and got["rows"]["train"] == 4


def test_label_9_with_6_classes(tmp_path):
    recs = rows(6)
    recs.append(dict(rows(1)[0], path="/data/x.mp4", label=9, label_name="class9"))
    text = problems_of(write(tmp_path, recs))
    assert str(tmp_path / "manifest.csv") in text
    assert "label 9 (1 row) is outside 0..6 for the 7 classes found (unused labels: 6, 7, 8)" in text
    assert "10-class head" in text and "Number the classes 0..6" in text


def test_a_huge_label_is_named_in_rows_memory(tmp_path):
    """Label 10**12: named with its row count and the few first unused labels, never a range of 10**12."""
    recs = rows(2)
    recs.append(dict(rows(1)[0], path="/data/x.mp4", label=10**12, label_name="huge"))
    text = problems_of(write(tmp_path, recs))   # a set of 10**12 labels took 22 GB before the OOM killer
    assert ("label 1000000000000 (1 row) is outside 0..2 for the 3 classes found (unused labels: 2, 3, 4, 5, 6, "
            "... (999999999998 in all)); the model would get a 1000000000001-class head") in text


def test_negative_label(tmp_path):
    recs = rows()
    recs[1]["label"] = -1
    text = problems_of(write(tmp_path, recs))
    assert "negative label in 1 row (line 3: -1 (split 'train'))" in text and "test split only" in text


def test_duplicate_rows(tmp_path):
    recs = rows()
    recs += [dict(recs[0]), dict(recs[0]), dict(recs[4])]
    recs.append(dict(recs[0], split="valid"))  # same clip in another split: not a duplicate row
    text = problems_of(write(tmp_path, recs))
    assert "3 duplicate rows (same path and split more than once; 2 clips)" in text
    assert "/data/0/0.mp4 (train, 3x)" in text and "/data/1/1.mp4 (train, 2x)" in text and "drop_duplicates" in text


def test_unknown_split_training(tmp_path):
    recs = rows()
    for r in recs:
        if r["split"] == "train":
            r["split"] = "training"
    text = problems_of(write(tmp_path, recs))
    assert "split 'training' (12 rows): accepted are train, valid, test; did you mean 'train'?" in text
    assert "no usable train rows: no row has split 'train'" in text and "2 problems" in text


def test_empty_manifest(tmp_path):
    csv = write(tmp_path, [])
    assert csv.read_text().strip() == ",".join(m.COLUMNS)
    text = problems_of(csv)
    assert "has 1 problem:" in text and "the manifest has no rows" in text and "python -m tsamlib index" in text


def test_missing_columns(tmp_path):
    csv = tmp_path / "partial.csv"
    csv.write_text("path,label\na.mp4,0\nb.mp4,1\n")
    text = problems_of(csv)
    assert "partial.csv" in text
    assert "columns ['label_name', 'split', 'n_frames', 'fps', 'duration', 'has_audio', 'problem'] are missing" in text
    text = problems_of(pd.DataFrame(dict(path=["a.mp4"], label_name=["x"])))
    assert "columns ['label', 'split'] are missing" in text and "(DataFrame)" in text


def test_all_valid_rows_have_problems(tmp_path):
    recs = rows()
    for r in recs:
        if r["split"] == "valid":
            r["problem"] = "cannot open: Invalid data"
    text = problems_of(write(tmp_path, recs))
    assert "no usable valid rows: all 6 have a problem ('cannot open' x6)" in text
    assert "has 1 problem:" in text and "no usable train" not in text


def test_labels_and_names_must_agree_and_be_integers(tmp_path):
    recs = rows(3)
    recs[0]["label_name"] = "kitten"  # label 0 with two names
    recs[4]["label_name"] = "class2"  # class2 with labels 1 and 2
    recs[8]["label"] = 1.5
    text = problems_of(pd.DataFrame(recs))
    assert "label 0 has 2 names: 'class0' (2 rows), 'kitten' (1 row)" in text
    assert "class name 'class2' has 2 labels: 1 (1 row), 2 (2 rows)" in text
    assert "label is not a whole number in 1 row (row 8: 1.5)" in text


def test_every_problem_is_listed(tmp_path):
    recs = rows()
    recs[0]["label"] = -3
    recs[1]["split"] = "validation"
    recs.append(dict(recs[2]))
    text = problems_of(write(tmp_path, recs))
    assert "has 3 problems:" in text and "  1. " in text and "  3. " in text
    assert "negative label" in text and "did you mean 'valid'?" in text and "duplicate row" in text


# ------------------------------------------------------------------------- probe workers die with index
def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def test_worker_pool_ends_workers_on_exception():
    with pytest.raises(KeyboardInterrupt):
        with workers.worker_pool(2) as ex:
            futures = [ex.submit(time.sleep, 30) for _ in range(4)]
            kids = psutil.Process().children()
            assert len(kids) == 2
            raise KeyboardInterrupt
    assert all(f.cancelled() or f.done() for f in futures)
    deadline = time.time() + 5
    while _alive(kids) and time.time() < deadline:
        time.sleep(0.05)
    assert not _alive(kids)


@pytest.fixture(scope="module")
def many_videos(tmp_path_factory):
    """A class-folder dataset of 3000 tiny identical clips: probing with 2 workers takes well over the time the
    test needs to signal it, even when a loaded machine delays the test itself (1500 once finished first)."""
    root = tmp_path_factory.mktemp("many") / "root"
    src = make_video(root.parent / "src.mp4", n_frames=2, size=(16, 16), audio=False)
    for c in ("a", "b", "c", "d"):
        (root / c).mkdir(parents=True)
        for i in range(750):
            shutil.copyfile(src, root / c / f"{c}{i}.mp4")
    return root


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_index_leaves_no_probe_workers(many_videos, tmp_path, sig):
    out = tmp_path / "m.csv"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "tsamlib", "index", "folder", str(many_videos), "--out", str(out),
                             "--workers", "2"], cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,  # Ctrl-C as from a terminal, even when the suite runs
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # under `cmd &`
    try:
        parent = psutil.Process(proc.pid)
        deadline = time.time() + 60  # generous: a loaded 2-core machine takes long to import tsamlib
        kids: list[psutil.Process] = []
        while time.time() < deadline and proc.poll() is None:
            kids = parent.children(recursive=True)
            if len(kids) >= 2:
                break
            time.sleep(0.02)
        assert len(kids) >= 2, "the probe workers never started"
        time.sleep(0.3)  # probing under way
        assert proc.poll() is None, "index finished before the signal: the test needs more files"
        proc.send_signal(sig)
        assert proc.wait(timeout=30) != 0
        deadline = time.time() + 15
        while _alive(kids) and time.time() < deadline:
            time.sleep(0.05)
        assert not _alive(kids), f"probe workers outlived `index` after {sig.name}"
        assert not out.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in _alive(locals().get("kids") or []):
            p.kill()


def test_has_audio_maybe_is_refused_naming_the_row(tmp_path):
    recs = rows(2)
    recs[1]["has_audio"] = "maybe"
    csv = tmp_path / "hand_written.csv"   # as a person or another tool writes it (write_manifest types the column)
    pd.DataFrame(recs, columns=m.COLUMNS).to_csv(csv, index=False)
    text = problems_of(csv)
    assert "has_audio is neither true nor false in 1 row (line 3: 'maybe')" in text


def test_a_single_training_class_is_refused_naming_the_count(tmp_path):
    """Every row one label trained to top-1 1.0: a classifier needs 2 classes in the usable train rows."""
    text = problems_of(write(tmp_path, rows(1)))
    assert "has 1 problem:" in text
    assert "the usable train rows hold 1 class (label 0 'class0', 2 rows): training needs at least 2 classes" in text
    recs = rows(2)
    for r in recs:
        if r["label"] == 1 and r["split"] == "train":
            r["problem"] = "missing file"   # class 1 is left in valid only: training still sees one class
    assert "the usable train rows hold 1 class (label 0 'class0', 2 rows)" in problems_of(write(tmp_path, recs))
    assert m.check_manifest(write(tmp_path, rows(1)), required_splits=("valid",))["n_classes"] == 1  # not training


def test_files_missing_on_disk_are_refused_when_all_are_gone_else_counted(tmp_path):
    """check_files: a split whose files are all gone is refused, naming the count and the first ones; some gone are
    counted and kept (the loaders replace them in training, leave them out in validation)."""
    recs = rows(2)   # /data/...: none of these files exists
    csv = write(tmp_path, recs)
    assert m.check_manifest(csv)["missing"] == {}   # not asked: the disk is not looked at
    text = problems_of(csv, check_files=True)
    assert "has 2 problems:" in text
    assert ("no usable train rows on disk: all 4 files are missing (/data/0/0.mp4, /data/0/1.mp4, /data/1/0.mp4, ... "
            "(4 in all)): restore them") in text
    assert "no usable valid rows on disk: all 2 files are missing (/data/0/2.mp4, /data/1/2.mp4)" in text
    for r in recs[1:]:   # all but /data/0/0.mp4 (train) on disk
        r["path"] = str(tmp_path / "clips" / r["path"].lstrip("/"))
        os.makedirs(os.path.dirname(r["path"]), exist_ok=True)
        open(r["path"], "wb").close()
    got = m.check_manifest(write(tmp_path, recs), check_files=True)
    assert got["missing"] == {"train": 1} and got["missing_examples"] == ["/data/0/0.mp4"]
    assert got["rows"] == {"train": 4, "valid": 2, "test": 0}   # kept: the loaders handle them
