"""The temporal shift op: exact semantics of both borders, TSM equivalence, adjoint backward, validation."""
import pytest
import torch

from tsamlib.model.shift import TemporalShift, insert_temporal_shift, shifted_conv2d, temporal_shift
from tsamlib.model.shift_reference import SHIFT_PADS, ShiftLayout, ShiftSpec


def tsm_reference(x, fold_div=8):
    """TSM's bidirectional shift written from its paper: 1/8 of channels from t+1, 1/8 from t-1."""
    out = torch.zeros_like(x)
    fold = x.shape[2] // fold_div
    out[:, :-1, :fold] = x[:, 1:, :fold]
    out[:, 1:, fold:2 * fold] = x[:, :-1, fold:2 * fold]
    out[:, :, 2 * fold:] = x[:, :, 2 * fold:]
    return out


def loop_reference(x, k, f_div, n_shifted, pad="zero"):
    """Element by element, straight from the definition (shift_reference's docstring). At the border (a source outside
    [0, n_shifted)): zero, or ("keep", as the authors' code) the element's own value."""
    B, T, C, H, W = x.shape
    f = (C // f_div) // k
    out = x.clone()
    for t in range(n_shifted):
        for c in range(2 * k * f):
            d, direction = c // (2 * f) + 1, (c // f) % 2  # direction 0: from t+d, 1: from t-d
            src = t + d if direction == 0 else t - d
            if 0 <= src < n_shifted:
                out[:, t, c] = x[:, src, c]
            else:
                out[:, t, c] = 0 if pad == "zero" else x[:, t, c]
    return out


def slice_reference(x, k, f_div, n_shifted, pad):
    """The same with whole-segment slices and plain autograd: a copy of the input (or zeros for the shifted
    channels), then one slice copy per group. Its autograd gradient is the reference for our backward."""
    f = (x.shape[2] // f_div) // k
    n = n_shifted
    out = x.clone()
    if pad == "zero":
        out[:, :n, : 2 * k * f] = 0
    for d in range(1, k + 1):
        a, b, c = (2 * d - 2) * f, (2 * d - 1) * f, 2 * d * f
        out[:, : n - d, a:b] = x[:, d:n, a:b]
        out[:, d:n, b:c] = x[:, : n - d, b:c]
    return out


def test_k1_is_tsm():
    x = torch.randn(2, 8, 64, 3, 3)
    assert torch.equal(temporal_shift(x, 1, 8), tsm_reference(x))


@pytest.mark.parametrize("pad", SHIFT_PADS)
@pytest.mark.parametrize("k,f_div,T,n_shifted,C", [(1, 4, 8, 8, 96), (2, 4, 8, 8, 45), (3, 8, 16, 16, 99),
                                                    (4, 4, 9, 8, 77), (5, 4, 17, 16, 83), (2, 2, 5, 4, 31),
                                                    (5, 2, 7, 6, 61), (3, 3, 4, 4, 19)])
def test_matches_definition(k, f_div, T, n_shifted, C, pad):
    x = torch.randn(2, T, C, 2, 3)
    y = temporal_shift(x, k, f_div, n_shifted, shift_pad=pad)
    assert torch.equal(y, loop_reference(x, k, f_div, n_shifted, pad))
    assert torch.equal(y, slice_reference(x, k, f_div, n_shifted, pad))


def test_keep_differs_from_zero_only_at_the_border():
    # C=32, f_div=4, k=2 -> f=4: groups [0,4) from t+1, [4,8) from t-1, [8,12) from t+2, [12,16) from t-2
    x = torch.randn(1, 7, 32, 1, 1) + 10  # no zeros in x: every zero of "zero" is a border element
    zero, keep = temporal_shift(x, 2, 4, 6, "zero"), temporal_shift(x, 2, 4, 6, "keep")
    border = torch.zeros(7, 32, dtype=torch.bool)
    border[5, 0:4] = border[0, 4:8] = True
    border[4:6, 8:12] = border[0:2, 12:16] = True
    differs = (zero != keep)[0, :, :, 0, 0]
    assert torch.equal(differs, border)
    assert torch.equal(keep[0][border], x[0][border]) and (zero[0][border] == 0).all()
    assert torch.equal(keep[:, 6], x[:, 6]) and torch.equal(zero[:, 6], x[:, 6])  # the audio segment


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


@pytest.mark.parametrize("pad", SHIFT_PADS)
@pytest.mark.parametrize("k,T,n_shifted", [(1, 5, 4), (3, 5, 4), (2, 4, 4), (4, 7, 7)])
def test_gradcheck(k, T, n_shifted, pad):
    # k >= n_shifted / 2 makes the kept borders of the two directions overlap (segments with both gradients)
    x = torch.randn(2, T, 25, 2, 2, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: temporal_shift(t, k, 2, n_shifted=n_shifted, shift_pad=pad), (x,))


@pytest.mark.parametrize("pad", SHIFT_PADS)
@pytest.mark.parametrize("k,T,n_shifted", [(3, 8, 8), (5, 9, 8), (2, 3, 3)])
def test_backward_is_adjoint(k, T, n_shifted, pad):
    x, g = torch.randn(2, T, 63, 3, 3, dtype=torch.double), torch.randn(2, T, 63, 3, 3, dtype=torch.double)
    x.requires_grad_(True)
    y = temporal_shift(x, k, 3, n_shifted, pad)
    (y * g).sum().backward()
    # <S x, g> == <x, S^T g>, and S^T g is exactly what autograd gives through the slice reference
    assert torch.allclose((y * g).sum(), (x * x.grad).sum())
    x_ref = x.detach().clone().requires_grad_(True)
    (slice_reference(x_ref, k, 3, n_shifted, pad) * g).sum().backward()
    assert torch.equal(x.grad, x_ref.grad)


def test_channels_last_input():
    x = torch.randn(8, 64, 5, 5).to(memory_format=torch.channels_last)
    x5 = x.view(2, 4, 64, 5, 5)
    assert torch.equal(temporal_shift(x5, 2, 4), temporal_shift(x5.contiguous(), 2, 4))


@pytest.mark.parametrize("kwargs,match", [
    (dict(channels=64, n_shifted=8, depth=8, f_div=4), "shift_depth=8"),
    (dict(channels=8, n_shifted=8, depth=4, f_div=4), "too few"),
    (dict(channels=64, n_shifted=8, depth=-1, f_div=4), "negative"),
    (dict(channels=64, n_shifted=8, depth=1, f_div=1), "f_div"),
])
def test_invalid_settings(kwargs, match):
    channels = kwargs.pop("channels")
    with pytest.raises(ValueError, match=match):
        ShiftSpec(**kwargs).fold(channels)


def test_invalid_input_shape():
    with pytest.raises(ValueError, match="B, T, C, H, W"):
        temporal_shift(torch.randn(4, 16, 2, 2), 1, 8)


def test_invalid_shift_pad():
    with pytest.raises(ValueError, match="shift_pad='reflect'"):
        temporal_shift(torch.randn(1, 4, 16, 2, 2), 1, 8, shift_pad="reflect")
    with pytest.raises(ValueError, match="'zero'"):
        TemporalShift(torch.nn.Conv2d(16, 4, 1), 4, ShiftSpec(1, 8, 4, pad="same"))


def test_module_and_insertion_on_resnet():
    import timm
    net = timm.create_model("resnet18", num_classes=0)
    assert insert_temporal_shift(net, 5, ShiftSpec(2, 4, 4), n_insert=2, m_insert=1) == 4  # blocks 1 of each stage
    assert isinstance(net.layer2[1].conv1, TemporalShift) and not isinstance(net.layer2[0].conv1, TemporalShift)
    with pytest.raises(ValueError, match="multiple of n_segments"):
        net.layer1[1].conv1(torch.randn(3, 64, 4, 4))
    with pytest.raises(ValueError, match="m_insert"):
        insert_temporal_shift(timm.create_model("resnet18", num_classes=0), 4, ShiftSpec(1, 8), n_insert=2,
                              m_insert=2)


@pytest.mark.parametrize("pad", SHIFT_PADS)
def test_module_shifts_before_conv(pad):
    conv = torch.nn.Conv2d(16, 4, 1, bias=False)
    mod = TemporalShift(conv, n_segments=5, shift=ShiftSpec(depth=2, f_div=4, n_shifted=4, pad=pad))
    x = torch.randn(10, 16, 3, 3)
    expected = conv(loop_reference(x.view(2, 5, 16, 3, 3), 2, 4, 4, pad).view(10, 16, 3, 3))
    assert torch.allclose(mod(x), expected)
    assert f"shift_pad='{pad}'" in repr(mod)


def _twin_modules(conv: torch.nn.Conv2d, pad: str, n_segments: int = 5, n_shifted: int = 4, k: int = 2):
    """The same shifted conv twice: recomputing the shifted copy in backward, and keeping it (plain autograd)."""
    import copy
    spec = ShiftSpec(k, 4, n_shifted, pad)
    return (TemporalShift(conv, n_segments, spec, recompute=True),
            TemporalShift(copy.deepcopy(conv), n_segments, spec, recompute=False))


@pytest.mark.parametrize("pad", SHIFT_PADS)
@pytest.mark.parametrize("channels_last", [False, True])
def test_recomputed_shift_gives_the_same_values_and_gradients(pad, channels_last):
    conv = torch.nn.Conv2d(16, 6, 3, stride=2, padding=1, bias=True)
    fast, plain = _twin_modules(conv, pad)
    x = torch.randn(10, 16, 7, 7)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = fast(xa), plain(xb)
    grad = torch.randn_like(ya)
    ya.backward(grad)
    yb.backward(grad)
    assert torch.equal(ya, yb) and torch.equal(xa.grad, xb.grad)
    assert torch.equal(fast.net.weight.grad, plain.net.weight.grad)
    assert torch.equal(fast.net.bias.grad, plain.net.bias.grad)
    assert ya.is_contiguous(memory_format=torch.channels_last) == channels_last


def _saved_bytes(module, x) -> int:
    """Bytes autograd keeps for backward, other than x itself (which the layers before keep anyway)."""
    total = 0

    def pack(t):
        nonlocal total
        if t.data_ptr() != x.data_ptr():
            total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(x)
    return total


def test_recomputed_shift_keeps_no_shifted_copy():
    conv = torch.nn.Conv2d(16, 8, 1, bias=False)
    fast, plain = _twin_modules(conv, "zero")
    x = torch.randn(10, 16, 9, 9, requires_grad=True)
    copy_bytes = x.numel() * x.element_size()
    weight_bytes = conv.weight.numel() * 4
    assert _saved_bytes(plain, x) == copy_bytes + weight_bytes  # the shifted copy is kept
    assert _saved_bytes(fast, x) == weight_bytes  # only the weight; x is recomputed from


def test_recomputed_shift_under_autocast():
    """Backward casts x, weight and gradient to the forward's precision again: same as plain autocast."""
    conv = torch.nn.Conv2d(16, 8, 3, padding=1, bias=False)
    fast, plain = _twin_modules(conv, "keep")
    x = torch.randn(10, 16, 5, 5)
    xs, grads = [], []
    for mod in (fast, plain):
        xi = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = mod(xi)
        assert y.dtype == torch.bfloat16
        (y.float() ** 2).sum().backward()
        xs.append(y)
        grads += [xi.grad, mod.net.weight.grad]
    assert torch.equal(xs[0], xs[1])
    assert torch.equal(grads[0], grads[2]) and grads[0].dtype == torch.float32
    assert torch.equal(grads[1], grads[3]) and grads[1].dtype == torch.float32


@pytest.mark.parametrize("pad", SHIFT_PADS)
def test_recomputed_shift_gradcheck(pad):
    conv = torch.nn.Conv2d(8, 3, 3, padding=1, bias=True).double()
    x = torch.randn(2, 5, 8, 3, 3, dtype=torch.double, requires_grad=True)

    def fn(inp, weight, bias):
        conv.weight, conv.bias = torch.nn.Parameter(weight), torch.nn.Parameter(bias)
        return shifted_conv2d(inp, conv, ShiftSpec(2, 2, 4, pad))

    w = conv.weight.detach().clone().requires_grad_()
    b = conv.bias.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda i, w_, b_: torch.nn.functional.conv2d(
        temporal_shift(i, 2, 2, 4, pad).flatten(0, 1), w_, b_, padding=1), (x, w, b))
    from tsamlib.model.shift import _ShiftedConv2dFn
    assert torch.autograd.gradcheck(lambda i, w_, b_: _ShiftedConv2dFn.apply(
        i, w_, b_, ShiftLayout(2, 1, 4, pad, "bidirectional"), "torch", ((1, 1), (1, 1), (1, 1), 1)), (x, w, b))


def test_recompute_falls_back_for_other_layers():
    """A wrapped layer that is not a plain Conv2d (here a conv in a Sequential) still works, by the plain path."""
    net = torch.nn.Sequential(torch.nn.Conv2d(16, 4, 1))
    mod = TemporalShift(net, 5, ShiftSpec(2, 4, 4))
    x = torch.randn(10, 16, 3, 3)
    assert torch.allclose(mod(x), net(loop_reference(x.view(2, 5, 16, 3, 3), 2, 4, 4).view(10, 16, 3, 3)))
    with pytest.raises(ValueError, match="plain nn.Conv2d"):
        shifted_conv2d(x.view(2, 5, 16, 3, 3), torch.nn.Conv2d(16, 4, 1, padding_mode="reflect"),
                       ShiftSpec(2, 4))


def test_an_unknown_shift_kernel_is_refused_not_ignored(monkeypatch):
    from tsamlib.model.tsam import create_tsam
    monkeypatch.setenv("TSAM_SHIFT_KERNEL", "junk")
    with pytest.raises(ValueError, match=r"TSAM_SHIFT_KERNEL='junk': choose one of \['triton', 'torch', 'autograd'\]"):
        create_tsam("resnet10t", num_classes=3, n_frames=4)
    for name in ("triton", "torch", "autograd"):
        monkeypatch.setenv("TSAM_SHIFT_KERNEL", name)
        assert create_tsam("resnet10t", num_classes=3, n_frames=4).fc.out_features == 3


# ------------------------------------------------------------------------------ the plain-autograd implementation
AUTOGRAD_CASES = [(1, 8, 9, 8, 64), (2, 4, 8, 8, 45), (3, 8, 16, 16, 99), (4, 4, 9, 8, 77), (5, 4, 17, 16, 83),
                  (2, 2, 5, 4, 31), (3, 3, 4, 4, 19), (1, 2, 3, 2, 16)]


def _autograd_function_nodes(y) -> list[str]:
    """Names of the custom ``autograd.Function`` nodes (custom ops' too) in y's backward graph."""
    seen, stack, found = set(), [y.grad_fn], []
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if isinstance(node, torch.autograd.function.BackwardCFunction):
            found.append(type(node).__name__)
        stack += [n for n, _ in node.next_functions]
    return found


@pytest.mark.parametrize("pad", SHIFT_PADS)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", AUTOGRAD_CASES, ids=lambda c: "k{}-fdiv{}-T{}-n{}-C{}".format(*c))
def test_autograd_shift_equals_the_reference_in_values_gradients_and_strides(case, dtype, channels_last, pad,
                                                                            monkeypatch):
    """``TSAM_SHIFT_KERNEL=autograd``: the shift as plain ops (split, narrow, cat), differentiated by autograd, gives
    the reference's values and gradients element for element (the "keep" border's two gradients add in one rounding,
    as the adjoint does) and keeps x's strides; its graph holds no custom Function."""
    k, f_div, T, n, C = case
    x = torch.randn(2 * T, C, 2, 3).to(dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x = x.view(2, T, C, 2, 3).requires_grad_()
    g = torch.randn(x.shape).to(dtype)
    ref = temporal_shift(x, k, f_div, n, pad)                 # CPU default: the reference (autograd.Function)
    (ref_grad,) = torch.autograd.grad(ref, x, g)
    monkeypatch.setenv("TSAM_SHIFT_KERNEL", "autograd")
    y = temporal_shift(x, k, f_div, n, pad)
    (grad,) = torch.autograd.grad(y, x, g)
    assert torch.equal(y, ref) and torch.equal(grad, ref_grad)
    assert y.stride() == x.stride() and grad.stride() == x.stride()
    assert _autograd_function_nodes(y) == [] and _autograd_function_nodes(ref) == ["_TemporalShiftFnBackward"]


@pytest.mark.parametrize("pad", SHIFT_PADS)
def test_autograd_shift_gradcheck(pad, monkeypatch):
    monkeypatch.setenv("TSAM_SHIFT_KERNEL", "autograd")
    x = torch.randn(2, 5, 25, 2, 2, dtype=torch.double, requires_grad=True)
    for k in (1, 2, 3):
        assert torch.autograd.gradcheck(lambda t: temporal_shift(t, k, 2, n_shifted=4, shift_pad=pad), (x,))


def test_autograd_kernel_in_the_module_keeps_the_shifted_copy(monkeypatch):
    """With ``TSAM_SHIFT_KERNEL=autograd`` (read when the module is moved) a recomputing TemporalShift takes the plain
    path (no custom Function to recompute in): same values and gradients as the recomputing reference, and the conv
    keeps the shifted copy."""
    conv = torch.nn.Conv2d(16, 8, 1, bias=False)
    fast, plain = _twin_modules(conv, "keep")
    x = torch.randn(10, 16, 5, 5).to(memory_format=torch.channels_last)
    xa = x.clone().requires_grad_()
    ya = fast(xa)
    ya.backward(torch.ones_like(ya))
    monkeypatch.setenv("TSAM_SHIFT_KERNEL", "autograd")
    assert fast.kernel == "torch"          # chosen when it was built, not at each call
    fast.to("cpu")
    assert fast.kernel == "autograd"       # moved: chosen again
    xb = x.clone().requires_grad_()
    fast.net.weight.grad = None
    yb = fast(xb)
    yb.backward(torch.ones_like(yb))
    assert torch.equal(ya, yb) and torch.equal(xa.grad, xb.grad)
    assert yb.is_contiguous(memory_format=torch.channels_last)
    xc = x.clone().requires_grad_()
    weight_bytes = conv.weight.numel() * 4
    assert _saved_bytes(fast, xc) == xc.numel() * 4 + weight_bytes  # the shifted copy, as recompute=False keeps
    assert torch.equal(shifted_conv2d(xc.view(2, 5, 16, 5, 5), conv, ShiftSpec(2, 4, 4, "keep")), ya)


def test_autograd_shift_compiles_to_one_graph(monkeypatch):
    """Plain ops: ``torch.compile(fullgraph=True)`` traces the shift and its backward (aot_eager: no C++ compiler)."""
    monkeypatch.setenv("TSAM_SHIFT_KERNEL", "autograd")
    x = torch.randn(2, 5, 16, 3, 3, requires_grad=True)
    torch._dynamo.reset()
    try:
        fn = torch.compile(lambda t: temporal_shift(t, 2, 4, 4, "zero"), fullgraph=True, backend="aot_eager")
        y = fn(x)
        (gx,) = torch.autograd.grad(y, x, torch.ones_like(y))
    finally:
        torch._dynamo.reset()
    monkeypatch.delenv("TSAM_SHIFT_KERNEL")
    ref = temporal_shift(x, 2, 4, 4, "zero")
    assert torch.equal(y, ref) and torch.equal(gx, torch.autograd.grad(ref, x, torch.ones_like(ref))[0])


def test_default_shift_kernel_per_device(monkeypatch):
    """Unset: the CUDA default (``DEFAULT_CUDA_SHIFT_KERNEL``, from results/benchmarks/gpu.md) on CUDA, the reference
    elsewhere; set: the variable, on every device."""
    from tsamlib.model.shift import DEFAULT_CUDA_SHIFT_KERNEL, SHIFT_KERNELS, default_shift_kernel, shift_kernel
    monkeypatch.delenv("TSAM_SHIFT_KERNEL", raising=False)
    assert DEFAULT_CUDA_SHIFT_KERNEL in SHIFT_KERNELS
    assert default_shift_kernel("cuda") == DEFAULT_CUDA_SHIFT_KERNEL and default_shift_kernel("cpu") == "torch"
    assert shift_kernel(torch.empty(0)) == "torch" and shift_kernel() == DEFAULT_CUDA_SHIFT_KERNEL
    monkeypatch.setenv("TSAM_SHIFT_KERNEL", "autograd")
    assert shift_kernel(torch.empty(0)) == shift_kernel() == "autograd"


# --------------------------------------------------------------------------------------------- the causal shift
def causal_loop_reference(x, k, f_div, n_shifted, pad="zero"):
    """``shift_direction="causal"`` element by element, from the definition: both groups of distance d,
    channels [(2d-2)f, 2df), read segment t - d; before the clip (t < d) zero or (keep) the element's own value;
    the other channels and the audio segments (>= n_shifted) untouched. Plain indexing: autograd differentiates it."""
    f = (x.shape[2] // f_div) // k
    out = x.clone()
    for t in range(n_shifted):
        for d in range(1, k + 1):
            for c in range((2 * d - 2) * f, 2 * d * f):
                if t - d >= 0:
                    out[:, t, c] = x[:, t - d, c]
                else:
                    out[:, t, c] = 0 if pad == "zero" else x[:, t, c]
    return out


CAUSAL_CASES = [(1, 8, 6, 6, 16), (2, 4, 8, 8, 45), (3, 2, 5, 4, 31), (4, 4, 9, 8, 77), (5, 2, 7, 6, 61),
                (2, 2, 3, 3, 19), (3, 3, 4, 4, 19)]   # (k, f_div, T, n_shifted, C): n_shifted < T has audio


def _causal_impls(x, k, f_div, n, pad, monkeypatch):
    """The causal shift of x by every CPU implementation: the reference Function, the plain ops, the module and
    shifted_conv2d behind an identity 1x1 conv (both recomputing and not)."""
    out = {"torch": temporal_shift(x, k, f_div, n, pad, "causal")}
    monkeypatch.setenv("TSAM_SHIFT_KERNEL", "autograd")
    out["autograd"] = temporal_shift(x, k, f_div, n, pad, "causal")
    monkeypatch.delenv("TSAM_SHIFT_KERNEL")
    t, c = x.shape[1], x.shape[2]
    conv = torch.nn.Conv2d(c, c, 1, bias=False).to(x.dtype)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(c).view(c, c, 1, 1))
    out["shifted_conv2d"] = shifted_conv2d(x, conv, ShiftSpec(k, f_div, n, pad, "causal")).view(x.shape)
    for recompute in (True, False):
        mod = TemporalShift(conv, t, ShiftSpec(k, f_div, n, pad, "causal"), recompute=recompute)
        out[f"module-recompute={recompute}"] = mod(x.flatten(0, 1)).view(x.shape)
    return out


@pytest.mark.parametrize("pad", SHIFT_PADS)
@pytest.mark.parametrize("case", CAUSAL_CASES, ids=lambda c: "k{}-fdiv{}-T{}-n{}-C{}".format(*c))
def test_causal_matches_definition_in_every_implementation(case, pad, monkeypatch):
    """Values and gradients of each implementation equal the loop's (through autograd) element for element."""
    k, f_div, T, n, C = case
    x = torch.randn(2, T, C, 2, 3, dtype=torch.double, requires_grad=True)
    want = causal_loop_reference(x, k, f_div, n, pad)
    g = torch.randn(x.shape, dtype=torch.double)
    (want_grad,) = torch.autograd.grad(want, x, g)
    for name, y in _causal_impls(x, k, f_div, n, pad, monkeypatch).items():
        assert torch.equal(y, want), name
        (grad,) = torch.autograd.grad(y, x, g)
        assert torch.equal(grad, want_grad), name
    if n < T:
        assert torch.equal(want[:, n:], x[:, n:])


def test_causal_groups_by_hand():
    # C=32, f_div=4, k=4 -> f=2: channels 0-3 from t-1, 4-7 from t-2, ..., 12-15 from t-4, 16+ stay
    T = 8
    x = torch.arange(T, dtype=torch.float).view(1, T, 1, 1, 1).expand(1, T, 32, 1, 1).contiguous() + 1
    for pad in SHIFT_PADS:
        y = temporal_shift(x, 4, 4, shift_pad=pad, shift_direction="causal")[0, :, :, 0, 0]  # value: source + 1
        for d in range(1, 5):
            group = y[:, 4 * d - 4 : 4 * d]
            assert (group[d:] == torch.arange(1, T - d + 1).view(-1, 1)).all()
            border = torch.arange(1, d + 1).view(-1, 1).float() if pad == "keep" else torch.zeros(d, 1)
            assert (group[:d] == border).all()
        assert torch.equal(y[:, 16:], x[0, :, 16:, 0, 0])
        # as many channels move as bidirectionally, and none reads the future
        moved = (y != x[0, :, :, 0, 0]).any(0)
        assert moved[:16].all() and not moved[16:].any()


@pytest.mark.parametrize("pad", SHIFT_PADS)
def test_causal_output_depends_on_the_past_only(pad):
    x = torch.randn(2, 7, 40, 2, 2)
    y = temporal_shift(x, 3, 4, 6, pad, "causal")
    for s in range(7):
        x2 = x.clone()
        x2[:, s] += 1
        y2 = temporal_shift(x2, 3, 4, 6, pad, "causal")
        changed = (y2 != y).flatten(2).any(-1).any(0)
        assert not changed[:s].any()
        assert changed[s]
        assert changed[6] == (s == 6)  # the audio segment: fed by nothing, feeds nothing
    bidir = temporal_shift(x, 3, 4, 6, pad)
    x2 = x.clone()
    x2[:, 3] += 1
    assert not torch.equal(temporal_shift(x2, 3, 4, 6, pad)[:, :3], bidir[:, :3])  # bidirectional reads the future


@pytest.mark.parametrize("pad", SHIFT_PADS)
@pytest.mark.parametrize("k,T,n_shifted", [(1, 5, 4), (3, 5, 4), (2, 4, 4), (4, 7, 7)])
@pytest.mark.parametrize("kernel", ["torch", "autograd"])
def test_causal_gradcheck(k, T, n_shifted, pad, kernel, monkeypatch):
    # k >= n_shifted / 2: the kept border [0, k) and the moved range [0, n - k) overlap (segments with both gradients)
    monkeypatch.setenv("TSAM_SHIFT_KERNEL", kernel)
    x = torch.randn(2, T, 25, 2, 2, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda t: temporal_shift(t, k, 2, n_shifted=n_shifted, shift_pad=pad, shift_direction="causal"), (x,))


@pytest.mark.parametrize("pad", SHIFT_PADS)
def test_causal_keep_adjoint_by_hand(pad):
    """Per group of distance d the adjoint is ``g[s] = grad[s + d] (s < n - d) + grad[s] (s < d, keep only)``."""
    from tsamlib.model.shift_reference import shift_into
    k, f, n, T = 3, 2, 5, 6
    grad = torch.randn(2, T, 13, 1, 2, dtype=torch.double)
    g = shift_into(torch.empty_like(grad), grad, ShiftLayout(k, f, n, pad, "causal"), adjoint=True)
    for d in range(1, k + 1):
        ch = slice((2 * d - 2) * f, 2 * d * f)
        for s in range(n):
            want = grad[:, s + d, ch] if s + d < n else torch.zeros_like(grad[:, s, ch])
            if pad == "keep" and s < d:
                want = want + grad[:, s, ch]
            assert torch.equal(g[:, s, ch], want), (d, s)
    assert torch.equal(g[:, :, 2 * k * f:], grad[:, :, 2 * k * f:]) and torch.equal(g[:, n:], grad[:, n:])


@pytest.mark.parametrize("pad", SHIFT_PADS)
def test_causal_recomputed_shift_gradcheck(pad):
    from tsamlib.model.shift import _ShiftedConv2dFn
    conv = torch.nn.Conv2d(8, 3, 3, padding=1, bias=True).double()
    x = torch.randn(2, 5, 8, 3, 3, dtype=torch.double, requires_grad=True)
    w = conv.weight.detach().clone().requires_grad_()
    b = conv.bias.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda i, w_, b_: _ShiftedConv2dFn.apply(
        i, w_, b_, ShiftLayout(2, 1, 4, pad, "causal"), "torch", ((1, 1), (1, 1), (1, 1), 1)), (x, w, b))


def test_bidirectional_is_the_default():
    x = torch.randn(2, 6, 32, 2, 2)
    assert torch.equal(temporal_shift(x, 2, 4, 5, "keep", "bidirectional"), temporal_shift(x, 2, 4, 5, "keep"))
    assert not torch.equal(temporal_shift(x, 2, 4, 5, "keep", "causal"), temporal_shift(x, 2, 4, 5, "keep"))
    mod = TemporalShift(torch.nn.Conv2d(32, 4, 1), 6, ShiftSpec(2, 4, 5))
    assert mod.shift.direction == "bidirectional" and "shift_direction='bidirectional'" in repr(mod)


def test_invalid_shift_direction():
    from tsamlib.model.tsam import create_tsam, tsam_kwargs
    match = r"shift_direction='forward': choose one of \['bidirectional', 'causal'\]"
    with pytest.raises(ValueError, match=match):
        temporal_shift(torch.randn(1, 4, 16, 2, 2), 1, 8, shift_direction="forward")
    with pytest.raises(ValueError, match=match):
        ShiftSpec(1, 8, direction="forward")
    with pytest.raises(ValueError, match=match):
        create_tsam("resnet10t", num_classes=3, n_frames=4, **tsam_kwargs(dict(shift_direction="forward")))


def test_causal_insertion_and_repr():
    import timm
    net = timm.create_model("resnet18", num_classes=0)
    assert insert_temporal_shift(net, 5, ShiftSpec(2, 4, 4, direction="causal"), n_insert=2) == 4
    assert net.layer3[0].conv1.shift.direction == "causal" and "shift_direction='causal'" in repr(net.layer3[0].conv1)


# ------------------------------------------------------------------------------------------ the settings, ShiftSpec
def test_shift_spec_is_frozen_hashable_and_shows_what_differs_from_the_defaults():
    import dataclasses
    spec = ShiftSpec(depth=4, f_div=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.depth = 2
    assert spec == ShiftSpec(4, 4) and hash(spec) == hash(ShiftSpec(4, 4)) and spec != ShiftSpec(4, 4, pad="keep")
    assert repr(spec) == "ShiftSpec(depth=4, f_div=4)" and repr(ShiftSpec()) == "ShiftSpec()"
    assert eval(repr(ShiftSpec(2, 4, 6, "keep", "causal"))) == ShiftSpec(2, 4, 6, "keep", "causal")


@pytest.mark.parametrize("kwargs,match", [
    (dict(depth=1.0), r"shift_depth=1.0 must be an integer"),
    (dict(depth=True), r"shift_depth=True must be an integer"),
    (dict(f_div="8"), r"f_div='8' must be an integer"),
    (dict(n_shifted=4.5), r"n_shifted=4.5 must be an integer"),
    (dict(n_shifted=0), r"n_shifted=0 must be >= 1"),
    (dict(depth=-1), r"shift_depth=-1 is negative"),
    (dict(f_div=1), r"f_div=1 must be >= 2"),
    (dict(depth=4, n_shifted=4), r"shift_depth=4 needs more segments: with n_shifted=4 .* largest depth is 3"),
    (dict(pad="reflect"), r"shift_pad='reflect': choose 'zero' .* or 'keep'"),
    (dict(direction="forward"), r"shift_direction='forward': choose one of \['bidirectional', 'causal'\]"),
])
def test_shift_spec_refuses_bad_settings_when_made(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ShiftSpec(**kwargs)


def test_shift_spec_without_a_shift_takes_any_f_div_and_segments():
    assert ShiftSpec(depth=0, f_div=1, n_shifted=1).fold(3) == 0      # TSN: f_div means nothing


def test_shift_spec_layout_checks_the_input():
    x = torch.randn(2, 5, 16, 2, 2)
    assert ShiftSpec(2, 4).layout(x) == ShiftLayout(2, 2, 5, "zero", "bidirectional")
    assert ShiftSpec(2, 4, 4, "keep", "causal").layout(x) == (2, 2, 4, "keep", "causal")
    with pytest.raises(ValueError, match=r"n_shifted=6 must be in 1..T=5"):
        ShiftSpec(2, 4, 6).layout(x)
    with pytest.raises(ValueError, match="shift_depth=5 needs more segments"):   # n_shifted None: all T of x
        ShiftSpec(5, 4).layout(x)
    with pytest.raises(ValueError, match="too few"):
        ShiftSpec(2, 16).layout(x)
    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\)"):
        ShiftSpec().layout(x[0])


def test_temporal_shift_module_checks_its_spec_against_the_layer():
    conv = torch.nn.Conv2d(16, 4, 1)
    assert TemporalShift(conv, 5, ShiftSpec(2, 4)).shift.n_shifted == 5   # None: every segment
    with pytest.raises(ValueError, match=r"n_shifted=6 must be in 1..n_segments=5"):
        TemporalShift(conv, 5, ShiftSpec(2, 4, 6))
    with pytest.raises(ValueError, match="too few"):
        TemporalShift(conv, 5, ShiftSpec(2, 16, 4))
    with pytest.raises(TypeError, match="ShiftSpec"):
        TemporalShift(conv, 5, (2, 4, 4))


def test_the_kernel_is_chosen_when_built_or_moved_and_use_shift_kernel_wins(monkeypatch):
    """A module on the CPU runs the reference whatever ``$TSAM_SHIFT_KERNEL`` says later; moving it reads the
    variable again; a ``use_shift_kernel`` block overrides the module's choice; a module without tensors lets the
    input decide at each call."""
    from tsamlib.model.shift import use_shift_kernel
    monkeypatch.delenv("TSAM_SHIFT_KERNEL", raising=False)
    conv = torch.nn.Conv2d(16, 8, 1, bias=False)
    mod = TemporalShift(conv, 5, ShiftSpec(2, 4, 4, "keep"))
    assert mod.kernel == "torch"
    x = torch.randn(10, 16, 3, 3, requires_grad=True)
    monkeypatch.setenv("TSAM_SHIFT_KERNEL", "autograd")
    y = mod(x)
    assert _autograd_function_nodes(y) == ["_ShiftedConv2dFnBackward"]   # still the reference, recomputing
    with use_shift_kernel("autograd"):
        assert _autograd_function_nodes(mod(x)) == []                     # the block wins
    monkeypatch.setenv("TSAM_SHIFT_KERNEL", "junk")
    with pytest.raises(ValueError, match="TSAM_SHIFT_KERNEL='junk'"):
        mod.to(torch.float64)                                              # a cast chooses again, and checks
    monkeypatch.setenv("TSAM_SHIFT_KERNEL", "autograd")
    assert mod.double().kernel == "autograd" and TemporalShift(conv, 5, ShiftSpec(2, 4)).kernel == "autograd"
    monkeypatch.delenv("TSAM_SHIFT_KERNEL")
    assert mod.float().kernel == "torch"
    assert mod.to("meta").kernel == "torch"
    assert TemporalShift(torch.nn.Identity(), 5, ShiftSpec(2, 4)).kernel is None   # no tensors: the input decides
