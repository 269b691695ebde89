"""The temporal shift as PyTorch ops and a module: :func:`temporal_shift`, :func:`shifted_conv2d`,
:class:`TemporalShift`, :func:`insert_temporal_shift` (TSM's idea with depth k, the TSAM report, section 2.2).

What the shift computes, its groups, borders, directions (``"bidirectional"``, ``"causal"``) and checks, is
defined in :mod:`tsamlib.model.shift_reference`; on
the CPU these ops run that reference. On CUDA, :func:`temporal_shift` runs the fused Triton kernels of
:mod:`tsamlib.model.shift_triton` (a ``torch.library`` custom op, traced by ``torch.compile``), tested element for
element against the reference under ``TRITON_INTERPRET=1``.

The settings are one :class:`~tsamlib.model.shift_reference.ShiftSpec`, checked when it is made.

Which implementation runs: inside a :func:`use_shift_kernel` block, that one; else the module's
:attr:`TemporalShift.kernel`, chosen when it is built and again when it is moved (``.to(device)``, ``.cuda()``):
``$TSAM_SHIFT_KERNEL`` when set, on every device, else :data:`DEFAULT_CUDA_SHIFT_KERNEL` for a module on CUDA and
the reference elsewhere. The functions (:func:`temporal_shift`, :func:`shifted_conv2d`) choose the same way for their
input (:func:`shift_kernel`). The implementations (:data:`SHIFT_KERNELS`):

- ``"triton"``: the fused kernels on CUDA (the reference on other devices);
- ``"torch"``: the reference slice copies (:func:`~tsamlib.model.shift_reference.shift_into`) in an
  ``autograd.Function`` whose backward is the adjoint, on every device;
- ``"autograd"``: :func:`autograd_shift`, the shift as plain tensor ops (split, narrow, cat) that autograd
  differentiates: no custom op, no ``autograd.Function``, so a conv after it keeps the shifted copy for backward
  (no recomputation); ``torch.compile`` sees ordinary ops and may fuse them with their neighbours.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .shift_reference import ShiftLayout, ShiftSpec, shift_into

__all__ = ["temporal_shift", "autograd_shift", "shifted_conv2d", "TemporalShift", "insert_temporal_shift",
           "shift_kernel", "use_shift_kernel", "default_shift_kernel", "SHIFT_KERNELS", "DEFAULT_CUDA_SHIFT_KERNEL"]


class _TemporalShiftFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, layout: ShiftLayout) -> Tensor:  # type: ignore[override]
        ctx.layout = layout
        return shift_into(torch.empty_like(x), x, layout)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return shift_into(torch.empty_like(grad), grad, ctx.layout, adjoint=True), None


SHIFT_KERNELS = ("triton", "torch", "autograd")

DEFAULT_CUDA_SHIFT_KERNEL = "triton"
"""The shift implementation CUDA tensors use when ``$TSAM_SHIFT_KERNEL`` is unset: whichever
``benchmarks/bench_gpu.py`` measures fastest for an eager TSAM 16+1 training step (ResNet-50, 224 px) at 32 clips
per step, as recorded with its numbers in ``results/benchmarks/gpu.md`` (section "Default CUDA shift path").
Not measured on a GPU yet (the benchmark was built and run on CPU only), so it stays ``"triton"``, the fused
kernels. Change it here, and only from that file's numbers."""


def default_shift_kernel(device: torch.device | str) -> str:
    """The implementation used on ``device`` when ``$TSAM_SHIFT_KERNEL`` is unset: :data:`DEFAULT_CUDA_SHIFT_KERNEL`
    on CUDA, ``"torch"`` (the reference) elsewhere."""
    return DEFAULT_CUDA_SHIFT_KERNEL if torch.device(device).type == "cuda" else "torch"


_KERNEL_OVERRIDE: ContextVar[str | None] = ContextVar("tsam_shift_kernel", default=None)


@contextmanager
def use_shift_kernel(name: str) -> Iterator[None]:
    """Run the shift with implementation ``name`` (one of :data:`SHIFT_KERNELS`) inside the ``with`` block, on every
    device, whatever ``$TSAM_SHIFT_KERNEL`` says and whatever a module chose, e.g. ``"autograd"`` to trace a model
    into standard ops (ONNX)."""
    if name not in SHIFT_KERNELS:
        raise ValueError(f"shift kernel {name!r}: choose one of {list(SHIFT_KERNELS)}.")
    token = _KERNEL_OVERRIDE.set(name)
    try:
        yield
    finally:
        _KERNEL_OVERRIDE.reset(token)


def _env_kernel() -> str | None:
    """``$TSAM_SHIFT_KERNEL`` (None when unset); ValueError naming the choices for anything else, rather than a
    silent fallback."""
    name = os.environ.get("TSAM_SHIFT_KERNEL") or None
    if name is not None and name not in SHIFT_KERNELS:
        raise ValueError(f"TSAM_SHIFT_KERNEL={name!r}: choose one of {list(SHIFT_KERNELS)} (or leave it unset: "
                         f"{DEFAULT_CUDA_SHIFT_KERNEL} on CUDA, torch elsewhere).")
    return name


def shift_kernel(x: Tensor | None = None) -> str:
    """The shift implementation (one of :data:`SHIFT_KERNELS`) for ``x``: :func:`use_shift_kernel`'s inside its block,
    else ``$TSAM_SHIFT_KERNEL`` when set (on every device), else :func:`default_shift_kernel` of x's device (without
    ``x``: the CUDA default). ValueError naming the choices for an unknown ``$TSAM_SHIFT_KERNEL``."""
    name = _KERNEL_OVERRIDE.get() or _env_kernel()
    if name is None:
        return default_shift_kernel(x.device) if x is not None else DEFAULT_CUDA_SHIFT_KERNEL
    return name


def autograd_shift(x: Tensor, layout: ShiftLayout) -> Tensor:
    """The shift ``layout`` of x (B, T, C, H, W) as plain tensor ops (``"autograd"``).

    The channel groups are split off x (views), each group's segments are narrowed to their sources and
    concatenated along time (then zeros or, for ``"keep"``, the border's own values; the audio segments after), and
    the groups are concatenated back along the channels. Autograd derives the backward: the split's is one
    concatenation, each narrow's a zero-filled group-sized tensor, so the gradient is the adjoint of the shift, as
    :func:`~tsamlib.model.shift_reference.shift_into` computes it. Same values as the reference, and x's strides
    (the ops run on the view of x whose dims are in memory order, which ``cat`` writes contiguously), so a
    channels_last input gives a channels_last result. No checks: the layout was made for x."""
    k, f, n, shift_pad, direction = layout
    causal = direction == "causal"
    t, c = x.shape[1], x.shape[2]
    order = sorted(range(x.dim()), key=lambda d: -x.stride(d))  # memory order, largest stride first (stable)
    back = sorted(range(x.dim()), key=order.__getitem__)         # the inverse permutation
    xp = x.permute(order)
    tdim, cdim = order.index(1), order.index(2)
    groups = xp.split([f] * (2 * k) + [c - 2 * k * f], dim=cdim)
    pieces = []
    for i, g in enumerate(groups[:-1]):
        e, future = i // 2 + 1, i % 2 == 0 and not causal
        border = g.narrow(tdim, n - e if future else 0, e) if shift_pad == "keep" else \
            g.new_zeros([e if dim == tdim else size for dim, size in enumerate(g.shape)])
        if future:       # the future comes to t: out[t] = x[t + e], the last e segments are the border
            seq = [g.narrow(tdim, e, n - e), border]
        else:            # the past comes to t: out[t] = x[t - e], the first e segments are the border
            seq = [border, g.narrow(tdim, 0, n - e)]
        if n < t:
            seq.append(g.narrow(tdim, n, t - n))  # the audio segment(s), untouched
        pieces.append(torch.cat(seq, dim=tdim))
    if groups[-1].shape[cdim]:
        pieces.append(groups[-1])                 # the channels that do not move
    return torch.cat(pieces, dim=cdim).permute(back)


_SHIFT, _ADJOINT, _AGAIN = 0, 1, 2  # which of the fused ops: the shift, its adjoint, the shift recomputed in backward


def _fused_ops(x: Tensor, kernel: str):
    """The Triton kernels (shift, adjoint, shift again) when they serve ``x`` (CUDA, ``kernel`` "triton"): under
    ``torch.compile`` the custom ops (traced as one node each; "again" is the shift under another name, so the
    compiler does not merge the backward's recomputation with the forward's shift, see :class:`_ShiftedConv2dFn`),
    otherwise their low-overhead eager twins."""
    if not x.is_cuda or kernel != "triton":
        return None
    try:  # lazy: needs Triton, avoids a circular import
        from . import shift_triton as st
    except ImportError:
        return None
    if torch.compiler.is_compiling():
        return st.temporal_shift_op, st.temporal_shift_adjoint_op, st.temporal_shift_again_op
    return st.eager_shift, st.eager_adjoint, st.eager_shift


def _raw_shift(x: Tensor, layout: ShiftLayout, kernel: str, which: int = _SHIFT) -> Tensor:
    """The shift (``_SHIFT``, ``_AGAIN``) or its adjoint (``_ADJOINT``) of x as a plain computation, no autograd node:
    fused op or reference loops."""
    ops = _fused_ops(x, kernel)
    if ops is not None:
        return ops[which](x, *layout)
    return shift_into(torch.empty_like(x), x, layout, adjoint=which == _ADJOINT)


def _shift(x: Tensor, spec: ShiftSpec, kernel: str) -> Tensor:
    """The shift ``spec`` of ``x`` (B, T, C, H, W) with implementation ``kernel``."""
    layout = spec.layout(x)
    if spec.depth == 0:
        return x
    if kernel == "autograd":
        return autograd_shift(x, layout)
    ops = _fused_ops(x, kernel)
    if ops is not None:
        return ops[_SHIFT](x, *layout)
    return _TemporalShiftFn.apply(x, layout)


def temporal_shift(x: Tensor, shift_depth: int, f_div: int, n_shifted: int | None = None,
                   shift_pad: str = "zero", shift_direction: str = "bidirectional") -> Tensor:
    """Shift channel groups of ``x`` (B, T, C, H, W) between segments up to ``shift_depth`` apart.

    ``n_shifted`` (default T) is the number of leading segments that take part; later ones (audio) pass
    through. ``shift_pad`` fills the border: ``"zero"`` (TSM) or ``"keep"`` (the authors' code: own values).
    ``shift_direction``: ``"bidirectional"`` (the report's) or ``"causal"`` (every group reads the past only).
    ``shift_depth=0`` returns ``x`` itself (TSN). The settings are those of
    :class:`~tsamlib.model.shift_reference.ShiftSpec`, by their settings' names.
    """
    spec = ShiftSpec(shift_depth, f_div, n_shifted, shift_pad, shift_direction)
    return _shift(x, spec, shift_kernel(x))


class _ShiftedConv2dFn(torch.autograd.Function):
    """``conv2d(shift(x))`` that keeps ``x`` for backward instead of the shifted copy, and recomputes the shift.

    A plain ``conv(shift(x))`` saves its input, the shifted copy: one more activation of the block input's size
    per shifted block (x itself is kept anyway, by the ReLU or pooling before it and by the residual branch).
    Recomputing the copy in backward costs one more shift (about a ``clone``) per block.
    Under autocast the conv ran in a lower precision: backward casts x, the weight and the gradient to it again.
    Under ``torch.compile`` the recomputation is a differently named op (``tsamlib::temporal_shift_again``): with the
    forward's op, common-subexpression elimination merged the two calls and the compiled graph kept the shifted copy
    for backward after all (measured: the saved activations of the forward graph).
    The backward shifts with the forward's implementation ``kernel``.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, layout: ShiftLayout,  # type: ignore[override]
                kernel: str, conv: tuple) -> Tensor:
        shifted = _raw_shift(x, layout, kernel)
        y = F.conv2d(shifted.flatten(0, 1), weight, bias, *conv)
        ctx.layout, ctx.kernel, ctx.conv, ctx.compute_dtype = layout, kernel, conv, y.dtype
        ctx.has_bias = bias is not None
        ctx.save_for_backward(x, weight)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        dt = ctx.compute_dtype
        shifted = _raw_shift(x.to(dt), ctx.layout, ctx.kernel, which=_AGAIN)  # recomputed: the forward did not keep it
        stride, padding, dilation, groups = ctx.conv
        need = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
        g_in, g_w, g_b = torch.ops.aten.convolution_backward(
            grad.to(dt), shifted.flatten(0, 1), weight.to(dt), [weight.shape[0]] if ctx.has_bias else None,
            stride, padding, dilation, False, [0, 0], groups, need)
        g_x = _raw_shift(g_in.view(x.shape).to(x.dtype), ctx.layout, ctx.kernel, which=_ADJOINT) if need[0] else None
        g_w = g_w.to(weight.dtype) if need[1] else None
        g_b = g_b.to(weight.dtype) if need[2] else None
        return g_x, g_w, g_b, None, None, None


def _recomputable(conv: nn.Module) -> bool:
    """Whether :func:`shifted_conv2d` can stand in for ``conv(shift(x))``: a plain zero-padded 2D conv."""
    return (type(conv) is nn.Conv2d and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)
            and not conv._forward_hooks and not conv._forward_pre_hooks)


def shifted_conv2d(x: Tensor, conv: nn.Conv2d, spec: ShiftSpec, kernel: str | None = None) -> Tensor:
    """``conv(temporal_shift(x).flatten(0, 1))`` for x (B, T, C, H, W) and the shift ``spec``, without keeping the
    shifted copy.

    Same values and gradients as the two calls; the shifted tensor is recomputed in backward instead of saved
    (except with the ``"autograd"`` implementation: plain autograd, the conv keeps its input, the shifted copy).
    ``kernel``: the implementation (None: :func:`shift_kernel` of x).
    """
    layout = spec.layout(x)
    kernel = kernel or shift_kernel(x)
    if spec.depth == 0:
        return conv(x.flatten(0, 1))
    if kernel == "autograd":
        return conv(autograd_shift(x, layout).flatten(0, 1))
    if not _recomputable(conv):
        raise ValueError(f"shifted_conv2d needs a plain nn.Conv2d with numeric zero padding, got {conv}.")
    return _ShiftedConv2dFn.apply(x, conv.weight, conv.bias, layout, kernel,
                                  (conv.stride, conv.padding, conv.dilation, conv.groups))


def _module_kernel(module: nn.Module) -> str | None:
    """The implementation for a module whose tensors are where they are now: ``$TSAM_SHIFT_KERNEL`` when set, else
    the default of their device; None for a module without tensors (its inputs' device decides)."""
    tensor = next(module.parameters(), None)
    if tensor is None:
        tensor = next(module.buffers(), None)
    name = _env_kernel()
    if name is not None or tensor is None:
        return name
    return default_shift_kernel(tensor.device)


class TemporalShift(nn.Module):
    """Residual shift: wrap a layer (a block's ``conv1``) so that its input is shifted in time first.

    The wrapped layer sees (B * n_segments, C, H, W); the first ``shift.n_shifted`` segments of each clip (all of
    them when it is None) are the video frames, the rest (the audio frame) are left alone. ``shift``: the settings
    (:class:`~tsamlib.model.shift_reference.ShiftSpec`), checked against the layer's input channels here.
    ``recompute`` (default): when ``net`` is a plain ``nn.Conv2d`` the shifted copy is not kept for backward but
    recomputed from the input (:func:`shifted_conv2d`); same results, less memory. Not with the ``"autograd"``
    implementation (plain autograd: the conv keeps the shifted copy).

    ``kernel``: the implementation, chosen now and whenever the module is moved or cast (``.to``, ``.cuda``,
    ``.half``): ``$TSAM_SHIFT_KERNEL`` when set, else the default of the layer's device; a :func:`use_shift_kernel`
    block overrides it. None for a layer without tensors: then the input's device decides at each call.
    """

    def __init__(self, net: nn.Module, n_segments: int, shift: ShiftSpec, recompute: bool = True):
        super().__init__()
        if not isinstance(shift, ShiftSpec):
            raise TypeError(f"shift must be a ShiftSpec, got {type(shift).__name__}.")
        if shift.n_shifted is None:
            shift = ShiftSpec(shift.depth, shift.f_div, n_segments, shift.pad, shift.direction)
        if shift.n_shifted > n_segments:
            raise ValueError(f"n_shifted={shift.n_shifted} must be in 1..n_segments={n_segments}.")
        self.net, self.n_segments, self.shift, self.recompute = net, n_segments, shift, recompute
        channels = getattr(net, "in_channels", None)
        if channels is not None:
            shift.fold(channels)
        self.kernel = _module_kernel(net)

    def _apply(self, fn, recurse=True):  # every move and cast (.to, .cuda, .half) passes here: choose again
        super()._apply(fn, recurse)
        self.kernel = _module_kernel(self.net)
        return self

    def forward(self, x: Tensor) -> Tensor:
        bt, c, h, w = x.shape
        if bt % self.n_segments:
            raise ValueError(f"batch of {bt} images is not a multiple of n_segments={self.n_segments}.")
        x5 = x.view(bt // self.n_segments, self.n_segments, c, h, w)
        kernel = _KERNEL_OVERRIDE.get() or self.kernel or shift_kernel(x)
        if self.recompute and self.shift.depth > 0 and _recomputable(self.net) and kernel != "autograd":
            return shifted_conv2d(x5, self.net, self.shift, kernel)
        return self.net(_shift(x5, self.shift, kernel).flatten(0, 1))

    def extra_repr(self) -> str:
        s = self.shift
        return (f"n_segments={self.n_segments}, n_shifted={s.n_shifted}, "
                f"shift_depth={s.depth}, f_div={s.f_div}, shift_pad={s.pad!r}, "
                f"shift_direction={s.direction!r}")


def insert_temporal_shift(backbone: nn.Module, n_segments: int, shift: ShiftSpec, n_insert: int = 1,
                          m_insert: int = 0) -> int:
    """Wrap ``conv1`` of the residual blocks ``i`` with ``i % n_insert == m_insert`` in every stage with the shift
    ``shift`` (a :class:`~tsamlib.model.shift_reference.ShiftSpec`) of clips of ``n_segments``.

    Works on timm (and torchvision) ResNets: stages ``layer1..layer4`` of blocks with a ``conv1``.
    ``n_insert=1`` shifts in every block (TSM), ``n_insert=2, m_insert=0`` in blocks 0, 2, 4, ... of each
    stage (the report's config). Returns the number of shifted blocks.
    """
    if n_insert < 1 or not 0 <= m_insert < n_insert:
        raise ValueError(f"need n_insert >= 1 and 0 <= m_insert < n_insert, got n_insert={n_insert}, "
                         f"m_insert={m_insert}.")
    stages = [getattr(backbone, f"layer{i}", None) for i in range(1, 5)]
    if any(s is None for s in stages):
        raise ValueError(f"{type(backbone).__name__} has no layer1..layer4: only ResNet-style backbones "
                         "(timm resnet*, resnet*d, resnet*t) are supported.")
    count = 0
    for stage in stages:
        for i, block in enumerate(stage):
            if i % n_insert == m_insert:
                block.conv1 = TemporalShift(block.conv1, n_segments, shift)
                count += 1
    return count
