"""predict --stream of a live source: an MPEG-TS stream written into a named pipe (or stdin) by a child process with
PyAV is followed as it arrives and gives the lines that streaming the same stream's file gives; a writer that stops
without closing is said to have stalled (one line, exit code 1); a source that ends early is said; the queue drops
its oldest frame when full and counts it."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from fake_runs import finished_run

from tsamlib.__main__ import main
from tsamlib.config import RunConfig
from tsamlib.evaluation.released import example_clips_manifest
from tsamlib.evaluation.stream import LatestFrames, is_live_source, live_rate, stream_live, stream_video

# the child: N frames, 25 fps, MPEG-2 in MPEG-TS (no B-frames: deterministic, no encoder delay), each packet flushed
# at once; then "close" ends the stream, "stall" waits without closing, "cut" exits without the stream's end
WRITER = textwrap.dedent("""
    import os, sys, time, av, numpy as np
    out, n, end = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    c = av.open(sys.stdout.buffer if out == "-" else out, "w", format="mpegts", options={"flush_packets": "1"})
    s = c.add_stream("mpeg2video", rate=25)
    s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
    for i in range(n):
        a = np.zeros((48, 64, 3), np.uint8)
        a[:, (i * 3) % 64] = 255
        a[..., 1] = i * 5 % 256
        for p in s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
            c.mux(p)
    if end == "cut":
        sys.stdout.flush()
        os._exit(0)
    if end == "stall":
        sys.stdout.flush()
        time.sleep(120)
    for p in s.encode():
        c.mux(p)
    c.close()
""")


def writer(out, n: int, end: str = "close", **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(out), str(n), end], **kw)


@pytest.fixture(scope="module")
def runs(kinetics_clips, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("live")
    manifest = example_clips_manifest(tmp / "manifest.csv", kinetics_clips)
    causal = dict(shift_depth=2, f_div=4, n_insert=2, shift_direction="causal", video_backend="pyav")
    ts = tmp / "stream.ts"
    assert writer(ts, 50).wait() == 0   # the same stream as a finished file
    return dict(rgb=finished_run(tmp / "runs", manifest, run_id="rgb", **causal),
                av=finished_run(tmp / "runs", manifest, run_id="av", audio=True, **causal), ts=ts, manifest=manifest)


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "live.ts"
    os.mkfifo(path)
    return path


def test_a_pipe_is_followed_and_gives_the_files_steps(runs, fifo, capsys):
    """Frames chosen from their timestamps as they arrive are the ones stream_video picks from the count: the same
    frames, times and probabilities, the same printed lines; the end of the source is said with the counts."""
    assert is_live_source(fifo) and is_live_source("-") and is_live_source("rtsp://cam/1")
    assert not is_live_source(runs["ts"]) and not is_live_source(runs["ts"].parent)
    child = writer(fifo, 50)
    live = stream_live(runs["rgb"], fifo, rate=5.0)
    steps = list(live)
    assert child.wait(timeout=60) == 0
    offline = list(stream_video(runs["rgb"], runs["ts"], rate=5.0))
    assert [s.frame for s in steps] == [s.frame for s in offline] == list(range(0, 50, 5))
    assert max(abs(a.time - b.time) for a, b in zip(steps, offline)) < 1e-9
    assert max(float((a.probs - b.probs).abs().max()) for a, b in zip(steps, offline)) < 1e-5
    assert live.ended and (live.read, live.fed, live.dropped) == (50, 10, 0)
    assert main(["predict", str(runs["ts"]), "--run", str(runs["rgb"]), "--stream", "--rate", "5"]) == 0
    file_lines = capsys.readouterr().out.strip().splitlines()[1:]
    child = writer(fifo, 50)
    assert main(["predict", str(fifo), "--run", str(runs["rgb"]), "--stream", "--rate", "5"]) == 0
    assert child.wait(timeout=60) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert "live stream: 5 fps, stall timeout 10 s, queue of 32 frames, the oldest dropped" in out[0]
    assert out[1:-1] == file_lines and len(file_lines) == 10
    assert out[-1] == "end of source: 50 frames read (2.00 s), 10 fed to the model, 0 dropped"


def test_a_stalled_writer_is_said_in_one_line_and_the_process_exits(runs):
    """stdin from a writer that stops writing without closing: the frames that came are streamed, then one error
    line within the stall timeout, exit code 1, no Traceback (the reader thread, blocked on the pipe, does not keep
    the process alive)."""
    child = writer("-", 10, "stall", stdout=subprocess.PIPE)
    try:
        done = subprocess.run([sys.executable, "-m", "tsamlib", "predict", "-", "--run", str(runs["rgb"]), "--stream",
                               "--rate", "native", "--stall-timeout", "1"], stdin=child.stdout, capture_output=True,
                              text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    finally:
        child.kill()
        child.wait()
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith("error: -: no frame for 1 s: the source stalled (") and (
        "raise --stall-timeout" in done.stderr)
    lines = done.stdout.strip().splitlines()
    assert "live stream: every frame" in lines[0] and 1 <= len(lines) - 1 <= 10   # the frames that came
    assert all(" s  frame " in line for line in lines[1:])


@pytest.mark.parametrize("end", ["close", "cut"])
def test_a_source_that_ends_early_is_said(runs, fifo, capsys, end):
    """One second of frames at 2 fps, closed or cut off (no end of stream): the steps that came, then the end with
    its counts and that the model saw fewer frames than the run's n_frames."""
    child = writer(fifo, 25, end)   # 1 s: fewer (a tiny TS stream cannot even be probed)
    assert main(["predict", str(fifo), "--run", str(runs["rgb"]), "--stream", "--rate", "2"]) == 0
    child.wait(timeout=60)
    out = capsys.readouterr().out.strip().splitlines()
    read = "25 frames read (1.00 s)" if end == "close" else "24 frames read (0.96 s)"   # cut: the last one unsent
    assert len(out) == 1 + 2 + 1 and out[-1] == (
        f"end of source: {read}, 2 fed to the model, 0 dropped; fewer frames than the run's "
        "n_frames=8: the last step saw less than a training clip")


def test_refusals_audio_other_modes_and_errors(runs, fifo, tmp_path, capsys):
    """A run with audio is refused before the source is opened; the live options are refused outside --stream or for
    a finished file; a clip prediction of a live source says --stream; a source that is no video is one line."""
    assert main(["predict", str(fifo), "--run", str(runs["av"]), "--stream"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: run av has audio (audio=True): a live source is streamed without its sound; save the "
                   "stream to a file and stream that, or use a run without audio."]
    assert main(["predict", str(runs["ts"]), "--run", str(runs["rgb"]), "--live"]) == 2
    assert "--live does not apply to a clip prediction" in capsys.readouterr().err
    assert main(["predict", str(runs["ts"]), "--run", str(runs["rgb"]), "--stream", "--stall-timeout", "3"]) == 2
    assert "--stall-timeout does not apply to the finished file" in capsys.readouterr().err
    assert main(["predict", "-", "--run", str(runs["rgb"])]) == 2
    assert capsys.readouterr().err.strip() == "error: - is a live source (a pipe, URL or device): add --stream"
    junk = tmp_path / "junk.ts"
    junk.write_bytes(b"not a video at all" * 100)
    assert main(["predict", str(junk), "--run", str(runs["rgb"]), "--stream", "--live", "--stall-timeout", "2"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {junk}: ") and "Traceback" not in err[0]


def test_the_queue_drops_its_oldest_frame_and_counts_it():
    q = LatestFrames(2)
    for i in range(5):
        q.put(i)
    assert q.dropped == 3 and [q.get(1.0), q.get(1.0)] == [3, 4]
    q.touch()
    with pytest.raises(TimeoutError):
        q.get(0.01)
    with pytest.raises(ValueError, match="queue_size=0"):
        LatestFrames(0)


def test_the_auto_rate_is_the_training_spacing(runs):
    rate, seconds = live_rate(RunConfig(dataset=str(runs["manifest"]), n_frames=8))
    assert seconds == pytest.approx(10.0, abs=0.5) and rate == pytest.approx(8 / seconds)
