"""Online TSAM: a causal model run frame by frame equals the offline causal model: the features
of step t are the offline ones of segment t, the logits after T steps the offline logits on those T frames (and
audio image), within 1e-5; the state stays bounded; a bidirectional model is refused."""
from __future__ import annotations

import pytest
import torch

from tsamlib.model.online import StreamingTSAM
from tsamlib.model.shift_reference import ShiftSpec
from tsamlib.model.tsam import create_tsam


def _model(n_frames, audio, k, pad, direction="causal", seed=0):
    torch.manual_seed(seed)
    m = create_tsam("resnet18", num_classes=6, n_frames=n_frames, audio=audio,
                    shift=ShiftSpec(depth=k, f_div=4, pad=pad, direction=direction), n_insert=2).eval()
    with torch.no_grad():   # BatchNorm statistics away from the identity, so a wrong buffer shows
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
    return m


@pytest.mark.parametrize("audio, k, pad", [(True, 3, "zero"), (False, 2, "keep"), (True, 1, "keep"),
                                           (False, 4, "zero")])
def test_stream_equals_the_offline_causal_model(audio, k, pad):
    T = 8
    model = _model(T, audio, k, pad)
    video = torch.randn(2, T, 3, 32, 32)                   # two streams at once
    sound = torch.randn(2, 1, 3, 32, 32) if audio else None
    with torch.no_grad():
        feats = model.features(video, sound)                # (2, T + audio, D)
        logits = model(video, sound)
    stream = StreamingTSAM(model)
    for t in range(T):
        out = stream.step(video[:, t], sound[:, 0] if audio and t == 0 else None)
        assert torch.allclose(stream.features, feats[:, t], atol=1e-5), t
        if t >= k:   # after t + 1 frames: the offline model of t + 1 frames, same weights
            prefix = _model(t + 1, audio, k, pad)
            prefix.load_state_dict(model.state_dict())
            with torch.no_grad():
                want = prefix(video[:, : t + 1], sound)
            assert torch.allclose(out, want, atol=1e-5), t
    assert torch.allclose(out, logits, atol=1e-5)
    if audio:
        assert torch.allclose(stream.audio_features, feats[:, T], atol=1e-5)


def test_state_is_bounded_and_reset_starts_afresh():
    model = _model(8, False, 3, "zero")
    stream = StreamingTSAM(model)
    frames = torch.randn(12, 1, 3, 32, 32)
    sizes = []
    for f in frames:
        stream.step(f)
        sizes.append(stream.state_bytes())
    assert sizes[2] == sizes[-1] > 0 and sizes[0] < sizes[2]       # full after k frames, then constant
    stream.reset()
    again = stream.step(frames[0])
    stream2 = StreamingTSAM(model)
    assert torch.equal(again, stream2.step(frames[0])) and stream.frames == 1


def test_a_bidirectional_model_is_refused_and_tsn_streams():
    with pytest.raises(ValueError, match="needs a causal model"):
        StreamingTSAM(_model(8, False, 2, "zero", direction="bidirectional"))
    tsn = _model(4, False, 0, "zero", direction="bidirectional")
    video = torch.randn(1, 4, 3, 32, 32)
    stream = StreamingTSAM(tsn)
    for t in range(4):
        out = stream.step(video[0, t])
    with torch.no_grad():
        assert torch.allclose(out, tsn(video), atol=1e-5)
    with pytest.raises(ValueError, match="without audio"):
        stream.step(video[0, 0], torch.zeros(3, 32, 32))


def test_a_step_that_does_not_fit_the_stream_is_named():
    stream = StreamingTSAM(_model(8, False, 2, "zero"))
    stream.step(torch.randn(2, 3, 32, 32))
    for bad, what in ((torch.randn(1, 3, 32, 32), "2 stream"), (torch.randn(2, 3, 16, 16), "32x32"),
                      (torch.randn(2, 1, 32, 32), "one image per stream"),
                      (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), "float tensor")):
        with pytest.raises(ValueError, match=what):
            stream.step(bad)
    stream.reset()
    assert stream.step(torch.randn(1, 3, 16, 16)).shape == (1, 6)   # a new stream may differ
