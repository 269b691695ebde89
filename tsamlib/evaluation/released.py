"""Evaluate a released checkpoint of the TSM family on a manifest split, with its own test protocols and ours.

    res = evaluate_checkpoint("weights/resnet50_kinetics400.ckpt.pth.tar", "data/kinetics400.csv",
                              settings="kinetics400")              # the settings of the authors' released model
    res = evaluate_checkpoint("TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment8_e50.pth", "data/k400.csv",
                              settings={"n_frames": 8, "f_div": 8})  # what a TSM file does not record
    summary_table(res)                                             # top-1/top-5 of each protocol, side by side

No run folder is needed: the model is built from ``settings`` (a name of :data:`RELEASED`, a dict of model and data
settings checked as :class:`~tsamlib.config.RunConfig` checks them, or, without ``arch``, what the file states with
the dict on top) with the classifier size found in the file; its weights come from the checkpoint (any format
:func:`~tsamlib.model.create_tsam` reads: the authors', the TSM repository's, mmaction2's, a tsamlib run or package),
and it is scored on ``manifest``'s ``split`` with

- the fixed protocol (:func:`~tsamlib.evaluation.scoring.score_views`: ``n_clips x n_crops`` views, mean of the
  softmax);
- the protocols of the code the file comes from (:mod:`tsamlib.evaluation.protocols`): TSM's 1-clip and dense 10x3
  tests, mmaction2's from the ``test_pipeline`` of the config the file carries, and
- the authors' protocol (:func:`~tsamlib.evaluation.scoring.score_authors`: ``n_passes`` random training-style passes,
  logits summed). Its honest figure uses all passes; their printed figure, the best over 1..n passes, is chosen on the
  very videos it is measured on: it is returned only beside the honest one and labelled so.

Labels are the manifest's, taken as indices of the checkpoint's outputs (the authors' list files number the classes
as their model does; check the class order of any other manifest). The record goes to
``results/released/<checkpoint>_<manifest>_<split>.json`` (atomic, with provenance). :func:`stand_in_checkpoint`
writes a file with random weights in one of the three layouts, to run all this without a released file.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
import torch
from fastai.torch_core import default_device

from ..config import DATA_SWITCHES, MODEL_SETTINGS, RunConfig
from ..data.manifest import manifest_vocab, read_table
from ..model.formats import CheckpointInfo, inspect_checkpoint, not_recorded
from ..model.tsam import TSAM, create_tsam, tsam_kwargs
from ..runs.fileio import atomic_write_json, relative_to_repo, repo_root
from ..runs.provenance import environment_info
from .protocols import PROTOCOL_NAMES, AuthorsPasses, TestProtocol, check_protocol, file_protocols, protocol_named
from .scoring import authors_metrics, eval_record, score_authors, score_views
from .specs import Loading

__all__ = ["RELEASED", "SETTING_NAMES", "STAND_IN_FORMATS", "released_settings", "file_settings",
           "checkpoint_classes", "build_model", "stand_in_checkpoint", "checkpoint_settings", "example_clips_manifest",
           "released_result_path", "evaluate_checkpoint", "summary_table"]

_TSAM_BITBUCKET = ("https://bitbucket.org/AlexeyAntonov74/resnet50_pretrained_weights/raw/"
                   "cc2bc64184212a0c0b710ab27f78b54ec7c06adb/")
# The authors' released models (github:aav-antonov/TSAM, lib/utils/saveloadmodels.py ``WeightsData``), with the
# settings of the configs their README evaluates them with (config/kinetics400_config.json,
# config/something_v1_config.json; copies in ../shared/reference-configs): ResNet-50 (timm), 16 segments, shift
# f_div 4 / depth 4 in every 2nd block from block 0, dropout 0.5, frames resized to 256 and cropped to 224, 224 mel
# bands, their pipeline (preset "authors": shift_pad "keep", inputs in [0, 1], their audio front end, ...).
RELEASED: dict[str, dict[str, Any]] = {
    "kinetics400": dict(
        file="resnet50_kinetics400.ckpt.pth.tar", url=_TSAM_BITBUCKET + "resnet50_kinetics400.ckpt.pth.tar",
        config="config/kinetics400_config.json", num_classes=400,
        settings=dict(arch="resnet50", n_frames=16, audio=True, shift_depth=4, f_div=4, n_insert=2, m_insert=0,
                      dropout=0.5, img_size=224, resize=256, n_mels=224, flip=True, preset="authors"),
        reported={"README (16 frames x 10 clips)": 78.0,
                  "report Table 1 (TSAM RGB+audio, 16 frames, INet21K)": 78.1}),
    "something_v1": dict(
        file="resnet50_something_v1.tar", url=_TSAM_BITBUCKET + "resnet50_something_v1.tar",
        config="config/something_v1_config.json", num_classes=174,
        settings=dict(arch="resnet50", n_frames=16, audio=False, shift_depth=4, f_div=4, n_insert=2, m_insert=0,
                      dropout=0.5, img_size=224, resize=256, n_mels=224, flip=False, preset="authors"),
        reported={"README (16 frames x 10 clips)": 52.2,
                  "report Table 2 (TSAM k=4, 16 frames, Kinetics-400 pretrained)": 52.1}),
}
# What ``settings`` may hold: the model (create_tsam) and the evaluation data settings.
SETTING_NAMES = ("arch", *MODEL_SETTINGS, "img_size", "resize", "n_mels", "flip", "preset", *DATA_SWITCHES)


def released_settings(name: str = "kinetics400", **overrides: Any) -> dict[str, Any]:
    """The settings of the released model ``name`` (a key of :data:`RELEASED`) with ``overrides`` (None values are
    ignored), checked. Overrides other than the data-side ones give a model their file does not fit: use them with
    a stand-in checkpoint only."""
    if name not in RELEASED:
        raise ValueError(f"released={name!r}: choose one of {list(RELEASED)}.")
    return _checked({**RELEASED[name]["settings"], **{k: v for k, v in overrides.items() if v is not None}})


def file_settings(checkpoint: str | os.PathLike, **overrides: Any) -> dict[str, Any]:
    """The evaluation settings a checkpoint file states (:func:`~tsamlib.model.formats.inspect_checkpoint`: arch,
    model settings, its source pipeline's sizes and input values), ``overrides`` on top, checked. What a file does
    not record (TSM's ``n_frames``, ``f_div``) must be among ``overrides``: ValueError naming it."""
    info = inspect_checkpoint(checkpoint)
    settings = {k: v for k, v in info.model_kwargs().items() if k in SETTING_NAMES}
    settings.update({k: v for k, v in info.preprocessing.items() if k in SETTING_NAMES})
    settings.update({k: v for k, v in overrides.items() if v is not None})
    need = (["arch"] if "arch" not in settings else []) + not_recorded(info.format, settings)
    if need:
        raise ValueError(f"{checkpoint} does not record {', '.join(need)} ({info.format} format): pass them, e.g. "
                         + ", ".join(f"{n}={info.name_hints.get(n, '...')!r}" for n in need)
                         + (" (what its file name says; the name is not read as a setting)" if info.name_hints else ""))
    return _checked(settings)


def _checked(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` with every switch resolved from the preset, checked as RunConfig checks them."""
    unknown = sorted(set(settings) - set(SETTING_NAMES))
    if unknown:
        raise ValueError(f"unknown settings {unknown}: a checkpoint is evaluated with {list(SETTING_NAMES)}.")
    cfg = RunConfig.from_params(dict(settings))
    return {k: v for k, v in cfg.settings().items() if k in SETTING_NAMES}


def checkpoint_classes(path: str | os.PathLike | CheckpointInfo) -> int:
    """The number of classes of the checkpoint's classifier (``last_fc`` / ``fc`` / ``new_fc`` / ``fc_cls`` ...);
    ``path`` may be what :func:`~tsamlib.model.formats.inspect_checkpoint` read of it."""
    info = path if isinstance(path, CheckpointInfo) else inspect_checkpoint(path)
    path = info.path
    if info.num_classes is None:
        raise ValueError(f"{path} holds no classifier (no fc/last_fc/classifier weight among its {info.tensors} "
                         "tensors): a backbone alone cannot be evaluated; give a checkpoint of a whole trained model.")
    return info.num_classes


def build_model(settings: Mapping[str, Any], num_classes: int, pretrained: str | os.PathLike | None = None) -> TSAM:
    """The TSAM model of ``settings`` (see :func:`released_settings`) with ``num_classes`` outputs, its weights
    from ``pretrained`` (None: random, as in training from scratch)."""
    cfg = RunConfig.from_params(_checked(settings))
    return create_tsam(cfg.arch, num_classes=num_classes, pretrained=pretrained, **tsam_kwargs(cfg.model_kwargs()))


STAND_IN_FORMATS = ("authors", "tsm", "mmaction2")


def stand_in_checkpoint(fmt: str, out_dir: str | os.PathLike, num_classes: int, *, released: str = "kinetics400",
                        seed: int = 0, **overrides: Any) -> tuple[Path, dict[str, Any]]:
    """A checkpoint with random weights (seeded) in the layout of ``fmt`` (:data:`STAND_IN_FORMATS`), written to
    ``out_dir``, for running the released-checkpoint pipeline without a released file; returns its path and the
    ``settings`` :func:`evaluate_checkpoint` takes for it. ``"authors"``: the model of :data:`RELEASED` ``released``
    (``overrides`` on top); ``"tsm"`` / ``"mmaction2"``: a TSM (resnet50, 8 frames, f_div 8, 224 / 256 unless
    ``overrides`` say otherwise) as their code saves it, the settings holding only what such a file does not record
    (the file is read as a user's would be). Its accuracy is that of a guess."""
    from ..model.pretrained import save_authors_checkpoint, save_mmaction2_checkpoint, save_tsm_checkpoint

    if fmt not in STAND_IN_FORMATS:
        raise ValueError(f"stand-in format {fmt!r}: choose one of {list(STAND_IN_FORMATS)}.")
    out_dir, overrides = Path(out_dir), {k: v for k, v in overrides.items() if v is not None}
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if fmt == "authors":
        settings = released_settings(released, **overrides)
        path = out_dir / f"stand-in_random_{settings['arch']}_{released}.ckpt.pth.tar"
        save_authors_checkpoint(build_model(settings, num_classes), path,
                                data_state={"epoch": 0, "stand_in": "random weights"})
        return path, settings
    settings = _checked({**dict(arch="resnet50", n_frames=8, f_div=8, shift_depth=1, audio=False, img_size=224,
                                resize=256), **overrides})
    model = build_model(settings, num_classes)
    a, t, f = settings["arch"], settings["n_frames"], settings["f_div"]
    if fmt == "tsm":
        path = save_tsm_checkpoint(model, out_dir / f"stand-in_random_TSM_{a}_shift{f}_blockres_segment{t}.pth")
        return path, {k: settings[k] for k in ("n_frames", "f_div", "img_size", "resize")}
    path = save_mmaction2_checkpoint(model, out_dir / f"stand-in_random_tsm_{a}_1x1x{t}.pth",
                                     resize=settings["resize"], img_size=settings["img_size"])
    return path, {k: settings[k] for k in ("audio", "img_size", "resize")}


def checkpoint_settings(checkpoint: str | os.PathLike, released: str = "kinetics400",
                        **overrides: Any) -> dict[str, Any]:
    """The ``settings`` :func:`evaluate_checkpoint` takes for a file: the authors' own configuration for a file in
    their layout (:func:`released_settings`: ``released`` with ``overrides``), else the ``overrides`` given (None
    values dropped) on top of what the file states (:func:`file_settings` then reads it)."""
    _check_exists(Path(checkpoint))
    if inspect_checkpoint(checkpoint).format == "authors":
        return released_settings(released, **overrides)
    return {k: v for k, v in overrides.items() if v is not None}


def example_clips_manifest(out: str | os.PathLike, root: str | os.PathLike | None = None) -> Path | None:
    """Index the 12 real Kinetics clips the authors published as their example (``root``, default
    ``$TSAM_KINETICS_CLIPS`` or ``../shared/kinetics-clips``) into the manifest ``out``, labels from their
    ``training.txt`` (split train) and ``validation.txt`` (split valid); None when the clips are absent."""
    from ..data.index import index_list

    root = Path(root or os.environ.get("TSAM_KINETICS_CLIPS") or repo_root().parent / "shared" / "kinetics-clips")
    lists = {"train": root / "training.txt", "valid": root / "validation.txt"}
    if not (root / "videos").is_dir() or not all(p.is_file() for p in lists.values()):
        return None
    index_list(root, lists, out, workers=1)
    return Path(out)


def _check_exists(checkpoint: Path) -> None:
    """FileNotFoundError naming where the released files are, for a checkpoint that is no file (nor package)."""
    if not checkpoint.is_file() and not checkpoint.is_dir():
        raise FileNotFoundError(
            f"checkpoint {checkpoint} not found: download the authors' file by hand ("
            + "; ".join(f"{k}: {v['url']}" for k, v in RELEASED.items())
            + ") or give any checkpoint file create_tsam loads; notebook 06 makes a stand-in when checkpoint=None.")


def _stem(path: Path) -> str:
    """``resnet50_kinetics400.ckpt.pth.tar`` -> ``resnet50_kinetics400``."""
    name, suffixes = path.name, (".tar", ".pth", ".pt", ".ckpt", ".bin", ".safetensors", ".csv")
    while name.endswith(suffixes):
        name = name[: name.rindex(".")]
    return name


def released_result_path(checkpoint: str | os.PathLike, manifest: str | os.PathLike, split: str = "valid",
                         out_dir: str | os.PathLike | None = None) -> Path:
    """Where :func:`evaluate_checkpoint` writes its record: ``<out_dir>/<checkpoint>_<manifest>_<split>.json``
    (``out_dir`` default ``results/released``; a manifest called ``manifest.csv`` is named by its folder)."""
    m = Path(manifest)
    m_name = m.parent.name if m.stem == "manifest" else _stem(m)
    out_dir = Path(out_dir) if out_dir is not None else repo_root() / "results" / "released"
    return out_dir / f"{_stem(Path(checkpoint))}_{m_name}_{split}.json"


def _wilson(p: float, n: int) -> list[float] | None:
    """95 % Wilson interval of a proportion ``p`` measured on ``n`` videos."""
    if not n:
        return None
    z = 1.96
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return [max(0.0, centre - half / (1 + z * z / n)), min(1.0, centre + half / (1 + z * z / n))]


def _summary(views: dict | None, authors: dict | None, others: Mapping[str, dict] | None = None
             ) -> list[dict[str, Any]]:
    rows = []
    if views is not None:
        p = views["protocol"]
        rows.append(dict(protocol="fixed views", how=f"{p['n_clips']} clips x {p['n_crops']} crops, mean of softmax",
                         top1=views["top1"], top5=views["top5"], n_videos=views["n_videos"],
                         chosen="in advance"))
    for name, r in (others or {}).items():
        p = r["protocol"]
        rows.append(dict(protocol=_OTHER_ROWS.get(name, name), how=p["description"], top1=r["top1"], top5=r["top5"],
                         n_videos=r["n_videos"], chosen=f"in advance ({p['source']})"))
    if authors is not None:
        n = authors["protocol"]["n_passes"]
        rows.append(dict(protocol="authors' passes", how=f"{n} random training-style passes, logits summed",
                         top1=authors["top1"], top5=authors["top5"], n_videos=authors["n_videos"],
                         chosen="in advance (all passes)"))
        if authors["top1_best_of_n_selected_on_eval_set"] is not None:
            k = authors["n_passes_selected_on_eval_set"]
            rows.append(dict(protocol="authors' printed figure", how=f"best of 1..{n} passes (here {k})",
                             top1=authors["top1_best_of_n_selected_on_eval_set"], top5=None,
                             n_videos=authors["n_videos"], chosen="selected on the evaluation set (optimistic)"))
    for r in rows:
        r["top1_ci95"] = _wilson(r["top1"], r["n_videos"]) if r["top1"] is not None else None
    return rows


_OTHER_ROWS = {"tsm": "TSM's test (1 clip)", "tsm_dense": "TSM's dense test (10x3)", "mmaction2": "mmaction2's test"}


def evaluate_checkpoint(checkpoint: str | os.PathLike, manifest: str | os.PathLike, split: str = "valid",
                        settings: str | Mapping[str, Any] | None = "kinetics400",
                        protocols: Sequence[str | TestProtocol | AuthorsPasses] | None = None,
                        loading: Loading = Loading(), out_dir: str | os.PathLike | None = None, write: bool = True,
                        note: str | None = None, released: str | None = None) -> dict[str, Any]:
    """Score the model in ``checkpoint`` on ``manifest``'s ``split`` with the protocols ``protocols`` lists, by name
    or as protocols with their own parameters: ``"views"`` (the fixed protocol, 2 clips x 3 crops;
    ``views_protocol(n_clips, n_crops)`` for others), ``"authors"`` (10 passes, seed 0; ``AuthorsPasses(n_passes,
    seed)``), ``"tsm"``, ``"tsm_dense"``, ``"mmaction2"`` (:mod:`tsamlib.evaluation.protocols`). None: the fixed
    views and the protocols of the code the file comes from (:func:`~tsamlib.evaluation.protocols.file_protocols`:
    the authors' for theirs, TSM's two for the TSM repository's, mmaction2's, from its own config, for mmaction2's).

    ``settings``: a name of :data:`RELEASED`, a dict of :data:`SETTING_NAMES` (see :func:`released_settings`), or
    None: what the file states (:func:`file_settings`; a TSM-repository file also needs ``n_frames``/``f_div``, give
    them as a dict: ``{"n_frames": 8, "f_div": 8}`` is then read on top of the file's). ``loading``
    (:class:`~tsamlib.evaluation.specs.Loading`: batch size, workers, log-mel cache, progress bar) changes the
    speed, not the result.
    Returns ``views`` and ``authors`` (the :func:`~tsamlib.evaluation.scoring.score_views` / ``score_authors`` results,
    None when not run), ``others`` (name -> result of TSM's and mmaction2's protocols), ``protocols`` (the names
    run), ``summary`` (one row per figure, the best-of-n one last and labelled, with 95 % Wilson
    intervals), ``settings``, ``num_classes``, ``load_report`` and ``path`` (the record in ``out_dir``, default
    ``results/released``; None when ``write=False``). ``note`` is written into the record (e.g. that the weights
    are a stand-in), and ``released`` (the name of :data:`RELEASED` these settings come from, when given as a dict)
    with the figures the authors report.

    Raises FileNotFoundError for a missing checkpoint or manifest, ValueError for a split the manifest lacks,
    labels beyond the classifier, or a checkpoint whose tensors do not fit the model of ``settings``."""
    checkpoint, manifest = Path(checkpoint), Path(manifest)
    _check_protocol_list(protocols)
    _check_exists(checkpoint)
    df = _manifest_rows(manifest, split)
    name = settings if isinstance(settings, str) else released
    if name is not None and name not in RELEASED:
        raise ValueError(f"released={name!r}: choose one of {list(RELEASED)}.")
    if settings is None or (isinstance(settings, Mapping) and "arch" not in settings):
        settings = file_settings(checkpoint, **(settings or {}))
    else:
        settings = released_settings(settings) if isinstance(settings, str) else _checked(settings)
    info = inspect_checkpoint(checkpoint)
    num_classes = _classes_for(df, split, info, manifest, checkpoint)
    chosen = _chosen_protocols(protocols, info, settings, checkpoint)
    model = _load(checkpoint, settings, num_classes).to(default_device())
    names = manifest_vocab(df)
    vocab = names[:num_classes] + [str(i) for i in range(len(names), num_classes)]
    common = dict(model=model, cfg=settings, manifest=manifest, split=split, loading=loading, vocab=vocab,
                  weights=relative_to_repo(checkpoint))
    views = score_views(protocol=chosen["views"], **common) if "views" in chosen else None
    others = {n: score_views(protocol=p, **common) for n, p in chosen.items() if n not in ("views", "authors")}
    authors = score_authors(passes=chosen["authors"], **common) if "authors" in chosen else None
    res = dict(views=views, authors=authors, others=others, protocols=tuple(chosen),
               summary=_summary(views, authors, others), settings=settings, num_classes=num_classes,
               load_report=model.load_report, path=None)
    if write:
        record = _record(res, info, name, note, checkpoint, manifest, split)
        res["path"] = atomic_write_json(released_result_path(checkpoint, manifest, split, out_dir), record)
    return res


_PROTOCOL_KINDS = (TestProtocol, AuthorsPasses)


def _check_protocol_list(protocols: Any) -> None:
    """ValueError unless ``protocols`` is None or a non-empty sequence of known names and protocols."""
    known = [*PROTOCOL_NAMES, "authors"]
    if protocols is not None and (isinstance(protocols, str) or not protocols
                                  or not all(isinstance(p, (str, *_PROTOCOL_KINDS)) for p in protocols)
                                  or sorted({p for p in protocols if isinstance(p, str)} - set(known))):
        raise ValueError(f"protocols={protocols!r}: a tuple of names among {known} or of protocols (TestProtocol, "
                         "AuthorsPasses) (None: the fixed views and the file's own).")


def _manifest_rows(manifest: Path, split: str) -> pd.DataFrame:
    """The manifest's rows; FileNotFoundError / ValueError naming the fix when it is missing or lacks ``split``."""
    if not manifest.is_file():
        raise FileNotFoundError(f"manifest {manifest} not found: build one with `python -m tsamlib index ...` (the "
                                "authors' list files: `index list`), or pass a dataset's data/<name>/manifest.csv.")
    df = read_table(manifest)
    if df[df["split"] == split].empty:
        raise ValueError(f"manifest {manifest} has no rows with split {split!r} (splits present: "
                         f"{sorted(df['split'].unique())}): pass split= one of those, or index the evaluation "
                         "list under that split.")
    return df


def _classes_for(df: pd.DataFrame, split: str, info: CheckpointInfo, manifest: Path, checkpoint: Path) -> int:
    """The checkpoint's number of classes; ValueError when the labels of ``split`` go beyond them."""
    num_classes, top = checkpoint_classes(info), int(df[df["split"] == split]["label"].max())
    if top >= num_classes:
        raise ValueError(f"manifest {manifest} has labels up to {top} in split {split!r} but "
                         f"the classifier of {checkpoint} has {num_classes} classes: evaluate it on the dataset it "
                         "was trained for, with the class numbering of its list files.")
    return num_classes


def _chosen_protocols(protocols: Sequence[Any] | None, info: CheckpointInfo, settings: Mapping[str, Any],
                      checkpoint: Path) -> dict[str, TestProtocol | AuthorsPasses]:
    """name -> protocol of what ``protocols`` lists (None: the fixed views and the file's own), each checked before
    the model is built and any protocol has run."""
    chosen: dict[str, TestProtocol | AuthorsPasses] = {}
    for p in protocols or ("views", *file_protocols(info.format)):
        if isinstance(p, str):
            p = AuthorsPasses() if p == "authors" else protocol_named(p, preprocessing=info.preprocessing,
                                                                       n_frames=settings["n_frames"])
        if chosen.setdefault(p.name, p) != p:
            raise ValueError(f"protocols={protocols!r} holds two different protocols named {p.name!r}: keep one.")
    run_cfg = RunConfig.of(settings)
    for p in chosen.values():
        if isinstance(p, TestProtocol) and p.name != "views":
            check_protocol(p, run_cfg.img_size, run_cfg.resize, run_cfg.n_frames, str(checkpoint))
    return chosen


def _record(res: dict[str, Any], info: CheckpointInfo, name: str | None, note: str | None, checkpoint: Path,
            manifest: Path, split: str) -> dict[str, Any]:
    """The JSON-ready record of :func:`evaluate_checkpoint`'s result ``res``, with provenance."""
    report, views, authors = res["load_report"], res["views"], res["authors"]
    return dict(checkpoint=relative_to_repo(checkpoint), layout=report.layout or "plain state dict",
                data_state=report.data_state, load_report=str(report), released=name,
                reported_top1=RELEASED[name]["reported"] if name else None, note=note,
                manifest=relative_to_repo(manifest), split=split, settings=res["settings"],
                num_classes=res["num_classes"], evaluated_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                summary=res["summary"],
                views=eval_record(views) if views else None,
                authors=eval_record(authors, authors_metrics(authors)) if authors else None,
                others={k: eval_record(v) for k, v in res["others"].items()}, format=info.format,
                environment=environment_info())


def _load(checkpoint: Path, settings: dict[str, Any], num_classes: int) -> TSAM:
    """The model of ``settings`` with every tensor from ``checkpoint``; ValueError naming the file and the fix when
    they do not fit."""
    fix = (f"pass the settings {checkpoint.name} was trained with (settings='kinetics400' / 'something_v1' for the "
           "authors' files; arch, n_frames, audio, shift and preset for others)")
    try:
        model = build_model(settings, num_classes, pretrained=checkpoint)
    except ValueError as e:
        raise ValueError(f"{checkpoint} does not fit the model of the settings given ({e}): {fix}.") from e
    rep = model.load_report
    if rep.missing or rep.unexpected or rep.skipped_classifier:
        raise ValueError(f"{checkpoint} does not fit the model of the settings given (arch={settings['arch']!r}): "
                         f"{rep}; {fix}.")
    return model.eval()  # the authors' layout with shift_pad != "keep": create_tsam has warned


def summary_table(res: Mapping[str, Any]) -> pd.DataFrame:
    """:func:`evaluate_checkpoint`'s ``summary`` as a table: top-1/top-5 in percent, the 95 % interval of top-1,
    how each figure was chosen. The authors' best-of-n figure comes right after the honest one, labelled."""
    def pct(v: float | None) -> float | None:
        return None if v is None else round(100 * v, 1)

    rows = []
    for r in res["summary"]:
        ci = r["top1_ci95"]
        rows.append({"protocol": r["protocol"], "how": r["how"], "top-1 %": pct(r["top1"]), "top-5 %": pct(r["top5"]),
                     "top-1 95% interval": None if ci is None else f"{100 * ci[0]:.0f}-{100 * ci[1]:.0f}",
                     "videos": r["n_videos"], "chosen": r["chosen"]})
    return pd.DataFrame(rows).set_index("protocol")
