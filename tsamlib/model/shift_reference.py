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

``shift_direction`` says where the groups read from:

- ``"bidirectional"`` (the report's, the default): as above, one group of each distance from the future, one from
  the past;
- ``"causal"``: the past only, so segment t's features depend on segments up to t alone (online use): the same 2k
  groups of f channels, but both groups of distance d read segment t - d (the "future" group becomes a second past
  group). As many channels move; no channel reads the future.

At the border of the clip a group's source segment lies outside [0, n_shifted); ``shift_pad`` says what
comes there (the first d segments' only, for ``"causal"``):

- ``"zero"`` (TSM, the default): zeros;
- ``"keep"`` (the authors' code, github.com/aav-antonov/TSAM ``lib/model/temporal_fusion.py``,
  ``TemporalShift.shift_temporal``: ``out = x.clone()``, then the slice copies): the shifted channels of the
  first/last d segments keep their own, unshifted values.

Segments from ``n_shifted`` on (the audio "frame") are copied through untouched and never feed the video
segments, in both modes.

The op writes each output element exactly once (one read + one write per element, like ``clone``). Its backward
is the adjoint: for ``"zero"`` the same copies with each group's direction reversed; for ``"keep"`` also the gradient
of each kept border element flows back to that element (added to the shifted gradient where both reach it). For
``"causal"`` with ``"keep"`` that is, per group of distance d: ``g[s] = grad[s + d]`` (s < n - d) ``+ grad[s]``
(s < d).

This file is the definition: the settings' checks and :func:`shift_into`, the slice copies that every implementation
computes (:mod:`tsamlib.model.shift` wraps them as autograd ops and a module; the Triton kernels of
:mod:`tsamlib.model.shift_triton` are tested element for element against them). It needs nothing but torch.
"""
from __future__ import annotations

from torch import Tensor

__all__ = ["SHIFT_PADS", "SHIFT_DIRECTIONS", "shift_fold", "check_shift_pad", "check_shift_direction",
           "check_shift_settings", "check_shift", "check_shift_input", "shift_into"]

SHIFT_PADS = ("zero", "keep")
SHIFT_DIRECTIONS = ("bidirectional", "causal")


def shift_fold(channels: int, shift_depth: int, f_div: int) -> int:
    """Channels per shifted group: ``(channels // f_div) // shift_depth`` (0 when ``shift_depth == 0``)."""
    return 0 if shift_depth == 0 else (channels // f_div) // shift_depth


def check_shift_pad(shift_pad: str) -> None:
    """Raise ValueError unless ``shift_pad`` is one of :data:`SHIFT_PADS`."""
    if shift_pad not in SHIFT_PADS:
        raise ValueError(f"shift_pad={shift_pad!r}: choose 'zero' (TSM: zeros at the clip's border) or 'keep' "
                         "(the authors' code: border segments keep their own values).")


def check_shift_direction(shift_direction: str) -> None:
    """Raise ValueError unless ``shift_direction`` is one of :data:`SHIFT_DIRECTIONS`."""
    if shift_direction not in SHIFT_DIRECTIONS:
        raise ValueError(f"shift_direction={shift_direction!r}: choose one of {list(SHIFT_DIRECTIONS)} "
                         "('bidirectional': from the past and the future, the report's; 'causal': from the past "
                         "only).")


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


def shift_into(out: Tensor, x: Tensor, k: int, f: int, n: int, pad: str, adjoint: bool,
               direction: str = "bidirectional") -> Tensor:
    """Write the depth-k shift of x (B, T, C, H, W) into out (or, with ``adjoint``, its adjoint). ``direction``:
    ``"bidirectional"`` or ``"causal"`` (both groups of distance d read t - d)."""
    causal = direction == "causal"
    for d in range(1, k + 1):
        first = slice((2 * d - 2) * f, (2 * d - 1) * f)  # out[t] = x[t + d] (causal: x[t - d])
        second = slice((2 * d - 1) * f, 2 * d * f)  # out[t] = x[t - d]
        for ch, step in ((first, -d if causal else d), (second, -d)):
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


def check_shift_input(x: Tensor, shift_depth: int, f_div: int, n_shifted: int | None = None,
                      shift_pad: str = "zero", shift_direction: str = "bidirectional") -> tuple[int, int]:
    """Check a shift of ``x`` (B, T, C, H, W); return (segments that take part, channels per group)."""
    check_shift_pad(shift_pad)
    check_shift_direction(shift_direction)
    if x.dim() != 5:
        raise ValueError(f"temporal_shift expects x of shape (B, T, C, H, W), got {tuple(x.shape)}.")
    n = x.shape[1] if n_shifted is None else n_shifted
    if not 0 < n <= x.shape[1]:
        raise ValueError(f"n_shifted={n_shifted} must be in 1..T={x.shape[1]}.")
    return n, check_shift(x.shape[2], n, shift_depth, f_div)
