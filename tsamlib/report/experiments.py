"""The report's experiments as grids of ``notebooks/03_train.ipynb`` runs, at two scales, and a resumable runner.

Every TSM/TSAM row of Table 1 (Kinetics-400, 10 rows) and Table 2 (Something-Something V1, 8 rows) is one
:class:`Row` below, typed from the report. The other methods of the tables (X3D, ViViT, UniFormer, CT-Net)
are :data:`REFERENCE_ROWS`: shown in the rendered tables, never run (another architecture).

Two scales, each a plain function from a row to the 03_train parameter dict:

- :func:`paper_params`: ResNet-50, 224 px, the authors' configs (``../shared/reference-configs``) and
  ``preset="authors"`` (their pipeline produced the report's numbers), on manifests that the caller gives (no
  dataset roots are hard-coded);
- :func:`mini_params`: the synthetic ``mini-kinetics-av`` / ``mini-something`` datasets, resnet18 at 32 px,
  one-cycle, 12 epochs, ``preset="tsamlib"``: the whole mini grid (one seed, 14 runs) took about 30 minutes on
  an idle 2-core CPU on 2026-11-25, and 3.3-3.7 times as long on 2026-11-27 (README, mini section).

:func:`paper_grid` / :func:`mini_grid` pair every row with its parameters (or the reason it is not run) and
the initialisation actually used; :func:`run_grid` executes them with papermill, skipping finished runs and
resuming unfinished ones. Run ids are labels only; tables match runs by their recorded parameters.
"""
from __future__ import annotations

import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from ..config import RunConfig, config_diff, resolve_switches
from ..runs.fileio import read_json, repo_root
from ..runs.folder import is_finished, run_state, runs_dir

__all__ = ["Row", "ReferenceRow", "GridEntry", "TABLE1_ROWS", "TABLE2_ROWS", "CAUSAL_ROWS", "REFERENCE_ROWS",
           "run_id", "paper_params", "mini_params", "mini_init", "paper_grid", "mini_grid", "grid",
           "grid_frame", "grid_summary", "run_summary", "placeholders", "run_grid", "grid_line", "grid_tensorboard",
           "scale_preset", "MINI"]


@dataclass(frozen=True)
class Row:
    """One TSM/TSAM row of the report: the model settings, the report's pre-training label and its top-1 (%)."""

    table: str          # "table1" (Kinetics-400) or "table2" (Something-Something V1)
    key: str            # short label, unique within the table, ending with the report's init (in1k, in21k, k400)
    method: str         # "TSM" or "TSAM"
    frames: int
    audio: bool
    shift_depth: int
    pretrained: str     # the report's label: "ImageNet", "INet21K" or "Kinetics400"
    paper_top1: float | None   # None: a row the report does not have (the causal rows)
    f_div: int
    n_insert: int
    m_insert: int = 0
    shift_direction: str = "bidirectional"


@dataclass(frozen=True)
class ReferenceRow:
    """A row of another architecture, shown for reference with the report's number only."""

    table: str
    method: str
    type: str
    frames: int
    pretrained: str
    paper_top1: float
    reason: str = "not run: other architecture"


def _tsm(table: str, key: str, frames: int, pretrained: str, top1: float) -> Row:
    """TSM as published: shift depth 1, C/8 channels per direction, shift in every residual block."""
    return Row(table, key, "TSM", frames, False, 1, pretrained, top1, f_div=8, n_insert=1)


def _tsam(table: str, key: str, frames: int, audio: bool, k: int, pretrained: str, top1: float) -> Row:
    """TSAM as the authors' configs: C/4 per direction split over depths 1..k, shift in every 2nd block."""
    return Row(table, key, "TSAM", frames, audio, k, pretrained, top1, f_div=4, n_insert=2, m_insert=0)


# Table 1, Kinetics-400 (TSAM rows: shift_depth 4, the authors' kinetics400_config.json).
TABLE1_ROWS: list[Row] = [
    _tsm("table1", "tsm-8-in1k", 8, "ImageNet", 74.2),
    _tsam("table1", "tsam-8-rgb-in1k", 8, False, 4, "ImageNet", 73.3),
    _tsam("table1", "tsam-8-av-in1k", 8, True, 4, "ImageNet", 75.8),
    _tsam("table1", "tsam-8-rgb-in21k", 8, False, 4, "INet21K", 75.8),
    _tsam("table1", "tsam-8-av-in21k", 8, True, 4, "INet21K", 77.8),
    _tsm("table1", "tsm-16-in1k", 16, "ImageNet", 74.7),
    _tsam("table1", "tsam-16-rgb-in1k", 16, False, 4, "ImageNet", 73.8),
    _tsam("table1", "tsam-16-av-in1k", 16, True, 4, "ImageNet", 76.4),
    _tsam("table1", "tsam-16-rgb-in21k", 16, False, 4, "INet21K", 76.3),
    _tsam("table1", "tsam-16-av-in21k", 16, True, 4, "INet21K", 78.1),
]

# Table 2, Something-Something V1 (RGB only).
TABLE2_ROWS: list[Row] = [
    _tsm("table2", "tsm-8-in1k", 8, "ImageNet", 45.6),
    _tsm("table2", "tsm-16-in1k", 16, "ImageNet", 47.2),
    _tsam("table2", "tsam-16-k1-in21k", 16, False, 1, "INet21K", 50.1),
    _tsam("table2", "tsam-16-k2-in21k", 16, False, 2, "INet21K", 50.4),
    _tsam("table2", "tsam-16-k3-in21k", 16, False, 3, "INet21K", 50.7),
    _tsam("table2", "tsam-16-k4-in21k", 16, False, 4, "INet21K", 51.1),
    _tsam("table2", "tsam-16-k5-in21k", 16, False, 5, "INet21K", 51.0),
    _tsam("table2", "tsam-16-k4-k400", 16, False, 4, "Kinetics400", 52.1),
]

# Beyond the report: Table 2's k-ablation with a causal shift (every moved channel from the past, what a
# stream needs, tsamlib.model.online), mini scale only, shown beside the bidirectional rows.
CAUSAL_ROWS: list[Row] = [
    Row("table2", f"tsam-16-k{k}-causal-in21k", "TSAM", 16, False, k, "INet21K", None, f_div=4, n_insert=2,
        m_insert=0, shift_direction="causal") for k in range(1, 5)]

REFERENCE_ROWS: list[ReferenceRow] = [
    ReferenceRow("table1", "X3D-M", "3D CNN", 16, "-", 76.0),
    ReferenceRow("table1", "X3D-L", "3D CNN", 16, "-", 78.2),
    ReferenceRow("table1", "ViViT-L", "Transformer", 16, "INet21K", 80.6),
    ReferenceRow("table1", "UniFormer-S", "Transformer", 16, "ImageNet", 80.8),
    ReferenceRow("table2", "CT-Net", "3D CNN", 16, "ImageNet", 52.5),
    ReferenceRow("table2", "UniFormer-S", "Transformer", 16, "Kinetics400", 53.8),
]


_PAPER_INIT_TAG = {"ImageNet": "in1k", "INet21K": "in21k", "Kinetics400": "k400"}


def init_tag(row: Row, scale: str) -> str:
    """The initialisation a run of ``row`` at ``scale`` really starts from, as a run id names it: the report's
    (``in1k``, ``in21k``, ``k400``) at paper scale; at mini scale ``scratch`` where the report's ImageNet weights
    are stood in for by random ones, ``k400`` for the row started from the mini Kinetics run. A row that is not run
    keeps the report's tag (nothing was trained under the name)."""
    if scale == "mini" and mini_init(row)[1] is None and row.pretrained != "Kinetics400":
        return "scratch"
    return _PAPER_INIT_TAG[row.pretrained]


def run_id(row: Row, scale: str, seed: int) -> str:
    """Deterministic label ``<table>-<scale>-<row key without its init>-<init really used>-s<seed>`` (a label
    only: nothing parses it back), e.g. ``table2-mini-tsam-16-k4-scratch-s0``, ``table2-paper-tsam-16-k4-in21k-s0``."""
    return f"{row.table}-{scale}-{row.key.rsplit('-', 1)[0]}-{init_tag(row, scale)}-s{seed}"


def _model_params(row: Row) -> dict[str, Any]:
    return dict(n_frames=row.frames, audio=row.audio, shift_depth=row.shift_depth, f_div=row.f_div,
                n_insert=row.n_insert, m_insert=row.m_insert, shift_direction=row.shift_direction)


def _params(**settings: Any) -> dict[str, Any]:
    """Every setting of a run (:class:`tsamlib.config.RunConfig`, checked), as the 03_train parameters, with the
    preset's switches resolved (what the run's ``params.json`` records)."""
    return resolve_switches(asdict(RunConfig(**settings)))


def _placeholder(what: str) -> str:
    return f"<{what}>"


def placeholders(params: dict[str, Any]) -> list[str]:
    """Values still to be given by the user (``"<kinetics_manifest>"``...): such params cannot run."""
    return [v for v in params.values() if isinstance(v, str) and v.startswith("<") and v.endswith(">")]


# ------------------------------------------------------------------------------------------------ paper
_PAPER_RECIPE = {  # ../shared/reference-configs/{kinetics400,something_v1}_config.json
    "table1": dict(lr=0.05, lr_decay=[[0.2, 5], [0.01, 30], [0.002, 45]], epochs=50, flip=True),
    "table2": dict(lr=0.1, lr_decay=[[0.1, 20], [0.01, 30], [0.005, 33]], epochs=35, flip=False),
}


def paper_params(row: Row, seed: int = 0, kinetics_manifest: str | None = None,
                 something_manifest: str | None = None, kinetics_checkpoint: str | None = None,
                 runs_root: str | None = None, num_workers: int = 8) -> dict[str, Any]:
    """The 03_train parameters of ``row`` at the report's scale (ResNet-50, 224 px, SGD + step decay).

    Missing paths become placeholders such as ``"<kinetics_manifest>"``: the grid shows them and
    :func:`run_grid` refuses to run them.
    """
    manifest = kinetics_manifest if row.table == "table1" else something_manifest
    name = "kinetics_manifest" if row.table == "table1" else "something_manifest"
    pretrained = {"ImageNet": "in1k", "INet21K": "in21k"}.get(row.pretrained)
    if row.pretrained == "Kinetics400":
        pretrained = str(kinetics_checkpoint) if kinetics_checkpoint else _placeholder("kinetics_checkpoint")
    recipe = _PAPER_RECIPE[row.table]
    return _params(dataset=str(manifest) if manifest else _placeholder(name), **_model_params(row),
                   preset="authors",  # every switch as the authors' code (it produced the report's numbers)
                   pretrained=pretrained, arch="resnet50", img_size=224, resize=256, n_mels=224, flip=recipe["flip"],
                   epochs=recipe["epochs"], lr=recipe["lr"], recipe="paper", lr_decay=recipe["lr_decay"],
                   batch_size=64, dropout=0.5, num_workers=num_workers, seed=seed,
                   run_id=run_id(row, "paper", seed), runs_root=runs_root)


# ------------------------------------------------------------------------------------------------- mini
# Sized from measured epochs on this 2-core CPU (results/tables/README.md).
# resnet18 (2 blocks per stage) so that TSM (shift in every block) and TSAM (every 2nd block) really differ.
# Piloted on this 2-core CPU: resnet18 at 32 px, 16 frames, 12 epochs of one-cycle at 1e-2 reached 0.83 top-1 on
# mini-something with k=4 (TSN: 0.35), about 2 minutes a run; the whole mini grid is about 30 minutes.
MINI: dict[str, Any] = dict(arch="resnet18", img_size=32, resize=36, n_mels=64, epochs=12, lr=1e-2, batch_size=8,
                            dropout=0.5, num_workers=0)
_MINI_DATASET = {"table1": "mini-kinetics-av", "table2": "mini-something"}
# The mini Kinetics run whose weights start Table 2's "Kinetics400" row (the report's best Kinetics model).
MINI_TRANSFER_SOURCE = TABLE1_ROWS[7]  # TSAM 16+1 frames, RGB+audio, k=4


def mini_init(row: Row) -> tuple[str, str | None]:
    """(init actually used at mini scale, reason the row is not run or None). No ImageNet weights offline."""
    if row.pretrained == "ImageNet":
        return "scratch (stand-in for ImageNet: no ImageNet weights offline)", None
    if row.pretrained == "INet21K" and row.table == "table1":
        return "-", "not run: needs ImageNet-21K weights; no stand-in at mini scale"
    if row.pretrained == "INet21K":
        return "scratch (stand-in for INet21K, same init for every k)", None
    source = run_id(MINI_TRANSFER_SOURCE, "mini", 0).removesuffix("-s0") + "-s<seed>"
    return f"mini-kinetics-av run {source} (TSAM 16+1, k=4) final weights; classifier re-initialised", None


def _checkpoint_label(runs_root: str | None, rid: str) -> str:
    """Checkpoint path of run ``rid``: relative to the repo root (03_train runs there) when under it."""
    root = runs_dir(runs_root)
    path = (root / rid / "checkpoints" / "model.pth").resolve()
    try:
        return str(path.relative_to(repo_root()))
    except ValueError:
        return str(path)


def mini_params(row: Row, seed: int = 0, runs_root: str | None = None) -> dict[str, Any] | None:
    """The 03_train parameters of ``row`` at mini scale, or None when the row is not run (see :func:`mini_init`)."""
    if mini_init(row)[1] is not None:
        return None
    pretrained = None
    if row.pretrained == "Kinetics400":
        pretrained = _checkpoint_label(runs_root, run_id(MINI_TRANSFER_SOURCE, "mini", seed))
    return _params(dataset=_MINI_DATASET[row.table], **_model_params(row), pretrained=pretrained, preset="tsamlib",
                   flip=row.table == "table1", recipe="one_cycle", **MINI, seed=seed, run_id=run_id(row, "mini", seed),
                   runs_root=runs_root)


# ------------------------------------------------------------------------------------------------- grids
@dataclass
class GridEntry:
    """A row at one scale and seed: its parameters (None when not run), the init used, the reason if not run."""

    row: Row
    scale: str
    seed: int
    params: dict[str, Any] | None
    init_used: str
    reason: str | None = None


def paper_grid(kinetics_manifest: str | None = None, something_manifest: str | None = None,
               kinetics_checkpoint: str | None = None, seeds: Sequence[int] = (0,), runs_root: str | None = None,
               num_workers: int = 8) -> list[GridEntry]:
    """All 18 rows at the report's scale (Table 1 first). Missing paths are placeholders, not run."""
    out = []
    for seed in seeds:
        for row in TABLE1_ROWS + TABLE2_ROWS:
            p = paper_params(row, seed, kinetics_manifest, something_manifest, kinetics_checkpoint, runs_root,
                             num_workers)
            init = {"ImageNet": "ImageNet-1K (torchvision)", "INet21K": "ImageNet-21K-P (MIIL)",
                    "Kinetics400": f"checkpoint {p['pretrained']}"}[row.pretrained]
            missing = placeholders(p)
            out.append(GridEntry(row, "paper", seed, p, init,
                                 f"not run: needs {', '.join(missing)}" if missing else None))
    return out


def mini_grid(seeds: Sequence[int] = (0,), runs_root: str | None = None) -> list[GridEntry]:
    """All 18 rows at mini scale (Table 1 first, so the Kinetics checkpoint exists for Table 2's last row), then
    the 4 causal rows (:data:`CAUSAL_ROWS`)."""
    out = []
    for row in TABLE1_ROWS + TABLE2_ROWS + CAUSAL_ROWS:
        for seed in seeds:
            init, reason = mini_init(row)
            out.append(GridEntry(row, "mini", seed, mini_params(row, seed, runs_root), init, reason))
    return out


def grid(scale: str, seeds: Sequence[int] = (0,), runs_root: str | None = None, kinetics_manifest: str | None = None,
         something_manifest: str | None = None, kinetics_checkpoint: str | None = None) -> list[GridEntry]:
    """:func:`mini_grid` or :func:`paper_grid` by ``scale`` ("mini" | "paper")."""
    if scale == "mini":
        return mini_grid(seeds, runs_root)
    if scale == "paper":
        return paper_grid(kinetics_manifest, something_manifest, kinetics_checkpoint, seeds, runs_root)
    raise ValueError(f"scale={scale!r}: use 'mini' or 'paper'.")


def scale_preset(scale: str) -> str:
    """The preset a scale's grid uses: "authors" at paper scale, "tsamlib" at mini scale."""
    return "authors" if scale == "paper" else "tsamlib"


def grid_frame(entries: Sequence[GridEntry]) -> pd.DataFrame:
    """One line per entry: row, seed, the parameters that vary, the preset, the init used and whether it runs."""
    recs = []
    for e in entries:
        p = e.params or {}
        recs.append(dict(table=e.row.table, method=e.row.method, frames=e.row.frames, audio=e.row.audio,
                         shift_depth=e.row.shift_depth, shift_direction=e.row.shift_direction, f_div=e.row.f_div,
                         n_insert=e.row.n_insert,
                         pretrained_report=e.row.pretrained, init_used=e.init_used, seed=e.seed,
                         run_id=p.get("run_id", run_id(e.row, e.scale, e.seed)), dataset=p.get("dataset"),
                         arch=p.get("arch"), img_size=p.get("img_size"), epochs=p.get("epochs"),
                         recipe=p.get("recipe"), preset=p.get("preset", scale_preset(e.scale)),
                         runs=e.reason is None, reason=e.reason or ""))
    return pd.DataFrame(recs)


def grid_summary(entries: Sequence[GridEntry]) -> pd.DataFrame:
    """:func:`grid_frame` with one line per table row instead of per (row, seed): the seeds in one column, and what
    the row runs with or why it does not."""
    df = grid_frame(entries)
    if df.empty:
        return df
    keys = ["table", "method", "frames", "audio", "shift_depth", "shift_direction", "pretrained_report", "init_used"]
    out = df.groupby(keys, sort=False, dropna=False).agg(
        seeds=("seed", lambda s: ", ".join(str(x) for x in sorted(s))),
        runs=("runs", "all"), reason=("reason", "first")).reset_index()
    out["runs"] = ["yes" if r else why for r, why in zip(out["runs"], out["reason"])]
    return out.drop(columns="reason").rename(columns={"shift_depth": "k", "shift_direction": "shift",
                                                      "pretrained_report": "pre-training (report)",
                                                      "init_used": "init used"})


def run_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """What :func:`run_grid` returned, counted by status (finished, done, resumed, failed ...), with the run ids."""
    if summary.empty:
        return summary
    short = summary["status"].str.split(":").str[0]
    return (summary.assign(status=short).groupby("status")
            .agg(runs=("run_id", "size"), seconds=("seconds", "sum"),
                 run_ids=("run_id", lambda r: ", ".join(list(r)[:4]) + (" ..." if len(r) > 4 else "")))
            .reset_index())


# ------------------------------------------------------------------------------------------------ runner
def _changed(params: dict[str, Any], run_dir: Path) -> list[str]:
    """Settings whose value in ``run_dir/params.json`` differs from ``params`` (bookkeeping aside)."""
    recorded = read_json(run_dir / "params.json") if (run_dir / "params.json").is_file() else {}
    return list(config_diff(recorded, params))


def run_grid(params_list: Sequence[dict[str, Any] | GridEntry], notebook: str = "notebooks/03_train.ipynb",
             runs_root: str | Path | None = None, dry_run: bool = False, log: Callable[[str], Any] = print,
             progress_bar: bool = False, track: str | None = None) -> pd.DataFrame:
    """Run every parameter dict through ``notebook`` with papermill; return (run_id, status, seconds) per run.

    Finished runs are skipped ("done"), unfinished run folders are continued with ``resume=True``, missing
    ones start fresh. A failing run is recorded as ``"failed: <error>"`` and the grid goes on. GridEntries
    without parameters (rows not run) and parameters with placeholders are reported, not run. ``track``: the
    trackers every run logs to (RunConfig's ``log``, e.g. ``"tensorboard"``), the same for the whole grid.
    """
    import papermill  # noqa: F401  (where it is missing, the grid fails here, before any run is looked at)

    nb = Path(notebook) if Path(notebook).is_absolute() else repo_root() / notebook
    out = []
    for item in params_list:
        if isinstance(item, GridEntry) and (item.params is None or item.reason):   # a row not run: said, not logged
            rid = item.params["run_id"] if item.params else run_id(item.row, item.scale, item.seed)
            out.append(dict(run_id=rid, status=item.reason or "not run", seconds=0.0))
            continue
        params = dict(item.params if isinstance(item, GridEntry) else item)
        if runs_root is not None:
            params["runs_root"] = str(runs_root)
        if track:
            params["log"] = track   # how the runs are watched: bookkeeping, never a reason to rerun one
        out.append(_run_one(nb, params, dry_run, log, progress_bar))
    summary = pd.DataFrame(out, columns=["run_id", "status", "seconds"])
    log(grid_line(summary))
    return summary


def _run_one(nb: Path, params: dict[str, Any], dry_run: bool, log: Callable[[str], Any],
             progress_bar: bool) -> dict[str, Any]:
    """One run of the grid: skipped, refused, said (``dry_run``), or executed; its (run_id, status, seconds)."""
    rid = params["run_id"]
    run_dir = runs_dir(params.get("runs_root")) / rid
    status = _not_to_run(params, run_dir, log)
    if status is not None:
        return dict(run_id=rid, status=status, seconds=0.0)
    resume = run_state(run_dir) == "unfinished"
    params["resume"] = resume
    try:  # every setting checked before the run folder exists
        RunConfig.from_params({k: v for k, v in params.items() if k != "PAPERMILL_OUTPUT_PATH"})
    except ValueError as e:
        log(f"{rid}: failed: {e}")
        return dict(run_id=rid, status=f"failed: {e}", seconds=0.0)
    verb = "resume" if resume else "run"
    if dry_run:
        log(f"{rid}: would {verb}")
        return dict(run_id=rid, status=f"would {verb}", seconds=0.0)
    log(f"{rid}: {verb} ...")
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    status = _execute(nb, run_dir, params, resume, log, progress_bar)
    seconds = time.perf_counter() - t0
    log(f"{rid}: {status} ({seconds:.0f} s)")
    return dict(run_id=rid, status=status, seconds=round(seconds, 1))


def _not_to_run(params: dict[str, Any], run_dir: Path, log: Callable[[str], Any]) -> str | None:
    """The status of a run that is not started: paths still to be given, or already finished; None: it runs."""
    rid = params["run_id"]
    missing = placeholders(params)
    if missing:
        status = f"not run: needs {', '.join(missing)}"
        log(f"{rid}: {status}")
        return status
    if not is_finished(run_dir):
        return None
    changed = _changed(params, run_dir)
    if changed:   # a finished run is skipped quietly (counted in the last line); a mismatch is said
        status = f"done, but with other parameters {changed}: pass overwrite=True to rerun"
        log(f"{rid}: {status}")
        return status
    return "done"


def _execute(nb: Path, run_dir: Path, params: dict[str, Any], resume: bool, log: Callable[[str], Any],
             progress_bar: bool) -> str:
    """Execute ``nb`` with ``params`` into ``run_dir/train.ipynb``; the run's status ("finished", "failed: ...")."""
    import papermill

    from ..runs.notebook import make_portable, unattended_kernels

    try:
        out_nb = run_dir / "train.ipynb"
        with unattended_kernels():
            papermill.execute_notebook(str(nb), str(out_nb), cwd=str(repo_root()), kernel_name="python3",
                                       parameters=dict(params, PAPERMILL_OUTPUT_PATH=str(out_nb)),
                                       progress_bar=progress_bar)
        make_portable(out_nb, final_name=out_nb.name)
        status = "finished (resumed)" if resume else "finished"
        if not is_finished(run_dir):
            status = "failed: notebook ended without metrics.json finished=true"
    except Exception as e:  # noqa: BLE001  (one failing row must not stop the grid)
        status = f"failed: {type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
        log("".join(traceback.format_exception_only(type(e), e)).strip()[-2000:])
    return status


def grid_tensorboard(entries: Sequence[GridEntry], runs_root: str | Path | None = None,
                     log: Callable[[str], Any] = print) -> Path:
    """TensorBoard events for every finished run of the grid, so the whole grid compares in one view: runs trained
    with ``track="tensorboard"`` have theirs; the others (the committed runs among them) get them from their
    ``metrics.json`` (:func:`tsamlib.training.write_tensorboard`). Says how many and the command; returns the
    folder to give ``tensorboard --logdir``."""
    from ..runs.fileio import relative_to_repo
    from ..training.tracking import ensure_tensorboard

    root, finished, written = runs_dir(runs_root), 0, 0
    for entry in entries:
        if entry.params is None or not is_finished(root / entry.params["run_id"]):
            continue
        finished += 1
        written += ensure_tensorboard(root / entry.params["run_id"])
    log(f"TensorBoard: {finished} finished runs of the grid ({written} written now from their metrics.json): "
        f"tensorboard --logdir {relative_to_repo(root)}")
    return root


def grid_line(summary: pd.DataFrame) -> str:
    """One line for :func:`run_grid`'s result: how many runs trained, were already finished (skipped), failed
    (with their ids), were not run, or would run."""
    short = summary["status"].str.split(":").str[0].str.replace(" (resumed)", "")
    short = short.where(~short.str.startswith("done, but"), "other parameters")
    counts = short.value_counts()
    order = ["finished", "done", "other parameters", "would run", "would resume", "not run", "failed"]
    words = {"done": "already finished (skipped)", "other parameters": "finished with other parameters (skipped)"}
    parts = [f"{counts[k]} {words.get(k, k)}" for k in order if k in counts]
    failed = summary.loc[short == "failed", "run_id"].tolist()
    if failed:
        parts[-1] += ": " + ", ".join(failed)
    return f"{len(summary)} runs: " + ", ".join(parts) if len(summary) else "no runs"
