"""The test protocols of the TSM family: which views of a video are scored, and how their scores are combined.

A :class:`TestProtocol` is fixed before any result is seen and written beside the numbers. Four are known:

- ``views`` (this library's): ``n_clips x n_crops`` views, clip ``i`` at offset ``(i + 0.5) / n_clips`` of each
  segment, crops start/centre/end of the run's ``img_size``; mean of the softmax;
- ``tsm`` (the TSM repository's ``test_models.py``, its default): one centre clip, the centre ``img_size`` crop
  of the frame resized to ``resize`` (their ``GroupScale`` + ``GroupCenterCrop``); mean of the logits;
- ``tsm_dense`` (``--dense_sample --test_crops 3 --full_res``, their 10x3 Kinetics test): 10 clips of T frames
  ``64 // T`` apart, 3 crops of the full short side (``GroupFullResSample``: left, right, centre); mean of logits;
- ``mmaction2``: the file's own ``test_pipeline`` when its ``meta["cfg"]`` records one (``SampleFrames`` with
  ``twice_sample``, ``Resize``, ``CenterCrop`` / ``ThreeCrop`` / ``TenCrop``, the head's ``average_clips``),
  else the test of mmaction2's TSM Kinetics-400 config (1 clip, ``TenCrop`` 224, ``average_clips='prob'``).

The views and the combination are theirs (indices and crop boxes are tested against their arithmetic). Pixels
may differ slightly: the crop box is cut from the decoded frame and resized once (antialiased bilinear), where they
resize the whole frame (PIL or OpenCV) and then cut it. :func:`file_protocols` names the protocols a checkpoint's
own code evaluates it with.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar, Mapping

from ..data.transforms import CROP_LAYOUTS
from ..data.video import DENSE_SPAN, SAMPLINGS

__all__ = ["TestProtocol", "AuthorsPasses", "AGGREGATIONS", "PROTOCOL_NAMES", "views_protocol", "tsm_protocol",
           "mmaction2_protocol", "protocol_named", "file_protocols", "with_sizes", "check_protocol"]

AGGREGATIONS = {"prob": "mean of softmax", "logits": "mean of logits"}
PROTOCOL_NAMES = ("views", "tsm", "tsm_dense", "mmaction2")
_MM_KINETICS = "mmaction2's TSM Kinetics-400 config (tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_kinetics400-rgb)"


@dataclass(frozen=True)
class TestProtocol:
    """One test protocol (see the module docstring): checked when made."""

    __test__ = False   # a library class, not a pytest test case (its name starts with "Test")

    name: str = "views"
    n_clips: int = 2
    n_crops: int = 3
    sampling: str = "segments"     # tsamlib.data.video.SAMPLINGS
    crop_layout: str = "tsamlib"   # tsamlib.data.transforms.CROP_LAYOUTS
    full_res: bool = False         # crops of the whole short side (``resize``), not of ``img_size``
    img_size: int | None = None    # crop side; None: the model's (the run's img_size)
    resize: int | None = None      # short side the crops are cut from; None: the run's
    aggregation: str = "prob"      # AGGREGATIONS
    source: str = "tsamlib"        # whose protocol, where it is defined
    notes: tuple[str, ...] = ()    # what differs from the source, said once

    def __post_init__(self) -> None:
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling={self.sampling!r}: choose one of {list(SAMPLINGS)}.")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation={self.aggregation!r}: choose one of {list(AGGREGATIONS)}.")
        if self.crop_layout not in CROP_LAYOUTS:
            raise ValueError(f"crop_layout={self.crop_layout!r}: choose one of {list(CROP_LAYOUTS)}.")
        if self.n_crops not in CROP_LAYOUTS[self.crop_layout]:
            raise ValueError(f"n_crops={self.n_crops!r}: choose 1 (the centre) or 3 (start, centre and end along the "
                             "long side)" + (", or 10 (mmaction2's TenCrop)" if self.crop_layout == "mmaction2" else "")
                             + ".")
        if not isinstance(self.n_clips, int) or isinstance(self.n_clips, bool) or self.n_clips < 1:
            raise ValueError(f"n_clips={self.n_clips!r}: a whole number >= 1.")
        fixed = {"tsm": 1, "twice": 2}.get(self.sampling)
        if fixed is not None and self.n_clips != fixed:
            raise ValueError(f"sampling={self.sampling!r} places {fixed} clip(s), got n_clips={self.n_clips}.")
        for k in ("img_size", "resize"):
            v = getattr(self, k)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ValueError(f"{k}={v!r}: a whole number of pixels, or None (the run's).")

    @property
    def views_per_video(self) -> int:
        return self.n_clips * self.n_crops

    def sizes(self, img_size: int, resize: int) -> tuple[int, int]:
        """(crop side, short side) of the views, given the run's ``img_size`` and ``resize``."""
        resize = self.resize or resize
        return (resize if self.full_res else self.img_size or img_size), resize

    def clips_text(self) -> str:
        if self.sampling == "segments" and self.n_clips == 1:
            return "1 clip, the centre of each segment"
        return {"segments": f"{self.n_clips} clips at offsets (i + 0.5) / {self.n_clips} of each segment",
                "tsm": "1 clip, the centre of each segment",
                "twice": "2 clips, the centre and the start of each segment",
                "dense": f"{self.n_clips} dense clips (frames {DENSE_SPAN} // T apart)"}[self.sampling]

    def crops_text(self) -> str:
        crops = {1: "the centre crop", 3: "3 crops", 10: "10 crops (5 places, each also flipped)"}[self.n_crops]
        side = "the full short side" if self.full_res else (f"{self.img_size} px" if self.img_size else "img_size")
        return f"{crops} of {side} ({self.crop_layout}'s places)"

    def describe(self) -> str:
        """One line: the views and their combination."""
        return f"{self.clips_text()} x {self.crops_text()}, {AGGREGATIONS[self.aggregation]}"

    def record(self) -> dict[str, Any]:
        """The JSON-ready description written beside the numbers."""
        return dict(name=self.name, n_clips=self.n_clips, n_crops=self.n_crops, sampling=self.sampling,
                    crop_layout=self.crop_layout, full_res=self.full_res, aggregation=AGGREGATIONS[self.aggregation],
                    source=self.source, notes=list(self.notes), description=self.describe())


@dataclass(frozen=True)
class AuthorsPasses:
    """The authors' test (their ``run_MultiClip``, :func:`~tsamlib.evaluation.scoring.score_authors`): ``n_passes``
    passes over every video, each a random training-style clip and crop drawn from ``seed``, logits summed."""

    n_passes: int = 10
    seed: int = 0
    name: ClassVar[str] = "authors"

    def __post_init__(self) -> None:
        for k, least in (("n_passes", 1), ("seed", 0)):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < least:
                raise ValueError(f"{k}={v!r}: a whole number >= {least}.")


def views_protocol(n_clips: int = 2, n_crops: int = 3) -> TestProtocol:
    """This library's fixed views (the papers use ``n_clips=10, n_crops=3``)."""
    return TestProtocol("views", n_clips, n_crops, source="tsamlib (fixed views)")


def tsm_protocol(dense: bool = False) -> TestProtocol:
    """The TSM repository's test: the centre clip and crop (``dense=False``, their default and their 1-clip
    figures) or the dense 10-clip x 3 full-resolution crops test (their Kinetics 10x3 figures)."""
    if dense:
        return TestProtocol("tsm_dense", 10, 3, "dense", "tsm", full_res=True, aggregation="logits",
                            source="TSM test_models.py --dense_sample --test_crops 3 --full_res")
    return TestProtocol("tsm", 1, 1, "tsm", "tsm", aggregation="logits",
                        source="TSM test_models.py (--test_crops 1, one clip)")


def mmaction2_protocol(preprocessing: Mapping[str, Any] | None = None, n_frames: int | None = None) -> TestProtocol:
    """mmaction2's test from what a checkpoint's ``meta["cfg"]`` records (``preprocessing`` of
    :class:`~tsamlib.model.formats.CheckpointInfo`: ``test_views``, ``test_resize``, ``test_crop``,
    ``average_clips``); what it does not record takes mmaction2's TSM Kinetics-400 test. A step tsamlib cannot
    follow is replaced by the nearest one it can, and the record's ``notes`` say so."""
    pre = dict(preprocessing or {})
    frames, resize_step, crop = pre.get("test_views"), pre.get("test_resize"), pre.get("test_crop")
    notes: list[str] = []
    source = "the file's meta cfg test_pipeline" if frames else _MM_KINETICS + ": the file records no test pipeline"
    frames = frames or {}
    twice = bool(frames.get("twice_sample"))    # mmaction2's SampleFrames tests `if self.twice_sample`
    if not isinstance(frames.get("twice_sample"), (bool, type(None))):
        notes.append(f"its twice_sample={frames['twice_sample']!r} is not True/False: read as mmaction2 reads it "
                     f"({'two clips' if twice else 'one clip'})")
    clips = frames.get("num_clips")
    if isinstance(clips, int) and n_frames is not None and clips != n_frames:
        notes.append(f"its test samples {clips} frames per clip; the model takes {n_frames}: scored with {n_frames}")
    resize = None
    scale = (resize_step or {}).get("scale")
    if isinstance(scale, (list, tuple)) and len(scale) == 2 and scale[0] == -1 and isinstance(scale[1], int):
        resize = scale[1]
    elif resize_step:
        notes.append(f"its Resize(scale={scale!r}) is not a short-side resize: the run's resize is used")
    crop = crop or {"type": "TenCrop", "crop_size": 224}
    kinds = {"CenterCrop": 1, "ThreeCrop": 3, "TenCrop": 10}
    if not isinstance(crop, Mapping) or crop.get("type") not in kinds:
        raise ValueError(f"test_crop={crop!r}: mmaction2's test crop is a dict with type one of {list(kinds)}.")
    size = crop.get("crop_size")
    if isinstance(size, (list, tuple)) and len(size) == 2 and size[0] == size[1]:
        size = size[0]                      # a square given as (w, h)
    size = size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None
    n_crops = kinds[crop["type"]]
    if size is None:
        notes.append(f"its {crop['type']} crop_size {crop.get('crop_size')!r} is not one number: img_size is used")
    full = n_crops == 3
    if full and resize is None and size is not None:
        resize = size   # ThreeCrop's crops span the short side: with no Resize recorded, crop_size is that side
    elif full and size is not None and size != resize:
        notes.append(f"its ThreeCrop({size}) does not fill the short side {resize}: the crops are cut at the "
                     f"short side ({resize})")
    avg = pre.get("average_clips", "prob")
    if avg not in ("prob", "score"):
        notes.append(f"average_clips={avg!r} does not average the views: the mean of the softmax is used")
    return TestProtocol("mmaction2", 2 if twice else 1, n_crops, "twice" if twice else "segments", "mmaction2",
                        full_res=full, img_size=None if full else size, resize=resize,
                        aggregation="logits" if avg == "score" else "prob", source=source, notes=tuple(notes))


def protocol_named(name: str | TestProtocol, *, n_clips: int = 2, n_crops: int = 3,
                   preprocessing: Mapping[str, Any] | None = None, n_frames: int | None = None) -> TestProtocol:
    """The protocol ``name`` (:data:`PROTOCOL_NAMES`; a TestProtocol is returned as it is): ``n_clips`` and
    ``n_crops`` shape ``views``, ``preprocessing`` (a checkpoint's) shapes ``mmaction2``."""
    if isinstance(name, TestProtocol):
        return name
    if name == "views":
        return views_protocol(n_clips, n_crops)
    if name in ("tsm", "tsm_dense"):
        return tsm_protocol(dense=name == "tsm_dense")
    if name == "mmaction2":
        return mmaction2_protocol(preprocessing, n_frames)
    raise ValueError(f"protocol {name!r}: choose among {list(PROTOCOL_NAMES)} or 'authors'.")


def file_protocols(fmt: str) -> tuple[str, ...]:
    """The protocols the code a checkpoint of format ``fmt`` comes from evaluates it with (besides ``views``)."""
    return {"tsm": ("tsm", "tsm_dense"), "mmaction2": ("mmaction2",), "authors": ("authors",)}.get(fmt, ())


def with_sizes(protocol: TestProtocol, img_size: int, resize: int) -> TestProtocol:
    """``protocol`` with its crop side and short side resolved from the run's (for the record)."""
    crop, short = protocol.sizes(img_size, resize)
    return replace(protocol, img_size=crop, resize=short)


def check_protocol(protocol: TestProtocol, img_size: int, resize: int, n_frames: int, where: str = "") -> None:
    """ValueError naming the protocol and the fix when its views cannot be cut for a model of ``n_frames`` frames
    whose run resizes to ``resize`` and crops ``img_size``: a crop wider than the short side it is cut from, a
    dense sample of more frames than it spans. ``where``: the file the protocol comes from, for the message."""
    crop, short = protocol.sizes(img_size, resize)
    whose = f"protocol {protocol.name!r} ({protocol.source}{', ' + where if where else ''})"
    if crop > short:
        raise ValueError(f"{whose} cuts {crop} px crops from frames whose short side is {short} px: give settings "
                         f"with resize >= {crop} (or a smaller img_size), or leave {protocol.name!r} out of "
                         "protocols.")
    if protocol.sampling == "dense" and n_frames > DENSE_SPAN:
        raise ValueError(f"{whose} samples T frames {DENSE_SPAN} // T apart: it takes at most {DENSE_SPAN} frames, "
                         f"the model has n_frames={n_frames}; leave {protocol.name!r} out of protocols.")
