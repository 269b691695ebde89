"""Clip transforms: the same crop, flip and normalisation for every frame of a clip.

The geometry follows TSM: frames are (virtually) resized so that the shorter side is `resize`
(256), then

- training: multi-scale crop: crop width and height are each picked from
  ``scales x shorter side`` (at most `max_distort` scale steps apart), placed at a random offset,
  then resized to ``img_size x img_size`` (224); optional horizontal flip (switch it off for
  Something-Something, where direction is the label); optional colour jitter (``color_jitter``: the
  authors' ranges, brightness 0.8-1.2, contrast 0.75-1.25, saturation 0.75-1.25, hue +-0.05, applied in
  a random order as torchvision's ``ColorJitter``) and random grayscale (``grayscale_p``), each drawn once
  per clip, so every frame of a clip gets the same colours;
- valid (``valid_view``): ``"center_crop"``, a centre ``img_size`` crop of the resized frame, or
  ``"short_side"`` (the authors'), the centre square of the full short side, resized to ``img_size``;
- test: ``n_crops`` = 1 (centre) or 3 (start / centre / end along the long side), chosen by
  `crop_index`, each of the ``valid_view`` size. ``crop_layout`` places them as TSM's or mmaction2's test
  does (:data:`CROP_LAYOUTS`: their integer steps; mmaction2's ``TenCrop``, ``n_crops=10``, adds the four
  corners and a flipped copy of each crop).

For speed the crop box is mapped back to the decoded frame and cut there, so each clip is resized
only once (uint8, bilinear with antialias) and converted to float at the output size.
Input: uint8 ``(T, H, W, 3)``; output: float32 ``(T, 3, img_size, img_size)``, normalised with
`mean` / `std` (the backbone's; ImageNet by default). ``norm_stats("none")`` gives mean 0, std 1:
values ``uint8 / 255`` in [0, 1], what torchvision's ``ToTensor`` gives (the authors' input).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "VALID_VIEWS", "JITTER", "AUTHORS_GRAYSCALE_P", "ClipTransform",
           "multiscale_crop_box", "fixed_crop_box", "norm_stats", "color_jitter", "denormalize", "CROP_LAYOUTS"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VALID_VIEWS = ("center_crop", "short_side")
# The authors' ColorJitter ranges (lib/dataset/video.py): factors drawn uniformly; hue shift in [-0.05, 0.05].
JITTER = dict(brightness=(0.8, 1.2), contrast=(0.75, 1.25), saturation=(0.75, 1.25), hue=(-0.05, 0.05))
AUTHORS_GRAYSCALE_P = 0.2
Box = tuple[float, float, float, float]   # top, left, height, width in resized-frame pixels
# Where fixed test crops go, and how many a layout has: tsamlib's (start/centre/end, rounded), TSM's
# (GroupCenterCrop; GroupFullResSample: left/right/centre in steps of (long - size) // 4), mmaction2's
# (CenterCrop, ThreeCrop in steps of // 2, TenCrop: corners and centre in steps of // 4, each also flipped).
CROP_LAYOUTS = {"tsamlib": (1, 3), "tsm": (1, 3), "mmaction2": (1, 3, 10)}


def norm_stats(video_norm: str) -> tuple[tuple, tuple]:
    """(mean, std) of a ``video_norm`` setting: ``"imagenet"``, or ``"none"`` (0, 1: values stay in [0, 1])."""
    if video_norm == "imagenet":
        return IMAGENET_MEAN, IMAGENET_STD
    if video_norm == "none":
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    raise ValueError(f"video_norm={video_norm!r}: choose one of ['imagenet', 'none'].")


def color_jitter(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """:data:`JITTER` on float frames ``(T, 3, H, W)`` in [0, 1]: one draw of the four factors and of their order
    for the whole clip (torchvision's ``ColorJitter`` semantics; each step clamps to [0, 1])."""
    order = rng.permutation(4)
    f = {k: float(rng.uniform(*JITTER[k])) for k in ("brightness", "contrast", "saturation", "hue")}
    ops = (lambda t: TF.adjust_brightness(t, f["brightness"]), lambda t: TF.adjust_contrast(t, f["contrast"]),
           lambda t: TF.adjust_saturation(t, f["saturation"]), lambda t: TF.adjust_hue(t, f["hue"]))
    for i in order:
        x = ops[i](x)
    return x


def multiscale_crop_box(h: int, w: int, scales=(1, .875, .75, .66), max_distort: int = 1,
                        rng: np.random.Generator | None = None) -> Box:
    """TSM multi-scale crop in an `h x w` frame: sizes from `scales x min(h, w)`, random offset."""
    rng = rng if rng is not None else np.random.default_rng()
    base = min(h, w)
    sizes = [max(1, int(base * s)) for s in scales]
    pairs = [(ch, cw) for i, ch in enumerate(sizes) for j, cw in enumerate(sizes) if abs(i - j) <= max_distort]
    ch, cw = pairs[rng.integers(len(pairs))]
    top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    return float(top), float(left), float(ch), float(cw)


def fixed_crop_box(h: int, w: int, size: int, crop_index: int = 1, n_crops: int = 1, layout: str = "tsamlib") -> Box:
    """A `size` square crop of an `h x w` frame: centre (`n_crops=1`) or crop `crop_index` of the layout's 3 (or
    mmaction2's 10: ``crop_index // 2`` of its 5 places; odd ones are flipped by the caller)."""
    if layout not in CROP_LAYOUTS:
        raise ValueError(f"crop layout {layout!r}: choose one of {list(CROP_LAYOUTS)}")
    if n_crops not in CROP_LAYOUTS[layout]:
        raise ValueError(f"n_crops must be one of {CROP_LAYOUTS[layout]} for the {layout} layout, got {n_crops}")
    size_h, size_w = min(size, h), min(size, w)
    if layout == "tsm" and n_crops == 3:     # GroupFullResSample: x at 0, 4, 2 steps; y at 2 steps
        ws, hs = (w - size_w) // 4, (h - size_h) // 4
        return float(2 * hs), float((0, 4, 2)[crop_index] * ws), float(size_h), float(size_w)
    if layout == "mmaction2":
        if n_crops == 1:                     # CenterCrop: floor division
            return float((h - size_h) // 2), float((w - size_w) // 2), float(size_h), float(size_w)
        if n_crops == 3:                     # ThreeCrop: along the side the crop does not fill
            step = (w - size_w) // 2 if size_h == h else (h - size_h) // 2
            k = (0, 2, 1)[crop_index] * step
            return (0.0, float(k), float(size_h), float(size_w)) if size_h == h else \
                   (float(k), 0.0, float(size_h), float(size_w))
        ws, hs = (w - size_w) // 4, (h - size_h) // 4   # TenCrop's five places
        y, x = ((0, 0), (0, 4), (4, 0), (4, 4), (2, 2))[crop_index // 2]
        return float(y * hs), float(x * ws), float(size_h), float(size_w)
    if n_crops == 1:
        pos = 0.5
    else:
        pos = (0.0, 0.5, 1.0)[crop_index]
    top, left = (h - size_h) / 2, (w - size_w) / 2
    if h > w:
        top = (h - size_h) * pos
    else:
        left = (w - size_w) * pos
    return float(round(top)), float(round(left)), float(size_h), float(size_w)


@dataclass
class ClipTransform:
    """Turn uint8 frames `(T, H, W, 3)` into a normalised float clip `(T, 3, img_size, img_size)`."""
    img_size: int = 224
    resize: int = 256
    train: bool = False
    flip: bool = True
    scales: tuple = (1, .875, .75, .66)
    max_distort: int = 1
    n_crops: int = 1
    grayscale_p: float = 0.0
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    color_jitter: bool = False
    valid_view: str = "center_crop"
    crop_layout: str = "tsamlib"

    def __post_init__(self):
        if self.resize < self.img_size:
            raise ValueError(f"resize ({self.resize}) must be >= img_size ({self.img_size})")
        if self.valid_view not in VALID_VIEWS:
            raise ValueError(f"valid_view={self.valid_view!r}: choose one of {list(VALID_VIEWS)}.")
        if self.crop_layout not in CROP_LAYOUTS:
            raise ValueError(f"crop_layout={self.crop_layout!r}: choose one of {list(CROP_LAYOUTS)}.")
        if self.n_crops not in CROP_LAYOUTS[self.crop_layout]:   # refused here, before a loader fails on every video
            raise ValueError(f"n_crops={self.n_crops}: choose 1 (the centre) or 3 (start, centre and end along the "
                             "long side)" + (", or 10 (mmaction2's TenCrop)" if self.crop_layout == "mmaction2" else "")
                             + ".")
        # mean * 255 and std * 255 in float32 (the values the old tensor arithmetic used), kept as Python floats
        self._mean_255 = (torch.tensor(self.mean, dtype=torch.float32) * 255).tolist()
        self._std_255 = (torch.tensor(self.std, dtype=torch.float32) * 255).tolist()

    def box(self, h: int, w: int, rng: np.random.Generator | None = None, crop_index: int = 1) -> Box:
        """Crop box in original-frame pixels for a frame of size `h x w`."""
        r = self.resize / min(h, w)                        # shorter side -> resize
        rh, rw = max(self.resize, round(h * r)), max(self.resize, round(w * r))
        if self.train:
            top, left, ch, cw = multiscale_crop_box(rh, rw, self.scales, self.max_distort, rng)
        else:
            size = self.img_size if self.valid_view == "center_crop" else min(rh, rw)
            top, left, ch, cw = fixed_crop_box(rh, rw, size, crop_index, self.n_crops, self.crop_layout)
        return top / r, left / r, ch / r, cw / r

    def __call__(self, frames: torch.Tensor, rng: np.random.Generator | None = None,
                 crop_index: int = 1) -> torch.Tensor:
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
            raise ValueError(f"expected uint8 frames (T, H, W, 3), got {tuple(frames.shape)} {frames.dtype}")
        rng = rng if rng is not None else np.random.default_rng()
        h, w = frames.shape[1:3]
        top, left, ch, cw = self.box(h, w, rng, crop_index if self.n_crops > 1 else 1)
        t, lt = int(round(top)), int(round(left))
        ch, cw = max(1, min(int(round(ch)), h - t)), max(1, min(int(round(cw)), w - lt))
        x = frames.permute(0, 3, 1, 2)                     # (T, 3, H, W) view, no copy
        x = TF.resized_crop(x, t, lt, ch, cw, [self.img_size, self.img_size], antialias=True)
        if (self.train and self.flip and rng.random() < 0.5) or (not self.train and self.n_crops == 10
                                                                   and crop_index % 2):
            x = x.flip(-1)      # training flip; TenCrop's flipped copies
        # x is uint8 with the decoder's channels-last memory order: one copy makes it float32 (T, 3, S, S),
        # contiguous, and the normalisation then runs in place, one channel at a time (scalar ops). The same
        # values as ((x.float() - mean) / std).contiguous(), in a fifth of the time on one core.
        out = torch.empty(x.shape, dtype=torch.float32)
        out.copy_(x)
        if self.train and self.color_jitter:
            out = color_jitter(out / 255, rng) * 255
        if self.train and self.grayscale_p > 0 and rng.random() < self.grayscale_p:
            g = (0.299 * out[:, 0] + 0.587 * out[:, 1] + 0.114 * out[:, 2]).unsqueeze(1)
            out = g.expand(-1, 3, -1, -1).contiguous()
        for c, (m, s) in enumerate(zip(self._mean_255, self._std_255)):
            out[:, c].sub_(m).div_(s)
        return out


def denormalize(x: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """Undo the normalisation of `(..., 3, H, W)` frames: float in [0, 1] for display. Pass the transform's
    ``mean`` / ``std`` (for ``video_norm="none"``, 0 and 1: the values are shown as they are)."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x * s + m).clamp(0, 1)
