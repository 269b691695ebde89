"""Fused depth-k temporal shift in Triton, registered as the torch custom op ``tsamlib::temporal_shift``.

The same operation as :func:`tsamlib.shift.temporal_shift` (which stays the CPU reference; read its module docstring
for the channel layout and the two ``shift_pad`` modes), done in one kernel launch per direction:

- forward: every output element ``out[b, t, c, h, w]`` is written once, from one load of ``x[b, t', c, h, w]``
  where ``t'`` is the source segment of channel ``c``'s group (``t + d`` for the "future" groups, ``t - d`` for
  the "past" ones), or ``t`` itself for unshifted channels and the audio segments ``t >= n_shifted``; at the clip's
  border (``t'`` outside ``[0, n_shifted)``) it writes 0 (``"zero"``) or ``x[b, t, c, h, w]`` (``"keep"``);
- backward (the op ``tsamlib::temporal_shift_adjoint``): the adjoint, also one write per element: for ``"zero"`` the
  shift the other way; for ``"keep"`` the moved gradient plus, on the border, the element's own kept gradient.

Memory format is handled by strides: the kernels take the strides of input and output separately (any strides
work, e.g. the stride-0 gradients of ``x.sum()``) and walk each (b, t) image in the output's memory order: channel
innermost for channels_last, ``h * w`` innermost otherwise, so loads and stores are coalesced in both formats.
The output has the input's strides (``torch.empty_like``), in the real kernel and in the fake (meta) function.

Devices: CUDA tensors run the Triton kernels. CPU tensors run them too when this module was imported with
``TRITON_INTERPRET=1`` (Triton's interpreter, slow, for tests); otherwise CPU falls back to the reference loops of
:mod:`tsamlib.shift`, so the op works everywhere. Both ops have autograd (each is the other's adjoint, so double
backward works too) and fake functions, so ``torch.compile(fullgraph=True)`` traces through them.
"""
from __future__ import annotations

import contextlib
from typing import Any

import torch
import triton
import triton.language as tl
from torch import Tensor

from tsamlib.shift import _shift_into, check_shift_input, check_shift_pad

__all__ = ["MAX_BLOCK", "INTERPRETED", "temporal_shift_op", "temporal_shift_adjoint_op", "fused_temporal_shift",
           "uses_triton"]

MAX_BLOCK = 1024
"""Elements of one (b, t) image handled by one Triton program (fewer when the image is smaller)."""

_MAX_GRID_Y = 65535


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
def _group_step(c, t, K, F, N):
    """Per channel: whether it is shifted at segment ``t`` and its step (+d: from the future, -d: from the past)."""
    g = c // F
    d = g // 2 + 1
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
def _element(T, C, H, W, K, F, N, CHANNELS_INNER: tl.constexpr, BLOCK: tl.constexpr):
    """This program's elements: (b, t) from its row, (c, h, w) of its block of the image, which are in range, and
    each channel's shift at ``t`` (:func:`_group_step`)."""
    row = tl.program_id(0)
    b = row // T
    t = row - b * T
    j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = j < C * H * W
    c, h, w = _image_coords(j, C, H, W, CHANNELS_INNER)
    shifted, step = _group_step(c, t, K, F, N)
    return b, t, c, h, w, mask, shifted, step


@triton.jit
def _shift_fwd_kernel(x_ptr, out_ptr, T, C, H, W, K, F, N,
                      xs_b, xs_t, xs_c, xs_h, xs_w, os_b, os_t, os_c, os_h, os_w,
                      KEEP: tl.constexpr, CHANNELS_INNER: tl.constexpr, BLOCK: tl.constexpr):
    """Forward: ``out[b, t, c] = x[b, t + step(c), c]`` inside the clip, else 0 (zero) or ``x[b, t, c]`` (keep)."""
    b, t, c, h, w, mask, shifted, step = _element(T, C, H, W, K, F, N, CHANNELS_INNER, BLOCK)
    src = t + step
    inside = (src >= 0) & (src < N)
    src = tl.where(shifted & inside, src, t)
    if KEEP:
        load_mask = mask
    else:
        load_mask = mask & (inside | (shifted == 0))
    x_off = b.to(tl.int64) * xs_b + src.to(tl.int64) * xs_t + c * xs_c + h * xs_h + w * xs_w
    v = tl.load(x_ptr + x_off, mask=load_mask, other=0)
    out_off = b.to(tl.int64) * os_b + t.to(tl.int64) * os_t + c * os_c + h * os_h + w * os_w
    tl.store(out_ptr + out_off, v, mask=mask)


@triton.jit
def _shift_bwd_kernel(g_ptr, out_ptr, T, C, H, W, K, F, N,
                      gs_b, gs_t, gs_c, gs_h, gs_w, os_b, os_t, os_c, os_h, os_w,
                      KEEP: tl.constexpr, CHANNELS_INNER: tl.constexpr, BLOCK: tl.constexpr):
    """Adjoint: ``out[t] = g[t - step]`` where ``0 <= t - step < N`` (else 0), plus, for ``KEEP``, ``g[t]`` where
    the forward kept ``t`` (``t + step`` outside the clip); unshifted channels and audio segments copy ``g[t]``."""
    b, t, c, h, w, mask, shifted, step = _element(T, C, H, W, K, F, N, CHANNELS_INNER, BLOCK)
    back = t - step
    moved = (back >= 0) & (back < N)
    src = tl.where(shifted & moved, back, t)
    moved_mask = mask & (moved | (shifted == 0))
    inner = c * gs_c + h * gs_h + w * gs_w
    base = b.to(tl.int64) * gs_b
    v = tl.load(g_ptr + base + src.to(tl.int64) * gs_t + inner, mask=moved_mask, other=0)
    if KEEP:
        fwd = t + step
        kept = shifted & ((fwd < 0) | (fwd >= N))
        own = tl.load(g_ptr + base + t.to(tl.int64) * gs_t + inner, mask=mask & kept, other=0)
        both = kept & moved
        total = _round_fp32_to(v.to(tl.float32) + own.to(tl.float32), out_ptr.dtype.element_ty)
        v = tl.where(both, total, tl.where(kept, own, v))
    out_off = b.to(tl.int64) * os_b + t.to(tl.int64) * os_t + c * os_c + h * os_h + w * os_w
    tl.store(out_ptr + out_off, v, mask=mask)


INTERPRETED: bool = type(_shift_fwd_kernel).__name__ == "InterpretedFunction"
"""True when this module was imported under ``TRITON_INTERPRET=1``: the kernels then also run on CPU tensors."""


def uses_triton(x: Tensor) -> bool:
    """Whether the op runs the Triton kernels on ``x`` (CUDA, or any device in interpreter mode)."""
    return x.is_cuda or INTERPRETED


def _check_op_args(x: Tensor, shift_depth: int, fold: int, n_shifted: int, shift_pad: str) -> None:
    """Validate the op's arguments (the low-level form: group size ``fold`` instead of ``f_div``)."""
    check_shift_pad(shift_pad)
    if x.dim() != 5:
        raise ValueError(f"tsamlib::temporal_shift expects x of shape (B, T, C, H, W), got {tuple(x.shape)}.")
    t, c = x.shape[1], x.shape[2]
    if not 0 < n_shifted <= t:
        raise ValueError(f"n_shifted={n_shifted} must be in 1..T={t}.")
    if not 1 <= shift_depth < n_shifted:
        raise ValueError(f"shift_depth={shift_depth} must be in 1..n_shifted-1={n_shifted - 1}.")
    if fold < 1 or 2 * shift_depth * fold > c:
        raise ValueError(f"fold={fold}: the {2 * shift_depth} groups need 1 <= fold and 2*k*fold <= C={c}.")


def _launch(x: Tensor, shift_depth: int, fold: int, n_shifted: int, shift_pad: str, adjoint: bool) -> Tensor:
    """Run the forward (or, with ``adjoint``, the backward) kernel into ``torch.empty_like(x)``."""
    _check_op_args(x, shift_depth, fold, n_shifted, shift_pad)
    out = torch.empty_like(x)
    if not uses_triton(x):
        return _shift_into(out, x, shift_depth, fold, n_shifted, shift_pad, adjoint)
    b, t, c, h, w = x.shape
    per_image = c * h * w
    if out.numel() == 0:
        return out
    block = min(MAX_BLOCK, triton.next_power_of_2(per_image))
    grid = (b * t, triton.cdiv(per_image, block))
    if grid[1] > _MAX_GRID_Y:
        raise ValueError(f"C*H*W={per_image} is too large for one (b, t) image ({_MAX_GRID_Y} blocks of {block}).")
    kernel = _shift_bwd_kernel if adjoint else _shift_fwd_kernel
    channels_inner = out.stride(2) == 1 and c > 1
    with torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext():
        kernel[grid](x, out, t, c, h, w, shift_depth, fold, n_shifted, *x.stride(), *out.stride(),
                     KEEP=shift_pad == "keep", CHANNELS_INNER=channels_inner, BLOCK=block)
    return out


@torch.library.custom_op("tsamlib::temporal_shift", mutates_args=())
def temporal_shift_op(x: Tensor, shift_depth: int, fold: int, n_shifted: int, shift_pad: str) -> Tensor:
    """Depth-k temporal shift of x (B, T, C, H, W) with ``fold`` channels per group (see :mod:`tsamlib.shift`).

    Returns a new tensor with x's strides; the first ``n_shifted`` segments take part, later ones pass through.
    """
    return _launch(x, shift_depth, fold, n_shifted, shift_pad, adjoint=False)


@torch.library.custom_op("tsamlib::temporal_shift_adjoint", mutates_args=())
def temporal_shift_adjoint_op(grad: Tensor, shift_depth: int, fold: int, n_shifted: int, shift_pad: str) -> Tensor:
    """The adjoint (backward) of ``tsamlib::temporal_shift`` applied to ``grad``; same arguments."""
    return _launch(grad, shift_depth, fold, n_shifted, shift_pad, adjoint=True)


@temporal_shift_op.register_fake
def _temporal_shift_fake(x: Tensor, shift_depth: int, fold: int, n_shifted: int, shift_pad: str) -> Tensor:
    """Meta function: same shape, dtype and strides as x."""
    _check_op_args(x, shift_depth, fold, n_shifted, shift_pad)
    return torch.empty_like(x)


@temporal_shift_adjoint_op.register_fake
def _temporal_shift_adjoint_fake(grad: Tensor, shift_depth: int, fold: int, n_shifted: int,
                                 shift_pad: str) -> Tensor:
    """Meta function: same shape, dtype and strides as grad."""
    _check_op_args(grad, shift_depth, fold, n_shifted, shift_pad)
    return torch.empty_like(grad)


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    """Keep the integer/string arguments for the backward."""
    ctx.shift_args = tuple(inputs[1:])


def _forward_backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, None, None]:
    """Backward of the shift: its adjoint."""
    return temporal_shift_adjoint_op(grad, *ctx.shift_args), None, None, None, None


def _adjoint_backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, None, None]:
    """Backward of the adjoint: the shift itself (for double backward)."""
    return temporal_shift_op(grad, *ctx.shift_args), None, None, None, None


temporal_shift_op.register_autograd(_forward_backward, setup_context=_setup_context)
temporal_shift_adjoint_op.register_autograd(_adjoint_backward, setup_context=_setup_context)


def fused_temporal_shift(x: Tensor, shift_depth: int, f_div: int, n_shifted: int | None = None,
                         shift_pad: str = "zero") -> Tensor:
    """Drop-in for :func:`tsamlib.shift.temporal_shift` (same arguments, checks and result) using the fused op.

    ``shift_depth=0`` returns ``x`` itself (TSN), as the reference does.
    """
    n, fold = check_shift_input(x, shift_depth, f_div, n_shifted, shift_pad)
    if shift_depth == 0:
        return x
    return temporal_shift_op(x, shift_depth, fold, n, shift_pad)

