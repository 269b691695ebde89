"""Tables 1 and 2 of the report rebuilt from finished run folders, beside the published numbers.

Rendering reads ``results/runs/*/params.json`` and ``metrics.json`` only: it trains nothing and takes seconds.
A grid row (:mod:`tsamlib.report.experiments`) is matched to runs by the parameters recorded in ``params.json``
(every non-bookkeeping parameter of the row must be equal, the preset and its resolved switches included), never
by parsing run ids. The measured column holds measured numbers only; a row without a finished run says "not run"
and why. Column "Preset" says which pipeline each row used: "tsamlib" (mini scale) or "authors" (paper scale).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..config import BOOKKEEPING, config_diff
from ..data.synthetic import picture_class
from ..runs.fileio import atomic_path, read_json, repo_root, writable_folder
from ..runs.folder import read_metrics, runs_dir
from .experiments import REFERENCE_ROWS, GridEntry, ReferenceRow, grid, placeholders, scale_preset

__all__ = ["collect_runs", "match_runs", "render_table", "shape_top1", "evaluate_shapes", "table_markdown",
           "write_tables", "write_figures", "TABLE_FILES"]

TABLE_FILES = {"table1": "table1_kinetics400", "table2": "table2_something_v1"}
_DATASETS = {("table1", "mini"): "synthetic mini-kinetics-av (data/mini-kinetics-av)",
             ("table2", "mini"): "synthetic mini-something (data/mini-something)",
             ("table1", "paper"): "Kinetics-400 (user-given manifest)",
             ("table2", "paper"): "Something-Something V1 (user-given manifest)"}


def collect_runs(runs_root: str | os.PathLike | None = None) -> pd.DataFrame:
    """One line per run folder: run_id, folder, params (dict), finished, top1/top5 (fractions, finished only).

    Folders whose recorded run_id (metrics.json) differs from their name (runs moved aside by ``overwrite``)
    are left out.
    """
    root = runs_dir(runs_root)
    recs = []
    for d in sorted(p for p in root.glob("*") if (p / "params.json").is_file()) if root.is_dir() else []:
        params = read_json(d / "params.json")
        metrics = read_metrics(d / "metrics.json")
        if metrics.get("run_id", params.get("run_id", d.name)) != d.name:  # moved aside by overwrite=True
            continue
        finished = bool(metrics.get("finished"))
        final = metrics.get("final") or {} if finished else {}
        recs.append(dict(run_id=d.name, path=str(d), params=params, finished=finished,
                         top1=final.get("top1"), top5=final.get("top5"), valid_loss=final.get("valid_loss"),
                         train_clips_per_s=final.get("train_clips_per_s"),
                         n_epochs_logged=len(metrics.get("epochs", []))))
    return pd.DataFrame(recs, columns=["run_id", "path", "params", "finished", "top1", "top5", "valid_loss",
                                       "train_clips_per_s", "n_epochs_logged"])


def _matches(expected: dict[str, Any], recorded: dict[str, Any]) -> bool:
    """Same settings (:func:`tsamlib.config.config_diff`), bookkeeping, seed and paths not given aside."""
    given = {k: v for k, v in expected.items() if not placeholders({k: v})}  # a path not given: any recorded value
    return not config_diff(recorded, given, ignore=BOOKKEEPING | {"seed"} | (set(expected) - set(given)))


def match_runs(entry: GridEntry, runs: pd.DataFrame) -> pd.DataFrame:
    """The runs whose recorded parameters equal the entry's (bookkeeping keys aside) and whose seed is the entry's."""
    if entry.params is None or runs.empty:
        return runs.iloc[0:0]
    ok = [_matches(entry.params, p) and p.get("seed") == entry.seed for p in runs["params"]]
    return runs[ok]


def shape_top1(run_dir: str | os.PathLike, kind: str = "mini-kinetics-av") -> float | None:
    """Fraction of validation videos whose predicted class has the right picture class (the shape, see
    :func:`tsamlib.data.synthetic.picture_class`), from the run's one-clip evaluation ``eval_valid_1x1.json``
    (``python -m tsamlib evaluate RUN --n-clips 1 --n-crops 1``); None when that record is missing. An RGB model that
    learned everything the pictures show scores 1.0 here and about 0.5 top-1 on mini-kinetics-av."""
    from ..evaluation.views import eval_path

    path = eval_path(run_dir, "valid", 1, 1)
    if not path.is_file():
        return None
    rec = read_json(path)
    vocab, videos = rec["vocab"], [v for v in rec["videos"] if v["label"] >= 0]
    if not videos:
        return None
    return float(np.mean([picture_class(kind, vocab[v["pred"]]) == picture_class(kind, vocab[v["label"]])
                          for v in videos]))


def evaluate_shapes(scale: str = "mini", runs_root: str | os.PathLike | None = None, seeds: Sequence[int] = (0,),
                    log=print) -> list[str]:
    """Write ``eval_valid_1x1.json`` (one centre clip, the view of the training's validation) for every finished
    Table 1 run of the mini grid that lacks it, so that :func:`render_table` can fill "Shape top-1". Returns the
    run ids evaluated; runs already evaluated are left as they are."""
    from ..evaluation.views import eval_path, evaluate_views

    if scale != "mini":
        return []
    runs, done = collect_runs(runs_root), []
    for e in grid(scale, seeds, None if runs_root is None else str(runs_root)):
        if e.row.table != "table1":
            continue
        for _, r in match_runs(e, runs).iterrows():
            if r.finished and not eval_path(r.path, "valid", 1, 1).is_file():
                res = evaluate_views(r.path, n_clips=1, n_crops=1, progress=False)
                log(f"{r.run_id}: one-clip evaluation top-1 {100 * res['top1']:.1f} "
                    f"(training's last epoch: {100 * r.top1:.1f})")
                done.append(r.run_id)
    return done


def _fmt(values: Sequence[float]) -> str:
    if not values:
        return ""
    m = float(np.mean(values))
    if len(values) == 1:
        return f"{m:.1f}"
    return f"{m:.1f} ± {float(np.std(values, ddof=1)):.1f}"


def _row_results(es: list[GridEntry], runs: pd.DataFrame,
                 with_shapes: bool) -> tuple[list[float], list[str], list[str], list[float]]:
    """(top-1s, finished run ids, unfinished run ids, shape top-1s) of a row's runs over its seeds, in %."""
    top1s, ids, unfinished, shapes = [], [], [], []
    for e in es:
        for _, r in match_runs(e, runs).iterrows():
            if r.finished and r.top1 is not None:
                ids.append(r.run_id)
                top1s.append(100 * r.top1)
            else:
                unfinished.append(r.run_id)
            sh = shape_top1(r.path) if r.finished and with_shapes else None
            shapes += [] if sh is None else [100 * sh]
    return top1s, ids, unfinished, shapes


def _row_status(es: list[GridEntry], top1s: list[float], unfinished: list[str]) -> str:
    """What the measured cell means: measured (of how many seeds), or why nothing was measured."""
    reason = es[0].reason
    if top1s:
        status = f"measured ({len(top1s)} of {len(es)} seeds)" if len(top1s) < len(es) else "measured"
    elif reason:
        status = reason
    elif unfinished:
        status = "not run: unfinished (resume with run_grid)"
    else:
        status = "not run yet: no finished run with these parameters"
    if es[0].row.paper_top1 is None:
        status += " (not in the report: causal shift)"
    return status


def _grid_record(table: str, scale: str, es: list[GridEntry], runs: pd.DataFrame, with_shapes: bool) -> dict:
    """One TSM/TSAM row of the table: the report's number beside the mean over the seeds' finished runs."""
    row = es[0].row
    top1s, ids, unfinished, shapes = _row_results(es, runs, with_shapes)
    status = _row_status(es, top1s, unfinished)
    rec = dict(Method=row.method, Type="2D CNN")
    if table == "table1":
        rec["Modality"] = "RGB+audio" if row.audio else "RGB"
        rec["Frames"] = f"{row.frames}+1" if row.audio else str(row.frames)
    else:
        rec["Frames"] = str(row.frames)
        rec["ShiftDepth"] = f"k={row.shift_depth}" + (" causal" if row.shift_direction == "causal" else "")
    preset = (es[0].params or {}).get("preset", scale_preset(scale))
    rec.update({"PreTrained (report)": row.pretrained, "Preset": preset, "Init used": es[0].init_used,
                "Paper top-1": math.nan if row.paper_top1 is None else row.paper_top1,
                "Measured top-1": _fmt(top1s),
                **({"Shape top-1": _fmt(shapes)} if with_shapes else {}), "n seeds": len(top1s),
                "Run ids": ", ".join(ids + unfinished), "Status": status, "Scale": scale,
                # the figures' inputs: numbers and settings, kept out of the written tables by _public
                "_measured": float(np.mean(top1s)) if top1s else math.nan,
                "_spread": float(np.std(top1s, ddof=1)) if len(top1s) > 1 else math.nan,
                "_shift_depth": row.shift_depth, "_direction": row.shift_direction, "_audio": row.audio,
                "_frames": row.frames,
                "_pretrained": row.pretrained, "_method": row.method})
    return rec


def _reference_record(table: str, scale: str, ref: ReferenceRow, with_shapes: bool) -> dict:
    """A row of another architecture: the report's number only, the same columns as :func:`_grid_record`."""
    rec = dict(Method=ref.method, Type=ref.type)
    if table == "table1":
        rec.update(Modality="RGB", Frames=str(ref.frames))
    else:
        rec.update(Frames=str(ref.frames), ShiftDepth="-")
    rec.update({"PreTrained (report)": ref.pretrained, "Preset": "-", "Init used": "-",
                "Paper top-1": ref.paper_top1,
                "Measured top-1": "", **({"Shape top-1": ""} if with_shapes else {}), "n seeds": 0,
                "Run ids": "", "Status": ref.reason, "Scale": scale,
                "_measured": math.nan, "_spread": math.nan, "_shift_depth": None, "_direction": None,
                "_audio": False,
                "_frames": ref.frames, "_pretrained": ref.pretrained, "_method": ref.method})
    return rec


def render_table(table: str, scale: str = "mini", runs_root: str | os.PathLike | None = None,
                 seeds: Sequence[int] = (0,), kinetics_manifest: str | None = None,
                 something_manifest: str | None = None, kinetics_checkpoint: str | None = None,
                 runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Table 1 or 2 in the report's layout with the measured top-1 (mean ± sample std over seeds) beside it.

    Seeds without a finished run are left out of the mean and counted in "n seeds" only when finished.
    """
    if table not in TABLE_FILES:
        raise ValueError(f"table={table!r}: use 'table1' or 'table2'.")
    runs = collect_runs(runs_root) if runs is None else runs
    entries = [e for e in grid(scale, seeds, None if runs_root is None else str(runs_root), kinetics_manifest,
                               something_manifest, kinetics_checkpoint) if e.row.table == table]
    with_shapes = table == "table1" and scale == "mini"  # mini-kinetics-av: the shape is the pictures' share
    by_row: dict[str, list[GridEntry]] = {}   # a row's seeds together, rows in grid order
    for e in entries:
        by_row.setdefault(e.row.key, []).append(e)
    recs = [_grid_record(table, scale, es, runs, with_shapes) for es in by_row.values()]
    recs += [_reference_record(table, scale, ref, with_shapes) for ref in REFERENCE_ROWS if ref.table == table]
    return pd.DataFrame(recs)


def _public(df: pd.DataFrame) -> pd.DataFrame:
    return df[[c for c in df.columns if not c.startswith("_")]]


def table_markdown(df: pd.DataFrame, table: str, scale: str) -> str:
    """Markdown of a rendered table with a one-line header: scale, dataset, what "measured" means."""
    header = (f"Scale **{scale}**, dataset {_DATASETS[(table, scale)]}. \"Measured top-1\" = final validation "
              "top-1 (%, one centre clip, last epoch) of finished runs of this project, mean ± sample std over seeds; "
              "\"Paper top-1\" = the report's number; \"Preset\" = the pipeline the runs used (tsamlib: this "
              "library's; authors: the authors' released code, tsamlib.config.PRESET_SWITCHES).")
    if "Shape top-1" in df.columns:
        header += (" \"Shape top-1\" = % of validation videos whose predicted class has the right shape (the part "
                   "of the label the pictures show; the sound tells the rest), from each run's one-clip evaluation "
                   "`eval_valid_1x1.json`: an RGB model that learned all the pictures allow scores 100 here and "
                   "about 50 top-1.")
    pub = _public(df).astype(object).fillna("").astype(str).replace({"nan": ""})
    notes: list[str] = []   # an init's explanation once, under the table, not in every row (the CSV keeps it whole)
    if "Init used" in pub:
        def init_cell(v: str) -> str:
            short, why = _init_short(v), v[len(_init_short(v)):].strip()
            if not (why.startswith("(") and why.endswith(")") and why.count("(") == 1):
                return v     # no explanation, or not one in brackets at the end: the cell as it is
            if why not in notes:
                notes.append(why)
            return f"{short} [{notes.index(why) + 1}]"
        pub["Init used"] = pub["Init used"].map(init_cell)
    if "Run ids" in pub:
        pub["Run ids"] = pub["Run ids"].map(_seeds_short)
    lines = ["| " + " | ".join(pub.columns) + " |", "|" + "---|" * len(pub.columns)]
    lines += ["| " + " | ".join(v.replace("|", "/") for v in r) + " |" for r in pub.itertuples(index=False)]
    foot = "".join(f"\n[{i}] {why.strip('()')}" + "  " * (i < len(notes)) for i, why in enumerate(notes, 1))
    return header + "\n\n" + "\n".join(lines) + "\n" + (f"\nInit used:{foot}\n" if notes else "")


def _seeds_short(ids: str) -> str:
    """``a-s0, a-s1, a-s2`` -> ``a-s{0,1,2}`` (one token, so a rendered column stays narrow); other lists as given."""
    parts = [p.strip() for p in ids.split(",") if p.strip()]
    stems = {p.rsplit("-s", 1)[0] for p in parts}
    seeds = [p.rsplit("-s", 1)[1] for p in parts if "-s" in p]
    if len(parts) > 1 and len(stems) == 1 and len(seeds) == len(parts) and all(x.isdigit() for x in seeds):
        return f"{stems.pop()}-s{{{','.join(seeds)}}}"
    return ids


def write_tables(scale: str = "mini", runs_root: str | os.PathLike | None = None,
                 out_dir: str | os.PathLike | None = None, seeds: Sequence[int] = (0,),
                 **paths: str | None) -> dict[str, pd.DataFrame]:
    """Write ``table1_kinetics400.{md,csv}`` and ``table2_something_v1.{md,csv}``; return the rendered tables.

    ``paths``: kinetics_manifest, something_manifest, kinetics_checkpoint (paper scale only).
    """
    out = writable_folder(Path(out_dir) if out_dir is not None else repo_root() / "results" / "tables",
                          "choose another out_dir")
    runs = collect_runs(runs_root)
    tables = {}
    for table, stem in TABLE_FILES.items():
        df = render_table(table, scale, runs_root, seeds, runs=runs, **paths)
        with atomic_path(out / f"{stem}.csv") as tmp:    # a failed write leaves the previous table whole
            _public(df).to_csv(tmp, index=False)
        with atomic_path(out / f"{stem}.md") as tmp:
            tmp.write_text(table_markdown(df, table, scale))
        tables[table] = df
    return tables


def _init_short(init_used: str) -> str:
    """The initialisation a grid row really used, without its explanation: "scratch (stand-in ...)" -> "scratch"."""
    return str(init_used).split(" (")[0].strip()


def write_figures(tables: dict[str, pd.DataFrame], out_dir: str | os.PathLike | None = None) -> list[Path]:
    """``top1_vs_shift_depth.png`` (Table 2, k = 1..5) and ``audio_gain.png`` (RGB+audio minus RGB, per frames).

    Measured bars and points are labelled with the initialisation the runs really used (the grid's
    ``init_used``, e.g. "scratch") beside the report's pre-training where the two differ; error bars are
    the sample std over seeds (ddof=1) and every figure says so, with the number of seeds n.
    """
    import matplotlib
    matplotlib.use("Agg")   # files only: no display needed, none opened

    out = writable_folder(Path(out_dir) if out_dir is not None else repo_root() / "results" / "figures",
                          "choose another out_dir")
    scale = str(tables["table1"]["Scale"].iloc[0])
    p1 = _save_figure(_shift_depth_figure(tables["table2"], scale), out / "top1_vs_shift_depth.png")
    p2 = _save_figure(_audio_gain_figure(tables["table1"], scale), out / "audio_gain.png")
    return [p1, p2]


def _save_figure(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:   # a failed write leaves the previous figure whole
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------- Table 2: top-1 against k
def _shift_depth_figure(t2: pd.DataFrame, scale: str):
    """Left: the report's and the measured top-1 against k on one axis; right: the report's numbers alone."""
    import matplotlib.pyplot as plt

    causal = (t2["_direction"] == "causal") if "_direction" in t2 else pd.Series(False, index=t2.index)
    ks = t2[(t2["_method"] == "TSAM") & (t2["_pretrained"] == "INet21K") & ~causal].sort_values("_shift_depth")
    cs = t2[causal & t2["_measured"].notna()].sort_values("_shift_depth")
    fig, (ax, zoom) = plt.subplots(1, 2, figsize=(11, 5), layout="constrained", width_ratios=(3, 1))
    ax.plot(ks["_shift_depth"], ks["Paper top-1"], "s--", color="#777777",
            label="report: Something-Something V1, INet21K pre-training (one number per k)")
    ok = ks[ks["_measured"].notna()]
    inits = sorted({_init_short(i) for i in ok["Init used"]}) or ["-"]
    ns = _plot_measured_depths(ax, ok, scale, inits)
    if len(cs):   # beyond the report: the same rows with a causal shift
        _plot_causal_depths(ax, cs, scale)
    _annotate_depths(ax, ks, ok, ns)
    ax.set(xlabel="shift depth k", ylabel="top-1 (%)", xticks=list(ks["_shift_depth"]), ylim=(0, 100))
    _plot_report_zoom(zoom, ks.dropna(subset=["Paper top-1"]))
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=1, frameon=False)
    fig.suptitle("Table 2, TSAM 16 frames: top-1 against shift depth k", fontsize=11)
    fig.supxlabel(f"Measured = final validation top-1 (one centre clip) on {_DATASETS[('table2', scale)]}, "
                  f"init {', '.join(inits)} (the report used INet21K); error bars: ±1 sample std over seeds "
                  "(no bar where n = 1). Left: one y axis for both; the datasets differ, so compare how each changes "
                  "with k. Right: the report's numbers alone, whose rise is about one point.", fontsize=8, wrap=True)
    return fig


def _plot_measured_depths(ax, ok: pd.DataFrame, scale: str, inits: list[str]) -> list[int]:
    """The measured means with their error bars; returns the distinct seed counts (empty: nothing measured)."""
    if not len(ok):
        ax.text(0.5, 0.5, "measured: no finished runs", ha="center", va="center", transform=ax.transAxes)
        return []
    ns = sorted({int(n) for n in ok["n seeds"]})
    n_txt = f"n = {ns[0]} seeds per k" if len(ns) == 1 else f"n = {ns[0]}-{ns[-1]} seeds per k (n beside the values)"
    ax.errorbar(ok["_shift_depth"], ok["_measured"], yerr=ok["_spread"].fillna(0), fmt="o-", color="#0072B2",
                capsize=3, label=f"measured, {scale} scale, init {', '.join(inits)}: mean ± sample std over "
                                 f"seeds ({n_txt})")
    return ns


def _plot_causal_depths(ax, cs: pd.DataFrame, scale: str) -> None:
    """The causal rows, drawn a little right of their k so that their bars do not hide the bidirectional ones."""
    ax.errorbar(cs["_shift_depth"] + 0.12, cs["_measured"], yerr=cs["_spread"].fillna(0), fmt="^:", color="#009E73",
                capsize=3, label=f"measured causal shift (not in the report), {scale} scale: mean ± sample std "
                                 "(drawn a little right of its k)")
    for k, m in zip(cs["_shift_depth"], cs["_measured"]):   # every point carries its value
        ax.annotate(f"{m:.1f}", (k + 0.12, m), textcoords="offset points", xytext=(6, -6), ha="left",
                    va="top", fontsize=7, color="#009E73")


def _annotate_depths(ax, ks: pd.DataFrame, ok: pd.DataFrame, ns: list[int]) -> None:
    """The report's and the measured value at each k, each on the side away from the other line."""
    measured_at = {int(k): (float(m), float(e), int(n)) for k, m, e, n in
                   zip(ok["_shift_depth"], ok["_measured"], ok["_spread"].fillna(0), ok["n seeds"])}
    for k, v in zip(ks["_shift_depth"], ks["Paper top-1"]):
        m, e, n = measured_at.get(int(k), (math.nan, 0.0, 0))
        up = not m > v
        ax.annotate(f"{v:.1f}", (k, v), textcoords="offset points", xytext=(4, 4 if up else -4), ha="left",
                    va="bottom" if up else "top", fontsize=7, color="#555555")   # right: clear of an error bar
        if not math.isnan(m):   # beyond the error bar's end, so the value does not sit on it
            ax.annotate(f"{m:.1f}" + (f" (n={n})" if len(ns) > 1 else ""), (k, m - e if up else m + e),
                        textcoords="offset points", xytext=(0, -4 if up else 4), ha="center",
                        va="top" if up else "bottom", fontsize=7, color="#0072B2")


def _plot_report_zoom(zoom, paper: pd.DataFrame) -> None:
    """The report's numbers alone: their rise is about 1 point, flat on the 0-100 axis beside."""
    zoom.plot(paper["_shift_depth"], paper["Paper top-1"], "s--", color="#777777")
    for k, v in zip(paper["_shift_depth"], paper["Paper top-1"]):
        zoom.annotate(f"{v:.1f}", (k, v), textcoords="offset points", xytext=(0, 5), ha="center", fontsize=7,
                      color="#555555")
    if len(paper):
        lo, hi = float(paper["Paper top-1"].min()), float(paper["Paper top-1"].max())
        zoom.set_ylim(lo - 0.5, hi + 0.5)
    zoom.set(xlabel="shift depth k", xticks=list(paper["_shift_depth"]),
             title="the report alone, at its own scale", ylabel="top-1 (%), report")
    zoom.title.set_fontsize(9)


# ---------------------------------------------------------------------------- Table 1: the gain from audio
def _audio_gain_figure(t1: pd.DataFrame, scale: str):
    """Per (frames, pre-training): the report's and the measured top-1 of RGB+audio minus RGB, as bars."""
    import matplotlib.pyplot as plt

    gains = _audio_gains(t1[t1["_method"] == "TSAM"])
    fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
    has_err = _plot_audio_gains(ax, gains, scale)
    fig.suptitle("Table 1: TSAM top-1 of RGB+audio minus RGB (same frames and init)", fontsize=11)
    err_txt = ("error bars: ±1 sample std over seeds of the gain, sqrt(std_RGB+audio² + std_RGB²)"
               if any(has_err) else "no error bars: fewer than 2 finished seeds per arm (sample std over seeds "
                                    "needs n ≥ 2)")
    fig.supxlabel(f"Measured = final validation top-1 (one centre clip) on {_DATASETS[('table1', scale)]}; "
                  f"n = finished seeds (RGB+audio / RGB); {err_txt}. Init used is the run's own, which can "
                  "differ from the report's pre-training.", fontsize=8, wrap=True)
    return fig


def _audio_gains(t1: pd.DataFrame) -> dict[str, list]:
    """Per (frames, pre-training) with both arms: label, report's gain, measured gain, its spread, seeds per arm."""
    gains: dict[str, list] = dict(labels=[], paper=[], measured=[], spread=[], n_seeds=[])
    for (frames, pre), g in t1.groupby(["_frames", "_pretrained"], sort=True):
        av, rgb = g[g["_audio"]], g[~g["_audio"]]
        if not (len(av) and len(rgb)):
            continue
        m = float(av["_measured"].iloc[0] - rgb["_measured"].iloc[0])
        init = " / ".join(sorted({_init_short(i) for i in g["Init used"]}))
        gains["labels"].append(_gain_label(frames, pre, init, m))
        gains["paper"].append(float(av["Paper top-1"].iloc[0] - rgb["Paper top-1"].iloc[0]))
        gains["measured"].append(m)
        s_av, s_rgb = float(av["_spread"].iloc[0]), float(rgb["_spread"].iloc[0])
        gains["spread"].append(math.hypot(s_av, s_rgb))  # nan unless both have n >= 2 seeds
        gains["n_seeds"].append((int(av["n seeds"].iloc[0]), int(rgb["n seeds"].iloc[0])))
    return gains


def _gain_label(frames, pre: str, init: str, measured: float) -> str:
    """The x label of a pair: frames and the report's pre-training, and the init used where it differs."""
    if math.isnan(measured) or init in ("", "-"):
        return f"{frames} frames\nreport: {pre}\nmeasured: not run"
    if init != pre:
        return f"{frames} frames\nreport: {pre}\nmeasured: {init}"
    return f"{frames} frames\n{pre}"


def _plot_audio_gains(ax, gains: dict[str, list], scale: str) -> list[bool]:
    """The report's and the measured bars side by side, each labelled; returns which pairs have an error bar."""
    paper, measured, spread = gains["paper"], gains["measured"], gains["spread"]
    x = np.arange(len(gains["labels"]))
    bars = ax.bar(x - 0.2, paper, 0.4, label="report (Kinetics-400, its pre-training)", color="#999999")
    ax.bar_label(bars, labels=[f"{v:+.1f}" for v in paper], padding=2, fontsize=7)
    has_err = [not math.isnan(e) and not math.isnan(m) for e, m in zip(spread, measured)]
    ran = [i for i, m in enumerate(measured) if not math.isnan(m)]   # a slot not run has no bar, not one at 0
    ax.bar(x[ran] + 0.2, [measured[i] for i in ran], 0.4, label=f"measured ({scale} scale, mean over seeds)",
           color="#0072B2")
    err = [i for i in ran if has_err[i]]     # error bars only where there is a spread (n >= 2 in both arms)
    if err:
        ax.errorbar(x[err] + 0.2, [measured[i] for i in err], yerr=[spread[i] for i in err], fmt="none", capsize=3,
                    ecolor="k", lw=1)
    for xi, m, e, ok_, (n_av, n_rgb) in zip(x, measured, spread, has_err, gains["n_seeds"]):
        if math.isnan(m):
            ax.annotate("not run", (xi + 0.2, 0), textcoords="offset points", xytext=(0, 3), ha="center",
                        va="bottom", fontsize=7, style="italic", color="#555555")
        else:  # above the error bar's cap, not on it
            ax.annotate(f"{m:+.1f}\nn={n_av}/{n_rgb}", (xi + 0.2, max(m, 0) + (e if ok_ else 0)),
                        textcoords="offset points", xytext=(0, 3), ha="center", va="bottom", fontsize=7)
    ax.axhline(0, color="k", lw=0.5)
    ax.set(xticks=x, ylabel="top-1 gain from audio (percentage points)")
    ax.set_xticklabels(gains["labels"], fontsize=8)
    ax.margins(y=0.15)
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=2, frameon=False)
    return has_err
