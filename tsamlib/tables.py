"""Tables 1 and 2 of the report rebuilt from finished run folders, beside the published numbers.

Rendering reads ``results/runs/*/params.json`` and ``metrics.json`` only: it trains nothing and takes seconds.
A grid row (:mod:`tsamlib.experiments`) is matched to runs by the parameters recorded in ``params.json``
(every non-bookkeeping parameter of the row must be equal), never by parsing run ids. The measured column
holds measured numbers only; a row without a finished run says "not run" and why.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .experiments import BOOKKEEPING_KEYS, REFERENCE_ROWS, GridEntry, grid, placeholders
from .runs import read_json, repo_root, runs_dir

__all__ = ["collect_runs", "match_runs", "render_table", "table_markdown", "write_tables", "write_figures",
           "TABLE_FILES"]

TABLE_FILES = {"table1": "table1_kinetics400", "table2": "table2_something_v1"}
_DATASETS = {("table1", "mini"): "synthetic mini-kinetics-av (data/mini-kinetics-av)",
             ("table2", "mini"): "synthetic mini-something (data/mini-something)",
             ("table1", "paper"): "Kinetics-400 (user-given manifest)",
             ("table2", "paper"): "Something-Something V1 (user-given manifest)"}


def _norm(v: Any) -> Any:
    """JSON round trip, so tuples and lists (and ints/floats) compare as params.json stores them."""
    return json.loads(json.dumps(v))


def collect_runs(runs_root: str | os.PathLike | None = None) -> pd.DataFrame:
    """One line per run folder: run_id, folder, params (dict), finished, top1/top5 (fractions, finished only).

    Folders whose recorded run_id (metrics.json) differs from their name (runs moved aside by ``overwrite``)
    are left out.
    """
    root = runs_dir(runs_root)
    recs = []
    for d in sorted(p for p in root.glob("*") if (p / "params.json").is_file()) if root.is_dir() else []:
        params = read_json(d / "params.json")
        metrics = read_json(d / "metrics.json") if (d / "metrics.json").is_file() else {}
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
    for k, v in expected.items():
        if k in BOOKKEEPING_KEYS or placeholders({k: v}):  # a path not given: any recorded value
            continue
        if _norm(recorded.get(k)) != _norm(v):
            return False
    return True


def match_runs(entry: GridEntry, runs: pd.DataFrame) -> pd.DataFrame:
    """The runs whose recorded parameters equal the entry's (bookkeeping keys aside) and whose seed is the entry's."""
    if entry.params is None or runs.empty:
        return runs.iloc[0:0]
    ok = [_matches(entry.params, p) and p.get("seed") == entry.seed for p in runs["params"]]
    return runs[ok]


def _fmt(values: Sequence[float]) -> str:
    if not values:
        return ""
    m = float(np.mean(values))
    if len(values) == 1:
        return f"{m:.1f}"
    return f"{m:.1f} ± {float(np.std(values, ddof=1)):.1f}"


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
    by_row: dict[str, list[GridEntry]] = {}
    for e in entries:
        by_row.setdefault(e.row.key, []).append(e)
    recs = []
    for key, es in by_row.items():
        row = es[0].row
        top1s, ids, unfinished = [], [], []
        for e in es:
            m = match_runs(e, runs)
            for _, r in m.iterrows():
                (ids.append(r.run_id), top1s.append(100 * r.top1)) if r.finished and r.top1 is not None \
                    else unfinished.append(r.run_id)
        reason = es[0].reason
        if top1s:
            status = f"measured ({len(top1s)} of {len(es)} seeds)" if len(top1s) < len(es) else "measured"
        elif reason:
            status = reason
        elif unfinished:
            status = "not run: unfinished (resume with run_grid)"
        else:
            status = "not run yet: no finished run with these parameters"
        rec = dict(Method=row.method, Type="2D CNN")
        if table == "table1":
            rec["Modality"] = "RGB+audio" if row.audio else "RGB"
            rec["Frames"] = f"{row.frames}+1" if row.audio else str(row.frames)
        else:
            rec["Frames"] = str(row.frames)
            rec["ShiftDepth"] = f"k={row.shift_depth}"
        rec.update({"PreTrained (report)": row.pretrained, "Init used": es[0].init_used,
                    "Paper top-1": row.paper_top1, "Measured top-1": _fmt(top1s), "n seeds": len(top1s),
                    "Run ids": ", ".join(ids + unfinished), "Status": status, "Scale": scale,
                    "_measured": float(np.mean(top1s)) if top1s else math.nan,
                    "_spread": float(np.std(top1s, ddof=1)) if len(top1s) > 1 else math.nan,
                    "_shift_depth": row.shift_depth, "_audio": row.audio, "_frames": row.frames,
                    "_pretrained": row.pretrained, "_method": row.method})
        recs.append(rec)
    for ref in (r for r in REFERENCE_ROWS if r.table == table):
        rec = dict(Method=ref.method, Type=ref.type)
        if table == "table1":
            rec.update(Modality="RGB", Frames=str(ref.frames))
        else:
            rec.update(Frames=str(ref.frames), ShiftDepth="-")
        rec.update({"PreTrained (report)": ref.pretrained, "Init used": "-", "Paper top-1": ref.paper_top1,
                    "Measured top-1": "", "n seeds": 0, "Run ids": "", "Status": ref.reason, "Scale": scale,
                    "_measured": math.nan, "_spread": math.nan, "_shift_depth": None, "_audio": False,
                    "_frames": ref.frames, "_pretrained": ref.pretrained, "_method": ref.method})
        recs.append(rec)
    return pd.DataFrame(recs)


def _public(df: pd.DataFrame) -> pd.DataFrame:
    return df[[c for c in df.columns if not c.startswith("_")]]


def table_markdown(df: pd.DataFrame, table: str, scale: str) -> str:
    """Markdown of a rendered table with a one-line header: scale, dataset, what "measured" means."""
    header = (f"Scale **{scale}**, dataset {_DATASETS[(table, scale)]}. \"Measured top-1\" = final validation "
              "top-1 (%, one centre clip) of finished runs of this project, mean ± sample std over seeds; "
              "\"Paper top-1\" = the report's number.")
    pub = _public(df).astype(str).replace({"nan": ""})
    lines = ["| " + " | ".join(pub.columns) + " |", "|" + "---|" * len(pub.columns)]
    lines += ["| " + " | ".join(v.replace("|", "/") for v in r) + " |" for r in pub.itertuples(index=False)]
    return header + "\n\n" + "\n".join(lines) + "\n"


def write_tables(scale: str = "mini", runs_root: str | os.PathLike | None = None,
                 out_dir: str | os.PathLike | None = None, seeds: Sequence[int] = (0,),
                 **paths: str | None) -> dict[str, pd.DataFrame]:
    """Write ``table1_kinetics400.{md,csv}`` and ``table2_something_v1.{md,csv}``; return the rendered tables.

    ``paths``: kinetics_manifest, something_manifest, kinetics_checkpoint (paper scale only).
    """
    out = Path(out_dir) if out_dir is not None else repo_root() / "results" / "tables"
    out.mkdir(parents=True, exist_ok=True)
    runs = collect_runs(runs_root)
    tables = {}
    for table, stem in TABLE_FILES.items():
        df = render_table(table, scale, runs_root, seeds, runs=runs, **paths)
        _public(df).to_csv(out / f"{stem}.csv", index=False)
        (out / f"{stem}.md").write_text(table_markdown(df, table, scale))
        tables[table] = df
    return tables


def write_figures(tables: dict[str, pd.DataFrame], out_dir: str | os.PathLike | None = None) -> list[Path]:
    """``top1_vs_shift_depth.png`` (Table 2, k = 1..5) and ``audio_gain.png`` (RGB+audio minus RGB, per frames)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir) if out_dir is not None else repo_root() / "results" / "figures"
    out.mkdir(parents=True, exist_ok=True)
    scale = str(tables["table1"]["Scale"].iloc[0])
    t2 = tables["table2"]
    ks = t2[(t2["_method"] == "TSAM") & (t2["_pretrained"] == "INet21K")].sort_values("_shift_depth")
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.plot(ks["_shift_depth"], ks["Paper top-1"], "o-", color="tab:gray")
    a.set(title="report (Something-Something V1, INet21K)", xlabel="shift depth k", ylabel="top-1 (%)")
    ok = ks[ks["_measured"].notna()]
    if len(ok):
        b.errorbar(ok["_shift_depth"], ok["_measured"], yerr=ok["_spread"].fillna(0), fmt="o-", color="tab:blue")
    else:
        b.text(0.5, 0.5, "no finished runs", ha="center", va="center", transform=b.transAxes)
    init = ks["Init used"].iloc[0].split(" (")[0]
    b.set(title=f"measured ({scale} scale, init: {init})", xlabel="shift depth k",
          ylabel="top-1 (%)", xticks=list(ks["_shift_depth"]))
    fig.tight_layout()
    p1 = out / "top1_vs_shift_depth.png"
    fig.savefig(p1, dpi=120)
    plt.close(fig)

    t1 = tables["table1"]
    t1 = t1[t1["_method"] == "TSAM"]
    labels, paper, measured = [], [], []
    for (frames, pre), g in t1.groupby(["_frames", "_pretrained"], sort=True):
        av, rgb = g[g["_audio"]], g[~g["_audio"]]
        if len(av) and len(rgb):
            labels.append(f"{frames} fr, {pre}")
            paper.append(float(av["Paper top-1"].iloc[0] - rgb["Paper top-1"].iloc[0]))
            measured.append(float(av["_measured"].iloc[0] - rgb["_measured"].iloc[0]))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    x = np.arange(len(labels))
    ax.bar(x - 0.2, paper, 0.4, label="report", color="tab:gray")
    ax.bar(x + 0.2, [0 if math.isnan(m) else m for m in measured], 0.4, label=f"measured ({scale})",
           color="tab:blue")
    for xi, m in zip(x, measured):
        if math.isnan(m):
            ax.text(xi + 0.2, 0, "not run", rotation=90, ha="center", va="bottom", fontsize=8)
    ax.axhline(0, color="k", lw=0.5)
    ax.set(xticks=x, xticklabels=labels, ylabel="top-1 gain from audio (points)",
           title="Table 1: TSAM RGB+audio minus RGB")
    ax.legend()
    fig.tight_layout()
    p2 = out / "audio_gain.png"
    fig.savefig(p2, dpi=120)
    plt.close(fig)
    return [p1, p2]
