"""Part ``data``: loader and training rates over the real Kinetics clips, prepared and repeated (links) under a
temporary folder, never beside the user's clips."""
from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from .timing import error_text
from .training import batch_clock

__all__ = ["prepared_clips", "loader_rate", "bench_training", "real_clip_rates"]


def prepared_clips(clips: Path, tmp: Path, repeat: int, workers: int) -> dict:
    """Prepare the real clips, replicate them with links under ``tmp``, write train/valid manifests (prepared, mp4)."""
    import pandas as pd

    from tsamlib.data.manifest import build_manifest, read_manifest, write_manifest
    from tsamlib.data.prepare import prepare_dataset
    recs = []
    for split, lst in (("train", "training.txt"), ("valid", "validation.txt")):
        for line in (clips / lst).read_text().split("\n"):
            if line.strip():
                cid, label = line.split()[0], int(line.split()[-1])
                recs.append(dict(path=str(clips / "videos" / f"{cid}.mp4"), label=label, label_name=f"class{label}",
                                 split=split))
    build_manifest(recs, tmp / "mp4.csv", verbose=False)
    t = time.perf_counter()
    prep = prepare_dataset(tmp / "mp4.csv", tmp / "prepared", short_side=256, workers=workers, verbose=False)
    prepare_s = time.perf_counter() - t
    table = prep.table.loc[prep.table["problem"] == ""]
    src = read_manifest(tmp / "mp4.csv")
    out = {}
    for layout, df in (("prepared", table), ("mp4", src)):
        rows = []
        for rec in df.to_dict("records"):
            rows.append(rec)
            if rec["split"] != "train":
                continue
            for i in range(1, repeat):
                p = Path(rec["path"])
                # twins only ever go under tmp: a prepared clip's beside it, an mp4's in tmp/twins (never next to the
                # source clips, which are the user's files)
                where = p.parent if p.resolve().is_relative_to(tmp.resolve()) else tmp / "twins"
                twin = where / (f"{p.stem}-r{i}{p.suffix}" if p.is_file() else f"{p.name}-r{i}")
                _linked_copy(p, twin)
                rows.append(dict(rec, path=str(twin)))
        write_manifest(pd.DataFrame(rows), tmp / f"{layout}_x{repeat}.csv")
        out[layout] = tmp / f"{layout}_x{repeat}.csv"
    mb = sum(f.stat().st_size for f in (tmp / "prepared").rglob("*") if f.is_file() and "-r" not in f.parent.name
             and "-r" not in f.stem) / 1e6
    return dict(manifests=out, prepare_s=round(prepare_s, 1), n_clips=len(table), prepared_mb=round(mb, 1))


def _link(src: Path, dst: Path) -> None:
    """A hard link, or a symbolic one where the two paths are on different file systems."""
    try:
        os.link(src, dst)
    except OSError:
        os.symlink(src.resolve(), dst)


def _linked_copy(src: Path, dst: Path) -> None:
    """``dst``: a link to the file ``src``, or a folder of links to the folder ``src``'s files (and its ``.wav``)."""
    if dst.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_file():
        _link(src, dst)
        return
    dst.mkdir()
    for f in src.iterdir():
        _link(f, dst / f.name)
    wav = src.parent / (src.name + ".wav")
    if wav.is_file():
        _link(wav, dst.parent / (dst.name + ".wav"))


def loader_rate(manifest: Path, cfg: dict, workers: int, cache_dir: Path | None, passes: int = 1) -> dict:
    """Clips/s of the training loader alone (batches moved to the device), after its first 3 batches."""
    from tsamlib.data.loaders import video_dataloaders
    dls = video_dataloaders(manifest, n_frames=cfg["frames"], audio=True, img_size=cfg["img"], resize=cfg["resize"],
                            batch_size=cfg["batch"], num_workers=workers, cache_dir=cache_dir, seed=0)
    res = {}
    for p in range(passes):
        stamps = []
        t0 = time.perf_counter()
        for _ in dls.train:
            stamps.append(time.perf_counter())
        n = len(stamps) - 3
        res[f"pass{p}"] = dict(batches=len(stamps), first_batch_s=round(stamps[0] - t0, 2),
                               clips_per_s=round(n * cfg["batch"] / (stamps[-1] - stamps[2]), 1) if n > 0 else None)
    res["skipped"] = dls.n_skipped()
    return res


def bench_training(cfg: dict, manifest: Path, workers: int, cache_dir: Path) -> dict:
    """One epoch of ``tsam_learner`` (paper recipe; fp16 + channels_last on a GPU) over the prepared clips."""
    from tsamlib.data.loaders import video_dataloaders
    from tsamlib.training.learner import tsam_learner

    dls = video_dataloaders(manifest, n_frames=cfg["frames"], audio=True, img_size=cfg["img"], resize=cfg["resize"],
                            batch_size=cfg["batch"], num_workers=workers, cache_dir=cache_dir, seed=0)
    torch.manual_seed(0)
    learn = tsam_learner(dls, arch=cfg["arch"], recipe="paper", n_frames=cfg["frames"], audio=True,
                         shift_depth=cfg["k"], f_div=4, n_insert=2, m_insert=0, progress_bars=False)
    cb = batch_clock()
    t = time.perf_counter()
    learn.fit(1, lr=0.01, cbs=[cb])
    wall = time.perf_counter() - t
    s = cb.ticks[1:]
    warm = min(5, len(s) - 2)
    rate = (len(s) - 1 - warm) * cfg["batch"] / (s[-1] - s[warm]) if len(s) > warm + 1 else None
    return dict(batches=len(s), warm_batches=warm, clips_per_s=None if rate is None else round(rate, 1),
                epoch_wall_s=round(wall, 1), fp16=bool(getattr(learn, "mixed_precision", None) or
                                                       any(type(c).__name__ == "MixedPrecision" for c in learn.cbs)),
                skipped=dls.n_skipped())


def real_clip_rates(cfg: dict, clip_dir: Path, tmp: Path, repeat: int, workers: int) -> dict:
    """The part's record: the clips prepared, the loader's rates (prepared cold, mel cache filled then warm; mp4
    the same) and one epoch of training over the prepared clips, a batch being the first clip count."""
    dcfg = dict(cfg, batch=cfg["clips"][0])
    prep = prepared_clips(clip_dir, tmp, repeat, workers)
    d = {k: v for k, v in prep.items() if k != "manifests"}
    d["loader_prepared_cold"] = loader_rate(prep["manifests"]["prepared"], dcfg, workers, None)
    d["loader_prepared_cached"] = loader_rate(prep["manifests"]["prepared"], dcfg, workers, tmp / "mels", passes=2)
    try:   # a failing mp4 loader is recorded; the prepared rates stand without it
        d["loader_mp4_cached"] = loader_rate(prep["manifests"]["mp4"], dcfg, workers, tmp / "mels_mp4", passes=2)
    except Exception as e:
        d["loader_mp4_cached"] = dict(error=error_text(e))
    d["train_prepared"] = bench_training(dcfg, prep["manifests"]["prepared"], workers, tmp / "mels")
    return d
