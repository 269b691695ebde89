"""A write that cannot land is never reported as written: a device, pipe or folder where a file should go is
refused before any work, a full disk names the file, and neither leaves a half file or a temporary one."""
import errno
import json
import os
import stat
from pathlib import Path

import pytest

from tsamlib.__main__ import main
from tsamlib.runs import fileio
from tsamlib.runs.fileio import NotWritableError, atomic_path, atomic_write_json, writable_file

DEV_FULL = Path("/dev/full")
needs_dev_full = pytest.mark.skipif(not DEV_FULL.exists(), reason="no /dev/full on this system")


@needs_dev_full
def test_a_device_is_refused_and_left_a_device():
    with pytest.raises(NotWritableError, match="cannot write /dev/full: it is a device, not a regular file"):
        atomic_write_json(DEV_FULL, {"a": 1})
    assert stat.S_ISCHR(os.stat(DEV_FULL).st_mode)          # not replaced by a regular file
    assert not list(Path("/dev").glob(".full.*.tmp*"))


def test_folders_and_pipes_are_refused_before_anything_is_written(tmp_path):
    (tmp_path / "dir.json").mkdir()
    os.mkfifo(tmp_path / "pipe.json")
    for name, kind in (("dir.json", "a folder"), ("pipe.json", "a pipe")):
        with pytest.raises(NotWritableError, match=f"it is {kind}, not a regular file; write it elsewhere"):
            with atomic_path(tmp_path / name):
                raise AssertionError("the body must not run")
    assert writable_file(tmp_path / "new.json") == tmp_path / "new.json"


def test_a_full_disk_names_the_file_and_keeps_the_previous_one(tmp_path):
    target = tmp_path / "record.json"
    atomic_write_json(target, {"old": True})
    with pytest.raises(NotWritableError, match=r"cannot write .*record.json: No space left on device; free some "
                                               r"space or write it elsewhere; nothing was written"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_a_file_that_did_not_land_whole_is_an_error(tmp_path, monkeypatch):
    real = os.replace

    def short_replace(src, dst):   # a file system that loses the tail of the file on the rename
        real(src, dst)
        Path(dst).write_bytes(Path(dst).read_bytes()[:3])

    monkeypatch.setattr(fileio.os, "replace", short_replace)
    with pytest.raises(OSError, match=r"holds 3 bytes after the write of \d+"):
        atomic_write_json(tmp_path / "r.json", {"key": "value"})


@needs_dev_full
def test_cli_writers_say_the_device_in_one_line(tmp_path, capsys):
    from conftest import make_video
    make_video(tmp_path / "videos" / "a" / "x.mp4")
    make_video(tmp_path / "videos" / "b" / "y.mp4", seed=1)
    assert main(["index", "folder", str(tmp_path / "videos"), "--out", "/dev/full"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "error: cannot write /dev/full: it is a device, not a regular file; write it elsewhere"
    assert stat.S_ISCHR(os.stat(DEV_FULL).st_mode)
