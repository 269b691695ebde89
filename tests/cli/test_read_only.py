"""Output folders one cannot write: every command names the folder, says why and what to change,
exits 2 (1 for evaluate, like its other errors), prints no Traceback and writes nothing.

Permissions do not bind root, so as root the commands run as user ``nobody`` (``setpriv``); the test is skipped
where neither works."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tsamlib.data.synthetic import make_synthetic_dataset
from tsamlib.runs.fileio import NotWritableError, naming_unwritable, repo_root, writable_folder

ROOT = repo_root()


def _unprivileged(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: permissions cannot be tested")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]


@pytest.fixture(scope="module")
def read_only():
    """``<tmp>/ro``, a folder nobody may write, in a temporary folder anyone may read."""
    top = Path(tempfile.mkdtemp(prefix="tsam-ro-"))
    os.chmod(top, 0o777)
    ro = top / "ro"
    ro.mkdir()
    os.chmod(ro, 0o555)
    env = dict(os.environ, HOME=str(top), MPLCONFIGDIR=str(top), OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    probe = subprocess.run(_unprivileged([sys.executable, "-c", "import tsamlib"]), env=env, capture_output=True,
                           cwd=ROOT)
    if probe.returncode != 0:
        pytest.skip(f"the repository cannot be read by an unprivileged user: {probe.stderr.decode()[-200:]}")
    yield ro, env
    os.chmod(ro, 0o755)
    shutil.rmtree(top, ignore_errors=True)


def _manifest() -> Path:
    manifest = ROOT / "data" / "default" / "manifest.csv"
    if not manifest.is_file():
        make_synthetic_dataset(manifest.parent, kind="default")
    return manifest


@pytest.mark.parametrize("command, fix", [
    (["synth", "--kind", "default", "--out", "{ro}/ds"], "choose another output folder (synth --out)"),
    (["prepare", "{manifest}", "--out", "{ro}/prepared"], "choose another output folder (prepare --out)"),
    (["train", "--dataset", "{manifest}", "--epochs", "1", "--runs-root", "{ro}/runs"], "set runs_root"),
    (["index", "folder", "{root}", "--out", "{ro}/m.csv"], "index --out"),
])
def test_a_folder_one_cannot_write_is_named_with_the_fix(read_only, command, fix):
    ro, env = read_only
    args = [a.format(ro=ro, manifest=_manifest(), root=ROOT / "data" / "default") for a in command]
    got = subprocess.run(_unprivileged([sys.executable, "-m", "tsamlib", *args]), env=env, capture_output=True,
                         text=True, cwd=ROOT, timeout=300)
    err = got.stderr.strip().splitlines()
    assert got.returncode == 2, got.stderr[-2000:]
    assert "Traceback" not in got.stderr and err[-1].startswith("error: cannot write ") and str(ro) in err[-1]
    assert "permission denied" in err[-1] and fix in err[-1], err[-1]
    assert list(ro.iterdir()) == []                                      # nothing written


def test_writable_folder_passes_other_errors_and_names_the_folder(tmp_path):
    assert writable_folder(tmp_path / "a" / "b", "fix").is_dir() and not list((tmp_path / "a" / "b").iterdir())
    with pytest.raises(NotWritableError, match=r"cannot write .*x: the file system is read-only; choose"):
        with naming_unwritable("choose another", tmp_path / "x"):
            raise OSError(30, "Read-only file system", str(tmp_path / "x" / "f"))
    with pytest.raises(FileExistsError):                                # not a permission problem: unchanged
        with naming_unwritable("choose another"):
            raise FileExistsError(17, "File exists", "f")
