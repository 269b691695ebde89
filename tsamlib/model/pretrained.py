"""Pretrained weights: timm tags, the ``in1k``/``in21k`` shorthands, and checkpoint files of the TSM family.

Kept apart from the architecture (as timm keeps pretrained configs apart from ``resnet.py``); what a file is and
what it holds is :mod:`tsamlib.model.formats`' to tell.

``pretrained`` may be
- ``None``: random initialisation;
- ``"in1k"``: ImageNet-1K. For the archs TSM used (resnet18/34/50/101) the torchvision weights
  ``<arch>.tv_in1k`` (what the TSM paper started from); for any other arch timm's default tag;
- ``"in21k"``: ImageNet-21K, as the report: the MIIL ResNet-50 ImageNet-21K-P checkpoint
  ``resnet50_miil_21k.pth`` (Ridnik et al. 2021) as a local file, looked up in ``$TSAM_WEIGHTS`` and
  ``./weights/``; download it once by hand and put it there;
- a timm tag such as ``"resnet50.a1_in1k"``: loaded through timm (hub cache or network);
- a local file (``.pth``/``.pt``/``.bin``/``.tar``/``.ckpt``/``.safetensors``), read with ``weights_only=True``:
  a TSM-repository, mmaction2, TSAM-authors' or tsamlib checkpoint, or an image model's state dict;
- a package folder written by ``python -m tsamlib checkpoint convert`` (``model.safetensors`` + ``config.json``), or
  a run folder (its final weights, ``checkpoints/model.pth``, with the run's settings).

A video model's file must fit the model asked for: every tensor has its place (a classifier of another size is
replaced by a new one, and the report says so), and each setting the file states (frames, shift depth, ``f_div``,
the blocks it shifts, the shift's border, audio) equals the model's, else a ValueError names both values
(:func:`check_fits`). ``pretrained_match="weights"`` takes the weights into another model on purpose (a TSAM k=4
from a TSM k=1 checkpoint): the differences are then reported, not refused. A setting that only the file's *name*
claims gives a warning, never a value.

:func:`save_authors_checkpoint` writes a tsamlib model in the authors' layout (keys named as their model names
them), e.g. to hand weights trained here to their code, or to exercise the released-checkpoint pipeline
(:mod:`tsamlib.evaluation.released`, notebook 06) without their file; :func:`save_tsm_checkpoint` and
:func:`save_mmaction2_checkpoint` write a TSM or TSN in the TSM repository's and mmaction2's layouts.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import RunConfig
from .formats import (AUTHORS_LAYOUT, PACKAGE_FILES, VIDEO_FORMATS, CheckpointInfo, UnsupportedCheckpoint,
                      checkpoint_file, read_checkpoint, resnet_arch)

__all__ = ["IN21K_FILENAME", "AUTHORS_LAYOUT", "PRETRAINED_MATCHES", "LoadReport", "resolve_pretrained",
           "canonical_key", "check_fits", "fit_tensors", "load_backbone_weights", "load_pretrained", "weight_dirs",
           "authors_model_state", "save_authors_checkpoint", "save_tsm_checkpoint", "save_mmaction2_checkpoint",
           "UnsupportedCheckpoint"]

IN21K_FILENAME = "resnet50_miil_21k.pth"
TV_IN1K_ARCHS = {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152"}
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt", ".tar")
# "strict": every setting a file states must be the model's; "weights": only its tensors must fit.
PRETRAINED_MATCHES = tuple(next(f for f in fields(RunConfig) if f.name == "pretrained_match").metadata["choices"])
# The settings a file may state, compared with the model's (dropout acts in training only: not compared).
_COMPARED = ("n_frames", "audio", "shift_depth", "f_div", "shift_pad", "shift_direction")


@dataclass
class LoadReport:
    """What happened when weights were loaded: where from, which format, and where each tensor went."""

    source: str
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    skipped_classifier: list[str] = field(default_factory=list)  # the file's classifier, replaced: other size
    layout: str = ""  # the file's format (formats.FORMATS); "" for timm's own weights
    info: CheckpointInfo | None = None
    notes: list[str] = field(default_factory=list)  # settings of the file that differ (pretrained_match="weights")

    @property
    def data_state(self) -> dict[str, Any] | None:
        """The authors' checkpoint: its training state (epoch, best score)."""
        return self.info.records if self.info is not None and self.layout == AUTHORS_LAYOUT else None

    @property
    def head(self) -> str:
        """``"loaded"`` (the file's classifier), ``"replaced"`` (another size: a new one) or ``"new"`` (none in it)."""
        return "replaced" if self.skipped_classifier else "loaded" if self.info is not None and \
            self.info.num_classes is not None else "new"

    def record(self) -> dict[str, Any]:
        """What a run's ``metrics.json`` keeps of it: the source and its format, where the tensors went, what the
        file states (settings with their sources, records), the differences taken on purpose."""
        info = self.info
        out: dict[str, Any] = dict(source=self.source, format=self.layout or "timm", loaded=self.loaded,
                                   head=self.head, missing=self.missing, unexpected=self.unexpected)
        if self.skipped_classifier:
            out["head_replaced"] = self.skipped_classifier
        if info is not None:
            out.update(arch=info.arch, num_classes=info.num_classes, settings=info.settings, sources=info.sources,
                       not_weights=info.ignored,
                       records={k: v for k, v in info.records.items() if isinstance(v, (int, float, str, bool))})
            weights = Path(self.source) / PACKAGE_FILES[0] if Path(self.source).is_dir() else Path(self.source)
            if weights.is_file():
                out["sha256"] = _sha256(weights)   # of the weights themselves: a package's model.safetensors
        if self.notes:
            out["differences_taken"] = self.notes
        return out

    def __str__(self) -> str:
        s = f"loaded {self.loaded} tensors from {self.source}"
        if self.layout:
            s += f" ({self.layout} format"
            if self.layout == AUTHORS_LAYOUT:
                s += f": the authors' checkpoint layout, data_state {self.data_state}"
            s += ")"
        if self.info is not None and self.info.ignored:
            s += f"; {len(self.info.ignored)} not weights: {', '.join(self.info.ignored)}"
        if self.skipped_classifier:
            s += (f"; classifier replaced by a new one (the file's has {self.info.num_classes if self.info else '?'} "
                  f"classes): {', '.join(self.skipped_classifier)}")
        if self.notes:
            s += "; " + "; ".join(self.notes)
        if self.missing:
            s += (f"; {len(self.missing)} missing: {', '.join(self.missing[:8])}"
                  + (" ..." if len(self.missing) > 8 else ""))
        if self.unexpected:
            s += (f"; {len(self.unexpected)} unexpected: {', '.join(self.unexpected[:8])}"
                  + (" ..." if len(self.unexpected) > 8 else ""))
        return s


def _sha256(path: Path) -> str:
    import hashlib
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weight_dirs() -> list[Path]:
    """Folders searched for local weight files: ``$TSAM_WEIGHTS`` (os.pathsep-separated), then ``./weights``."""
    dirs = [Path(p) for p in os.environ.get("TSAM_WEIGHTS", "").split(os.pathsep) if p]
    return dirs + [Path("weights")]


def resolve_pretrained(pretrained: str | os.PathLike | None, arch: str) -> tuple[str, str] | None:
    """Turn ``pretrained`` into ``("file", path)`` (a file or a package folder) or ``("timm", tag)``; ``None``
    stays ``None``."""
    if pretrained is None or str(pretrained).lower() in ("", "none", "scratch"):
        return None
    p = str(pretrained)
    if p == "in1k":
        return ("timm", f"{arch}.tv_in1k" if arch in TV_IN1K_ARCHS else arch)
    if p == "in21k":
        for d in weight_dirs():
            if (d / IN21K_FILENAME).is_file():
                return ("file", str(d / IN21K_FILENAME))
        if arch.startswith("resnetv2_50x1_bit"):
            return ("timm", "resnetv2_50x1_bit.goog_in21k")
        raise FileNotFoundError(
            f"pretrained='in21k' needs the ImageNet-21K ResNet-50 weights as a local file: put "
            f"{IN21K_FILENAME} (MIIL ImageNet-21K-P, the report's choice) in one of "
            f"{[str(d) for d in weight_dirs()]} or set TSAM_WEIGHTS to its folder; or pass a checkpoint path.")
    if Path(p).is_dir():
        if (Path(p) / "params.json").is_file():   # a run folder: its final weights
            return ("file", str(checkpoint_file(p)))
        missing = [f for f in PACKAGE_FILES if not (Path(p) / f).is_file()]
        if missing:
            raise FileNotFoundError(f"pretrained folder {p!r} has no {' and '.join(missing)}: a folder must be a "
                                    "package written by `python -m tsamlib checkpoint convert`; or give a file.")
        return ("file", p)
    if p.endswith(CHECKPOINT_SUFFIXES) or Path(p).exists() or os.sep in p:
        if Path(p).exists() and not Path(p).is_file():
            raise ValueError(f"pretrained {p!r} is not a regular file (a pipe or a device): give a checkpoint file.")
        if not Path(p).is_file():
            raise FileNotFoundError(f"pretrained checkpoint {p!r} does not exist; give an existing .pth/.pt/"
                                    ".safetensors file, a package folder, a timm tag like 'resnet50.a1_in1k', "
                                    "'in1k' or 'in21k'.")
        return ("file", p)
    tag_arch = p.split(".")[0]
    if tag_arch != arch:
        raise ValueError(f"pretrained tag {p!r} is for arch {tag_arch!r} but arch={arch!r}; use arch={tag_arch!r} "
                         f"or a tag of {arch!r} (timm.list_pretrained('{arch}.*')).")
    return ("timm", p)


def canonical_key(key: str) -> str:
    """Backbone key as timm names it: drop ``module.`` (DataParallel), ``backbone.`` and the shift wrapper's
    ``.net``."""
    for prefix in ("module.", "backbone."):
        if key.startswith(prefix):
            key = key[len(prefix):]
    return key.replace(".conv1.net.", ".conv1.")


def _shifted_set(stages: tuple[int, ...], n_insert: int, m_insert: int) -> dict[int, list[int]]:
    return {s + 1: [i for i in range(n) if i % n_insert == m_insert] for s, n in enumerate(stages)}


def check_fits(info: CheckpointInfo, *, arch: str, settings: dict[str, Any], match: str = "strict") -> list[str]:
    """Compare what the file states (``info``) with the model asked for (``arch``, create_tsam ``settings``).

    ``match="strict"``: a difference is a ValueError naming the file's value and the model's, and where the file's
    was read. ``"weights"``: the differences are returned as notes. Settings only the file's name claims give a
    UserWarning. Either way a file of another ResNet is refused here, before any tensor is compared."""
    if match not in PRETRAINED_MATCHES:
        raise ValueError(f"pretrained_match={match!r}: choose one of {list(PRETRAINED_MATCHES)}.")
    src = info.path
    if info.arch is not None and info.format in VIDEO_FORMATS and info.arch != arch:
        raise ValueError(f"{src} holds a {info.arch_text or info.arch} ({info.format} format, arch {info.arch!r}) but "
                         f"this model is arch={arch!r}: build it with arch={info.arch!r}.")
    stated, want = dict(info.settings), dict(settings)
    diffs = []
    for name in _COMPARED:
        if name not in stated or name not in want:
            continue
        if name == "f_div" and not (stated.get("shift_depth", 1) and want.get("shift_depth", 1)):
            continue  # without a shift f_div means nothing
        if stated[name] != want[name]:
            diffs.append((name, stated[name], want[name], info.sources.get(name, "the file")))
    if info.shifted and any(info.shifted.values()) and want.get("shift_depth", 1) and info.stages and all(info.stages):
        theirs = {s: b for s, b in info.shifted.items()}
        ours = _shifted_set(info.stages, want.get("n_insert", 1), want.get("m_insert", 0))
        if theirs != ours:
            rule = (info.settings.get("n_insert"), info.settings.get("m_insert"))
            diffs.append(("n_insert, m_insert", rule, (want.get("n_insert", 1), want.get("m_insert", 0)),
                          info.sources.get("n_insert", "tensors") + f": shifted blocks {theirs}"))
    notes = [f"trained with {n}={a!r} (from {where}), this model has {n}={b!r}" for n, a, b, where in diffs]
    if diffs and match == "strict":
        fix = ", ".join(f"{n}={a!r}" for n, a, _, _ in diffs if "," not in n)
        rule = next((a for n, a, _, _ in diffs if "," in n), None)
        if rule is not None:
            fix += (", " if fix else "") + (f"n_insert={rule[0]}, m_insert={rule[1]}" if rule[0] is not None else
                                            "the n_insert, m_insert that shift those blocks")
        raise ValueError(f"{src} does not fit this model: " + "; ".join(notes) + f". Build the model with {fix} to "
                         "use the file as it was trained, or pass pretrained_match='weights' (CLI --pretrained-match "
                         "weights) to take its weights into this other model.")
    for name, claimed in info.name_hints.items() if match == "strict" else ():
        have = arch if name == "arch" else want.get(name)
        if name in stated or have is None or claimed == have:
            continue
        if name == "f_div" and not want.get("shift_depth", 1):
            continue
        warnings.warn(f"{Path(src).name}: the file name says {name}={claimed!r} but this model has {name}={have!r} "
                      f"(the file does not record {name}; a name is never read as a setting).", stacklevel=3)
    return notes


def fit_tensors(target: dict[str, torch.Tensor], state_dict: dict[str, torch.Tensor], source: str
                ) -> tuple[list[tuple[str, str]], list[str], list[str], list[str]]:
    """Where each tensor of ``state_dict`` (timm names + ``fc.*``) goes in ``target`` (the same names), without
    copying: ``(pairs (file key, target key), missing, unexpected, replaced classifier)``. A backbone tensor of
    another shape raises ValueError (another arch)."""
    pairs, unexpected, replaced, seen = [], [], [], set()
    for k, v in state_dict.items():
        ck = canonical_key(k)
        if ck not in target:
            (replaced if ck.startswith("fc.") else unexpected).append(k)
            continue
        if tuple(target[ck].shape) != tuple(v.shape):
            if ck.startswith("fc."):
                replaced.append(f"{k} {tuple(v.shape)}->{tuple(target[ck].shape)}")
                seen.add(ck)
                continue
            raise ValueError(f"{source}: tensor {k} has shape {tuple(v.shape)} but the backbone expects "
                             f"{tuple(target[ck].shape)}; is the checkpoint for another arch?")
        pairs.append((k, ck))
        seen.add(ck)
    missing = [k for k in target if k not in seen and not k.endswith("num_batches_tracked")]
    return pairs, missing, unexpected, replaced


def _targets(backbone: nn.Module, head: nn.Linear | None) -> dict[str, torch.Tensor]:
    target = {canonical_key(k): v for k, v in backbone.state_dict().items()}
    if head is not None:
        target.update({f"fc.{k}": v for k, v in head.state_dict().items()})
    return target


def load_backbone_weights(backbone: nn.Module, head: nn.Linear | None, state_dict: dict[str, torch.Tensor],
                          source: str, report: LoadReport | None = None) -> LoadReport:
    """Copy matching tensors into ``backbone`` (and ``head`` for ``fc.*`` keys when shapes agree); fill ``report``
    (a new one when ``None``)."""
    report = LoadReport(source) if report is None else report
    target = _targets(backbone, head)
    pairs = _fit(target, state_dict, report)
    _copy(target, state_dict, pairs)
    return report


def _fit(target: dict[str, torch.Tensor], state_dict: dict[str, torch.Tensor],
         report: LoadReport) -> list[tuple[str, str]]:
    """:func:`fit_tensors` into ``report`` (missing, unexpected, replaced classifier, loaded); the pairs to copy."""
    pairs, report.missing, report.unexpected, report.skipped_classifier = fit_tensors(target, state_dict,
                                                                                       report.source)
    report.loaded = len(pairs)
    return pairs


def _copy(target: dict[str, torch.Tensor], state_dict: dict[str, torch.Tensor], pairs: list[tuple[str, str]]) -> None:
    with torch.no_grad():
        for k, ck in pairs:
            target[ck].copy_(state_dict[k])


def load_pretrained(backbone: nn.Module, head: nn.Linear, path: str, *, arch: str, settings: dict[str, Any],
                    match: str = "strict", copy: bool = True) -> LoadReport:
    """Read the checkpoint file or package ``path``, check it against the model (:func:`check_fits`) and copy its
    tensors into ``backbone`` and ``head``. A video model's file must fit tensor for tensor (its classifier may be
    replaced); an image model's may leave tensors out, reported. ``copy=False`` checks only (a model on the meta
    device: shapes, no memory)."""
    state_dict, info = read_checkpoint(path)
    broken = [k for k, v in state_dict.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        raise ValueError(f"{path} holds {len(broken)} tensors with NaN or infinite values (first: {broken[0]}): a "
                         "broken checkpoint (a diverged run?) is not loaded.")
    notes = check_fits(info, arch=arch, settings=settings, match=match)
    report = LoadReport(path, layout=info.format, info=info, notes=notes)
    target = _targets(backbone, head)
    pairs = _fit(target, state_dict, report)
    if info.format in VIDEO_FORMATS and (report.missing or report.unexpected):   # before anything is copied
        what = f"a {info.arch_text}" if info.arch_text else "another backbone"
        raise ValueError(f"{path} ({info.format} format) holds {what}, which does not fit arch={arch!r}: "
                         f"{len(report.missing)} tensors of the model missing ({', '.join(report.missing[:4])}), "
                         f"{len(report.unexpected)} of the file without a place ({', '.join(report.unexpected[:4])}); "
                         "build it with the arch the file was trained with"
                         + (f" (arch={info.arch!r})." if info.arch else "."))
    if copy:
        _copy(target, state_dict, pairs)
    if report.loaded == 0:
        raise ValueError(f"no tensor of {path} matches {arch}: {report}")
    return report


def authors_model_state(model: nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """The ``model_state`` of the authors' layout for a tsamlib ``TSAM`` (anything with ``.backbone`` and ``.fc``):
    ``nn_input`` empty, ``nn_backbone`` the backbone as ``base_model.*`` with shifted convs as ``.conv1.layer.*``,
    ``last_fc`` the head; tensors detached, on the CPU. :func:`read_checkpoint` maps it back key for key."""
    backbone = {"base_model." + k.replace(".conv1.net.", ".conv1.layer."): v.detach().cpu().clone()
                for k, v in model.backbone.state_dict().items()}
    head = {k: v.detach().cpu().clone() for k, v in model.fc.state_dict().items()}
    return {"nn_input": {}, "nn_backbone": backbone, "last_fc": head}


def save_authors_checkpoint(model: nn.Module, path: str | os.PathLike,
                            data_state: dict[str, Any] | None = None) -> Path:
    """Write ``model`` as the authors' saver writes theirs (``save_timepoint``): ``{data_state, model_state:
    {nn_input, nn_backbone, last_fc}, optimizer_state_dict}``, atomically. ``data_state`` (default ``{"epoch":
    0}``) should hold plain Python values; the optimizer state is an SGD one (their optimizer: lr 0.01, momentum
    0.9, weight decay 1e-4) with no momentum buffers, over the parameters in tsamlib's order. Their ``fine_tune``
    reads only ``model_state``; their ``load_model`` restores the optimizer too, which needs their parameter
    groups (not checked here)."""
    from ..runs.fileio import atomic_path

    params = [p for p in model.parameters()]
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4) if params else None
    record = {"data_state": dict(data_state) if data_state is not None else {"epoch": 0},
              "model_state": authors_model_state(model),
              "optimizer_state_dict": optimizer.state_dict() if optimizer is not None else {}}
    with atomic_path(path, fsync=True) as tmp:
        torch.save(record, tmp)
    return Path(path)


def _tsm_or_tsn(model: nn.Module, fmt: str) -> bool:
    """True for a TSM, False for a TSN; ValueError naming what ``fmt``'s code could not build."""
    why = []
    if getattr(model, "audio", False):
        why.append("an audio frame")
    k = getattr(model, "shift_depth", None)
    if k not in (0, 1):
        why.append(f"shift depth {k} (TSM shifts 1 segment)")
    if k == 1:
        if model.shift_pad != "zero" or model.shift_direction != "bidirectional":
            why.append(f"a {model.shift_direction} shift with {model.shift_pad!r} borders (TSM's: bidirectional, "
                       "zeros)")
        stages = [len(getattr(model.backbone, f"layer{s}")) for s in range(1, 5)]
        n_round = 2 if stages[2] >= 23 else 1     # TSM's and mmaction2's 'blockres': every block, every 2nd if deep
        if (model.n_insert, model.m_insert) != (n_round, 0):
            why.append(f"the shift in the blocks i with i % {model.n_insert} == {model.m_insert} (theirs: "
                       f"i % {n_round} == 0)")
    if why:
        raise ValueError(f"this model has {', '.join(why)}: {fmt}'s code cannot build it; save it with tsamlib "
                         "(a run's model.pth, or `checkpoint convert` for a package) instead.")
    return k == 1


def _unshifted(key: str, shifted: bool) -> str:
    """A TSN's convs carry no shift wrapper in TSM's and mmaction2's files (tsamlib's k=0 model keeps one)."""
    return key if shifted else key.replace(".conv1.net.", ".conv1.")


def save_tsm_checkpoint(model: nn.Module, path: str | os.PathLike, *, epoch: int = 0,
                        best_prec1: float | None = None) -> Path:
    """Write a TSM (shift depth 1, zeros at the borders) or TSN (no shift) as the TSM repository's ``main.py``
    saves: ``{epoch, arch, state_dict: module.base_model.* (shifted convs '.conv1.net'), module.new_fc.*,
    best_prec1}``, atomically. What their file name would state (frames, f_div) is not in the file: give it
    when reading it back. ValueError for a model their code does not build (audio, other depths or placements)."""
    from ..runs.fileio import atomic_path

    shifted = _tsm_or_tsn(model, "the TSM repository")
    if not _whole(epoch, 0):
        raise ValueError(f"epoch={epoch!r}: a whole number >= 0.")
    arch = resnet_arch(model.backbone.state_dict())[0]
    if arch is None:
        raise ValueError("the backbone is not a ResNet the TSM repository builds (resnet18 to resnet152).")
    state = {"module.base_model." + _unshifted(k, shifted): v.detach().cpu().clone()
             for k, v in model.backbone.state_dict().items()}
    state.update({"module.new_fc." + k: v.detach().cpu().clone() for k, v in model.fc.state_dict().items()})
    record = {"epoch": int(epoch), "arch": arch, "state_dict": state,
              **({"best_prec1": float(best_prec1)} if best_prec1 is not None else {})}
    with atomic_path(path, fsync=True) as tmp:
        torch.save(record, tmp)
    return Path(path)


def _whole(v: Any, low: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _check_mm_values(model: nn.Module, *, epoch, resize, img_size, mean_255, std_255, classes) -> None:
    """ValueError naming the argument of :func:`save_mmaction2_checkpoint` whose value its config text cannot hold
    (the text is parsed back as literals: a value that is not one would be lost or change the file's meaning)."""
    import math
    if not _whole(epoch, 0):
        raise ValueError(f"epoch={epoch!r}: a whole number >= 0.")
    for name, v in (("resize", resize), ("img_size", img_size)):
        if not _whole(v, 1):
            raise ValueError(f"{name}={v!r}: a whole number of pixels >= 1.")
    if img_size > resize:
        raise ValueError(f"img_size={img_size} > resize={resize}: the test's CenterCrop is cut from the frame resized "
                         "to a short side of resize; give resize >= img_size.")
    for name, v in (("mean_255", mean_255), ("std_255", std_255)):
        ok = isinstance(v, (list, tuple)) and len(v) == 3 and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
        if not ok or (name == "std_255" and min(v) <= 0):
            raise ValueError(f"{name}={v!r}: three finite numbers on the 0-255 scale (R, G, B)"
                             + (", each > 0" if name == "std_255" else "") + ".")
    if classes is not None:
        n = model.fc.out_features
        if isinstance(classes, str) or not isinstance(classes, (list, tuple)) or not all(
                isinstance(c, str) for c in classes) or len(classes) != n:
            raise ValueError(f"classes: a list of {n} names (one per output of the classifier), got "
                             f"{classes!r:.80}.")


_MM_WRITE = [(".downsample.0.", ".downsample.conv."), (".downsample.1.", ".downsample.bn.")]


def _mm_key(k: str) -> str:
    """A timm ResNet key in mmcv's ConvModule naming (the inverse of the reader's)."""
    if k.startswith(("conv1.", "bn1.")):
        return "backbone.conv1." + ("conv." if k.startswith("conv1.") else "bn.") + k.split(".", 1)[1]
    for a, b in _MM_WRITE:
        k = k.replace(a, b)
    parts = k.split(".")     # layerS.I.convJ[.net].X / layerS.I.bnJ.X
    if len(parts) >= 4 and parts[2].startswith("conv"):
        k = ".".join(parts[:3] + ["conv"] + parts[3:])
    elif len(parts) >= 4 and parts[2].startswith("bn"):
        k = ".".join(parts[:2] + ["conv" + parts[2][2:], "bn"] + parts[3:])
    return "backbone." + k


def save_mmaction2_checkpoint(model: nn.Module, path: str | os.PathLike, *, epoch: int = 0, resize: int = 256,
                              img_size: int = 224, mean_255: tuple = (123.675, 116.28, 103.53),
                              std_255: tuple = (58.395, 57.12, 57.375), classes: list[str] | None = None) -> Path:
    """Write a TSM or TSN as mmengine's ``save_checkpoint`` saves an mmaction2 ``Recognizer2D``: ``{meta: {cfg,
    epoch, dataset_meta}, state_dict: backbone.* (ConvModule conv/bn, shifted convs '.conv1.conv.net'),
    cls_head.fc_cls.*}``, atomically. ``meta["cfg"]`` is a config text (literals only) with the backbone, the head
    and a test pipeline of one centre clip and crop (``Resize`` to ``resize``, ``CenterCrop`` of ``img_size``),
    the input ``mean_255``/``std_255``. ValueError for a model mmaction2's ResNetTSM does not build."""
    from ..runs.fileio import atomic_path

    shifted = _tsm_or_tsn(model, "mmaction2")
    _check_mm_values(model, epoch=epoch, resize=resize, img_size=img_size, mean_255=mean_255, std_255=std_255,
                     classes=classes)
    arch, arch_text, _ = resnet_arch(model.backbone.state_dict())
    if arch is None:
        raise ValueError(f"the backbone is {arch_text or 'not a ResNet'}: mmaction2's ResNet builds ResNet-18 to 152.")
    depth = int(arch[len("resnet"):])
    state = {_mm_key(_unshifted(k, shifted)): v.detach().cpu().clone()
             for k, v in model.backbone.state_dict().items() if not k.startswith("fc.")}
    state.update({"cls_head.fc_cls." + k: v.detach().cpu().clone() for k, v in model.fc.state_dict().items()})
    t, c, d = model.n_frames, model.fc.out_features, model.num_features
    backbone = (f"dict(type='ResNetTSM', depth={depth}, num_segments={t}, shift_div={model.f_div}, "
                "shift_place='blockres', temporal_pool=False, norm_eval=False)" if shifted
                else f"dict(type='ResNet', depth={depth}, norm_eval=False)")
    head = (f"dict(type='{'TSMHead' if shifted else 'TSNHead'}', num_classes={c}, in_channels={d}, "
            f"spatial_type='avg', consensus=dict(type='AvgConsensus', dim=1), dropout_ratio={model.dropout.p}, "
            + (f"is_shift=True, num_segments={t}, " if shifted else "") + "average_clips='prob')")
    cfg = "\n".join([
        "default_scope = 'mmaction'",
        f"model = dict(type='Recognizer2D', backbone={backbone}, cls_head={head}, data_preprocessor=dict("
        f"type='ActionDataPreprocessor', mean={list(mean_255)}, std={list(std_255)}, format_shape='NCHW'))",
        f"test_pipeline = [dict(type='DecordInit'), dict(type='SampleFrames', clip_len=1, frame_interval=1, "
        f"num_clips={t}, test_mode=True), dict(type='DecordDecode'), dict(type='Resize', scale=(-1, {resize})), "
        f"dict(type='CenterCrop', crop_size={img_size}), dict(type='FormatShape', input_format='NCHW'), "
        "dict(type='PackActionInputs')]"])
    meta: dict[str, Any] = {"epoch": int(epoch), "cfg": cfg}
    if classes is not None:
        meta["dataset_meta"] = {"classes": list(classes)}
    with atomic_path(path, fsync=True) as tmp:
        torch.save({"meta": meta, "state_dict": state}, tmp)
    return Path(path)
