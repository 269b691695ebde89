"""A portable package of any TSM-family checkpoint: ``model.safetensors``, ``config.json`` and a model card.

    convert_checkpoint("TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment8_e50.pth", "packages/tsm-r50",
                       n_frames=8, f_div=8, dataset="kinetics-400")
    convert_checkpoint("results/runs/demo", "packages/demo")       # a finished run: settings, classes, top-1
    model = create_tsam_from("packages/tsm-r50")                    # no tsamlib run folder, no pickle

The package (``python -m tsamlib checkpoint convert FILE_OR_RUN --out DIR``):

- ``model.safetensors``: ``TSAM.state_dict()`` (``backbone.*``, ``fc.*``), loadable without unpickling anything;
- ``config.json``: ``arch``, ``num_classes``, ``classes`` (names, or null when the source has none), ``model``
  (every :data:`~tsamlib.config.MODEL_SETTINGS` value), ``preprocessing`` (input values, sizes, the audio front
  end), ``source`` (file, format, sha256, what it recorded, where each setting was read), ``metrics`` (each number
  with where it came from) and ``provenance`` (tsamlib commit, package versions);
- ``README.md``: a model card with YAML front matter in the Hugging Face convention (``library_name``,
  ``pipeline_tag``, ``tags``, ``datasets``, ``metrics``, ``model-index`` when there is a number to show, and
  ``license`` left empty for the weights' owner to set), readable offline.

Nothing is written until the package is checked: the folder is assembled beside its destination, read back with
:func:`~tsamlib.model.create_tsam_from` and must give the converted model's logits exactly; then it takes its
place. An existing non-empty ``DIR`` is refused (``overwrite=True`` replaces it).
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch

from ..config import MODEL_SETTINGS, RunConfig
from ..data.datasets import dataset_manifest
from ..data.manifest import manifest_vocab, read_table
from ..data.workers import pid_alive
from ..model.formats import PACKAGE_FILES, CheckpointInfo
from ..model.tsam import TSAM, create_tsam_from
from ..runs.fileio import atomic_path, atomic_write_json, read_json, relative_to_repo, writable_folder
from ..runs.provenance import environment_info

__all__ = ["PACKAGE_VERSION", "convert_checkpoint", "run_checkpoint", "model_card"]

PACKAGE_VERSION = 1
_MEAN, _STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def run_checkpoint(run_dir: str | os.PathLike, weights: str | None = None) -> Path:
    """The weights file of a finished run: ``checkpoints/model.pth`` (last epoch) or ``best.pth`` (best validation
    epoch); ``weights=None``: the run's ``eval_weights``."""
    run_dir = Path(run_dir)
    if weights not in (None, "last", "best"):
        raise ValueError(f"weights={weights!r}: choose 'last' or 'best' (or None: the run's eval_weights).")
    metrics = _json_object(run_dir / "metrics.json") if (run_dir / "metrics.json").is_file() else {}
    if not metrics.get("finished"):
        raise ValueError(f"run {run_dir} is not finished (metrics.json): only a finished run's weights are converted.")
    params = _json_object(run_dir / "params.json")
    try:
        cfg = RunConfig.of(params)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{run_dir / 'params.json'}: {e}") from None
    weights = weights or cfg.switches()["eval_weights"]
    path = run_dir / "checkpoints" / ("model.pth" if weights == "last" else "best.pth")
    if not path.is_file():
        raise FileNotFoundError(f"run {run_dir} has no {relative_to_repo(path)} (weights are never committed: a fresh "
                                "clone has none); train it again, or pick the other weights (--weights last/best).")
    return path


def _run_dir_of(path: Path) -> Path | None:
    return path.parent.parent if path.parent.name == "checkpoints" and (path.parent.parent / "params.json").is_file() \
        else None


def _run_classes_and_metrics(run_dir: Path) -> tuple[list[str] | None, list[dict[str, Any]], str | None]:
    """The class names of a run's dataset (None when its manifest is not here), its recorded top-1, its dataset."""
    params = _json_object(run_dir / "params.json")
    classes = None
    try:
        classes = manifest_vocab(read_table(dataset_manifest(params.get("dataset", "default"))))
    except (OSError, ValueError):
        pass
    metrics = []
    final = _json_object(run_dir / "metrics.json").get("final") if (run_dir / "metrics.json").is_file() else {}
    final = final if isinstance(final, dict) else {}
    for name in ("top1", "top5"):
        if isinstance(final.get(name), (int, float)):
            metrics.append(dict(name=name.replace("top", "top-"), value=round(100 * final[name], 2), unit="%",
                                source=f"this run's metrics.json (final validation, the run's own view; "
                                       f"{relative_to_repo(run_dir)})", measured_here=True))
    for ev in sorted(run_dir.glob("eval_*.json")):
        rec = _json_object(ev)
        if isinstance(rec.get("top1"), (int, float)) and not isinstance(rec.get("top1"), bool):
            metrics.append(dict(name=f"top-1 ({ev.stem.removeprefix('eval_')})", value=round(100 * rec["top1"], 2),
                                unit="%", source=f"{ev.name} (tsamlib's fixed-view evaluation of this run)",
                                measured_here=True))
    return classes, metrics, str(params.get("dataset")) if params.get("dataset") else None


def _json_object(path: Path) -> dict[str, Any]:
    """A run's JSON record, which must be an object: ValueError naming the file otherwise."""
    rec = read_json(path)
    if not isinstance(rec, dict):
        raise ValueError(f"{path} holds a JSON {type(rec).__name__}, not the object tsamlib writes there: the run "
                         "folder was edited by hand; restore the file or train the run again.")
    return rec


def _recorded_metrics(info: CheckpointInfo) -> list[dict[str, Any]]:
    """Numbers a file says of itself, with what they are; never measured here."""
    out = []
    if info.format == "tsm" and isinstance(info.records.get("best_prec1"), (int, float)):
        out.append(dict(name="top-1", value=float(info.records["best_prec1"]), unit="%",
                        source="the file's best_prec1: the best validation top-1 the TSM repository's main.py printed "
                               "while training (its val list, 1 centre crop); not measured here",
                        measured_here=False))
    if info.format == "authors":
        for k, v in info.records.items():
            if k.startswith("best_score") and isinstance(v, (int, float)):
                out.append(dict(name="top-1", value=round(100 * float(v), 2), unit="%",
                                source=f"the file's data_state[{k!r}]: the authors' best validation score while "
                                       "training (chosen on that set); not measured here", measured_here=False))
    return out


def _preprocessing(info: CheckpointInfo, model: TSAM) -> dict[str, Any]:
    pre = {"img_size": 224, "resize": 256, "video_norm": "imagenet", "valid_view": "center_crop"}
    pre.update({k: v for k, v in info.preprocessing.items()})
    if pre.get("video_norm") == "imagenet":
        pre.update(mean=_MEAN, std=_STD, value_range="RGB in [0, 1], then (x - mean) / std")
    elif pre.get("video_norm") == "none":
        pre.update(value_range="RGB in [0, 1], not normalised")
    if model.audio:
        pre.setdefault("n_mels", 64)
        pre.setdefault("audio_frontend", "tsamlib")
    return pre


def convert_checkpoint(source: str | os.PathLike, out: str | os.PathLike, *, classes: list[str] | None = None,
                       dataset: str | None = None, name: str | None = None, overwrite: bool = False,
                       weights: str | None = None, **overrides: Any) -> Path:
    """Write the package of ``source`` (a checkpoint file of any format :func:`~tsamlib.model.read_checkpoint`
    knows, a package, or a finished run's folder) to the folder ``out``; returns ``out``.

    ``overrides``: create_tsam settings the file does not record (TSM's ``n_frames``, ``f_div``), checked against
    those it does. ``classes``: class names, index = output (else the file's, or a run's dataset's). ``dataset``:
    the name the card gives the training data (a run's own is used when not given). ``weights``: a run's
    ``"last"``/``"best"``."""
    source, out = Path(source), Path(out)
    if source.is_dir() and (source / "params.json").is_file():
        source = run_checkpoint(source, weights)
    elif weights is not None:
        raise ValueError(f"weights={weights!r} (--weights) chooses among a run's weights; {source} is not a run "
                         "folder.")
    _check_destination(source, out, overwrite)
    classes = _checked_classes(classes)
    model = create_tsam_from(source, **overrides).eval()
    report = model.load_report
    info: CheckpointInfo = report.info
    if report.head != "loaded":
        theirs = ", ".join(report.skipped_classifier) or "no classifier"
        raise ValueError(f"{source}: its classifier does not fit this model's ({model.fc.out_features} outputs: "
                         f"{theirs}): a package holds the file's whole model, so it is not converted with a new, "
                         "untrained head (fine-tune with train --pretrained instead).")
    run_dir = _run_dir_of(source) if info.format == "tsamlib" else None
    metrics = _recorded_metrics(info)
    if run_dir is not None:
        run_classes, run_metrics, run_dataset = _run_classes_and_metrics(run_dir)
        classes = classes or run_classes
        metrics += run_metrics
        dataset = dataset or run_dataset
    if info.format == "package":
        metrics += (info.records.get("metrics") or [])
    where = "given" if classes else "the file's"
    classes = classes or info.classes
    if classes is not None and len(classes) != model.fc.out_features:
        raise ValueError(f"{len(classes)} class names ({where}) for a classifier of {model.fc.out_features} outputs: "
                         "give one name per output, in the order of the outputs (--classes FILE).")
    config = dict(
        tsamlib_package=PACKAGE_VERSION, name=name or out.name, arch=overrides.get("arch", info.arch),
        num_classes=model.fc.out_features, classes=classes, dataset=dataset,
        model={k: model.dropout.p if k == "dropout" else getattr(model, k) for k in MODEL_SETTINGS},
        preprocessing=_preprocessing(info, model),
        source=dict(path=str(source), format=info.format, sha256=model.load_report.record().get("sha256"),
                    records={k: v for k, v in info.records.items() if k not in ("metrics",)},
                    settings_from={k: "given to convert" if k in overrides else info.sources.get(k, "default")
                                   for k in MODEL_SETTINGS},
                    not_weights=info.ignored),
        metrics=metrics, provenance=environment_info())
    return _write_package(model, config, out, overwrite)


def _is_package(folder: Path) -> bool:
    """A folder that ``convert`` wrote: the package's files and nothing else."""
    names = {p.name for p in folder.iterdir()}
    if not set(PACKAGE_FILES) <= names or not names <= set(PACKAGE_FILES) | {"README.md"}:
        return False
    try:
        return isinstance(json.loads((folder / "config.json").read_text(encoding="utf-8")).get("tsamlib_package"), int)
    except (OSError, ValueError, AttributeError, RecursionError):
        return False


def _check_destination(source: Path, out: Path, overwrite: bool) -> None:
    """``out`` must be new, an empty folder, or (with ``overwrite``) a package written before; never a file, a
    folder of other things, the source or a folder holding it."""
    if out.is_symlink():
        raise ValueError(f"--out {out} is a symbolic link: give the real folder (the link would be replaced, not "
                         "what it points to).")
    src, dst = source.resolve(), out.resolve()
    for stale in dst.parent.glob(f".{dst.name}.*.tmp"):   # left by a convert that was killed
        pid = stale.name.removeprefix(f".{dst.name}.").split(".")[0]
        if not pid.isdigit() or pid_alive(int(pid)):
            continue
        if stale.name.endswith(".old.tmp") and not dst.exists():
            os.replace(stale, dst)   # killed between its two renames: the package that was there comes back
        else:
            shutil.rmtree(stale, ignore_errors=True)
    if dst == Path.cwd().resolve() or dst == Path(dst.anchor):
        raise ValueError(f"--out {str(out)!r} is the current folder (or the root): give the package a folder of its "
                         "own, e.g. --out packages/my-model.")
    if dst == src or dst in src.parents:
        raise ValueError(f"--out {out} is the source or holds it ({source}): write the package elsewhere.")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file: give a folder for the package.")
    if out.is_dir() and any(out.iterdir()):
        if not _is_package(out):
            raise FileExistsError(f"{out} holds other files than a tsamlib package: nothing there is replaced, not "
                                  "even with --overwrite; give a new --out.")
        if not overwrite:
            raise FileExistsError(f"{out} holds a package already: give a new --out, or overwrite=True (CLI "
                                  "--overwrite) to replace it.")
    writable_folder(dst.parent, "write the package to a folder you can write (--out)")


def _checked_classes(classes: Any) -> list[str] | None:
    if classes is None:
        return None
    if isinstance(classes, str) or not all(isinstance(c, str) and c.strip() for c in classes):
        raise ValueError("classes must be a list of non-empty names, one per output (--classes FILE: one per line).")
    classes = [c.strip() for c in classes]
    if not classes:
        raise ValueError("classes is empty: give one name per output (--classes FILE: one per line), or leave it out.")
    dup = sorted({c for c in classes if classes.count(c) > 1})
    if dup:
        raise ValueError(f"class names must be unique (output i is class i): repeated {dup[:5]}.")
    return classes


def _write_package(model: TSAM, config: dict[str, Any], out: Path, overwrite: bool) -> Path:
    """Assemble the package beside ``out``, check it reads back to the same logits, then move it into place."""
    from safetensors.torch import save

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    old = None
    try:
        os.mkdir(tmp)   # with the umask's permissions, as the folder a user makes
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        with atomic_path(tmp / "model.safetensors", fsync=True) as t:
            t.write_bytes(save(state, metadata={"format": "pt", "tsamlib_package": str(PACKAGE_VERSION)}))
        atomic_write_json(tmp / "config.json", config)
        with atomic_path(tmp / "README.md", fsync=True) as t:
            t.write_text(model_card(config), encoding="utf-8")
        _check_package(model, tmp)
        if out.is_dir() and any(out.iterdir()):   # checked again: something may have arrived while we wrote
            if not overwrite or not _is_package(out):
                raise FileExistsError(f"{out} was filled while the package was written (another convert, or files "
                                      "put there): nothing there was replaced; give a new --out.")
            old = out.parent / f".{out.name}.{os.getpid()}.old.tmp"   # aside until the new one is in
            os.replace(out, old)
        os.replace(tmp, out)   # onto an empty folder only: one filled meanwhile fails (ENOTEMPTY), losing nothing
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not out.exists():
            os.replace(old, out)   # the package that was there stays
        if isinstance(e, OSError) and not isinstance(e, FileExistsError):
            raise OSError(e.errno, f"writing the package {out} failed ({e.strerror or e}): nothing was "
                                   "replaced") from None
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out


def _check_package(model: TSAM, folder: Path) -> None:
    """The package read back must be the model: every tensor equal, the same logits on a random clip."""
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):   # create_tsam's "pretrained: ..." line: not the user's news
        again = create_tsam_from(folder).eval()
    torch.manual_seed(0)
    video = torch.randn(1, model.n_frames, 3, 32, 32)
    audio = torch.randn(1, 1, 3, 32, 32) if model.audio else None
    with torch.no_grad():
        a, b = model(video, audio), again(video, audio)
    if not torch.equal(a, b):
        raise RuntimeError(f"the package read back does not give the converted model's logits (largest difference "
                           f"{(a - b).abs().max().item():.3g}): nothing written.")


def _yaml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)   # a JSON string is a valid YAML scalar


def model_card(config: dict[str, Any]) -> str:
    """The package's ``README.md``: YAML front matter (Hugging Face's model-card keys) and what a user needs to know:
    how to load it, its settings and where each was read, its numbers and where each came from, its inputs."""
    m, pre, src = config["model"], config["preprocessing"], config["source"]
    family = "TSN" if not m["shift_depth"] else "TSM" if m["shift_depth"] == 1 and not m["audio"] else "TSAM"
    tags = ["video-classification", "action-recognition", "tsamlib", family.lower()]
    if m["shift_depth"]:
        tags.append("temporal-shift")
    lines = ["---", "library_name: tsamlib", "pipeline_tag: video-classification",
             "tags: [" + ", ".join(tags) + "]",
             "datasets: [" + (_yaml_str(config["dataset"]) if config.get("dataset") else "") + "]"
             + ("" if config.get("dataset") else "  # not recorded: say what the weights were trained on"),
             "metrics: [accuracy]" if config["metrics"] else "metrics: []",
             "license:  # the weights' owner sets this; the source's own terms apply"]
    if config["metrics"]:
        lines += ["model-index:", f"- name: {_yaml_str(config['name'])}", "  results:",
                  "  - task: {type: video-classification}",
                  f"    dataset: {{name: {_yaml_str(config.get('dataset') or 'not recorded')}, type: "
                  f"{_yaml_str(config.get('dataset') or 'unknown')}}}", "    metrics:"]
        for x in config["metrics"]:
            lines.append(f"    - {{type: accuracy, name: {_yaml_str(x['name'])}, value: {x['value']}, "
                         f"verified: false}}")
    lines += ["---", "", f"# {config['name']}", "",
              f"A {family} video classifier on a {config['arch']} backbone ({m['n_frames']} frames"
              + (" + one audio frame" if m["audio"] else "") + f", {config['num_classes']} classes), converted by "
              f"tsamlib from a `{src['format']}` checkpoint (`{Path(src['path']).name}`"
              + (f", sha256 `{src['sha256'][:16]}...`" if src.get("sha256") else "") + ").", "",
              "## Use", "", "```python", "from tsamlib import create_tsam_from",
              "model = create_tsam_from(\"path/to/this/folder\").eval()   # weights from model.safetensors, no pickle",
              f"logits = model(video{', audio' if m['audio'] else ''})   # video (B, {m['n_frames']}, 3, "
              f"{pre['img_size']}, {pre['img_size']})" + (", audio (B, 1, 3, H, W)" if m["audio"] else ""),
              "```", "", "Or from the command line: `python -m tsamlib checkpoint inspect path/to/this/folder`.", "",
              "## Settings", "", "| setting | value | read from |", "|---|---|---|"]
    for k, v in m.items():
        lines.append(f"| {k} | {v!r} | {src['settings_from'].get(k, '-')} |")
    lines += ["", "## Numbers", ""]
    if config["metrics"]:
        lines += ["| metric | value | where it came from | measured by tsamlib |", "|---|---|---|---|"]
        lines += [f"| {x['name']} | {x['value']} {x.get('unit', '')} | {x['source']} | "
                  f"{'yes' if x.get('measured_here') else 'no'} |" for x in config["metrics"]]
    else:
        lines.append("None recorded: the source file holds no accuracy, and none was measured here. Evaluate it "
                     "on your data before you trust it.")
    lines += ["", "## Inputs", "", "- frames: " + ", ".join(f"{k}={v}" for k, v in pre.items()),
              "- classes: " + (", ".join(config["classes"][:20]) + (" ..." if len(config["classes"]) > 20 else "")
                               if config.get("classes") else "not recorded (outputs are label indices)"),
              "", "## Provenance", "",
              f"- source records: {json.dumps(src['records'], default=str)[:600]}",
              f"- not weights (left out, counted): {', '.join(src['not_weights']) or 'none'}",
              f"- converted by tsamlib at commit {config['provenance'].get('git_commit') or 'unknown'}, torch "
              f"{config['provenance']['packages'].get('torch')}", ""]
    return "\n".join(lines)
