"""The temporal shift op: exact semantics, TSM equivalence, adjoint backward, validation."""
import pytest
import torch

from tsamlib.shift import TemporalShift, check_shift, insert_temporal_shift, temporal_shift


def tsm_reference(x, fold_div=8):
    """TSM's bidirectional shift written from its paper: 1/8 of channels from t+1, 1/8 from t-1."""
    out = torch.zeros_like(x)
    fold = x.shape[2] // fold_div
    out[:, :-1, :fold] = x[:, 1:, :fold]
    out[:, 1:, fold:2 * fold] = x[:, :-1, fold:2 * fold]
    out[:, :, 2 * fold:] = x[:, :, 2 * fold:]
    return out


def loop_reference(x, k, f_div, n_shifted):
    """Element by element, straight from the definition in the issue."""
    B, T, C, H, W = x.shape
    f = (C // f_div) // k
    out = x.clone()
    for t in range(n_shifted):
        for c in range(2 * k * f):
            d, direction = c // (2 * f) + 1, (c // f) % 2  # direction 0: from t+d, 1: from t-d
            src = t + d if direction == 0 else t - d
            out[:, t, c] = x[:, src, c] if 0 <= src < n_shifted else 0
    return out


def test_k1_is_tsm():
    x = torch.randn(2, 8, 64, 3, 3)
    assert torch.equal(temporal_shift(x, 1, 8), tsm_reference(x))


@pytest.mark.parametrize("k,f_div,T,n_shifted", [(1, 4, 8, 8), (2, 4, 8, 8), (3, 8, 16, 16), (4, 4, 9, 8),
                                                  (5, 4, 17, 16), (2, 2, 5, 4)])
def test_matches_definition(k, f_div, T, n_shifted):
    x = torch.randn(2, T, 96, 2, 3)
    assert torch.equal(temporal_shift(x, k, f_div, n_shifted), loop_reference(x, k, f_div, n_shifted))


def test_k4_groups_by_hand():
    # C=32, f_div=4, k=4 -> f=2: channels 0-1 from t+1, 2-3 from t-1, 4-5 from t+2, ..., 14-15 from t-4, 16+ stay
    T = 8
    x = torch.arange(T, dtype=torch.float).view(1, T, 1, 1, 1).expand(1, T, 32, 1, 1).contiguous()
    y = temporal_shift(x, 4, 4)[0, :, :, 0, 0]  # value = source segment index
    t = 4
    assert y[t, 0].item() == 5 and y[t, 2].item() == 3 and y[t, 4].item() == 6 and y[t, 14].item() == 0
    assert y[t, 12].item() == 0 and y[3, 12].item() == 7
    assert torch.equal(y[:, 16:], x[0, :, 16:, 0, 0])


def test_audio_segment_untouched_and_isolated():
    x = torch.randn(3, 9, 64, 2, 2)
    y = temporal_shift(x, 2, 4, n_shifted=8)
    assert torch.equal(y[:, 8], x[:, 8])
    # the audio segment never feeds the video segments: changing it changes nothing in 0..7
    x2 = x.clone()
    x2[:, 8] += 100
    assert torch.equal(temporal_shift(x2, 2, 4, n_shifted=8)[:, :8], y[:, :8])


def test_depth_zero_is_identity():
    x = torch.randn(1, 4, 16, 2, 2)
    assert temporal_shift(x, 0, 8) is x


@pytest.mark.parametrize("k", [1, 3])
def test_gradcheck(k):
    x = torch.randn(2, 5, 24, 2, 2, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: temporal_shift(t, k, 4, n_shifted=4), (x,))


def test_backward_is_adjoint():
    x, g = torch.randn(2, 8, 48, 3, 3), torch.randn(2, 8, 48, 3, 3)
    x.requires_grad_(True)
    y = temporal_shift(x, 3, 4)
    (y * g).sum().backward()
    # <S x, g> == <x, S^T g>
    assert torch.allclose((y * g).sum(), (x * x.grad).sum(), atol=1e-4)


def test_channels_last_input():
    x = torch.randn(8, 64, 5, 5).to(memory_format=torch.channels_last)
    x5 = x.view(2, 4, 64, 5, 5)
    assert torch.equal(temporal_shift(x5, 2, 4), temporal_shift(x5.contiguous(), 2, 4))


@pytest.mark.parametrize("kwargs,match", [
    (dict(channels=64, n_shifted=8, shift_depth=8, f_div=4), "shift_depth=8"),
    (dict(channels=8, n_shifted=8, shift_depth=4, f_div=4), "too few"),
    (dict(channels=64, n_shifted=8, shift_depth=-1, f_div=4), "negative"),
    (dict(channels=64, n_shifted=8, shift_depth=1, f_div=1), "f_div"),
])
def test_invalid_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        check_shift(**kwargs)


def test_invalid_input_shape():
    with pytest.raises(ValueError, match="B, T, C, H, W"):
        temporal_shift(torch.randn(4, 16, 2, 2), 1, 8)


def test_module_and_insertion_on_resnet():
    import timm
    net = timm.create_model("resnet18", num_classes=0)
    assert insert_temporal_shift(net, 5, 4, 2, 4, n_insert=2, m_insert=1) == 4  # blocks 1 of each stage (2 each)
    assert isinstance(net.layer2[1].conv1, TemporalShift) and not isinstance(net.layer2[0].conv1, TemporalShift)
    with pytest.raises(ValueError, match="multiple of n_segments"):
        net.layer1[1].conv1(torch.randn(3, 64, 4, 4))
    with pytest.raises(ValueError, match="m_insert"):
        insert_temporal_shift(timm.create_model("resnet18", num_classes=0), 4, 4, 1, 8, n_insert=2, m_insert=2)


def test_module_shifts_before_conv():
    conv = torch.nn.Conv2d(16, 4, 1, bias=False)
    mod = TemporalShift(conv, n_segments=4, n_shifted=4, shift_depth=1, f_div=8)
    x = torch.randn(8, 16, 3, 3)
    expected = conv(tsm_reference(x.view(2, 4, 16, 3, 3)).view(8, 16, 3, 3))
    assert torch.allclose(mod(x), expected)
