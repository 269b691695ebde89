"""Checkpoint files of the TSM family, recognised from their keys: which format a file is, what model it holds.

    state_dict, info = read_checkpoint("TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment8_e50.pth")
    info.format, info.arch, info.num_classes, info.settings   # 'tsm', 'resnet50', 400, {'shift_depth': 1, ...}

``state_dict`` is in one set of names whatever the file: a timm ResNet's (``layer1.0.conv1.weight``: the shift
wrapper's level dropped) and ``fc.*`` for the classifier. ``info`` (:class:`CheckpointInfo`) says what the file
states about the model, each value with where it was read (``info.sources``): tensors, records, a config.
A file name is never read as a setting; TSM's names carry some (``segment8``, ``shift8``), kept in
``info.name_hints`` to warn of a mismatch only.

The formats (:data:`FORMATS`), told apart by their keys:

- ``tsamlib``: a run of this project, ``TSAM.state_dict()`` (``backbone.*`` with the shifted convs as
  ``.conv1.net.``, ``fc.*``), bare or as ``last.pth``/``best.pth`` ``{model: ...}``; the run's ``params.json``
  beside its ``checkpoints/`` folder gives its settings.
- ``package``: what ``python -m tsamlib checkpoint convert`` writes, a folder with ``model.safetensors`` (a tsamlib
  state dict) and ``config.json`` (the settings, classes, preprocessing).
- ``authors``: the TSAM authors' ``{data_state, model_state: {nn_input, nn_backbone, last_fc}, ...}``
  (github:aav-antonov/TSAM ``save_timepoint``; their shift wrapper holds the conv as ``.layer``, their border is
  ``shift_pad="keep"``).
- ``tsm``: the TSM repository's ``main.py`` (github:mit-han-lab/temporal-shift-module): ``{epoch, arch,
  state_dict, optimizer, best_prec1}``, keys ``module.base_model.*`` (a torchvision ResNet, the shift wrapper's
  ``.net`` before ``conv1`` in the blocks it shifts: every block, every 2nd for ResNet-101 and deeper, their
  ``n_round``) and ``module.new_fc.*`` (``base_model.fc`` when trained without dropout).
- ``mmaction2``: an mmengine checkpoint of a ``Recognizer2D`` (github:open-mmlab/mmaction2): ``{meta,
  state_dict, ...}``, keys ``backbone.*`` in mmcv's ``ConvModule`` names (``conv1.conv``, ``conv1.bn``,
  ``downsample.conv``/``.bn``), the shift as ``.conv1.conv.net.`` (``ResNetTSM``; none in a TSN ``ResNet``),
  ``cls_head.fc_cls.*``; ``meta["cfg"]`` is the config's text, read here as literals only (never executed) for
  frames, ``shift_div``, the test clips.
- ``backbone``: an image model's state dict (timm, torchvision, the MIIL ImageNet-21K file): backbone weights, a
  classifier of image classes.

What the formats cannot hold is not guessed: TSM's and the authors' files do not record their frames or ``f_div``
(give them, or read the name's hint). Variants tsamlib does not build are named and refused
(:class:`UnsupportedCheckpoint`): TSM's ``block`` placement, temporal pooling, non-local blocks, optical-flow
inputs, MobileNetV2, BN-Inception and other backbones.
"""
from __future__ import annotations

import ast
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from ..runs.loader import safe_load

__all__ = ["FORMATS", "VIDEO_FORMATS", "AUTHORS_LAYOUT", "AUTHORS_PARTS", "PACKAGE_FILES", "CheckpointInfo",
           "not_recorded", "checkpoint_file",
           "UnsupportedCheckpoint", "read_checkpoint", "inspect_checkpoint", "authors_key", "authors_safe_globals",
           "resnet_arch", "insert_rule", "shifted_blocks", "name_hints", "mmaction2_config", "is_package_folder"]

FORMATS = ("tsamlib", "package", "authors", "tsm", "mmaction2", "backbone")
VIDEO_FORMATS = ("tsamlib", "package", "authors", "tsm", "mmaction2")  # files of whole video models
AUTHORS_LAYOUT = "authors"
AUTHORS_PARTS = ("nn_input", "nn_backbone", "last_fc")
PACKAGE_FILES = ("model.safetensors", "config.json")
_CONTAINERS = ("state_dict", "model", "state_dict_ema", "model_state")
_MAX_CFG_CHARS = 1_000_000   # an mmaction2 config is a few kB; a larger text is not parsed (time, memory)


def not_recorded(fmt: str, settings: dict[str, Any]) -> list[str]:
    """The settings a video model needs that ``settings`` (what a file of format ``fmt`` states, and what was
    given) lack: frames, audio, shift depth, and ``f_div`` unless there is no shift. Empty for an image model."""
    if fmt not in VIDEO_FORMATS:
        return []
    need = ["n_frames", "audio", "shift_depth"] + ([] if settings.get("shift_depth") == 0 else ["f_div"])
    return [n for n in need if n not in settings]
# The ResNets of torchvision (and timm's equal ones): blocks per stage and block type -> name.
_RESNETS = {((2, 2, 2, 2), False): "resnet18", ((3, 4, 6, 3), False): "resnet34", ((3, 4, 6, 3), True): "resnet50",
            ((3, 4, 23, 3), True): "resnet101", ((3, 8, 36, 3), True): "resnet152"}


class UnsupportedCheckpoint(ValueError):
    """A checkpoint of a model tsamlib does not build (another backbone, placement or modality): the message names
    the file, what it holds and why it cannot load."""


@dataclass
class CheckpointInfo:
    """What a checkpoint file states about its model, and where each statement comes from."""

    path: str
    format: str
    arch: str | None = None            # the ResNet its tensors make (timm name), None when not a plain one
    arch_text: str = ""                # the same in words: "ResNet-50 (bottleneck blocks 3-4-6-3)"
    num_classes: int | None = None     # rows of its classifier; None: no classifier
    settings: dict[str, Any] = field(default_factory=dict)    # create_tsam settings the file states
    sources: dict[str, str] = field(default_factory=dict)     # setting -> where it was read
    shifted: dict[int, list[int]] = field(default_factory=dict)  # stage -> indices of the blocks it shifts
    stages: tuple[int, ...] = ()       # blocks per stage
    name_hints: dict[str, Any] = field(default_factory=dict)  # settings its file name claims (warnings only)
    records: dict[str, Any] = field(default_factory=dict)     # epoch, best score, meta: what it says of itself
    ignored: dict[str, str] = field(default_factory=dict)     # tensor -> why it is not a weight of the model
    classes: list[str] | None = None   # class names, when the file has them
    preprocessing: dict[str, Any] = field(default_factory=dict)  # input values, sizes, as the source pipeline had
    tensors: int = 0                   # tensors of the model state in the file

    def model_kwargs(self) -> dict[str, Any]:
        """The model settings the file states (``arch``, ``num_classes`` and the settings, by their names in
        files: :func:`~tsamlib.model.tsam.tsam_kwargs` makes :func:`~tsamlib.model.create_tsam`'s keywords of them):
        what is missing must be given."""
        out = dict(self.settings)
        if self.arch is not None:
            out["arch"] = self.arch
        if self.num_classes is not None:
            out["num_classes"] = self.num_classes
        return out

    def describe(self) -> list[str]:
        """Lines for a person: format, model, settings with their sources, records, what is not a weight."""
        lines = [f"format: {self.format} ({_FORMAT_TEXT[self.format]})",
                 f"arch: {self.arch or 'not a plain ResNet'}{f' ({self.arch_text})' if self.arch_text else ''}",
                 f"classes: {self.num_classes if self.num_classes is not None else 'no classifier'}"
                 + (f" ({', '.join(self.classes[:5])}{' ...' if len(self.classes) > 5 else ''})"
                    if self.classes else "")]
        if self.shifted:
            blocks = "; ".join(f"layer{s}: {', '.join(map(str, b)) or '-'}" for s, b in sorted(self.shifted.items()))
            lines.append(f"shifted blocks: {blocks if any(self.shifted.values()) else 'none (no shift wrapper)'}")
        missing = not_recorded(self.format, self.settings)
        for name in ("n_frames", "audio", "shift_depth", "f_div", "shift_pad", "shift_direction", "n_insert",
                     "m_insert", "dropout"):
            if name in self.settings:
                lines.append(f"{name}: {self.settings[name]!r}  (from {self.sources.get(name, '?')})")
            elif name in missing:
                hint = self.name_hints.get(name)
                lines.append(f"{name}: not recorded in the file"
                             + (f" (its name says {hint}: give {name}={hint} if that is right)" if hint else
                                ": give it"))
        for k, v in self.records.items():
            lines.append(f"record {k}: {_short(v)}")
        if self.preprocessing:
            lines.append("preprocessing: " + ", ".join(f"{k}={v}" for k, v in self.preprocessing.items()))
        lines.append(f"tensors: {self.tensors}" + (f" ({len(self.ignored)} not weights: "
                                                   + "; ".join(f"{k}: {why}" for k, why in self.ignored.items()) + ")"
                                                   if self.ignored else ""))
        return lines


_FORMAT_TEXT = {"tsamlib": "a tsamlib run's weights", "package": "a tsamlib package: model.safetensors + config.json",
                "authors": "the TSAM authors' checkpoint", "tsm": "the TSM repository's checkpoint (main.py)",
                "mmaction2": "an mmaction2 / mmengine checkpoint", "backbone": "an image model's state dict"}


def _short(v: Any, n: int = 100) -> str:
    text = repr(v) if not isinstance(v, str) else v
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


# ---------------------------------------------------------------------------------------------------- reading
def authors_safe_globals() -> list[Any]:
    """What the authors' ``data_state`` needs beyond plain Python types: numpy float64 scalars (sklearn's
    accuracy). Exactly numpy's scalar constructor (under its numpy 1 and numpy 2 names), ``numpy.dtype`` and the
    class of the float64 dtype (``numpy.dtypes.Float64DType`` since numpy 1.25) that unpickling builds."""
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy 1
        from numpy.core.multiarray import scalar
    return [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"),
            (np.dtype, "numpy.dtype"), type(np.dtype(np.float64))]


def authors_key(key: str) -> str:
    """A key of the authors' model (``<part>.<key>``) in timm/tsamlib names: ``nn_backbone.base_model.X`` -> ``X``
    with their shift wrapper's ``.conv1.layer.`` -> ``.conv1.``, ``last_fc.*`` -> ``fc.*``; anything else as is."""
    backbone = "nn_backbone.base_model."
    if key.startswith(backbone):
        return key[len(backbone):].replace(".conv1.layer.", ".conv1.")
    if key.startswith("last_fc."):
        return "fc." + key[len("last_fc."):]
    return key


def is_package_folder(path: str | os.PathLike) -> bool:
    """A folder holding a package's files (``model.safetensors``, ``config.json``), not a run folder."""
    p = Path(path)
    return p.is_dir() and all((p / f).is_file() for f in PACKAGE_FILES) and not (p / "params.json").is_file()


def checkpoint_file(path: str | os.PathLike) -> Path:
    """``path``, or for a run folder (one holding ``params.json``) its final weights ``checkpoints/model.pth``."""
    path = Path(path)
    if path.is_dir() and (path / "params.json").is_file():
        weights = path / "checkpoints" / "model.pth"
        if not weights.is_file():
            raise UnsupportedCheckpoint(f"run folder {path} has no checkpoints/model.pth (an unfinished run, or a "
                                        "fresh clone: weights are never committed); train it to the end first.")
        return weights
    return path


def _load_raw(path: Path) -> Any:
    """The object a file holds, read safely (safetensors, or ``weights_only=True`` with numpy scalars allowed)."""
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise UnsupportedCheckpoint(f"{path} {'is not a regular file' if path.exists() else 'does not exist'}.")
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, RuntimeError) as e:   # RuntimeError: a file too large to map
            raise UnsupportedCheckpoint(f"{path} is not a readable safetensors file ({e})") from None
    return safe_load(path, authors_safe_globals(), hint="save weights with torch.save(model.state_dict(), ...) or "
                     "as .safetensors")


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], CheckpointInfo]:
    """The model tensors of a checkpoint file (or package folder) in timm names + ``fc.*``, and what the file
    states (:class:`CheckpointInfo`). Read safely; the format is told from the keys. :class:`UnsupportedCheckpoint`
    (a ValueError) names a model tsamlib does not build; :class:`~tsamlib.runs.loader.CheckpointError` a file that
    cannot be read weights-only."""
    path = checkpoint_file(path)
    if path.is_dir():
        return _read_package(path)
    raw = _load_raw(path)
    if isinstance(raw, dict) and isinstance(raw.get("model_state"), dict) \
            and isinstance(raw["model_state"].get("nn_backbone"), dict):
        return _read_authors(path, raw)
    records = {}
    sd = raw
    if isinstance(raw, dict):
        for key in _CONTAINERS:
            if isinstance(raw.get(key), dict):
                sd = raw[key]
                records = {k: v for k, v in raw.items() if k != key and not _is_state(v)}
                break
    if not isinstance(sd, dict) or not sd:
        keys = list(sd)[:10] if isinstance(sd, dict) else type(sd).__name__
        raise UnsupportedCheckpoint(f"{path} holds no state dict of tensors (top-level keys: {keys}).")
    bad_keys = [k for k in sd if not isinstance(k, str)]
    if bad_keys:
        raise UnsupportedCheckpoint(f"{path}: its state dict has keys that are not names (first: {bad_keys[0]!r}): not "
                                    "a model's state_dict().")
    odd = [k for k, v in sd.items() if not torch.is_tensor(v)]
    if odd:
        raise UnsupportedCheckpoint(f"{path}: its state dict holds {len(odd)} values that are not tensors (first: "
                                    f"{odd[0]!r}, a {type(sd[odd[0]]).__name__}): not a model's state_dict().")
    keys = list(sd)
    if all(k.startswith("module.") for k in keys):   # DataParallel / DistributedDataParallel
        sd = {k[len("module."):]: v for k, v in sd.items()}
        keys = list(sd)
    if any(k.startswith("nn_backbone.") for k in keys):   # the authors' whole model's state_dict()
        return _read_authors(path, {"model_state": _split_parts(sd)})
    if any(k.startswith("base_model.") for k in keys):
        return _read_tsm(path, sd, records)
    if any(k.startswith("cls_head.") for k in keys) or "backbone.conv1.conv.weight" in sd:
        return _read_mmaction2(path, sd, records)
    if any(k.startswith("backbone.") for k in keys):
        return _read_tsamlib(path, sd, records)
    return _read_backbone(path, sd, records)


def inspect_checkpoint(path: str | os.PathLike) -> CheckpointInfo:
    """:func:`read_checkpoint`'s :class:`CheckpointInfo` alone."""
    return read_checkpoint(path)[1]


def _is_state(v: Any) -> bool:
    """An optimizer's or scheduler's state: a nested container holding tensors (not a record to show)."""
    if torch.is_tensor(v):
        return True
    if isinstance(v, dict):
        return any(_is_state(x) for x in v.values())
    if isinstance(v, (list, tuple)):
        return any(_is_state(x) for x in v)
    return False


def _split_parts(sd: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in sd.items():
        part, _, rest = k.partition(".")
        parts.setdefault(part, {})[rest] = v
    return parts


# ------------------------------------------------------------------------------------------- the model's shape
def _stages(sd: dict[str, torch.Tensor]) -> tuple[tuple[int, ...], bool]:
    """Blocks per stage (layer1..layer4) and whether they are bottlenecks, from timm-named keys."""
    counts = [0, 0, 0, 0]
    for k in sd:
        m = re.match(r"layer([1-4])\.(\d+)\.", k)
        if m:
            counts[int(m.group(1)) - 1] = max(counts[int(m.group(1)) - 1], int(m.group(2)) + 1)
    return tuple(counts), any(re.match(r"layer[1-4]\.\d+\.conv3\.weight$", k) for k in sd)


def resnet_arch(sd: dict[str, torch.Tensor]) -> tuple[str | None, str, tuple[int, ...]]:
    """The timm name of the ResNet whose timm-named tensors ``sd`` holds (None for another model or a variant:
    deep stem, wide, grouped), its description in words, and its blocks per stage."""
    stages, bottleneck = _stages(sd)
    if not all(stages):
        return None, "", stages
    kind = "bottleneck" if bottleneck else "basic"
    depth = sum(stages) * (3 if bottleneck else 2) + 2
    text = f"ResNet-{depth} ({kind} blocks {'-'.join(map(str, stages))})"
    conv1, c2 = sd.get("conv1.weight"), sd.get("layer1.0.conv2.weight")
    plain = conv1 is not None and conv1.dim() == 4 and tuple(conv1.shape[:2]) == (64, 3) and c2 is not None \
        and c2.shape[0] == c2.shape[1] == 64
    if not plain:
        return None, text + ", a variant (deep stem, wider or grouped blocks): give arch= its timm name", stages
    return _RESNETS.get((stages, bottleneck)), text, stages


def shifted_blocks(keys: Iterable[str], marker: str) -> dict[int, list[int]]:
    """stage -> sorted block indices whose key holds ``layer<s>.<i>`` + ``marker`` (the shift wrapper's level)."""
    out: dict[int, set[int]] = {s: set() for s in range(1, 5)}
    pattern = re.compile(r"layer([1-4])\.(\d+)" + re.escape(marker))
    for k in keys:
        m = pattern.search(k)
        if m:
            out[int(m.group(1))].add(int(m.group(2)))
    return {s: sorted(v) for s, v in out.items()}


def insert_rule(shifted: dict[int, list[int]], stages: tuple[int, ...]) -> tuple[int, int] | None:
    """``(n_insert, m_insert)`` that shifts exactly ``shifted`` in stages of ``stages`` blocks (the smallest n), or
    None when no every-n-th rule does (or nothing is shifted)."""
    if not any(shifted.values()):
        return None
    for n in range(1, max(stages) + 1):
        for m in range(n):
            if all(shifted.get(s + 1, []) == [i for i in range(stages[s]) if i % n == m] for s in range(4)):
                return n, m
    return None


def _shape_info(info: CheckpointInfo, sd: dict[str, torch.Tensor], shifted: dict[int, list[int]] | None,
                stated_by: str) -> None:
    """Fill arch, classes, stages and the shift placement from the tensors."""
    info.arch, info.arch_text, info.stages = resnet_arch(sd)
    fc = sd.get("fc.weight")
    info.num_classes = int(fc.shape[0]) if fc is not None and fc.dim() == 2 else None
    info.tensors = len(sd) + len(info.ignored)
    if shifted is None:
        return
    info.shifted = shifted
    rule = insert_rule(shifted, info.stages) if all(info.stages) else None
    if any(shifted.values()) and rule is None:
        raise UnsupportedCheckpoint(f"{info.path} shifts the blocks {shifted} of its stages ({info.stages}), which no "
                                    "'every n-th block from m' rule gives: tsamlib cannot build that placement.")
    if rule is not None:
        info.settings.update(n_insert=rule[0], m_insert=rule[1])
        info.sources.update(n_insert=stated_by, m_insert=stated_by)


def _refuse_variants(path: Path, keys: list[str], prefix: str, where: str) -> None:
    """Name and refuse the TSM-family variants tsamlib does not build, from their keys under ``prefix``."""
    def has(pattern: str) -> str | None:
        rx = re.compile("^" + re.escape(prefix) + pattern)
        return next((k for k in keys if rx.search(k)), None)

    checks = [
        (r"features\.", "a MobileNetV2 backbone (keys 'features.*')"),
        (r"(inception|conv1_7x7|conv2_3x3)", "a BN-Inception backbone"),
        (r"layer\d+\.\d+\.conv\.\d", "a MobileNetV2 backbone (inverted residual blocks 'layerN.M.conv.K')"),
        (r"stage\d", "a MobileOne or other non-ResNet backbone (keys 'stageN.*')"),
        (r"layer2\.net\.", "temporal pooling (TSM's --temporal_pool: layer2 wrapped as 'layer2.net')"),
        (r"layer\d+\.\d+\.(nl|non_local_block)\.", "non-local blocks (TSM-NL)"),
        (r"layer\d+\.\d+\.net\.", "the 'block' shift placement (the shift before the whole block, its residual "
                                  "included); tsamlib shifts inside the residual branch ('blockres')"),
    ]
    for pattern, what in checks:
        key = has(pattern)
        if key is not None:
            raise UnsupportedCheckpoint(f"{path} is {where} of {what} (e.g. key {key!r}): tsamlib builds ResNet "
                                        "TSM/TSN/TSAM models with the shift before a block's first conv only.")


def _refuse_inputs(path: Path, sd: dict[str, torch.Tensor]) -> None:
    conv1 = sd.get("conv1.weight")
    if conv1 is not None and conv1.dim() == 4 and conv1.shape[1] != 3:
        raise UnsupportedCheckpoint(f"{path}: its first conv takes {conv1.shape[1]} input channels, not 3 (an optical "
                                    "flow or RGB-difference model): tsamlib reads RGB frames only.")


# ---------------------------------------------------------------------------------------------------- formats
def _read_authors(path: Path, raw: dict[str, Any]) -> tuple[dict[str, torch.Tensor], CheckpointInfo]:
    info = CheckpointInfo(str(path), "authors")
    data_state = raw.get("data_state")
    if isinstance(data_state, dict):  # numpy scalars as Python numbers
        info.records = {k: v.item() if isinstance(v, np.generic) else v for k, v in data_state.items()}
    parts = raw["model_state"]
    unknown = sorted(set(parts) - set(AUTHORS_PARTS))
    if unknown or not all(isinstance(v, dict) for v in parts.values()):
        raise UnsupportedCheckpoint(f"{path}: model_state holds parts {sorted(parts)}; the authors' layout has "
                                    f"{list(AUTHORS_PARTS)}, each a state dict.")
    keys = [f"{part}.{k}" for part, part_sd in parts.items() for k in part_sd]
    sd = {authors_key(f"{part}.{k}"): v for part, part_sd in parts.items() for k, v in part_sd.items()}
    info.settings["shift_pad"], info.sources["shift_pad"] = "keep", "the authors' code (its shift keeps the border)"
    info.settings["shift_direction"] = "bidirectional"
    info.sources["shift_direction"] = "the authors' code (from the past and the future)"
    _shape_info(info, sd, shifted_blocks(keys, ".conv1.layer."), "tensors (their shifted convs '.conv1.layer')")
    return sd, info


def _read_tsm(path: Path, sd: dict[str, torch.Tensor], records: dict[str, Any]
              ) -> tuple[dict[str, torch.Tensor], CheckpointInfo]:
    info = CheckpointInfo(str(path), "tsm", records=records)
    keys = list(sd)
    _refuse_variants(path, keys, "base_model.", "a TSM-repository checkpoint")
    out, unknown = {}, []
    for k, v in sd.items():
        if k.startswith("base_model."):
            name = k[len("base_model."):].replace(".conv1.net.", ".conv1.")
            name = {"classifier.weight": "fc.weight", "classifier.bias": "fc.bias"}.get(name, name)
            out[name] = v   # base_model.fc: trained with dropout 0, the classifier is the backbone's own fc
        elif k.startswith("new_fc."):
            out["fc." + k[len("new_fc."):]] = v
        else:
            unknown.append(k)
    if unknown:
        raise UnsupportedCheckpoint(f"{path}: keys outside TSM's base_model/new_fc: {unknown[:5]}")
    _refuse_inputs(path, out)
    shifted = shifted_blocks(keys, ".conv1.net.")
    stated = "tensors (TSM's shift wrapper '.conv1.net' in the blocks it shifts)"
    if any(shifted.values()):
        info.settings["shift_depth"], info.sources["shift_depth"] = 1, stated + ": TSM shifts 1 segment"
    else:
        info.settings["shift_depth"], info.sources["shift_depth"] = 0, "tensors (no shift wrapper: a TSN)"
    info.settings["shift_pad"], info.sources["shift_pad"] = "zero", "TSM's shift (zeros at the clip's border)"
    _rgb_model(info, "TSM's")
    if isinstance(records.get("arch"), str):
        info.records["arch"] = records["arch"]
    info.preprocessing = dict(video_norm="imagenet", resize=256, img_size=224, valid_view="center_crop")
    _shape_info(info, out, shifted, stated)
    _check_record_arch(info, records.get("arch"))
    info.name_hints = name_hints(path.name)
    return out, info


def _rgb_model(info: CheckpointInfo, whose: str) -> None:
    """TSM and mmaction2 models: RGB frames only, a shift both ways."""
    info.settings.update(audio=False, shift_direction="bidirectional")
    info.sources.update(audio=f"{whose} model (RGB frames, no audio frame)",
                        shift_direction=f"{whose} shift (from the past and the future)")


def _check_record_arch(info: CheckpointInfo, arch: Any) -> None:
    if isinstance(arch, str) and info.arch is not None and arch.lower() != info.arch:
        raise UnsupportedCheckpoint(f"{info.path} records arch {arch!r} but its tensors are a {info.arch_text}: the "
                                    "file contradicts itself.")


_MM_PATTERNS = [  # mmcv ConvModule names -> torchvision/timm names
    (re.compile(r"^backbone\.conv1\.conv\.(weight|bias)$"), r"conv1.\1"),
    (re.compile(r"^backbone\.conv1\.bn\.(.+)$"), r"bn1.\1"),
    (re.compile(r"^backbone\.(layer\d+\.\d+)\.conv(\d)\.conv(?:\.net)?\.(weight|bias)$"), r"\1.conv\2.\3"),
    (re.compile(r"^backbone\.(layer\d+\.\d+)\.conv(\d)\.bn\.(.+)$"), r"\1.bn\2.\3"),
    (re.compile(r"^backbone\.(layer\d+\.\d+)\.downsample\.conv\.(weight|bias)$"), r"\1.downsample.0.\2"),
    (re.compile(r"^backbone\.(layer\d+\.\d+)\.downsample\.bn\.(.+)$"), r"\1.downsample.1.\2"),
    (re.compile(r"^cls_head\.fc_cls\.(weight|bias)$"), r"fc.\1"),
]


def _read_mmaction2(path: Path, sd: dict[str, torch.Tensor], records: dict[str, Any]
                    ) -> tuple[dict[str, torch.Tensor], CheckpointInfo]:
    info = CheckpointInfo(str(path), "mmaction2")
    keys = list(sd)
    _refuse_variants(path, keys, "backbone.", "an mmaction2 checkpoint")
    out, unknown = {}, []
    for k, v in sd.items():
        if k in ("data_preprocessor.mean", "data_preprocessor.std"):
            info.ignored[k] = f"the input's {k.rsplit('.', 1)[1]} {[round(x, 3) for x in v.flatten().tolist()]}, " \
                              "preprocessing, not a weight"
            continue
        for rx, repl in _MM_PATTERNS:
            if rx.match(k):
                out[rx.sub(repl, k)] = v
                break
        else:
            unknown.append(k)
    if unknown:
        raise UnsupportedCheckpoint(f"{path}: keys tsamlib does not know in an mmaction2 ResNet/ResNetTSM: "
                                    f"{unknown[:5]}{' ...' if len(unknown) > 5 else ''}")
    _refuse_inputs(path, out)
    meta = records.get("meta") if isinstance(records.get("meta"), dict) else {}
    info.records = {k: v for k, v in meta.items() if k not in ("cfg", "config")}
    shifted = shifted_blocks(keys, ".conv1.conv.net.")
    stated = "tensors (ResNetTSM's shift '.conv1.conv.net')"
    info.settings["shift_depth"] = 1 if any(shifted.values()) else 0
    info.sources["shift_depth"] = stated + ": TSM shifts 1 segment" if any(shifted.values()) else \
        "tensors (no shift: a TSN ResNet)"
    info.settings["shift_pad"], info.sources["shift_pad"] = "zero", "mmaction2's TSM shift (zeros at the border)"
    _rgb_model(info, "mmaction2's")
    info.preprocessing = dict(video_norm="imagenet", resize=256, img_size=224, valid_view="center_crop")
    if "data_preprocessor.mean" in sd:
        info.preprocessing["mean_255"] = [round(x, 3) for x in sd["data_preprocessor.mean"].flatten().tolist()]
        if "data_preprocessor.std" in sd:
            _input_values(info, sd["data_preprocessor.mean"].flatten().tolist(),
                          sd["data_preprocessor.std"].flatten().tolist(), "its data_preprocessor tensors")
    _shape_info(info, out, shifted, stated)
    cfg_text = meta.get("cfg") or meta.get("config")
    if isinstance(cfg_text, str) and len(cfg_text) > _MAX_CFG_CHARS:
        info.records["config"] = f"not read: {len(cfg_text):,} characters (a config is a few thousand)"
    elif isinstance(cfg_text, str):
        parsed = mmaction2_config(cfg_text)
        _apply_mmaction2_config(info, parsed)
        if not parsed:
            info.records["config"] = "not read: its text is not Python an mmaction2 config is written in"
    classes = (meta.get("dataset_meta") or {}).get("classes") if isinstance(meta.get("dataset_meta"), dict) else None
    if isinstance(classes, (list, tuple)) and all(isinstance(c, str) for c in classes):
        info.classes = list(classes)
    info.name_hints = name_hints(path.name)
    return out, info


_NOT_LITERAL = object()   # a config value that is an expression, not a literal: never evaluated, never guessed


def _cfg_value(info: CheckpointInfo, part: str, cfg: dict[str, Any], name: str, default: Any, ok) -> tuple[Any, str]:
    """A value of the config (``default`` where it sets none: the mmaction2 class's own default) and its source;
    ``_NOT_LITERAL`` for an expression; UnsupportedCheckpoint for a value ``ok`` refuses."""
    if name not in cfg:
        return default, f"meta cfg ({cfg.get('type')}'s default {name}={default!r})"
    v = cfg[name]
    if v is _NOT_LITERAL:
        return v, ""
    if not ok(v):
        raise UnsupportedCheckpoint(f"{info.path}: its meta cfg sets {part} {name}={v!r}, which is not a valid "
                                    f"{name}: the file's record contradicts a model mmaction2 could build.")
    return v, f"meta cfg ({part} {name}={v!r})"


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _apply_mmaction2_config(info: CheckpointInfo, cfg: dict[str, dict[str, Any]]) -> None:
    """The settings an mmaction2 config states, checked against the tensors. A value that is an expression is not
    read (the setting stays unrecorded)."""
    backbone, head, test = cfg.get("backbone", {}), cfg.get("cls_head", {}), cfg.get("test_frames", {})
    plain = lambda d: {k: v for k, v in d.items() if v is not _NOT_LITERAL}  # noqa: E731
    info.records["config"] = {k: plain(v) for k, v in dict(backbone=backbone, cls_head=head, test_frames=test).items()
                              if v}
    if backbone.get("type") == "ResNetTSM":
        pool, _ = _cfg_value(info, "backbone", backbone, "temporal_pool", False, lambda v: isinstance(v, bool))
        if pool is True:
            raise UnsupportedCheckpoint(f"{info.path}: its config sets temporal_pool=True (temporal pooling after "
                                        "layer1): tsamlib does not build it.")
        frames, src = _cfg_value(info, "backbone", backbone, "num_segments", 8, _positive_int)
        if frames is not _NOT_LITERAL:
            info.settings["n_frames"], info.sources["n_frames"] = frames, src
        div, src = _cfg_value(info, "backbone", backbone, "shift_div", 8, lambda v: _positive_int(v) and v >= 2)
        if div is not _NOT_LITERAL and info.settings.get("shift_depth"):
            info.settings["f_div"], info.sources["f_div"] = div, src
    depth = backbone.get("depth")
    if _positive_int(depth) and info.arch_text and f"ResNet-{depth} " not in info.arch_text + " ":
        raise UnsupportedCheckpoint(f"{info.path}: its config says depth={depth} but its tensors are a "
                                    f"{info.arch_text}.")
    classes = head.get("num_classes")
    if _positive_int(classes) and info.num_classes not in (None, classes):
        raise UnsupportedCheckpoint(f"{info.path}: its config says num_classes={classes} but its "
                                    f"classifier has {info.num_classes} rows.")
    if "dropout_ratio" in head:
        p, src = _cfg_value(info, "cls_head", head, "dropout_ratio", None,
                            lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1)
        if p is not _NOT_LITERAL:
            info.settings["dropout"], info.sources["dropout"] = float(p), src
    pre = cfg.get("data_preprocessor", {})
    if isinstance(pre.get("mean"), (list, tuple)) and isinstance(pre.get("std"), (list, tuple)):
        _input_values(info, pre["mean"], pre["std"], "its meta cfg data_preprocessor")
    if "average_clips" in head and (head["average_clips"] is None or isinstance(head["average_clips"], str)):
        info.preprocessing["average_clips"] = head["average_clips"]   # None: mmaction2 does not average the views
    if test:
        info.preprocessing["test_views"] = plain(test)
        for step in ("test_resize", "test_crop"):
            if cfg.get(step):
                info.preprocessing[step] = plain(cfg[step])


def _read_tsamlib(path: Path, sd: dict[str, torch.Tensor], records: dict[str, Any]
                  ) -> tuple[dict[str, torch.Tensor], CheckpointInfo]:
    info = CheckpointInfo(str(path), "tsamlib", records={k: v for k, v in records.items() if k in ("epoch", "top1")})
    out = {}
    for k, v in sd.items():
        if not (k.startswith("backbone.") or k.startswith("fc.")):
            raise UnsupportedCheckpoint(f"{path}: a key outside a TSAM model's backbone.*/fc.*: {k!r}")
        out[k[len("backbone."):].replace(".conv1.net.", ".conv1.") if k.startswith("backbone.") else k] = v
    _shape_info(info, out, shifted_blocks(sd, ".conv1.net."), "tensors (tsamlib's shifted convs '.conv1.net')")
    params = path.parent.parent / "params.json" if path.parent.name == "checkpoints" else None
    if params is not None and params.is_file():
        try:
            recorded = json.loads(params.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as e:
            raise UnsupportedCheckpoint(f"the run's params.json ({params}) cannot be read as JSON ({str(e)[:100]}).") \
                from None
        _apply_params(info, recorded, f"the run's params.json ({params})")
    return out, info


def _apply_params(info: CheckpointInfo, params: Any, where: str) -> None:
    """Settings from a run's ``params.json`` or a package's ``config.json``, checked against the tensors; a value
    out of range or of the wrong type is refused naming the file."""
    from ..config import MODEL_SETTINGS, RunConfig
    if not isinstance(params, dict):
        raise UnsupportedCheckpoint(f"{where} holds a JSON {type(params).__name__}, not an object of settings.")
    try:
        cfg = RunConfig.of({k: v for k, v in params.items() if k not in ("run_id",)})
    except (ValueError, TypeError) as e:
        raise UnsupportedCheckpoint(f"{where}: {e}") from None
    kwargs = cfg.model_kwargs()
    for name in MODEL_SETTINGS:
        if name in ("n_insert", "m_insert") and name in info.settings and info.settings[name] != kwargs[name] \
                and any(info.shifted.values()):
            raise UnsupportedCheckpoint(f"{info.path}: {where} says {name}={kwargs[name]} but its shifted convs "
                                        f"give {info.settings[name]}.")
        info.settings[name], info.sources[name] = kwargs[name], where
    if info.arch is not None and cfg.arch != info.arch:
        raise UnsupportedCheckpoint(f"{where} says arch={cfg.arch!r} but the tensors are a {info.arch_text} "
                                    f"({info.arch!r}).")
    if info.arch is None:
        info.arch = cfg.arch   # timm variants (resnet10t, resnet50d) are known by name only here
        info.sources["arch"] = where
    info.preprocessing = dict(video_norm=cfg.switches()["video_norm"], resize=cfg.resize, img_size=cfg.img_size,
                              valid_view=cfg.switches()["valid_view"])
    if cfg.audio:
        info.preprocessing.update(n_mels=cfg.n_mels, audio_frontend=cfg.switches()["audio_frontend"])


def _read_package(folder: Path) -> tuple[dict[str, torch.Tensor], CheckpointInfo]:
    from ..config import MODEL_SETTINGS
    missing = [f for f in PACKAGE_FILES if not (folder / f).is_file()]
    if missing:
        raise UnsupportedCheckpoint(f"{folder} is a folder without {' and '.join(missing)}: a tsamlib package holds "
                                    f"{' and '.join(PACKAGE_FILES)} (python -m tsamlib checkpoint convert writes "
                                    "one), a run folder params.json; give a checkpoint file or such a folder.")
    where = folder / "config.json"
    try:
        config = json.loads(where.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        why = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise UnsupportedCheckpoint(f"{where} cannot be read as JSON ({why}).") from None
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise UnsupportedCheckpoint(f"{where} holds no 'model' object of settings: not a tsamlib package config.")
    lacking = [k for k in MODEL_SETTINGS if k not in config["model"]]
    if lacking:
        raise UnsupportedCheckpoint(f"{where}: 'model' lacks {lacking}: a package records every model setting "
                                    "(write it again with python -m tsamlib checkpoint convert).")
    kinds = dict(preprocessing=dict, metrics=list, source=dict, classes=list)
    bad = [k for k, t in kinds.items() if config.get(k) is not None and not isinstance(config[k], t)]
    bad += ["metrics"] if isinstance(config.get("metrics"), list) and not all(
        isinstance(m, dict) for m in config["metrics"]) else []
    bad += ["classes"] if isinstance(config.get("classes"), list) and not all(
        isinstance(c, str) for c in config["classes"]) else []
    if bad:
        raise UnsupportedCheckpoint(f"{where}: {', '.join(sorted(set(bad)))} of the wrong type (preprocessing and "
                                    "source: objects; metrics: a list of objects; classes: a list of names).")
    lacking = [k for k in ("img_size", "resize") if k not in (config.get("preprocessing") or {})]
    if lacking:
        raise UnsupportedCheckpoint(f"{where}: 'preprocessing' lacks {lacking}: a package records the views its "
                                    "model was trained on (write it again with python -m tsamlib checkpoint "
                                    "convert, or put them back).")
    sd = _load_raw(folder / "model.safetensors")
    out, info = _read_tsamlib(folder / "model.safetensors", sd, {})
    info.path, info.format = str(folder), "package"
    pre = config.get("preprocessing") or {}
    _apply_params(info, {"arch": config.get("arch", info.arch), **config["model"],
                         **{k: v for k, v in pre.items()
                            if k in ("img_size", "resize", "video_norm", "valid_view", "n_mels", "audio_frontend")}},
                  f"the package's config.json ({where})")
    for name, value in (("num_classes", info.num_classes), ("classes", info.num_classes)):
        stated = config.get(name)
        count = len(stated) if isinstance(stated, list) else stated
        if count is not None and count != value:
            raise UnsupportedCheckpoint(f"{where}: {name} says {count} classes but the classifier in "
                                        f"model.safetensors has {value} rows.")
    info.classes = config.get("classes")
    info.records = {k: config[k] for k in ("source", "metrics") if k in config}
    return out, info


def _read_backbone(path: Path, sd: dict[str, torch.Tensor], records: dict[str, Any]
                   ) -> tuple[dict[str, torch.Tensor], CheckpointInfo]:
    info = CheckpointInfo(str(path), "backbone", records={k: v for k, v in records.items() if not _is_state(v)})
    out = {}
    for k, v in sd.items():
        k = {"classifier.weight": "fc.weight", "classifier.bias": "fc.bias", "head.fc.weight": "fc.weight",
             "head.fc.bias": "fc.bias"}.get(k, k)
        out[k] = v
    _shape_info(info, out, None, "")
    return out, info


# ----------------------------------------------------------------------------------------------- hints, configs
def name_hints(name: str) -> dict[str, Any]:
    """Settings a TSM- or mmaction2-style file name claims: ``..._resnet50_shift8_blockres_avg_segment8_e50.pth``
    -> arch, f_div 8, n_frames 8; ``tsm_..._r50_..._1x1x8_...`` -> arch, n_frames 8. For warnings only."""
    out: dict[str, Any] = {}
    if name.startswith("TSM_"):
        for rx, key, conv in ((r"_(resnet\d+|mobilenetv2|BNInception)_", "arch", str),
                              (r"_shift(\d+)_", "f_div", int), (r"_segment(\d+)", "n_frames", int)):
            m = re.search(rx, name)
            if m:
                out[key] = conv(m.group(1))
    elif re.match(r"(tsm|tsn)_", name):
        m = re.search(r"-r(\d+)[_-]", name)
        if m:
            out["arch"] = f"resnet{m.group(1)}"
        m = re.search(r"[_-]1x1x(\d+)", name)
        if m:
            out["n_frames"] = int(m.group(1))
    return out


_MM_TYPES = {"ResNetTSM": "backbone", "ResNet": "backbone", "TSMHead": "cls_head", "TSNHead": "cls_head",
             "ActionDataPreprocessor": "data_preprocessor"}
_IMAGENET_255 = ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375))


def _input_values(info: CheckpointInfo, mean: Any, std: Any, where: str) -> None:
    """``video_norm`` from an mmaction2 input mean/std (0-255 scale): ImageNet's, or none (0 and 255: values in
    [0, 1]); other values are refused, naming them (tsamlib normalises one of those two ways)."""
    try:
        mean, std = [float(v) for v in mean], [float(v) for v in std]
    except (TypeError, ValueError):
        raise UnsupportedCheckpoint(f"{info.path}: {where} has mean={mean!r}, std={std!r}: not numbers.") from None
    close = lambda a, b: len(a) == len(b) == 3 and all(abs(x - y) < 1e-3 for x, y in zip(a, b))  # noqa: E731
    if close(mean, _IMAGENET_255[0]) and close(std, _IMAGENET_255[1]):
        norm = "imagenet"
    elif close(mean, (0, 0, 0)) and close(std, (255, 255, 255)):
        norm = "none"
    else:
        raise UnsupportedCheckpoint(f"{info.path}: {where} normalises inputs with mean={mean}, std={std}: tsamlib "
                                    "feeds ImageNet-normalised values (mean 123.675, 116.28, 103.53; std 58.395, "
                                    "57.12, 57.375) or values in [0, 1] (mean 0, std 255), so its views would not "
                                    "be the ones it was trained on.")
    info.preprocessing["video_norm"] = norm


def mmaction2_config(text: str) -> dict[str, dict[str, Any]]:
    """Literal settings of an mmaction2 config's text (``meta["cfg"]``), parsed, never executed: ``backbone`` and
    ``cls_head`` (their ``dict(type=...)`` keywords; one that is not a literal is held as a marker, never evaluated)
    and ``test_frames``, ``test_resize``, ``test_crop`` (the ``SampleFrames``, ``Resize`` and crop steps of
    ``test_pipeline``, else ``val_pipeline``). Empty dicts where the text says nothing (or is not Python)."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for node in ast.walk(tree):
        d = _literal_dict(node)
        if d and d.get("type") in _MM_TYPES and _MM_TYPES[d["type"]] not in out:
            out[_MM_TYPES[d["type"]]] = d
    steps = {"SampleFrames": "test_frames", "Resize": "test_resize", "CenterCrop": "test_crop",
             "ThreeCrop": "test_crop", "TenCrop": "test_crop"}
    for wanted in ("test_pipeline", "val_pipeline"):
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == wanted for t in node.targets):
                found: dict[str, dict[str, Any]] = {}
                for sub in ast.walk(node.value):
                    d = _literal_dict(sub)
                    if d and d.get("type") in steps:
                        found.setdefault(steps[d["type"]], d if d["type"] != "SampleFrames"
                                         else {k: v for k, v in d.items() if k != "type"})
                if "test_frames" in found and "test_frames" not in out:   # one pipeline's steps, test's first
                    out.update(found)
    return out


def _literal_dict(node: ast.AST) -> dict[str, Any] | None:
    """The literal items of ``dict(a=1, ...)`` or ``{'a': 1, ...}`` (a value that is not a literal:
    ``_NOT_LITERAL``)."""
    items: list[tuple[str, ast.AST]] = []
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        items = [(kw.arg, kw.value) for kw in node.keywords if kw.arg]
    elif isinstance(node, ast.Dict):
        items = [(k.value, v) for k, v in zip(node.keys, node.values)
                 if isinstance(k, ast.Constant) and isinstance(k.value, str)]
    if not items:
        return None
    out = {}
    for k, v in items:
        try:
            out[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            out[k] = _NOT_LITERAL   # an expression: known to be set, never evaluated
    return out
