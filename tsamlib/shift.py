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

A source outside [0, n_shifted) gives zeros. Segments from ``n_shifted`` on (the audio "frame") are
copied through untouched and never feed the video segments.

The op writes each output element exactly once (one read + one write per element, like ``clone``),
and its backward is the adjoint shift: the same copies with the two directions swapped.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["shift_fold", "check_shift_settings", "check_shift", "temporal_shift", "TemporalShift",
           "insert_temporal_shift"]


def shift_fold(channels: int, shift_depth: int, f_div: int) -> int:
    """Channels per shifted group: ``(channels // f_div) // shift_depth`` (0 when ``shift_depth == 0``)."""
    return 0 if shift_depth == 0 else (channels // f_div) // shift_depth


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


def _shift_into(out: Tensor, x: Tensor, k: int, f: int, n: int, adjoint: bool) -> Tensor:
    """Write the depth-k shift of x (B, T, C, H, W) into out; ``adjoint`` swaps the two directions."""
    for d in range(1, k + 1):
        a, b, c = (2 * d - 2) * f, (2 * d - 1) * f, 2 * d * f
        future, past = (slice(b, c), slice(a, b)) if adjoint else (slice(a, b), slice(b, c))
        # "future" group: out[t] = x[t + d]; the last d segments have no source
        out[:, : n - d, future] = x[:, d:n, future]
        out[:, n - d : n, future] = 0
        # "past" group: out[t] = x[t - d]; the first d segments have no source
        out[:, d:n, past] = x[:, : n - d, past]
        out[:, :d, past] = 0
    out[:, :n, 2 * k * f :] = x[:, :n, 2 * k * f :]
    if n < x.shape[1]:
        out[:, n:] = x[:, n:]  # the audio segment(s): never moved
    return out


class _TemporalShiftFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, k: int, f: int, n: int) -> Tensor:  # type: ignore[override]
        ctx.k, ctx.f, ctx.n = k, f, n
        return _shift_into(torch.empty_like(x), x, k, f, n, adjoint=False)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        g = _shift_into(torch.empty_like(grad), grad, ctx.k, ctx.f, ctx.n, adjoint=True)
        return g, None, None, None


def temporal_shift(x: Tensor, shift_depth: int, f_div: int, n_shifted: int | None = None) -> Tensor:
    """Shift channel groups of ``x`` (B, T, C, H, W) between segments up to ``shift_depth`` apart.

    ``n_shifted`` (default T) is the number of leading segments that take part; later ones (audio) pass
    through. ``shift_depth=0`` returns ``x`` itself (TSN).
    """
    if x.dim() != 5:
        raise ValueError(f"temporal_shift expects x of shape (B, T, C, H, W), got {tuple(x.shape)}.")
    n = x.shape[1] if n_shifted is None else n_shifted
    if not 0 < n <= x.shape[1]:
        raise ValueError(f"n_shifted={n_shifted} must be in 1..T={x.shape[1]}.")
    f = check_shift(x.shape[2], n, shift_depth, f_div)
    if shift_depth == 0:
        return x
    return _TemporalShiftFn.apply(x, shift_depth, f, n)


class TemporalShift(nn.Module):
    """Residual shift: wrap a layer (a block's ``conv1``) so that its input is shifted in time first.

    The wrapped layer sees (B * n_segments, C, H, W); the first ``n_shifted`` segments of each clip are
    the video frames, the rest (the audio frame) are left alone.
    """

    def __init__(self, net: nn.Module, n_segments: int, n_shifted: int, shift_depth: int, f_div: int):
        super().__init__()
        self.net, self.n_segments, self.n_shifted = net, n_segments, n_shifted
        self.shift_depth, self.f_div = shift_depth, f_div
        channels = getattr(net, "in_channels", None)
        if channels is not None:
            check_shift(channels, n_shifted, shift_depth, f_div)

    def forward(self, x: Tensor) -> Tensor:
        bt, c, h, w = x.shape
        if bt % self.n_segments:
            raise ValueError(f"batch of {bt} images is not a multiple of n_segments={self.n_segments}.")
        x5 = x.view(bt // self.n_segments, self.n_segments, c, h, w)
        return self.net(temporal_shift(x5, self.shift_depth, self.f_div, self.n_shifted).view(bt, c, h, w))

    def extra_repr(self) -> str:
        return (f"n_segments={self.n_segments}, n_shifted={self.n_shifted}, "
                f"shift_depth={self.shift_depth}, f_div={self.f_div}")


def insert_temporal_shift(backbone: nn.Module, n_segments: int, n_shifted: int, shift_depth: int,
                          f_div: int, n_insert: int = 1, m_insert: int = 0) -> int:
    """Wrap ``conv1`` of the residual blocks ``i`` with ``i % n_insert == m_insert`` in every stage.

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
                block.conv1 = TemporalShift(block.conv1, n_segments, n_shifted, shift_depth, f_div)
                count += 1
    return count
