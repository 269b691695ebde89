"""Fused depth-k temporal shift in Triton, registered as the torch custom op ``tsamlib::temporal_shift``.

The same operation as :func:`tsamlib.model.shift.temporal_shift` (which stays the CPU reference; read its module
docstring for the channel layout and the two ``shift_pad`` modes), done in one kernel launch per direction:

- forward: every output element ``out[b, t, c, h, w]`` is written once, from one load of ``x[b, t', c, h, w]``
  where ``t'`` is the source segment of channel ``c``'s group (``t + d`` for the "future" groups, ``t - d`` for
  the "past" ones; ``t - d`` for both with ``shift_direction="causal"``, the kernels' ``CAUSAL``), or ``t`` itself
  for unshifted channels and the audio segments ``t >= n_shifted``; at the clip's border (``t'`` outside
  ``[0, n_shifted)``) it writes 0 (``"zero"``) or ``x[b, t, c, h, w]`` (``"keep"``);
- backward (the op ``tsamlib::temporal_shift_adjoint``): the adjoint, also one write per element: for ``"zero"`` the
  shift the other way; for ``"keep"`` the moved gradient plus, on the border, the element's own kept gradient.

Memory format is handled by strides. Where h and w merge into one axis (contiguous, channels_last and nearly every
other dense layout) the kernels work on tiles of (channels x positions) of one (b, t) image: the source segment is
worked out once per channel, so the tile is a plain strided copy, vectorised along whichever axis has stride 1
(channels for channels_last, positions otherwise). Other strides fall back to per-element kernels that split each
index into (c, h, w). Input and output strides are passed separately (the stride-0 gradients of ``x.sum()`` work).
The output has the input's strides (``torch.empty_like``), in the real kernels and in the fake (meta) function.

Eager mode calls the kernels through a plain ``autograd.Function`` (:func:`eager_shift`, :func:`eager_adjoint`):
``torch.library``'s dispatch costs tens of microseconds of CPU per call, more than the kernel at small shapes.
Under ``torch.compile`` :mod:`tsamlib.model.shift` uses the custom ops, which the compiler traces as single nodes.

Devices: CUDA tensors run the Triton kernels. CPU tensors run them too when this module was imported with
``TRITON_INTERPRET=1`` (Triton's interpreter, slow, for tests); otherwise CPU falls back to the reference loops of
:mod:`tsamlib.model.shift`, so the op works everywhere. Both ops have autograd (each is the other's adjoint, so double
backward works too) and fake functions, so ``torch.compile(fullgraph=True)`` traces through them. A third op,
``tsamlib::temporal_shift_again``, is the forward shift under another name for the recomputation in a shifted conv's
backward (the compiler would merge it with the forward's call and keep the shifted copy).
"""
from __future__ import annotations

import contextlib
from typing import Any

import torch
import triton
import triton.language as tl
from torch import Tensor

from .shift_reference import SHIFT_DIRECTIONS, SHIFT_PADS, ShiftLayout, ShiftSpec, shift_into

__all__ = ["MAX_BLOCK", "TILED", "INTERPRETED", "temporal_shift_op", "temporal_shift_adjoint_op",
           "temporal_shift_again_op", "eager_shift",
           "eager_adjoint", "fused_temporal_shift", "uses_triton"]

MAX_BLOCK = 1024
"""Elements of one (b, t) image handled by one Triton program (fewer when the image is smaller)."""

_MAX_GRID_Y = 65535

TILED = True
"""Use the (channel x position) tile kernels where h and w merge (nearly always); False: the per-element kernels."""


@triton.jit
def _image_coords(j, C, H, W, CHANNELS_INNER: tl.constexpr):
    """Split an index ``j`` of one (b, t) image, in the output's memory order, into (c, h, w)."""
    if CHANNELS_INNER:
        c = j % C
        s = j // C
    else:
        c = j // (H * W)
        s = j - c * (H * W)
    h = s // W
    w = s - h * W
    return c, h, w


@triton.jit
def _group_step(c, t, K, F, N, CAUSAL: tl.constexpr):
    """Per channel: whether it is shifted at segment ``t`` and its step (+d: from the future, -d: from the past;
    ``CAUSAL``: -d for both groups of distance d)."""
    g = c // F
    d = g // 2 + 1
    if CAUSAL:
        step = -d
    else:
        step = tl.where(g % 2 == 0, d, -d)
    shifted = (c < 2 * K * F) & (t < N)
    return shifted, step


@triton.jit
def _round_fp32_to(v, dtype: tl.constexpr):
    """Round fp32 ``v`` to ``dtype`` to nearest even. bf16 is rounded by hand with integer ops: Triton's interpreter
    truncates fp32 -> bf16 casts (the GPU rounds to nearest even), so this way both give PyTorch's result."""
    if dtype == tl.bfloat16:
        bits = v.to(tl.uint32, bitcast=True)
        bits = bits + 0x7FFF + ((bits >> 16) & 1)
        rounded = (bits >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
        return tl.where(v == v, rounded, v.to(tl.bfloat16))
    else:
        return v.to(dtype)


@triton.jit
def _fwd_source(t, step, shifted, N, KEEP: tl.constexpr):
    """Forward, per element (or per channel): the segment to read, ``t + step`` inside the clip else ``t``, and
    whether to read it at all (not for a zero-filled border)."""
    src = t + step
    inside = (src >= 0) & (src < N)
    src = tl.where(shifted & inside, src, t)
    if KEEP:
        loads = src == src  # every element: the border keeps its own value
    else:
        loads = inside | (shifted == 0)
    return src, loads


@triton.jit
def _bwd_sources(t, step, shifted, N):
    """Adjoint, per element (or per channel): the segment whose gradient moved here, ``t - step`` inside the clip
    else ``t``; whether to read it; whether the forward kept ``t``'s own value here ("keep" border), and whether
    both terms add up."""
    back = t - step
    moved = (back >= 0) & (back < N)
    src = tl.where(shifted & moved, back, t)
    fwd = t + step
    kept = shifted & ((fwd < 0) | (fwd >= N))
    return src, moved | (shifted == 0), kept, kept & moved


@triton.jit
def _add_kept(v, own, kept, both, dtype: tl.constexpr):
    """The "keep" adjoint: the moved gradient ``v``, the kept one ``own``, or their sum rounded to ``dtype``."""
    total = _round_fp32_to(v.to(tl.float32) + own.to(tl.float32), dtype)
    return tl.where(both, total, tl.where(kept, own, v))


@triton.jit
def _element(T, C, H, W, K, F, N, CAUSAL: tl.constexpr, CHANNELS_INNER: tl.constexpr, BLOCK: tl.constexpr):
    """This program's elements: (b, t) from its row, (c, h, w) of its block of the image, which are in range, and
    each channel's shift at ``t`` (:func:`_group_step`)."""
    row = tl.program_id(0)
    b = row // T
    t = row - b * T
    j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = j < C * H * W
    c, h, w = _image_coords(j, C, H, W, CHANNELS_INNER)
    shifted, step = _group_step(c, t, K, F, N, CAUSAL)
    return b, t, c, h, w, mask, shifted, step


@triton.jit
def _shift_fwd_kernel(x_ptr, out_ptr, T, C, H, W, K, F, N,
                      xs_b, xs_t, xs_c, xs_h, xs_w, os_b, os_t, os_c, os_h, os_w,
                      KEEP: tl.constexpr, CAUSAL: tl.constexpr, CHANNELS_INNER: tl.constexpr, BLOCK: tl.constexpr):
    """Forward: ``out[b, t, c] = x[b, t + step(c), c]`` inside the clip, else 0 (zero) or ``x[b, t, c]`` (keep)."""
    b, t, c, h, w, mask, shifted, step = _element(T, C, H, W, K, F, N, CAUSAL, CHANNELS_INNER, BLOCK)
    src, loads = _fwd_source(t, step, shifted, N, KEEP)
    load_mask = mask & loads
    x_off = b.to(tl.int64) * xs_b + src.to(tl.int64) * xs_t + c * xs_c + h * xs_h + w * xs_w
    v = tl.load(x_ptr + x_off, mask=load_mask, other=0)
    out_off = b.to(tl.int64) * os_b + t.to(tl.int64) * os_t + c * os_c + h * os_h + w * os_w
    tl.store(out_ptr + out_off, v, mask=mask)


@triton.jit
def _shift_bwd_kernel(g_ptr, out_ptr, T, C, H, W, K, F, N,
                      gs_b, gs_t, gs_c, gs_h, gs_w, os_b, os_t, os_c, os_h, os_w,
                      KEEP: tl.constexpr, CAUSAL: tl.constexpr, CHANNELS_INNER: tl.constexpr, BLOCK: tl.constexpr):
    """Adjoint: ``out[t] = g[t - step]`` where ``0 <= t - step < N`` (else 0), plus, for ``KEEP``, ``g[t]`` where
    the forward kept ``t`` (``t + step`` outside the clip); unshifted channels and audio segments copy ``g[t]``."""
    b, t, c, h, w, mask, shifted, step = _element(T, C, H, W, K, F, N, CAUSAL, CHANNELS_INNER, BLOCK)
    src, loads, kept, both = _bwd_sources(t, step, shifted, N)
    inner = c * gs_c + h * gs_h + w * gs_w
    base = b.to(tl.int64) * gs_b
    v = tl.load(g_ptr + base + src.to(tl.int64) * gs_t + inner, mask=mask & loads, other=0)
    if KEEP:
        own = tl.load(g_ptr + base + t.to(tl.int64) * gs_t + inner, mask=mask & kept, other=0)
        v = _add_kept(v, own, kept, both, out_ptr.dtype.element_ty)
    out_off = b.to(tl.int64) * os_b + t.to(tl.int64) * os_t + c * os_c + h * os_h + w * os_w
    tl.store(out_ptr + out_off, v, mask=mask)


@triton.jit
def _tile(T, C, S, K, F, N, CAUSAL: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    """This program's tile of one (b, t) image: channels ``c`` (BLOCK_C) x spatial positions ``s`` (BLOCK_S, h and w
    flattened), their masks, and each channel's shift at ``t``: all index arithmetic is per channel or per position,
    none per element, so the tile is a strided copy (vectorised along whichever axis has stride 1)."""
    row = tl.program_id(0)
    b = row // T
    t = row - b * T
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    s = tl.program_id(2) * BLOCK_S + tl.arange(0, BLOCK_S)
    shifted, step = _group_step(c, t, K, F, N, CAUSAL)
    return b, t, c, s, c < C, s < S, shifted, step


@triton.jit
def _shift_fwd_tile_kernel(x_ptr, out_ptr, T, C, S, K, F, N, xs_b, xs_t, xs_c, xs_s, os_b, os_t, os_c, os_s,
                           KEEP: tl.constexpr, CAUSAL: tl.constexpr, BLOCK_C: tl.constexpr,
                           BLOCK_S: tl.constexpr):
    """The forward of :func:`_shift_fwd_kernel` on (B, T, C, S) tiles (images whose h and w merge into one axis)."""
    b, t, c, s, cmask, smask, shifted, step = _tile(T, C, S, K, F, N, CAUSAL, BLOCK_C, BLOCK_S)
    src, loads = _fwd_source(t, step, shifted, N, KEEP)
    cload = cmask & loads
    x_col = b.to(tl.int64) * xs_b + src.to(tl.int64) * xs_t + c.to(tl.int64) * xs_c
    o_col = b.to(tl.int64) * os_b + t.to(tl.int64) * os_t + c.to(tl.int64) * os_c
    s64 = s.to(tl.int64)
    v = tl.load(x_ptr + (x_col[None, :] + s64[:, None] * xs_s), mask=smask[:, None] & cload[None, :], other=0)
    tl.store(out_ptr + (o_col[None, :] + s64[:, None] * os_s), v, mask=smask[:, None] & cmask[None, :])


@triton.jit
def _shift_bwd_tile_kernel(g_ptr, out_ptr, T, C, S, K, F, N, gs_b, gs_t, gs_c, gs_s, os_b, os_t, os_c, os_s,
                           KEEP: tl.constexpr, CAUSAL: tl.constexpr, BLOCK_C: tl.constexpr,
                           BLOCK_S: tl.constexpr):
    """The adjoint of :func:`_shift_bwd_kernel` on (B, T, C, S) tiles."""
    b, t, c, s, cmask, smask, shifted, step = _tile(T, C, S, K, F, N, CAUSAL, BLOCK_C, BLOCK_S)
    src, loads, kept, both = _bwd_sources(t, step, shifted, N)
    base = b.to(tl.int64) * gs_b + c.to(tl.int64) * gs_c
    s64 = s.to(tl.int64)
    mask2 = smask[:, None] & cmask[None, :]
    v = tl.load(g_ptr + ((base + src.to(tl.int64) * gs_t)[None, :] + s64[:, None] * gs_s),
                mask=smask[:, None] & (cmask & loads)[None, :], other=0)
    if KEEP:
        own = tl.load(g_ptr + ((base + t.to(tl.int64) * gs_t)[None, :] + s64[:, None] * gs_s),
                      mask=smask[:, None] & (cmask & kept)[None, :], other=0)
        v = _add_kept(v, own, kept[None, :], both[None, :], out_ptr.dtype.element_ty)
    o_col = b.to(tl.int64) * os_b + t.to(tl.int64) * os_t + c.to(tl.int64) * os_c
    tl.store(out_ptr + (o_col[None, :] + s64[:, None] * os_s), v, mask=mask2)


INTERPRETED: bool = type(_shift_fwd_kernel).__name__ == "InterpretedFunction"
"""True when this module was imported under ``TRITON_INTERPRET=1``: the kernels then also run on CPU tensors."""


def uses_triton(x: Tensor) -> bool:
    """Whether the op runs the Triton kernels on ``x`` (CUDA, or any device in interpreter mode)."""
    return x.is_cuda or INTERPRETED


def _check_op_args(x: Tensor, layout: ShiftLayout) -> None:
    """Validate the op's arguments (the low-level form, a :class:`~tsamlib.model.shift_reference.ShiftLayout`'s
    fields: group size ``fold`` instead of ``f_div``; an op may be called directly, without a ShiftSpec)."""
    shift_depth, fold, n_shifted, shift_pad, shift_direction = layout
    if shift_pad not in SHIFT_PADS or shift_direction not in SHIFT_DIRECTIONS:
        raise ValueError(f"shift_pad={shift_pad!r}, shift_direction={shift_direction!r}: choose a pad of "
                         f"{list(SHIFT_PADS)} and a direction of {list(SHIFT_DIRECTIONS)}.")
    if x.dim() != 5:
        raise ValueError(f"tsamlib::temporal_shift expects x of shape (B, T, C, H, W), got {tuple(x.shape)}.")
    t, c = x.shape[1], x.shape[2]
    if not 0 < n_shifted <= t:
        raise ValueError(f"n_shifted={n_shifted} must be in 1..T={t}.")
    if not 1 <= shift_depth < n_shifted:
        raise ValueError(f"shift_depth={shift_depth} must be in 1..n_shifted-1={n_shifted - 1}.")
    if fold < 1 or 2 * shift_depth * fold > c:
        raise ValueError(f"fold={fold}: the {2 * shift_depth} groups need 1 <= fold and 2*k*fold <= C={c}.")


def _merges_hw(x: Tensor) -> bool:
    """Whether h and w of x (B, T, C, H, W) form one axis of stride ``x.stride(4)`` (contiguous, channels_last, ...)."""
    return x.shape[3] == 1 or x.stride(3) == x.shape[4] * x.stride(4)


def _pow2(n: int) -> int:
    """The smallest power of 2 >= n: ``triton.next_power_of_2`` (like ``triton.cdiv``, ~10 us a call) in plain
    Python."""
    return 1 << (n - 1).bit_length()


def _cdiv(a: int, b: int) -> int:
    """``ceil(a / b)`` for positive integers."""
    return -(-a // b)


def _launch(x: Tensor, layout: ShiftLayout, adjoint: bool) -> Tensor:
    """Run the forward (or, with ``adjoint``, the backward) kernel into ``torch.empty_like(x)``.

    Called three times per shifted block per training step, so the Python here is kept short: plain integer
    arithmetic for the tile sizes, and the CUDA device is switched only when x is not on the current one."""
    _check_op_args(x, layout)
    out = torch.empty_like(x)
    if not uses_triton(x):
        return shift_into(out, x, layout, adjoint)
    if out.numel() == 0:
        return out
    on_other_gpu = x.is_cuda and x.device.index != torch.cuda.current_device()
    with torch.cuda.device(x.device) if on_other_gpu else contextlib.nullcontext():
        _run_kernel(x, out, layout.depth, layout.fold, layout.n_shifted, layout.pad == "keep",
                    layout.direction == "causal", adjoint)
    return out


def _run_kernel(x: Tensor, out: Tensor, k: int, fold: int, n: int, keep: bool, causal: bool, adjoint: bool) -> None:
    """Pick the tile (or per-element) kernel and its block sizes for x's strides, and launch it."""
    b, t, c, h, w = x.shape
    xs, os_ = x.stride(), out.stride()
    if TILED and _merges_hw(x) and _merges_hw(out):  # (c, s) tiles: no per-element index arithmetic
        s = h * w
        if os_[2] == 1 and c > 1:  # channels_last: channels are the contiguous axis
            block_c = min(128, _pow2(c))
            block_s = min(max(1, 2048 // block_c), _pow2(s))
        else:
            block_s = min(256, _pow2(s))
            block_c = min(max(1, 2048 // block_s), _pow2(c))
        grid = (b * t, _cdiv(c, block_c), _cdiv(s, block_s))
        if max(grid[1:]) > _MAX_GRID_Y:
            raise ValueError(f"C={c}, H*W={s}: too many tiles for one (b, t) image.")
        kernel = _shift_bwd_tile_kernel if adjoint else _shift_fwd_tile_kernel
        kernel[grid](x, out, t, c, s, k, fold, n, xs[0], xs[1], xs[2], xs[4], os_[0], os_[1], os_[2], os_[4],
                     KEEP=keep, CAUSAL=causal, BLOCK_C=block_c, BLOCK_S=block_s)
        return
    per_image = c * h * w
    block = min(MAX_BLOCK, _pow2(per_image))
    grid = (b * t, _cdiv(per_image, block))
    if grid[1] > _MAX_GRID_Y:
        raise ValueError(f"C*H*W={per_image} is too large for one (b, t) image ({_MAX_GRID_Y} blocks of {block}).")
    kernel = _shift_bwd_kernel if adjoint else _shift_fwd_kernel
    kernel[grid](x, out, t, c, h, w, k, fold, n, *xs, *os_, KEEP=keep, CAUSAL=causal,
                 CHANNELS_INNER=os_[2] == 1 and c > 1, BLOCK=block)


@torch.library.custom_op("tsamlib::temporal_shift", mutates_args=())
def temporal_shift_op(x: Tensor, shift_depth: int, fold: int, n_shifted: int, shift_pad: str,
                      shift_direction: str = "bidirectional") -> Tensor:
    """Depth-k temporal shift of x (B, T, C, H, W) with ``fold`` channels per group (see :mod:`tsamlib.model.shift`).

    Returns a new tensor with x's strides; the first ``n_shifted`` segments take part, later ones pass through.
    """
    return _launch(x, ShiftLayout(shift_depth, fold, n_shifted, shift_pad, shift_direction), adjoint=False)


@torch.library.custom_op("tsamlib::temporal_shift_adjoint", mutates_args=())
def temporal_shift_adjoint_op(grad: Tensor, shift_depth: int, fold: int, n_shifted: int, shift_pad: str,
                              shift_direction: str = "bidirectional") -> Tensor:
    """The adjoint (backward) of ``tsamlib::temporal_shift`` applied to ``grad``; same arguments."""
    return _launch(grad, ShiftLayout(shift_depth, fold, n_shifted, shift_pad, shift_direction), adjoint=True)


@torch.library.custom_op("tsamlib::temporal_shift_again", mutates_args=())
def temporal_shift_again_op(x: Tensor, shift_depth: int, fold: int, n_shifted: int, shift_pad: str,
                            shift_direction: str = "bidirectional") -> Tensor:
    """``tsamlib::temporal_shift`` under another name, for the shift that a shifted conv's backward recomputes
    (:func:`tsamlib.model.shift.shifted_conv2d`): ``torch.compile`` merges identical calls of one op, and would then
    keep the forward's shifted copy for backward instead of recomputing it. No autograd (it runs inside a backward)."""
    return _launch(x, ShiftLayout(shift_depth, fold, n_shifted, shift_pad, shift_direction), adjoint=False)


def _shift_fake(x: Tensor, shift_depth: int, fold: int, n_shifted: int, shift_pad: str,
                shift_direction: str = "bidirectional") -> Tensor:
    """Meta function of the three ops: same shape, dtype and strides as the input."""
    _check_op_args(x, ShiftLayout(shift_depth, fold, n_shifted, shift_pad, shift_direction))
    return torch.empty_like(x)


for _op in (temporal_shift_op, temporal_shift_adjoint_op, temporal_shift_again_op):
    _op.register_fake(_shift_fake)
del _op


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    """Keep the integer/string arguments for the backward."""
    ctx.shift_args = tuple(inputs[1:])


def _forward_backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
    """Backward of the shift: its adjoint."""
    return temporal_shift_adjoint_op(grad, *ctx.shift_args), *(None,) * len(ctx.shift_args)


def _adjoint_backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
    """Backward of the adjoint: the shift itself (for double backward)."""
    return temporal_shift_op(grad, *ctx.shift_args), *(None,) * len(ctx.shift_args)


temporal_shift_op.register_autograd(_forward_backward, setup_context=_setup_context)
temporal_shift_adjoint_op.register_autograd(_adjoint_backward, setup_context=_setup_context)


class _EagerShiftFn(torch.autograd.Function):
    """The same as the custom ops, for eager mode: ``torch.library``'s dispatch costs about 30-70 us of CPU per call
    (measured on CPU), which an eager training step pays 3 times per shifted block; this calls the kernels directly.
    The backward runs the adjoint kernel, or, when a graph of the backward is wanted (double backward), the op."""

    @staticmethod
    def forward(ctx, x: Tensor, layout: ShiftLayout, adjoint: bool) -> Tensor:  # type: ignore[override]
        ctx.layout, ctx.adjoint = layout, adjoint
        return _launch(x, layout, adjoint)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        if torch.is_grad_enabled():
            op = temporal_shift_op if ctx.adjoint else temporal_shift_adjoint_op
            g = op(grad, *ctx.layout)
        else:
            g = _launch(grad, ctx.layout, adjoint=not ctx.adjoint)
        return g, None, None


def eager_shift(x: Tensor, shift_depth: int, fold: int, n_shifted: int, shift_pad: str,
                shift_direction: str = "bidirectional") -> Tensor:
    """``temporal_shift_op`` with less CPU overhead per call, outside ``torch.compile`` (which needs the op).

    Without a graph to record (grad disabled, as inside an ``autograd.Function``'s forward and backward, or an input
    that needs no gradient) the kernel is launched directly, with no autograd node."""
    layout = ShiftLayout(shift_depth, fold, n_shifted, shift_pad, shift_direction)
    if not (x.requires_grad and torch.is_grad_enabled()):
        return _launch(x, layout, False)
    return _EagerShiftFn.apply(x, layout, False)


def eager_adjoint(grad: Tensor, shift_depth: int, fold: int, n_shifted: int, shift_pad: str,
                  shift_direction: str = "bidirectional") -> Tensor:
    """``temporal_shift_adjoint_op`` with less CPU overhead per call, outside ``torch.compile`` (see
    :func:`eager_shift`)."""
    layout = ShiftLayout(shift_depth, fold, n_shifted, shift_pad, shift_direction)
    if not (grad.requires_grad and torch.is_grad_enabled()):
        return _launch(grad, layout, True)
    return _EagerShiftFn.apply(grad, layout, True)


def fused_temporal_shift(x: Tensor, shift_depth: int, f_div: int, n_shifted: int | None = None,
                         shift_pad: str = "zero", shift_direction: str = "bidirectional") -> Tensor:
    """Drop-in for :func:`tsamlib.model.shift.temporal_shift` (same arguments, checks and result) using the fused op.

    ``shift_depth=0`` returns ``x`` itself (TSN), as the reference does.
    """
    spec = ShiftSpec(shift_depth, f_div, n_shifted, shift_pad, shift_direction)
    layout = spec.layout(x)
    if shift_depth == 0:
        return x
    return temporal_shift_op(x, *layout)

