"""predict --stream: a video fed frame by frame to a causal run; with rate "auto" the last step is
the offline prediction of one clip; a line per frame on the command line; one-line errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from fake_runs import finished_run

from tsamlib.__main__ import main
from tsamlib.config import RunConfig
from tsamlib.evaluation.predict import predict
from tsamlib.evaluation.released import example_clips_manifest
from tsamlib.evaluation.stream import stream_times, stream_video
from tsamlib.evaluation.views import run_vocab


@pytest.fixture(scope="module")
def runs(kinetics_clips, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stream")
    manifest = example_clips_manifest(tmp / "manifest.csv", kinetics_clips)
    causal = dict(shift_depth=2, f_div=4, n_insert=2, shift_direction="causal")
    return dict(rgb=finished_run(tmp / "runs", manifest, run_id="rgb", **causal),
                av=finished_run(tmp / "runs", manifest, run_id="av", audio=True, **causal),
                bi=finished_run(tmp / "runs", manifest, run_id="bi", shift_depth=2, f_div=4),
                manifest=manifest, videos=sorted((kinetics_clips / "videos").glob("*.mp4")))


def test_the_stream_ends_on_the_offline_prediction(runs):
    video = runs["videos"][0]
    steps = list(stream_video(runs["rgb"], video, k=3))
    assert len(steps) == 8 and [s.frame for s in steps] == sorted(s.frame for s in steps)
    assert all(b.time > a.time for a, b in zip(steps, steps[1:]))
    vocab = run_vocab(RunConfig(dataset=str(runs["manifest"])))
    offline = dict(predict(runs["rgb"], video, k=len(vocab), n_clips=1, verbose=False))
    final = dict(zip(vocab, steps[-1].probs.tolist()))
    assert max(abs(final[name] - p) for name, p in offline.items()) < 1e-5
    assert len(steps[0].top) == min(3, len(vocab)) and abs(float(steps[0].probs.sum()) - 1) < 1e-5


def test_audio_window_and_rates(runs):
    video = runs["videos"][1]
    steps = list(stream_video(runs["av"], video, rate=2.0, audio_window=3.0))
    assert len(steps) >= 2 and all(torch.isfinite(s.probs).all() for s in steps)
    assert np.array_equal(stream_times(10, 5.0, 4, rate=2.5), [0, 2, 4, 6, 8])
    assert np.array_equal(stream_times(10, 5.0, 4, rate="native"), np.arange(10))
    assert np.array_equal(stream_times(10, 5.0, 4), [1, 3, 6, 8])            # the segments' middle frames
    for bad in (-1, 0, 6.0, "fast"):   # above the video's 5 fps: the same frames again
        with pytest.raises(ValueError, match="at most the video's own 5"):
            stream_times(10, 5.0, 4, rate=bad)


def test_cli_stream_lines_and_errors(runs, capsys):
    assert main(["predict", str(runs["videos"][0]), "--run", str(runs["rgb"]), "--stream", "--top", "2"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert "stream: rate auto" in out[0] and len(out) == 1 + 8 and all(" s  frame " in line for line in out[1:])
    assert main(["predict", str(runs["videos"][0]), "--run", str(runs["bi"]), "--stream"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs a causal model" in err[0]
    with pytest.raises(SystemExit) as e:
        main(["predict", str(runs["videos"][0]), "--run", str(runs["rgb"]), "--stream", "--rate", "0"])
    assert e.value.code == 2


def test_cli_stream_refuses_an_audio_window_without_audio_and_says_when_few_frames_are_fed(runs, capsys):
    """--audio-window on a run without audio was accepted and ignored; a rate that feeds fewer frames than the
    run's n_frames is said in one line between the header and the timeline."""
    video = str(runs["videos"][0])
    assert main(["predict", video, "--run", str(runs["rgb"]), "--stream", "--audio-window", "5"]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == ["error: --audio-window does not apply to run rgb: it has no audio "
                                                 "(audio=False): drop it"] and captured.out == ""
    assert main(["predict", video, "--run", str(runs["rgb"]), "--stream", "--rate", "0.5"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert "stream: rate 0.5, audio window 10.0 s" in out[0]
    fed = len(out) - 2
    assert 0 < fed < 8 and out[1].startswith(f"note: rate 0.5 feeds {fed} of the ") and (
        "fewer than the run's n_frames=8: raise the rate (--rate), or use 'auto'" in out[1])
    assert all(" s  frame " in line for line in out[2:])
