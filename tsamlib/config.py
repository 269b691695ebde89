"""One run configuration: every setting of a training run, with its default, type, allowed values and meaning.

:class:`RunConfig` is the single definition that :func:`tsamlib.train`, notebook 03's ``parameters`` cell (checked by
a test), the flags of ``python -m tsamlib train``, the experiment grids, :func:`tsamlib.model.create_tsam` and the
tables derive from. A new setting is one new field here (and one line in notebook 03's parameters cell).

    cfg = RunConfig(shift_depth=4, f_div=4, audio=True)      # checked on creation: bad values raise ValueError
    cfg.settings()                                            # what params.json records (no bookkeeping keys)
    config_diff(old_params, cfg)                              # {name: (old, new)} for the settings that differ

Values are normalised once, on creation: tuples become lists, ``1`` becomes ``1.0`` for float settings, so a
configuration read back from ``params.json`` compares equal to the one that wrote it.

Presets. ``preset="tsamlib"`` (the default: this library's own choices) or ``"authors"`` (the authors' released
code, github:aav-antonov/TSAM, which produced the report's numbers) sets every switch of :data:`PRESET_SWITCHES`
at once. Each switch is also a setting of its own whose default ``None`` means "take it from the preset"; a value
given explicitly wins. ``cfg.switches()`` holds the resolved values, and ``params.json`` records the preset and
every resolved switch; :func:`config_diff` compares resolved values, so a switch left to the preset equals the
same value given explicitly, and runs recorded before the presets existed count as ``"tsamlib"``. A preset does not
change the data a run reads: the authors' frames (10 fps, 256 pixels high, their ffmpeg JPEGs) are made by
``python -m tsamlib prepare MANIFEST --out OUT --layout authors`` (:mod:`tsamlib.data.prepare`), whose
``OUT/manifest.csv`` is the dataset of a ``preset="authors"`` run.
"""
from __future__ import annotations

import math
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Mapping

__all__ = ["RunConfig", "BOOKKEEPING", "MODEL_SETTINGS", "RECIPES", "PRESETS", "PRESET_SWITCHES", "SWITCHES",
           "PRECISIONS", "VIDEO_BACKENDS", "DATA_SWITCHES", "TRACKERS", "log_targets", "resolve_switches", "normalize",
           "config_diff", "auto_run_id", "settings_help"]

RECIPES = ("one_cycle", "paper")
# Every difference between this library's pipeline and the authors' released code, one switch each.
PRESET_SWITCHES: dict[str, dict[str, Any]] = {
    "tsamlib": dict(shift_pad="zero", video_norm="imagenet", audio_frontend="tsamlib", missing_audio="silent",
                    color_aug=False, valid_view="center_crop", wd_bn_bias=False, eval_weights="last",
                    eval_protocol="views", precision="auto"),
    "authors": dict(shift_pad="keep", video_norm="none", audio_frontend="authors", missing_audio="drop",
                    color_aug=True, valid_view="short_side", wd_bn_bias=True, eval_weights="best",
                    eval_protocol="authors", precision="fp32"),
}
# Training precision: fp32, or autocast to fp16 (CUDA only) or bf16; "auto": fp16 on a CUDA GPU, fp32 on the CPU.
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
# What reads the video files: decord where it imports ("auto"), else PyAV; the choice can change decoded frames
VIDEO_BACKENDS = ("auto", "decord", "torchcodec", "pyav")
PRESETS = tuple(PRESET_SWITCHES)
SWITCHES = tuple(PRESET_SWITCHES["tsamlib"])
# The switches that :func:`tsamlib.data.video_dataloaders` takes.
DATA_SWITCHES = ("video_norm", "audio_frontend", "missing_audio", "color_aug", "valid_view")
# Settings that say how a run is executed, not what it is: never compared between runs.
BOOKKEEPING = frozenset({"run_id", "resume", "overwrite", "runs_root", "num_workers", "log"})
# Where a run's per-epoch numbers can go besides metrics.json (RunConfig.log: a comma-separated subset).
TRACKERS = ("tensorboard", "wandb", "mlflow")
# A run folder's name: 255 bytes on common file systems, less the ".old-YYYYMMDD-HHMMSS" of a run moved aside.
MAX_RUN_ID_BYTES = 255 - len(".old-20261204-120000")
# The model's settings (create_tsam's keywords through tsamlib.model.tsam.tsam_kwargs); the rest are data and
# training settings.
MODEL_SETTINGS = ("n_frames", "audio", "shift_depth", "f_div", "shift_pad", "shift_direction", "n_insert", "m_insert",
                  "dropout")


def _f(default: Any, help: str, **check: Any) -> Any:
    """A field with its one-line meaning and its checks (``lo``, ``hi``, ``choices``)."""
    return field(default=default, metadata=dict(help=help, **check))


@dataclass
class RunConfig:
    """Every setting of one training run (notebook 03). Created = checked; see :meth:`check`."""

    dataset: str = _f("default", "a dataset built by notebook 01 ('default', 'mini-kinetics-av', "
                                 "'mini-something'), a manifest CSV path, or a shard dataset's "
                                 "index.json (prepare --format shards)")
    n_frames: int = _f(8, "T, video segments (frames) per clip", lo=1, hi=256)
    shift_depth: int = _f(1, "k: 0 is TSN (no shift), 1 is TSM, 2-5 deeper shifts", lo=0, hi=64)
    f_div: int = _f(8, "C // f_div channels move each way (8: TSM, 4: the report)", lo=2, hi=1024)
    preset: str = _f("tsamlib", "'tsamlib' (this library's choices) or 'authors' (the authors' released code): "
                                "the value of every switch left at None", choices=PRESETS)
    shift_pad: str | None = _f(None, "switch: border of the shift: 'zero' (TSM) or 'keep' (the authors' code: the "
                                     "first/last d segments keep their own values)", choices=("zero", "keep"))
    shift_direction: str = _f("bidirectional", "'bidirectional' (the report's: channels from past and future segments) "
                                               "or 'causal' (from the past only: a segment's features depend on frames "
                                               "up to it)", choices=("bidirectional", "causal"))
    n_insert: int = _f(1, "shift before conv1 of every n_insert-th block of each stage ...", lo=1, hi=64)
    m_insert: int = _f(0, "... starting at block m_insert", lo=0, hi=63)
    audio: bool = _f(False, "add the audio frame (3-channel log-mel spectrogram)")
    pretrained: str | None = _f(None, "None, 'in1k', 'in21k', a timm tag, a checkpoint file (TSM's, mmaction2's, the "
                                      "authors', a run's) or a package folder (checkpoint convert)")
    pretrained_match: str = _f("strict", "a checkpoint as pretrained: 'strict' (the settings it records must be this "
                                         "run's) or 'weights' (its tensors into another model, e.g. TSAM k=4 from "
                                         "TSM k=1; the differences reported)", choices=("strict", "weights"))
    arch: str = _f("resnet18", "timm ResNet name (resnet10t, resnet18, resnet50, ...)")
    img_size: int = _f(64, "crop size in pixels", lo=8, hi=1024)
    resize: int = _f(72, "short side before the crop, in pixels (>= img_size)", lo=8, hi=2048)
    flip: bool = _f(True, "random horizontal flips in training (off for direction-sensitive classes)")
    n_mels: int = _f(64, "mel bands of the audio frame", lo=8, hi=512)
    video_norm: str | None = _f(None, "switch: video input values: 'imagenet' (mean/std) or 'none' (ToTensor only, "
                                      "values in [0, 1]: the authors')", choices=("imagenet", "none"))
    audio_frontend: str | None = _f(None, "switch: audio frame: 'tsamlib' (mono mix at 22050 Hz, librosa mel, "
                                          "per-clip z-score) or 'authors' (channel 0 at the file's rate, torchaudio's "
                                          "mel with n_fft 4800, raw log values)", choices=("tsamlib", "authors"))
    missing_audio: str | None = _f(None, "switch: videos without sound in audio runs: 'silent' (kept with a silent "
                                         "frame) or 'drop' (left out of train and valid, counted and reported)",
                                   choices=("silent", "drop"))
    color_aug: bool | None = _f(None, "switch: training ColorJitter (the authors' ranges, one draw per clip) and "
                                      "RandomGrayscale(0.2), after the multi-scale crop and flip")
    valid_view: str | None = _f(None, "switch: validation view: 'center_crop' (img_size out of resize) or "
                                      "'short_side' (centre square of the full short side, resized to img_size)",
                                choices=("center_crop", "short_side"))
    wd_bn_bias: bool | None = _f(None, "switch: weight decay on BatchNorm and bias parameters too (fastai "
                                       "wd_bn_bias; the authors decay every parameter)")
    eval_weights: str | None = _f(None, "switch: weights evaluation uses: 'last' epoch (checkpoints/model.pth) or "
                                        "'best' validation epoch (checkpoints/best.pth, kept besides; resume still "
                                        "uses last.pth)", choices=("last", "best"))
    eval_protocol: str | None = _f(None, "switch: evaluation: 'views' (fixed clips x crops, mean softmax) or "
                                         "'authors' (10 random training-style passes, logits summed)",
                                   choices=("views", "authors"))
    precision: str | None = _f(None, "switch: training arithmetic: 'fp32', 'fp16' or 'bf16' (autocast; fp16 needs a "
                                     "CUDA GPU) or 'auto' (fp16 on a GPU, fp32 on the CPU)", choices=PRECISIONS)
    channels_last: bool | None = _f(None, "channels_last memory format for the model (None: on a GPU only)")
    epochs: int = _f(3, "training epochs", lo=1, hi=10_000)
    lr: float = _f(2e-3, "base learning rate", lo=0.0, hi=10.0, open_lo=True)
    recipe: str = _f("one_cycle", "'one_cycle' (fastai, Adam) or 'paper' (SGD 0.9, wd 1e-4, step decay)",
                     choices=RECIPES)
    lr_decay: list | None = _f(None, "recipe 'paper': [[factor, n], ...], lr = factor x lr once n epochs are done")
    batch_size: int = _f(8, "clips per optimizer step, all processes together (the global batch: with N "
                            "processes each loads batch_size / N)", lo=1, hi=100_000)
    sync_bn: bool = _f(False, "several processes only: SyncBatchNorm (statistics over the global batch) instead of "
                              "BatchNorm per process (the authors' DataParallel); needs CUDA")
    dropout: float = _f(0.5, "dropout before the classifier", lo=0.0, hi=1.0, open_hi=True)
    num_workers: int = _f(0, "data-loading worker processes (one thread each)", lo=0, hi=1024)
    video_backend: str = _f("auto", "what decodes video files: 'decord', 'torchcodec', 'pyav' or 'auto' "
                                    "(decord where installed, else torchcodec, else PyAV)", choices=VIDEO_BACKENDS)
    seed: int = _f(0, "seed of weights, sampling and augmentation", lo=0, hi=2**63 - 1)
    run_id: str | None = _f(None, "run folder name; None: a readable unique id from the settings and the time")
    resume: bool = _f(False, "continue an unfinished run from its last checkpoint")
    overwrite: bool = _f(False, "move an existing run folder aside (never deleted) and start afresh")
    runs_root: str | None = _f(None, "folder of the run folders; None: results/runs")
    log: str | None = _f(None, "also log each epoch to 'tensorboard', 'wandb' (offline) and/or 'mlflow' (a local "
                               "store), comma-separated; None: metrics.json only")

    def __post_init__(self) -> None:
        for f in fields(self):
            setattr(self, f.name, _coerce(f.name, f.type, getattr(self, f.name)))
        self.check()

    # ------------------------------------------------------------------------------------------------ checks
    def check(self) -> "RunConfig":
        """Raise ValueError naming the setting and what it accepts when a value is out of range."""
        for f in fields(self):
            v, m = getattr(self, f.name), f.metadata
            if "choices" in m and v not in m["choices"] and not (v is None and f.name in SWITCHES):
                raise ValueError(f"{f.name}={v!r}: choose one of {list(m['choices'])}.")
            if "lo" in m and v is not None:
                lo, hi = m["lo"], m["hi"]
                bad = v <= lo if m.get("open_lo") else v < lo
                bad = bad or (v >= hi if m.get("open_hi") else v > hi) or (isinstance(v, float) and math.isnan(v))
                if bad:
                    left, right = "(" if m.get("open_lo") else "[", ")" if m.get("open_hi") else "]"
                    raise ValueError(f"{f.name}={v!r} is out of range: allowed {left}{lo}, {hi}{right} "
                                     f"({m['help']}).")
        if self.resize < self.img_size:
            raise ValueError(f"resize={self.resize} must be >= img_size={self.img_size} (the crop is taken from "
                             "the resized frame).")
        if self.shift_depth >= self.n_frames and self.shift_depth:
            raise ValueError(f"shift_depth={self.shift_depth} needs n_frames > {self.shift_depth} (got "
                             f"{self.n_frames}): the largest depth is n_frames - 1; lower shift_depth or raise "
                             "n_frames.")
        if self.m_insert >= self.n_insert:
            raise ValueError(f"m_insert={self.m_insert} must be < n_insert={self.n_insert} (shift blocks i with "
                             "i % n_insert == m_insert).")
        if self.lr_decay is not None:
            if self.recipe != "paper":
                raise ValueError(f"lr_decay is used by recipe='paper' only (recipe={self.recipe!r}): drop lr_decay "
                                 "or set recipe='paper'.")
            for pair in self.lr_decay:
                ok = isinstance(pair, list) and len(pair) == 2 and pair[0] > 0 and int(pair[1]) == pair[1] >= 0
                if not ok:
                    raise ValueError(f"lr_decay={self.lr_decay!r}: each item is [factor > 0, epoch >= 0], e.g. "
                                     "[[0.2, 5], [0.01, 30]].")
        if self.run_id is not None and (not self.run_id or any(c in self.run_id for c in "/\\")
                                        or self.run_id.startswith(".")):
            raise ValueError(f"run_id={self.run_id!r} must be a plain folder name (no slashes, not starting "
                             "with '.'), or None for an automatic id.")
        if self.run_id is not None and len(self.run_id.encode()) > MAX_RUN_ID_BYTES:
            raise ValueError(f"run_id is {len(self.run_id.encode())} bytes long; at most {MAX_RUN_ID_BYTES} (a folder "
                             f"name holds 255, and a run moved aside gets '.old-<time>' appended): shorten it.")
        if self.resume and self.overwrite:
            raise ValueError("resume=True and overwrite=True contradict each other: pick one.")
        log_targets(self.log)
        return self

    # --------------------------------------------------------------------------------------- conversions
    @classmethod
    def from_params(cls, params: Mapping[str, Any], strict: bool = True) -> "RunConfig":
        """From a parameter dict (``params.json``, a grid entry, ``-p`` values). Unknown keys raise when
        ``strict`` (naming the known ones), else are ignored."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - names)
        if unknown and strict:
            raise ValueError(f"unknown settings {unknown}; known: {sorted(names)}.")
        return cls(**{k: v for k, v in params.items() if k in names})

    @classmethod
    def of(cls, settings: "RunConfig | Mapping[str, Any]") -> "RunConfig":
        """``settings`` as a RunConfig: itself, or one from a run's recorded ``params.json`` (keys that older
        records hold and RunConfig no longer has are ignored; settings they lack take their defaults)."""
        return settings if isinstance(settings, RunConfig) else cls.from_params(settings, strict=False)

    @classmethod
    def from_namespace(cls, namespace: Mapping[str, Any]) -> "RunConfig":
        """From the variables of notebook 03's parameters cell (pass ``globals()``)."""
        return cls(**{f.name: namespace[f.name] for f in fields(cls) if f.name in namespace})

    def switches(self) -> dict[str, Any]:
        """``preset`` and every switch of :data:`SWITCHES`, resolved: the explicit value, else the preset's."""
        resolved = resolve_switches(asdict(self))
        return {k: resolved[k] for k in ("preset", *SWITCHES)}

    def settings(self) -> dict[str, Any]:
        """The settings that define the run (what ``params.json`` holds): everything but bookkeeping,
        except ``num_workers``, which is recorded for speed figures; switches resolved from the preset."""
        return {k: v for k, v in resolve_switches(asdict(self)).items() if k not in BOOKKEEPING or k == "num_workers"}

    def model_kwargs(self) -> dict[str, Any]:
        """The model's settings (plus ``arch`` and ``pretrained`` given apart), by their names here:
        :func:`tsamlib.model.tsam.tsam_kwargs` makes :func:`tsamlib.model.create_tsam`'s keywords of them."""
        sw = self.switches()
        return {k: sw.get(k, getattr(self, k)) for k in MODEL_SETTINGS}

    def replace(self, **changes: Any) -> "RunConfig":
        """A checked copy with ``changes``."""
        return RunConfig(**{**asdict(self), **changes})


def log_targets(log: str | None) -> tuple[str, ...]:
    """The trackers ``log`` names (``"tensorboard,wandb"`` -> ``("tensorboard", "wandb")``; None or "" -> none);
    ValueError naming the choices for an unknown one."""
    names = tuple(dict.fromkeys(x.strip() for x in (log or "").split(",") if x.strip()))
    unknown = [x for x in names if x not in TRACKERS]
    if unknown:
        raise ValueError(f"log={log!r}: {', '.join(map(repr, unknown))} is not a tracker; choose from "
                         f"{list(TRACKERS)}, comma-separated (e.g. 'tensorboard,mlflow'), or None.")
    return names


def resolve_switches(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with ``preset`` (missing: ``"tsamlib"``) and every switch of :data:`SWITCHES` filled in: a switch
    that is missing or None takes the preset's value. An unknown preset name raises ValueError naming the choices."""
    out = dict(params)
    preset = out.get("preset") or "tsamlib"
    if preset not in PRESET_SWITCHES:
        raise ValueError(f"preset={preset!r}: choose one of {list(PRESETS)}.")
    out["preset"] = preset
    for k, v in PRESET_SWITCHES[preset].items():
        if out.get(k) is None:
            out[k] = v
    return out


def _coerce(name: str, annotation: Any, v: Any) -> Any:
    """Normalise ``v`` to the setting's type (ints for int, floats for float, lists for tuples)."""
    t = str(annotation)
    v = normalize(v)
    try:
        if t.startswith("int") and not isinstance(v, bool) and isinstance(v, (int, float)) and int(v) == v:
            return int(v)
        if t.startswith("float") and isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    except (OverflowError, ValueError):
        pass
    ok = {"int": isinstance(v, int) and not isinstance(v, bool), "float": isinstance(v, float),
          "bool": isinstance(v, bool), "str": isinstance(v, str), "list": isinstance(v, list)}
    kinds = [k.strip() for k in t.split("|")]
    if v is None and "None" in kinds:
        return v
    if not any(ok.get(k, False) for k in kinds):
        raise ValueError(f"{name}={v!r} has type {type(v).__name__}; expected {t}.")
    return v


def normalize(v: Any) -> Any:
    """One form for a value: tuples -> lists (recursively), numpy scalars -> Python, paths -> str."""
    if isinstance(v, (list, tuple)):
        return [normalize(x) for x in v]
    if isinstance(v, dict):
        return {k: normalize(x) for k, x in v.items()}
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        return v.item()
    if hasattr(v, "__fspath__"):
        return str(v)
    return v


def _same(a: Any, b: Any) -> bool:
    a, b = normalize(a), normalize(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def config_diff(old: Mapping[str, Any] | RunConfig, new: Mapping[str, Any] | RunConfig,
                ignore: frozenset[str] | set[str] = BOOKKEEPING) -> dict[str, tuple[Any, Any]]:
    """``{name: (old, new)}`` for every setting whose normalised values differ (``ignore``d names aside).
    A setting missing on one side counts as its :class:`RunConfig` default (runs recorded before it existed);
    switches are compared resolved (:func:`resolve_switches`), so None and the preset's value are the same."""
    old = asdict(old) if isinstance(old, RunConfig) else dict(old)
    new = asdict(new) if isinstance(new, RunConfig) else dict(new)
    if (old.get("preset") or "tsamlib") in PRESETS and (new.get("preset") or "tsamlib") in PRESETS:
        old, new = resolve_switches(old), resolve_switches(new)   # compare what the runs really did
    defaults = {f.name: f.default for f in fields(RunConfig) if f.default is not MISSING}
    out = {}
    for k in sorted(set(old) | set(new)):
        if k in ignore:
            continue
        a, b = old.get(k, defaults.get(k)), new.get(k, defaults.get(k))
        if not _same(a, b):
            out[k] = (a, b)
    return out


def auto_run_id(cfg: RunConfig, when: float | None = None) -> str:
    """A readable id: the model in four tokens, the other settings that differ from the defaults, the time.

    ``RunConfig(shift_depth=4)`` at 2026-11-26 20:13:55 -> ``k4-fdiv8-8f-rgb-20261126-201355``; with
    ``epochs=5, dataset="mini-something"`` -> ``k1-fdiv8-8f-rgb-mini-something-ep5-20261126-201355``; the preset
    ``"authors"`` adds ``authors``, a switch that differs from its preset adds ``<switch>-<value>``,
    ``shift_direction="causal"`` adds ``causal``.
    """
    tokens = [f"k{cfg.shift_depth}", f"fdiv{cfg.f_div}", f"{cfg.n_frames}f", "av" if cfg.audio else "rgb"]
    short = dict(shift_direction="", dataset="", arch="", epochs="ep", lr="lr", batch_size="bs", img_size="px",
                 seed="s", recipe="", pretrained="init-", n_insert="nins", m_insert="mins", n_mels="mels", dropout="do",
                 flip="flip", resize="rs", preset="", sync_bn="syncbn")
    default = RunConfig()
    preset_values = PRESET_SWITCHES[cfg.preset]
    short.update({k: f"{k.replace('_', '')}-" for k in SWITCHES})
    for name, prefix in short.items():
        v = getattr(cfg, name)
        if name in preset_values and (v is None or _same(v, preset_values[name])):
            continue
        if name not in preset_values and _same(v, getattr(default, name)):
            continue
        text = str(v).replace(" ", "")
        if name == "dataset" or name == "pretrained":
            text = text.replace("\\", "/").rstrip("/").split("/")[-1].removesuffix(".csv").removesuffix(".pth")
        tokens.append(prefix + "".join(c if c.isalnum() or c in ".-_" else "_" for c in text)[:32])
    return "-".join(tokens + [time.strftime("%Y%m%d-%H%M%S", time.localtime(when))])


def settings_help() -> str:
    """One line per setting: name, default, type, meaning (``python -m tsamlib runs --settings``)."""
    return "\n".join(f"{f.name:12s} {f.default!r:12s} {str(f.type):16s} {f.metadata['help']}"
                     for f in fields(RunConfig))
