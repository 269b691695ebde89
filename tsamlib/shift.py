"""Temporal shift with depth k: the idea of TSM, generalised by the TSAM report (section 2.2).

A clip is a stack of segment features ``x`` of shape (B, T, C, H, W). TSM moves 1/8 of the channels
one segment back in time and 1/8 one segment forward. TSAM moves channels up to ``k`` segments:

    f = (C // f_div) // k                      channels per group (2k groups)
    for d in 1..k:
        channels [(2d-2)f, (2d-1)f)  <- segment t+d   (the future comes to t)
        channels [(2d-1)f,  2d f)    <- segment t-d   (the past comes to t)
    channels [2kf, C)                 unchanged

Example, C = 256, f_div = 4, k = 4 (the report's config): f = 64 // 4 = 16, so 8 groups of 16 channels,
128 channels move in total (half of them), 128 stay. With k = 1, f_div = 8 this is TSM: fold = C // 8.

At the border of the clip a group's source segment lies outside [0, n_shifted); ``shift_pad`` says what
comes there:

- ``"zero"`` (TSM, the default): zeros;
- ``"keep"`` (the authors' code, github.com/aav-antonov/TSAM ``lib/model/temporal_fusion.py``,
  ``TemporalShift.shift_temporal``: ``out = x.clone()``, then the slice copies): the shifted channels of the
  first/last d segments keep their own, unshifted values.

Segments from ``n_shifted`` on (the audio "frame") are copied through untouched and never feed the video
segments, in both modes.

The op writes each output element exactly once (one read + one write per element, like ``clone``). Its backward
is the adjoint: for ``"zero"`` the same copies with the two directions swapped; for ``"keep"`` also the gradient of
each kept border element flows back to that element (added to the shifted gradient where both reach it).

This file is the reference and the CPU path. On CUDA, :func:`temporal_shift` runs the fused Triton kernels of
:mod:`tsamlib.shift_triton` (a ``torch.library`` custom op, traced by ``torch.compile``), tested element for element
against this code under ``TRITON_INTERPRET=1``; ``TSAM_SHIFT_KERNEL=torch`` keeps the reference on CUDA too.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SHIFT_PADS", "shift_fold", "check_shift_pad", "check_shift_settings", "check_shift", "check_shift_input",
           "temporal_shift", "shifted_conv2d", "TemporalShift", "insert_temporal_shift"]

SHIFT_PADS = ("zero", "keep")


def shift_fold(channels: int, shift_depth: int, f_div: int) -> int:
    """Channels per shifted group: ``(channels // f_div) // shift_depth`` (0 when ``shift_depth == 0``)."""
    return 0 if shift_depth == 0 else (channels // f_div) // shift_depth


def check_shift_pad(shift_pad: str) -> None:
    """Raise ValueError unless ``shift_pad`` is one of :data:`SHIFT_PADS`."""
    if shift_pad not in SHIFT_PADS:
        raise ValueError(f"shift_pad={shift_pad!r}: choose 'zero' (TSM: zeros at the clip's border) or 'keep' "
                         "(the authors' code: border segments keep their own values).")


def check_shift_settings(n_shifted: int, shift_depth: int, f_div: int) -> None:
    """Validate depth, f_div and segments (no layer needed); raise ValueError naming what to change."""
    if shift_depth < 0:
        raise ValueError(f"shift_depth={shift_depth} is negative: use 0 (no shift, TSN) or a depth k >= 1.")
    if shift_depth == 0:
        return
    if f_div < 2:
        raise ValueError(f"f_div={f_div} must be >= 2 (C // f_div channels move in each direction); "
                         "use f_div=8 for TSM or f_div=4 as in the TSAM report.")
    if shift_depth >= n_shifted:
        raise ValueError(f"shift_depth={shift_depth} needs more segments: with n_shifted={n_shifted} video "
                         f"segments the largest depth is {n_shifted - 1}; lower shift_depth or raise n_frames.")


def check_shift(channels: int, n_shifted: int, shift_depth: int, f_div: int) -> int:
    """Validate a shift setting on a layer of ``channels`` and return the group size ``f``."""
    check_shift_settings(n_shifted, shift_depth, f_div)
    if shift_depth == 0:
        return 0
    f = shift_fold(channels, shift_depth, f_div)
    if f == 0:
        raise ValueError(f"C={channels} channels are too few for f_div={f_div}, shift_depth={shift_depth}: "
                         f"each of the {2 * shift_depth} groups would hold (C // f_div) // k = 0 channels; "
                         "lower shift_depth or f_div (or use a wider layer).")
    return f


def _shift_group(out: Tensor, x: Tensor, ch: slice, d: int, n: int, pad: str) -> None:
    """One channel group: ``out[:, t, ch] = x[:, t + d, ch]`` where ``0 <= t + d < n`` (``d != 0``); at the
    other, border segments ``t`` zeros (``pad="zero"``) or their own ``x[:, t, ch]`` (``pad="keep"``)."""
    e = abs(d)
    if d > 0:
        inside, source, border = slice(0, n - e), slice(e, n), slice(n - e, n)
    else:
        inside, source, border = slice(e, n), slice(0, n - e), slice(0, e)
    out[:, inside, ch] = x[:, source, ch]
    if pad == "zero":
        out[:, border, ch] = 0
    else:
        out[:, border, ch] = x[:, border, ch]


def _keep_adjoint_group(g: Tensor, grad: Tensor, ch: slice, d: int, n: int) -> None:
    """The adjoint of :func:`_shift_group` with ``pad="keep"``, writing each element of ``g`` once.

    For ``d > 0`` the forward is ``out[t] = x[t + e]`` (t < n - e) and ``out[t] = x[t]`` (t >= n - e), so
    ``g[s] = grad[s - e]`` (s >= e) ``+ grad[s]`` (s >= n - e); for ``d < 0`` it is the mirror image. With
    ``lo, hi = min(e, n - e), max(e, n - e)`` the segments split into: neither term, one term, both terms.
    """
    e = abs(d)
    lo, hi = min(e, n - e), max(e, n - e)
    if d > 0:
        g[:, :lo, ch] = 0
        if e < n - e:
            g[:, lo:hi, ch] = grad[:, lo - e : hi - e, ch]  # moved only
        else:
            g[:, lo:hi, ch] = grad[:, lo:hi, ch]  # kept only
        g[:, hi:n, ch] = grad[:, hi - e : n - e, ch] + grad[:, hi:n, ch]
    else:
        g[:, :lo, ch] = grad[:, e : lo + e, ch] + grad[:, :lo, ch]
        if e < n - e:
            g[:, lo:hi, ch] = grad[:, lo + e : hi + e, ch]  # moved only
        else:
            g[:, lo:hi, ch] = grad[:, lo:hi, ch]  # kept only
        g[:, hi:n, ch] = 0


def _shift_into(out: Tensor, x: Tensor, k: int, f: int, n: int, pad: str, adjoint: bool) -> Tensor:
    """Write the depth-k shift of x (B, T, C, H, W) into out (or, with ``adjoint``, its adjoint)."""
    for d in range(1, k + 1):
        future = slice((2 * d - 2) * f, (2 * d - 1) * f)  # out[t] = x[t + d]
        past = slice((2 * d - 1) * f, 2 * d * f)  # out[t] = x[t - d]
        for ch, step in ((future, d), (past, -d)):
            if not adjoint:
                _shift_group(out, x, ch, step, n, pad)
            elif pad == "zero":
                _shift_group(out, x, ch, -step, n, pad)  # the adjoint of a zero-padded shift: the other way
            else:
                _keep_adjoint_group(out, x, ch, step, n)
    out[:, :n, 2 * k * f :] = x[:, :n, 2 * k * f :]
    if n < x.shape[1]:
        out[:, n:] = x[:, n:]  # the audio segment(s): never moved
    return out


class _TemporalShiftFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, k: int, f: int, n: int, pad: str) -> Tensor:  # type: ignore[override]
        ctx.k, ctx.f, ctx.n, ctx.pad = k, f, n, pad
        return _shift_into(torch.empty_like(x), x, k, f, n, pad, adjoint=False)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        g = _shift_into(torch.empty_like(grad), grad, ctx.k, ctx.f, ctx.n, ctx.pad, adjoint=True)
        return g, None, None, None, None


def check_shift_input(x: Tensor, shift_depth: int, f_div: int, n_shifted: int | None = None,
                      shift_pad: str = "zero") -> tuple[int, int]:
    """Check a shift of ``x`` (B, T, C, H, W); return (segments that take part, channels per group)."""
    check_shift_pad(shift_pad)
    if x.dim() != 5:
        raise ValueError(f"temporal_shift expects x of shape (B, T, C, H, W), got {tuple(x.shape)}.")
    n = x.shape[1] if n_shifted is None else n_shifted
    if not 0 < n <= x.shape[1]:
        raise ValueError(f"n_shifted={n_shifted} must be in 1..T={x.shape[1]}.")
    return n, check_shift(x.shape[2], n, shift_depth, f_div)


_SHIFT, _ADJOINT, _AGAIN = 0, 1, 2  # which of the fused ops: the shift, its adjoint, the shift recomputed in backward


def _fused_ops(x: Tensor):
    """The Triton kernels (shift, adjoint, shift again) when they serve ``x`` (CUDA, not ``TSAM_SHIFT_KERNEL=torch``):
    under ``torch.compile`` the custom ops (traced as one node each; "again" is the shift under another name, so the
    compiler does not merge the backward's recomputation with the forward's shift, see :class:`_ShiftedConv2dFn`),
    otherwise their low-overhead eager twins."""
    if not x.is_cuda or os.environ.get("TSAM_SHIFT_KERNEL", "triton") != "triton":
        return None
    try:  # lazy: needs Triton, avoids a circular import
        from . import shift_triton as st
    except ImportError:
        return None
    if torch.compiler.is_compiling():
        return st.temporal_shift_op, st.temporal_shift_adjoint_op, st.temporal_shift_again_op
    return st.eager_shift, st.eager_adjoint, st.eager_shift


def _raw_shift(x: Tensor, k: int, f: int, n: int, pad: str, which: int = _SHIFT) -> Tensor:
    """The shift (``_SHIFT``, ``_AGAIN``) or its adjoint (``_ADJOINT``) of x as a plain computation, no autograd node:
    fused op or reference loops."""
    ops = _fused_ops(x)
    if ops is not None:
        return ops[which](x, k, f, n, pad)
    return _shift_into(torch.empty_like(x), x, k, f, n, pad, adjoint=which == _ADJOINT)


def temporal_shift(x: Tensor, shift_depth: int, f_div: int, n_shifted: int | None = None,
                   shift_pad: str = "zero") -> Tensor:
    """Shift channel groups of ``x`` (B, T, C, H, W) between segments up to ``shift_depth`` apart.

    ``n_shifted`` (default T) is the number of leading segments that take part; later ones (audio) pass
    through. ``shift_pad`` fills the border: ``"zero"`` (TSM) or ``"keep"`` (the authors' code: own values).
    ``shift_depth=0`` returns ``x`` itself (TSN).
    """
    n, f = check_shift_input(x, shift_depth, f_div, n_shifted, shift_pad)
    if shift_depth == 0:
        return x
    ops = _fused_ops(x)
    if ops is not None:
        return ops[0](x, shift_depth, f, n, shift_pad)
    return _TemporalShiftFn.apply(x, shift_depth, f, n, shift_pad)


class _ShiftedConv2dFn(torch.autograd.Function):
    """``conv2d(shift(x))`` that keeps ``x`` for backward instead of the shifted copy, and recomputes the shift.

    A plain ``conv(shift(x))`` saves its input, the shifted copy: one more activation of the block input's size
    per shifted block (x itself is kept anyway, by the ReLU or pooling before it and by the residual branch).
    Recomputing the copy in backward costs one more shift (about a ``clone``) per block.
    Under autocast the conv ran in a lower precision: backward casts x, the weight and the gradient to it again.
    Under ``torch.compile`` the recomputation is a differently named op (``tsamlib::temporal_shift_again``): with the
    forward's op, common-subexpression elimination merged the two calls and the compiled graph kept the shifted copy
    for backward after all (measured: the saved activations of the forward graph).
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, shift: tuple, conv: tuple) -> Tensor:
        shifted = _raw_shift(x, *shift)
        y = F.conv2d(shifted.flatten(0, 1), weight, bias, *conv)
        ctx.shift, ctx.conv, ctx.compute_dtype, ctx.has_bias = shift, conv, y.dtype, bias is not None
        ctx.save_for_backward(x, weight)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        dt = ctx.compute_dtype
        shifted = _raw_shift(x.to(dt), *ctx.shift, which=_AGAIN)  # recomputed: the forward did not keep it
        stride, padding, dilation, groups = ctx.conv
        need = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
        g_in, g_w, g_b = torch.ops.aten.convolution_backward(
            grad.to(dt), shifted.flatten(0, 1), weight.to(dt), [weight.shape[0]] if ctx.has_bias else None,
            stride, padding, dilation, False, [0, 0], groups, need)
        g_x = _raw_shift(g_in.view(x.shape).to(x.dtype), *ctx.shift, which=_ADJOINT) if need[0] else None
        g_w = g_w.to(weight.dtype) if need[1] else None
        g_b = g_b.to(weight.dtype) if need[2] else None
        return g_x, g_w, g_b, None, None


def _recomputable(conv: nn.Module) -> bool:
    """Whether :func:`shifted_conv2d` can stand in for ``conv(shift(x))``: a plain zero-padded 2D conv."""
    return (type(conv) is nn.Conv2d and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)
            and not conv._forward_hooks and not conv._forward_pre_hooks)


def shifted_conv2d(x: Tensor, conv: nn.Conv2d, shift_depth: int, f_div: int, n_shifted: int | None = None,
                   shift_pad: str = "zero") -> Tensor:
    """``conv(temporal_shift(x).flatten(0, 1))`` for x (B, T, C, H, W), without keeping the shifted copy.

    Same values and gradients as the two calls; the shifted tensor is recomputed in backward instead of saved.
    """
    n, f = check_shift_input(x, shift_depth, f_div, n_shifted, shift_pad)
    if shift_depth == 0:
        return conv(x.flatten(0, 1))
    if not _recomputable(conv):
        raise ValueError(f"shifted_conv2d needs a plain nn.Conv2d with numeric zero padding, got {conv}.")
    return _ShiftedConv2dFn.apply(x, conv.weight, conv.bias, (shift_depth, f, n, shift_pad),
                                  (conv.stride, conv.padding, conv.dilation, conv.groups))


class TemporalShift(nn.Module):
    """Residual shift: wrap a layer (a block's ``conv1``) so that its input is shifted in time first.

    The wrapped layer sees (B * n_segments, C, H, W); the first ``n_shifted`` segments of each clip are
    the video frames, the rest (the audio frame) are left alone. ``shift_pad``: see :func:`temporal_shift`.
    ``recompute`` (default): when ``net`` is a plain ``nn.Conv2d`` the shifted copy is not kept for backward but
    recomputed from the input (:func:`shifted_conv2d`); same results, less memory.
    """

    def __init__(self, net: nn.Module, n_segments: int, n_shifted: int, shift_depth: int, f_div: int,
                 shift_pad: str = "zero", recompute: bool = True):
        super().__init__()
        check_shift_pad(shift_pad)
        self.net, self.n_segments, self.n_shifted = net, n_segments, n_shifted
        self.shift_depth, self.f_div, self.shift_pad, self.recompute = shift_depth, f_div, shift_pad, recompute
        channels = getattr(net, "in_channels", None)
        if channels is not None:
            check_shift(channels, n_shifted, shift_depth, f_div)

    def forward(self, x: Tensor) -> Tensor:
        bt, c, h, w = x.shape
        if bt % self.n_segments:
            raise ValueError(f"batch of {bt} images is not a multiple of n_segments={self.n_segments}.")
        x5 = x.view(bt // self.n_segments, self.n_segments, c, h, w)
        if self.recompute and self.shift_depth > 0 and _recomputable(self.net):
            return shifted_conv2d(x5, self.net, self.shift_depth, self.f_div, self.n_shifted, self.shift_pad)
        shifted = temporal_shift(x5, self.shift_depth, self.f_div, self.n_shifted, self.shift_pad)
        return self.net(shifted.view(bt, c, h, w))

    def extra_repr(self) -> str:
        return (f"n_segments={self.n_segments}, n_shifted={self.n_shifted}, "
                f"shift_depth={self.shift_depth}, f_div={self.f_div}, shift_pad={self.shift_pad!r}")


def insert_temporal_shift(backbone: nn.Module, n_segments: int, n_shifted: int, shift_depth: int,
                          f_div: int, n_insert: int = 1, m_insert: int = 0, shift_pad: str = "zero") -> int:
    """Wrap ``conv1`` of the residual blocks ``i`` with ``i % n_insert == m_insert`` in every stage.

    Works on timm (and torchvision) ResNets: stages ``layer1..layer4`` of blocks with a ``conv1``.
    ``n_insert=1`` shifts in every block (TSM), ``n_insert=2, m_insert=0`` in blocks 0, 2, 4, ... of each
    stage (the report's config). ``shift_pad``: see :func:`temporal_shift`. Returns the number of shifted blocks.
    """
    check_shift_pad(shift_pad)
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
                block.conv1 = TemporalShift(block.conv1, n_segments, n_shifted, shift_depth, f_div, shift_pad)
                count += 1
    return count
