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

This file is the definition: the settings (:class:`ShiftSpec`, checked once when it is made), their layout on one
input (:class:`ShiftLayout`, what the kernels take) and :func:`shift_into`, the slice copies that every implementation
computes (:mod:`tsamlib.model.shift` wraps them as autograd ops and a module; the Triton kernels of
:mod:`tsamlib.model.shift_triton` are tested element for element against them). It needs nothing but torch.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import NamedTuple

from torch import Tensor

__all__ = ["SHIFT_PADS", "SHIFT_DIRECTIONS", "ShiftSpec", "ShiftLayout", "shift_into"]

SHIFT_PADS = ("zero", "keep")
SHIFT_DIRECTIONS = ("bidirectional", "causal")


class ShiftLayout(NamedTuple):
    """A shift laid out on one input: depth k, channels per group ``fold``, segments that take part ``n_shifted``,
    border and direction. What the kernels take; its fields, in this order, are the Triton ops' arguments."""
    depth: int
    fold: int
    n_shifted: int
    pad: str
    direction: str


@dataclass(frozen=True)
class ShiftSpec:
    """The settings of a temporal shift, checked once, when it is made (ValueError naming what to change).

    ``depth``: k, how far channels move (0: no shift, TSN; 1 with ``f_div=8``: TSM); ``f_div``: ``C // f_div``
    channels move in each direction; ``n_shifted``: the leading segments that take part (None: all of an input's;
    a TSAM model sets its ``n_frames``, so the audio segment passes through); ``pad``: one of :data:`SHIFT_PADS`;
    ``direction``: one of :data:`SHIFT_DIRECTIONS`. Settings files and the CLI call them ``shift_depth``, ``f_div``,
    ``shift_pad``, ``shift_direction``, and so do the messages.
    """
    depth: int = 1
    f_div: int = 8
    n_shifted: int | None = None
    pad: str = "zero"
    direction: str = "bidirectional"

    def __post_init__(self) -> None:
        for name, value in (("shift_depth", self.depth), ("f_div", self.f_div), ("n_shifted", self.n_shifted)):
            if (not isinstance(value, int) or isinstance(value, bool)) and (value is not None or name != "n_shifted"):
                raise ValueError(f"{name}={value!r} must be an integer.")
        if self.pad not in SHIFT_PADS:
            raise ValueError(f"shift_pad={self.pad!r}: choose 'zero' (TSM: zeros at the clip's border) or 'keep' "
                             "(the authors' code: border segments keep their own values).")
        if self.direction not in SHIFT_DIRECTIONS:
            raise ValueError(f"shift_direction={self.direction!r}: choose one of {list(SHIFT_DIRECTIONS)} "
                             "('bidirectional': from the past and the future, the report's; 'causal': from the past "
                             "only).")
        if self.n_shifted is not None and self.n_shifted < 1:
            raise ValueError(f"n_shifted={self.n_shifted} must be >= 1.")
        if self.depth < 0:
            raise ValueError(f"shift_depth={self.depth} is negative: use 0 (no shift, TSN) or a depth k >= 1.")
        if self.depth > 0 and self.f_div < 2:
            raise ValueError(f"f_div={self.f_div} must be >= 2 (C // f_div channels move in each direction); "
                             "use f_div=8 for TSM or f_div=4 as in the TSAM report.")
        if self.n_shifted is not None:
            self._check_segments(self.n_shifted)

    def __repr__(self) -> str:  # only what differs from the defaults: ShiftSpec(depth=4, f_div=4)
        given = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if getattr(self, f.name) != f.default]
        return f"ShiftSpec({', '.join(given)})"

    def _check_segments(self, n: int) -> None:
        if self.depth > 0 and self.depth >= n:
            raise ValueError(f"shift_depth={self.depth} needs more segments: with n_shifted={n} video "
                             f"segments the largest depth is {n - 1}; lower shift_depth or raise n_frames.")

    def fold(self, channels: int) -> int:
        """Channels per shifted group on a layer of ``channels``: ``(channels // f_div) // depth`` (0 for depth 0);
        ValueError when the layer is too narrow for a group of one."""
        if self.depth == 0:
            return 0
        f = (channels // self.f_div) // self.depth
        if f == 0:
            raise ValueError(f"C={channels} channels are too few for f_div={self.f_div}, shift_depth={self.depth}: "
                             f"each of the {2 * self.depth} groups would hold (C // f_div) // k = 0 channels; "
                             "lower shift_depth or f_div (or use a wider layer).")
        return f

    def layout(self, x: Tensor) -> ShiftLayout:
        """This shift on ``x`` (B, T, C, H, W): the segments that take part (``n_shifted``, else T) and the group
        size; ValueError when ``x`` cannot take it (its shape, too few segments or channels)."""
        if x.dim() != 5:
            raise ValueError(f"temporal_shift expects x of shape (B, T, C, H, W), got {tuple(x.shape)}.")
        t = x.shape[1]
        n = t if self.n_shifted is None else self.n_shifted
        if n > t:
            raise ValueError(f"n_shifted={n} must be in 1..T={t}.")
        if self.n_shifted is None:
            self._check_segments(n)
        return ShiftLayout(self.depth, self.fold(x.shape[2]), n, self.pad, self.direction)


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


def shift_into(out: Tensor, x: Tensor, layout: ShiftLayout, adjoint: bool = False) -> Tensor:
    """Write the shift ``layout`` of x (B, T, C, H, W) into out (or, with ``adjoint``, its adjoint)."""
    k, f, n, pad, direction = layout
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
