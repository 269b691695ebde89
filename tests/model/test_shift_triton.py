"""The fused Triton shift (``tsamlib.model.shift_triton``) against the reference
:func:`tsamlib.model.shift.temporal_shift`.

Without a GPU the kernels run on CPU tensors in Triton's interpreter (``TRITON_INTERPRET=1``, set below before
Triton is imported; it is read when the kernels are decorated); with CUDA they run on the GPU for real. The
interpreter is slow, so the cases use tiny images (2 x 3) and a fixed, spread-out sample of (C, T, n_shifted, k,
f_div) settings crossed with pad mode, memory format and dtype. Everything is a copy (or, for ``"keep"``'s backward,
one rounded addition), so results must be equal element for element in every dtype.
"""
from __future__ import annotations

import itertools
import os

import pytest
import torch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu":
    os.environ["TRITON_INTERPRET"] = "1"  # before tsamlib.model.shift_triton is imported (its kernels are decorated)

pytest.importorskip("triton", reason="Triton is not installed: the fused shift needs it")

from tsamlib.model.shift import temporal_shift  # noqa: E402
from tsamlib.model.shift_reference import ShiftSpec  # noqa: E402
from tsamlib.model.shift_triton import (  # noqa: E402 (after TRITON_INTERPRET is set)
    INTERPRETED,
    fused_temporal_shift,
    temporal_shift_adjoint_op,
    temporal_shift_op,
    uses_triton,
)

__all__: list[str] = []

if not uses_triton(torch.empty(0, device=DEVICE)):
    pytest.skip("tsamlib.model.shift_triton was imported before TRITON_INTERPRET=1 was set, so on CPU it falls back "
                "to the reference and there is nothing to test; run this file in its own process",
                allow_module_level=True)

H, W = 2, 3
B = 2

# (C, T, n_shifted, k, f_div): odd channel counts, T from 2 to 17, k from 1 to 5, audio segments (n_shifted < T),
# and short clips where a group's border covers most segments (k >= n_shifted - k: the "kept only" segments).
CONFIGS = [
    (19, 2, 2, 1, 2),
    (33, 17, 16, 5, 2),
    (19, 4, 3, 2, 2),
    (33, 6, 5, 4, 4),
    (19, 9, 8, 3, 2),
    (33, 12, 12, 5, 2),
    (19, 5, 4, 2, 4),
    (33, 17, 17, 2, 8),
    (19, 3, 2, 1, 8),
    (33, 7, 6, 5, 2),
    (19, 11, 10, 4, 2),
    (33, 3, 3, 2, 2),
]
COMBOS = list(itertools.product(("zero", "keep"), (False, True), (torch.float32, torch.float16, torch.bfloat16)))
CASES = [(*CONFIGS[(i + 4 * j) % len(CONFIGS)], *combo) for i, combo in enumerate(COMBOS) for j in range(3)]


def _case_id(case: tuple) -> str:
    """Readable test id: C, T, n, k, f_div, pad, format, dtype."""
    c, t, n, k, f_div, pad, channels_last, dtype = case
    fmt = "cl" if channels_last else "contig"
    return f"C{c}-T{t}-n{n}-k{k}-fdiv{f_div}-{pad}-{fmt}-{str(dtype).removeprefix('torch.')}"


def _clip(c: int, t: int, channels_last: bool, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    """A (B, T, C, H, W) view of a (B*T, C, H, W) batch, contiguous or channels_last, needing grad."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B * t, c, H, W, generator=gen).to(dtype=dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    return x.to(DEVICE).view(B, t, c, H, W).requires_grad_()


def test_case_sample_covers_the_ranges() -> None:
    """The sample has every k 1..5, T = 2 and 17, audio segments, both pads, both formats and all dtypes."""
    assert {case[3] for case in CASES} == {1, 2, 3, 4, 5}
    assert {2, 17} <= {case[1] for case in CASES}
    assert any(case[2] < case[1] for case in CASES)
    assert {case[5:] for case in CASES} == set(COMBOS)
    assert all(case[3] < case[2] <= case[1] and case[0] % 2 == 1 for case in CASES)
    assert len(set(CASES)) == len(CASES) == 3 * len(COMBOS)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_matches_reference_forward_and_backward(case: tuple) -> None:
    """Output, its strides and the gradient equal the reference's exactly."""
    c, t, n, k, f_div, pad, channels_last, dtype = case
    x = _clip(c, t, channels_last, dtype)
    ref = temporal_shift(x, k, f_div, n, pad)
    out = fused_temporal_shift(x, k, f_div, n, pad)
    assert out.dtype == dtype
    assert out.stride() == x.stride()
    assert torch.equal(out, ref)
    gen = torch.Generator().manual_seed(1)
    grad = (torch.randn(ref.shape, generator=gen) * 4).to(dtype=dtype, device=DEVICE)
    if channels_last:
        grad = grad.view(B * t, c, H, W).contiguous(memory_format=torch.channels_last).view(B, t, c, H, W)
    (ref_grad,) = torch.autograd.grad(ref, x, grad)
    (out_grad,) = torch.autograd.grad(out, x, grad)
    assert torch.equal(out_grad, ref_grad)


def test_odd_strides_and_expanded_gradient() -> None:
    """A permuted (neither contiguous nor channels_last) input, and the stride-0 gradient of ``sum()``."""
    c, t, n, k, f_div = 19, 5, 4, 2, 2
    base = torch.randn(t, B, c, H, W).to(DEVICE)
    x = base.transpose(0, 1).requires_grad_()
    assert not x.is_contiguous()
    for pad in ("zero", "keep"):
        out = fused_temporal_shift(x, k, f_div, n, pad)
        ref = temporal_shift(x, k, f_div, n, pad)
        assert torch.equal(out, ref)
        assert out.stride() == torch.empty_like(x).stride()
        (ref_grad,) = torch.autograd.grad((ref * 3).sum(), x)
        (out_grad,) = torch.autograd.grad(out.sum() * 3, x)
        assert torch.equal(out_grad, ref_grad)


def test_double_backward_is_the_shift() -> None:
    """The adjoint's own backward is the shift: grad of <adjoint(g), v> w.r.t. g is shift(v)."""
    c, t, n, k, f_div, pad = 19, 4, 3, 2, 2, "keep"
    x = _clip(c, t, False, torch.float32)
    fold = (c // f_div) // k
    grad = torch.randn(x.shape, device=DEVICE, requires_grad=True)
    v = torch.randn(x.shape, device=DEVICE)
    adj = temporal_shift_adjoint_op(grad, k, fold, n, pad)
    (gg,) = torch.autograd.grad((adj * v).sum(), grad)
    assert torch.equal(gg, temporal_shift(v, k, f_div, n, pad))


def test_depth_zero_and_bad_arguments() -> None:
    """k = 0 returns x itself (like the reference); bad settings raise ValueError, also at the op level."""
    x = torch.randn(1, 4, 19, H, W, device=DEVICE)
    assert fused_temporal_shift(x, 0, 8) is x
    with pytest.raises(ValueError, match="shift_pad"):
        fused_temporal_shift(x, 1, 2, shift_pad="reflect")
    with pytest.raises(ValueError, match="more segments"):
        fused_temporal_shift(x, 3, 2, n_shifted=3)
    with pytest.raises(ValueError, match="too few"):
        fused_temporal_shift(x, 3, 8)
    with pytest.raises(ValueError, match="fold"):
        temporal_shift_op(x, 2, 5, 4, "zero")
    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\)"):
        temporal_shift_op(x[0], 1, 2, 4, "zero")


@pytest.mark.parametrize("which", ["forward-keep-channels_last", "adjoint-zero-contiguous"])
def test_opcheck(which: str) -> None:
    """``torch.library.opcheck``: schema, autograd registration, fake tensor and AOT dispatch (dynamic shapes)."""
    if which.startswith("forward"):
        x = _clip(19, 5, True, torch.float32)
        torch.library.opcheck(temporal_shift_op, (x, 2, 2, 4, "keep"))
    else:
        x = _clip(33, 4, False, torch.float32)
        torch.library.opcheck(temporal_shift_adjoint_op, (x, 1, 4, 3, "zero"))


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile_fullgraph(backend: str) -> None:
    """``torch.compile(fullgraph=True)`` traces through the op and its backward without a graph break."""
    x = _clip(19, 5, True, torch.float32)
    ref_x = x.detach().clone().requires_grad_()

    def fn(inp: torch.Tensor) -> torch.Tensor:
        """The op alone (inductor on CPU then needs no C++ kernels: the op is an opaque call)."""
        return fused_temporal_shift(inp, 2, 2, 4, "keep")

    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, backend=backend)
    out = compiled(x)
    ref = temporal_shift(ref_x, 2, 2, 4, "keep")
    assert torch.equal(out, ref)
    grad = torch.randn(ref.shape, device=DEVICE)
    out.backward(grad)
    ref.backward(grad)
    assert torch.equal(x.grad, ref_x.grad)


def test_interpreter_mode_matches_device() -> None:
    """On CPU the kernels must really run in Triton's interpreter (not the reference fallback)."""
    assert INTERPRETED or DEVICE == "cuda"


def _use_fused_ops(monkeypatch) -> None:
    """Make :mod:`tsamlib.model.shift` pick the fused ops for every tensor, as it does on CUDA: the custom ops while
    compiling, their eager twins otherwise (here the kernels run in Triton's interpreter)."""
    import tsamlib.model.shift as shift_mod
    from tsamlib.model.shift_triton import eager_adjoint, eager_shift, temporal_shift_again_op

    def fused_ops(x, kernel):
        if torch.compiler.is_compiling():
            return temporal_shift_op, temporal_shift_adjoint_op, temporal_shift_again_op
        return eager_shift, eager_adjoint, eager_shift

    monkeypatch.setattr(shift_mod, "_fused_ops", fused_ops)


@pytest.mark.parametrize("pad", ["zero", "keep"])
def test_recomputed_shifted_conv_through_the_kernels_and_compile(pad: str, monkeypatch) -> None:
    """The memory-saving shifted conv (shift recomputed in backward) runs the fused ops, also under
    ``torch.compile(fullgraph=True)``, and matches the plain shift-then-conv in values and gradients."""
    from tsamlib.model.shift import TemporalShift

    _use_fused_ops(monkeypatch)
    conv = torch.nn.Conv2d(19, 5, 3, padding=1, bias=False).to(DEVICE)
    fast = TemporalShift(conv, 5, ShiftSpec(2, 2, 4, pad), recompute=True)
    x = _clip(19, 5, True, torch.float32).detach().flatten(0, 1)
    ref_x = x.clone().requires_grad_()
    ref = conv(temporal_shift(ref_x.view(B, 5, 19, H, W), 2, 2, 4, pad).flatten(0, 1))
    grad = torch.randn(ref.shape, device=DEVICE)
    ref.backward(grad)
    ref_wgrad = conv.weight.grad.clone()
    torch._dynamo.reset()
    for fn in (fast, torch.compile(fast, fullgraph=True, backend="aot_eager")):
        conv.weight.grad = None
        xi = x.clone().requires_grad_()
        out = fn(xi)
        out.backward(grad)
        assert torch.allclose(out, ref, atol=1e-6)
        assert torch.allclose(xi.grad, ref_x.grad, atol=1e-6)
        assert torch.allclose(conv.weight.grad, ref_wgrad, atol=1e-5)


@pytest.mark.parametrize("case", CASES[::6], ids=_case_id)
def test_per_element_kernels_match_reference(case: tuple, monkeypatch) -> None:
    """The per-element kernels (used where h and w do not merge into one axis) on a sample of the cases."""
    import tsamlib.model.shift_triton as st
    monkeypatch.setattr(st, "TILED", False)
    c, t, n, k, f_div, pad, channels_last, dtype = case
    x = _clip(c, t, channels_last, dtype)
    fold = (c // f_div) // k
    out = temporal_shift_op(x, k, fold, n, pad)
    assert torch.equal(out, temporal_shift(x, k, f_div, n, pad))
    grad = torch.randn(x.shape, device=DEVICE).to(dtype)
    assert torch.equal(temporal_shift_adjoint_op(grad, k, fold, n, pad),
                       torch.autograd.grad(temporal_shift(x, k, f_div, n, pad), x, grad)[0])


def test_unmergeable_strides_use_the_per_element_kernels() -> None:
    """The left half of wider images (h and w do not merge): the per-element kernels, same result as the reference."""
    from tsamlib.model.shift_triton import _merges_hw
    x = torch.randn(B, 5, 19, H, 2 * W, device=DEVICE)[..., :W]
    assert not _merges_hw(x)
    for pad in ("zero", "keep"):
        assert torch.equal(fused_temporal_shift(x, 2, 2, 4, pad), temporal_shift(x, 2, 2, 4, pad))


@pytest.mark.parametrize("pad", ["zero", "keep"])
def test_eager_twins_match_the_ops(pad: str) -> None:
    """``eager_shift`` / ``eager_adjoint`` (no torch.library dispatch): same values, gradients, double backward."""
    from tsamlib.model.shift_triton import eager_adjoint, eager_shift
    x = _clip(19, 6, True, torch.float16)
    fold = (19 // 2) // 2
    assert torch.equal(eager_shift(x, 2, fold, 5, pad), temporal_shift_op(x, 2, fold, 5, pad))
    g = torch.randn(x.shape, device=DEVICE).to(torch.float16)
    assert torch.equal(eager_adjoint(g, 2, fold, 5, pad), temporal_shift_adjoint_op(g, 2, fold, 5, pad))
    (ga,) = torch.autograd.grad(eager_shift(x, 2, fold, 5, pad), x, g)
    (gb,) = torch.autograd.grad(temporal_shift(x, 2, 2, 5, pad), x, g)
    assert torch.equal(ga, gb)
    gr = g.float().requires_grad_()
    v = torch.randn(x.shape, device=DEVICE)
    (gg,) = torch.autograd.grad((eager_adjoint(gr, 2, fold, 5, pad) * v).sum(), gr, create_graph=True)
    assert torch.equal(gg, temporal_shift(v, 2, 2, 5, pad))


def test_eager_twins_launch_directly_when_no_graph_is_needed() -> None:
    """With grad disabled (inside an ``autograd.Function``) or an input that needs no gradient, the twins launch the
    kernel with no autograd node; the result is the op's. Where a graph is needed they still record one."""
    from tsamlib.model.shift_triton import eager_adjoint, eager_shift
    x = _clip(19, 6, True, torch.float32)
    fold = (19 // 2) // 2
    with torch.no_grad():
        a, b = eager_shift(x, 2, fold, 5, "keep"), eager_adjoint(x, 2, fold, 5, "keep")
    c = eager_shift(x.detach(), 2, fold, 5, "zero")
    assert a.grad_fn is None and b.grad_fn is None and c.grad_fn is None and not a.requires_grad
    assert torch.equal(a, temporal_shift_op(x.detach(), 2, fold, 5, "keep"))
    assert torch.equal(b, temporal_shift_adjoint_op(x.detach(), 2, fold, 5, "keep"))
    assert torch.equal(c, temporal_shift_op(x.detach(), 2, fold, 5, "zero"))
    assert x.requires_grad and eager_shift(x, 2, fold, 5, "zero").grad_fn is not None


def test_tile_sizes_use_triton_arithmetic() -> None:
    """The launcher's plain-integer helpers give what ``triton.next_power_of_2`` / ``triton.cdiv`` give."""
    import triton

    from tsamlib.model.shift_triton import _cdiv, _pow2
    for n in list(range(1, 300)) + [1023, 1024, 1025, 2048 * 56 * 56 + 1]:
        assert _pow2(n) == triton.next_power_of_2(n)
        for d in (1, 2, 3, 7, 64, 128, 256):
            assert _cdiv(n, d) == triton.cdiv(n, d)


def _saved_shift_outputs(recompute: bool) -> int:
    """Compile a residual block with a shifted conv (AOTAutograd with the min-cut partitioner, as inductor uses) and
    count the activations its forward graph saves for backward that are (views of) a shift op's output."""
    import functools

    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd
    from torch._functorch.partitioners import min_cut_rematerialization_partition

    from tsamlib.model.shift import TemporalShift

    ops = {torch.ops.tsamlib.temporal_shift.default, torch.ops.tsamlib.temporal_shift_again.default}
    found: list[int] = []

    def fw(gm, example_inputs):
        out = next(n for n in gm.graph.nodes if n.op == "output").args[0]
        saved = 0
        for node in out[1:]:  # out[0] is the block's result
            while node.op == "call_function" and node.target in (torch.ops.aten.view.default,
                                                                  torch.ops.aten.detach.default):
                node = node.args[0]
            saved += node.op == "call_function" and node.target in ops
        found.append(saved)
        return make_boxed_func(gm.forward)

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bn0, self.bn1 = torch.nn.BatchNorm2d(16), torch.nn.BatchNorm2d(16)
            self.conv = TemporalShift(torch.nn.Conv2d(16, 16, 1, bias=False), 5, ShiftSpec(2, 4, 4),
                                      recompute=recompute)

        def forward(self, x):
            y = torch.relu(self.bn0(x))
            return torch.relu(self.bn1(self.conv(y)) + y)

    backend = aot_autograd(fw_compiler=fw, bw_compiler=lambda gm, ex: make_boxed_func(gm.forward),
                           partition_fn=functools.partial(min_cut_rematerialization_partition, compiler="inductor"))
    torch._dynamo.reset()
    try:
        block = torch.compile(Block().to(DEVICE), backend=backend, fullgraph=True)
        block(torch.randn(10, 16, 4, 4, device=DEVICE, requires_grad=True)).sum().backward()
    finally:
        torch._dynamo.reset()
    return found[0]


def test_compiled_shifted_conv_does_not_keep_the_shifted_copy(monkeypatch) -> None:
    """Under torch.compile the recomputing shifted conv saves no shifted copy for backward (it did, when the backward
    called the forward's op and the compiler merged the two); the plain shift-then-conv saves one."""
    _use_fused_ops(monkeypatch)
    assert _saved_shift_outputs(recompute=True) == 0
    assert _saved_shift_outputs(recompute=False) == 1


# --------------------------------------------------------------------------------------------- the causal shift
@pytest.mark.parametrize("case", CASES[::3], ids=_case_id)
def test_causal_matches_reference_forward_and_adjoint(case: tuple, monkeypatch) -> None:
    """``shift_direction="causal"`` (the kernels' ``CAUSAL``): values, strides, gradient and the adjoint op equal
    the reference's exactly, in the tile and the per-element kernels."""
    import tsamlib.model.shift_triton as st
    c, t, n, k, f_div, pad, channels_last, dtype = case
    fold = (c // f_div) // k
    x = _clip(c, t, channels_last, dtype)
    gen = torch.Generator().manual_seed(2)
    grad = (torch.randn(x.shape, generator=gen) * 4).to(dtype=dtype, device=DEVICE)
    ref = temporal_shift(x, k, f_div, n, pad, "causal")
    (ref_grad,) = torch.autograd.grad(ref, x, grad)
    assert not torch.equal(ref, temporal_shift(x, k, f_div, n, pad))
    for tiled in (True, False):
        monkeypatch.setattr(st, "TILED", tiled)
        out = fused_temporal_shift(x, k, f_div, n, pad, "causal")
        assert out.stride() == x.stride() and torch.equal(out, ref)
        assert torch.equal(torch.autograd.grad(out, x, grad)[0], ref_grad)
        assert torch.equal(temporal_shift_adjoint_op(grad, k, fold, n, pad, "causal"), ref_grad)


def test_causal_ops_opcheck_eager_twins_and_double_backward() -> None:
    """The ops' schemas take ``shift_direction`` (default ``"bidirectional"``): opcheck, the eager twins and the
    adjoint's backward (the shift) with ``"causal"``; a bad direction is refused by the ops too."""
    from tsamlib.model.shift_triton import eager_adjoint, eager_shift
    x = _clip(19, 6, True, torch.float32)
    fold = (19 // 2) // 2
    torch.library.opcheck(temporal_shift_op, (x, 2, fold, 5, "keep", "causal"))
    torch.library.opcheck(temporal_shift_adjoint_op, (x, 2, fold, 5, "zero", "causal"))
    assert "str shift_direction=\"bidirectional\"" in str(torch.ops.tsamlib.temporal_shift.default._schema)
    assert torch.equal(eager_shift(x, 2, fold, 5, "keep", "causal"), temporal_shift_op(x, 2, fold, 5, "keep", "causal"))
    g = torch.randn(x.shape, device=DEVICE)
    assert torch.equal(eager_adjoint(g, 2, fold, 5, "keep", "causal"),
                       temporal_shift_adjoint_op(g, 2, fold, 5, "keep", "causal"))
    (ga,) = torch.autograd.grad(eager_shift(x, 2, fold, 5, "keep", "causal"), x, g)
    assert torch.equal(ga, torch.autograd.grad(temporal_shift(x, 2, 2, 5, "keep", "causal"), x, g)[0])
    gr, v = g.clone().requires_grad_(), torch.randn(x.shape, device=DEVICE)
    for adjoint in (eager_adjoint, temporal_shift_adjoint_op):
        (gg,) = torch.autograd.grad((adjoint(gr, 2, fold, 5, "keep", "causal") * v).sum(), gr)
        assert torch.equal(gg, temporal_shift(v, 2, 2, 5, "keep", "causal"))
    with pytest.raises(ValueError, match="shift_direction='forward'"):
        temporal_shift_op(x, 2, fold, 5, "zero", "forward")


def test_causal_recomputed_shifted_conv_through_the_kernels(monkeypatch) -> None:
    """A causal TemporalShift runs the fused ops (eager and compiled) and matches shift-then-conv."""
    from tsamlib.model.shift import TemporalShift

    _use_fused_ops(monkeypatch)
    conv = torch.nn.Conv2d(19, 5, 3, padding=1, bias=False).to(DEVICE)
    fast = TemporalShift(conv, 5, ShiftSpec(2, 2, 4, "keep", "causal"), recompute=True)
    x = _clip(19, 5, False, torch.float32).detach().flatten(0, 1)
    ref_x = x.clone().requires_grad_()
    with monkeypatch.context() as m:   # the reference, for comparison
        import tsamlib.model.shift as shift_mod
        m.setattr(shift_mod, "_fused_ops", lambda x, kernel: None)
        ref = conv(temporal_shift(ref_x.view(B, 5, 19, H, W), 2, 2, 4, "keep", "causal").flatten(0, 1))
    grad = torch.randn(ref.shape, device=DEVICE)
    ref.backward(grad)
    torch._dynamo.reset()
    try:
        for fn in (fast, torch.compile(fast, fullgraph=True, backend="aot_eager")):
            xi = x.clone().requires_grad_()
            out = fn(xi)
            out.backward(grad)
            assert torch.allclose(out, ref, atol=1e-6) and torch.allclose(xi.grad, ref_x.grad, atol=1e-6)
    finally:
        torch._dynamo.reset()
