"""The one checked loader of .pth files: every bad file named with what it holds, code never unpickled, and no
message that suggests loading a file with ``weights_only=False``."""
import json
import os
import pickle

import pytest
import torch

from tsamlib.__main__ import main
from tsamlib.runs.loader import CheckpointError, safe_load


class Evil:
    """A pickle that runs code when loaded without weights_only: it would create the file ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _files(tmp_path):
    marker = tmp_path / "the-code-ran"
    files = {"empty": b"", "text": b"model weights, honest\nsecond line\n", "garbage": b"\x80\x02\xff\xfe" * 20}
    for name, data in files.items():
        (tmp_path / f"{name}.pth").write_bytes(data)
    torch.save({"model": Evil(marker)}, tmp_path / "evil.pth")
    (tmp_path / "evil_plain.pth").write_bytes(pickle.dumps(Evil(marker), protocol=2))
    torch.save({"w": torch.ones(3)}, tmp_path / "good.pth")
    good = (tmp_path / "good.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(good[: len(good) // 2])
    torch.save({"w": torch.zeros(100_000)}, tmp_path / "big.pth")
    (tmp_path / "cut_zip.pth").write_bytes((tmp_path / "big.pth").read_bytes()[:10_000])   # its index cut off
    os.mkfifo(tmp_path / "fifo.pth")   # reading it would block forever
    return marker


@pytest.mark.parametrize("name, holds", [
    ("empty", r"is empty \(0 bytes\)"), ("text", r"holds text, not a checkpoint \(it starts 'model weights, honest'\)"),
    ("garbage", "holds bytes that are not a PyTorch checkpoint"), ("truncated", "is truncated or corrupt"),
    ("evil", r"holds a pickle that needs posix.mkdir: objects, not only weights, so it was not unpickled"),
    ("evil_plain", r"holds a pickle that needs posix.mkdir"), ("missing", "does not exist"),
    ("cut_zip", r"\(10000 bytes\) is truncated or corrupt"), ("fifo", "is not a regular file")])
def test_every_bad_file_is_named_and_never_unpickled(tmp_path, name, holds):
    marker = _files(tmp_path)
    with pytest.raises(CheckpointError, match=holds) as e:
        safe_load(tmp_path / f"{name}.pth", hint="train the run again")
    msg = str(e.value)
    assert msg.startswith(str(tmp_path / f"{name}.pth")) and msg.endswith("; train the run again")
    assert "weights_only=False" not in msg and e.value.__cause__ is None
    assert isinstance(e.value, ValueError) and isinstance(e.value, RuntimeError)
    assert not marker.exists()
    assert safe_load(tmp_path / "good.pth")["w"].sum() == 3


@pytest.mark.parametrize("file", ["empty", "text", "evil"])
def test_predict_and_evaluate_on_a_bad_model_file_end_in_one_line(tmp_path, capsys, file):
    (tmp_path / "files").mkdir()
    marker = _files(tmp_path / "files")
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")   # never read: the weights fail first
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,label_name,split,n_frames,fps,duration,has_audio,problem\n"
                        f"{clip},0,a,train,8,8.0,1.0,False,\n{clip},1,b,valid,8,8.0,1.0,False,\n")
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "params.json").write_text(json.dumps(dict(dataset=str(manifest), arch="resnet10t", n_frames=4)))
    (run / "metrics.json").write_text(json.dumps(dict(finished=True, epochs=[], final={})))
    (run / "checkpoints" / "model.pth").write_bytes((tmp_path / "files" / f"{file}.pth").read_bytes())
    for argv in (["predict", str(clip), "--run", str(run)], ["evaluate", str(run)]):
        assert main(argv) != 0
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "model.pth" in err and "\n" not in err, err
        assert "weights_only=False" not in err and "Traceback" not in err
    assert not marker.exists()
