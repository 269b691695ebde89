"""GPU benchmark (issue 11): is the shift free, and can the loader feed the GPU?

Four parts, each written to the JSON as soon as it is done (a part that fails or does not fit the time budget is
recorded as such, never left out silently):

1. **shift op vs clone** at the conv1 input of every ResNet-50 stage shape (fp16, channels_last, 8 clips x 17
   segments, 16 shifted): forward op and its adjoint (backward) against ``x.clone()``, TSAM (k=4, f_div 4) and TSM
   (k=1, f_div 8), and the reference slice copies (``TSAM_SHIFT_KERNEL=torch``); CUDA events, interleaved, medians.
2. **model step** (forward + backward + SGD step, fp16 autocast, channels_last, batch 8 clips, 16+1 at 224 px):
   TSN (k=0), TSM (k=1, f_div 8, every block), TSAM (k=4, f_div 4, every 2nd block), TSAM keeping the shifted copy
   (``recompute=False``, the memory before issue 11) and TSAM on the slice copies; two rounds in alternating order,
   median ms/step and peak allocated memory. Then ``torch.compile`` of TSN, TSAM and TSM: compile time (first two
   steps) and compiled step time (TSM only if the ``--budget`` allows). The report derives from the clone times
   the floor that any shift writing its whole output costs per step (:func:`traffic_floor`).
   **profile**: ``torch.profiler`` over eager steps of TSN, TSAM and TSM: wall time, the CPU's time to enqueue a
   step, the GPU's kernel time, and the kernels whose time differs most from TSN's (is the GPU waiting on the CPU?).
3. **real training loop**: the 12 real Kinetics clips (``--clips``) prepared with ``tsamlib.data.prepare`` (JPEG frames
   at short side 256 + ``.wav``), repeated with links to 480 training clips (the links are made in a temporary
   folder; the clip folder is only read); loader alone (clips/s, cold audio and with the mel cache) with
   ``--workers`` processes, the same for the mp4s, then ``tsam_learner`` (paper recipe, fp16, channels_last)
   training TSAM 16+1 for one epoch over them: clips/s after the first batches.
4. ``accelerate launch --num_processes 1 -m tsamlib train --config params.json`` on that prepared manifest, one epoch.

    python benchmarks/bench_gpu.py --clips ../shared/kinetics-clips       # one GPU, about 5 minutes
    python benchmarks/bench_gpu.py --small --device cpu                   # a try on CPU, tiny sizes, ~4 minutes

Writes ``results/benchmarks/gpu.{json,md}`` (``gpu_small_<device>.*`` with ``--small``) with the device name,
torch version and every setting.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "results" / "benchmarks"
# conv1 inputs of ResNet-50's bottlenecks: (channels, size) of block 0 of layer1, the rest of layer1, and the
# inner blocks of layers 2-4 (block 0 of layers 2-4 sees the previous stage's last shape)
STAGE_SHAPES = {"layer1.0": (64, 56), "layer1": (256, 56), "layer2": (512, 28), "layer3": (1024, 14),
                "layer4": (2048, 7)}
# the conv1 inputs of ResNet-18 at 32 px (--small), so that its traffic floor finds every shape
SMALL_SHAPES = {"layer1": (64, 8), "layer2": (128, 4), "layer3": (256, 2), "layer4": (512, 1)}

__all__ = ["main"]


# ------------------------------------------------------------------------------------------------- helpers
class Timer:
    """Wall time of a block, synchronising the GPU before and after."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")

    def __call__(self, fn) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e)[:300]}"


@contextlib.contextmanager
def shift_kernel(name: str):
    """``TSAM_SHIFT_KERNEL`` for the block (``triton`` the fused op, ``torch`` the reference slice copies)."""
    old = os.environ.get("TSAM_SHIFT_KERNEL")
    os.environ["TSAM_SHIFT_KERNEL"] = name
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TSAM_SHIFT_KERNEL")
        else:
            os.environ["TSAM_SHIFT_KERNEL"] = old


def peak_gib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


# ------------------------------------------------------------------------------------------- 1. shift op
def bench_shift(cfg: dict, device: str, repeats: int = 7, iters: int = 20) -> list[dict]:
    """Shift op, its adjoint and the slice-copy reference against ``clone`` at each stage shape."""
    from tsamlib.model.shift import _TemporalShiftFn
    from tsamlib.model.shift_reference import shift_fold, shift_into
    from tsamlib.model.shift_triton import eager_shift, temporal_shift_adjoint_op, temporal_shift_op
    b, t, n = cfg["batch"], cfg["frames"] + 1, cfg["frames"]
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    timer = Timer(device)
    rows = []
    for stage, (c, hw) in cfg["shapes"].items():
        x = torch.randn(b * t, c, hw, hw, device=device, dtype=dtype).to(memory_format=torch.channels_last)
        x = x.view(b, t, c, hw, hw)
        fns = {"clone": lambda: x.clone()}
        for name, k, f_div in (("tsam", cfg["k"], 4), ("tsm", 1, 8)):
            f = shift_fold(c, k, f_div)
            fns[f"{name}_fwd"] = lambda k=k, f=f: temporal_shift_op(x, k, f, n, "zero")
            fns[f"{name}_bwd"] = lambda k=k, f=f: temporal_shift_adjoint_op(x, k, f, n, "zero")
        fk = shift_fold(c, cfg["k"], 4)
        fns["tsam_fwd_keep"] = lambda: temporal_shift_op(x, cfg["k"], fk, n, "keep")
        fns["tsam_fwd_eager"] = lambda: eager_shift(x, cfg["k"], fk, n, "zero")  # as training calls it: no dispatch
        fns["tsam_slices_fwd"] = lambda: _TemporalShiftFn.apply(x, cfg["k"], fk, n, "zero")
        ok = True  # the fused ops against the reference loops (tsamlib.model.shift_reference.shift_into), both directions and pads
        for pad in ("zero", "keep"):
            for adjoint, op in ((False, temporal_shift_op), (True, temporal_shift_adjoint_op)):
                ref = shift_into(torch.empty_like(x), x, cfg["k"], fk, n, pad, adjoint)
                ok &= torch.equal(op(x, cfg["k"], fk, n, pad), ref)
        times: dict[str, list[float]] = {name: [] for name in fns}
        for fn in fns.values():
            fn()  # compile / warm
        for _ in range(repeats):
            for name, fn in fns.items():
                times[name].append(timer(lambda fn=fn: [fn() for _ in range(iters)]) / iters * 1e3)
        med = {name: statistics.median(v) for name, v in times.items()}
        row = dict(stage=stage, channels=c, size=hw, matches_reference=bool(ok), clone_ms=round(med["clone"], 4))
        for name in fns:
            if name != "clone":
                row[f"{name}_ms"] = round(med[name], 4)
                row[f"{name}_vs_clone"] = round(med[name] / med["clone"], 3)
        rows.append(row)
        print(f"shift {stage} (same as reference: {ok}): " + ", ".join(f"{k[:-9]} {v:.2f}x" for k, v in row.items() if k.endswith("_vs_clone")),
              flush=True)
        del x
    return rows


# ------------------------------------------------------------------------------------------ 2. model step
def variants(cfg: dict) -> dict[str, dict]:
    """create_tsam settings (+ how the shift runs) of each model compared."""
    k = cfg["k"]
    return {
        "tsn": dict(shift_depth=0),
        "tsm": dict(shift_depth=1, f_div=8, n_insert=1),
        "tsam": dict(shift_depth=k, f_div=4, n_insert=2, m_insert=0),
        "tsam_keep_copy": dict(shift_depth=k, f_div=4, n_insert=2, m_insert=0, recompute=False),
        "tsam_slices": dict(shift_depth=k, f_div=4, n_insert=2, m_insert=0, kernel="torch"),
    }


def create_model(cfg: dict, settings: dict):
    """The TSAM model of a variant (``settings`` from :func:`variants`; ``kernel`` is applied by the caller), on CPU."""
    from tsamlib.model.shift import TemporalShift
    from tsamlib.model.tsam import create_tsam
    settings = dict(settings)
    recompute = settings.pop("recompute", True)
    settings.pop("kernel", None)
    model = create_tsam(cfg["arch"], num_classes=400, n_frames=cfg["frames"], audio=True, **settings)
    for m in model.modules():
        if isinstance(m, TemporalShift):
            m.recompute = recompute
    return model


def build(cfg: dict, device: str, settings: dict):
    """A TSAM model on ``device`` (channels_last), its SGD optimiser and one fixed batch."""
    torch.manual_seed(0)
    model = create_model(cfg, settings).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    b, t, s = cfg["batch"], cfg["frames"], cfg["img"]
    video = torch.randn(b * t, 3, s, s, device=device).to(memory_format=torch.channels_last).view(b, t, 3, s, s)
    audio = torch.randn(b, 3, s, s, device=device).to(memory_format=torch.channels_last).view(b, 1, 3, s, s)
    labels = torch.randint(0, 400, (b,), device=device)
    return model, opt, (video, audio, labels)


def train_step(model, opt, batch, device: str) -> None:
    video, audio, labels = batch
    with torch.autocast("cuda", dtype=torch.float16, enabled=device.startswith("cuda")):
        loss = F.cross_entropy(model(video, audio), labels)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def measure_model(cfg: dict, device: str, name: str, settings: dict, steps: int, warmup: int,
                  compile_it: bool = False) -> dict:
    """Step times (s) and peak memory of one variant, eager or compiled (then with compile time)."""
    timer = Timer(device)
    with shift_kernel(settings.get("kernel", "triton")):
        if compile_it:
            torch._dynamo.reset()
        model, opt, batch = build(cfg, device, settings)
        fn = torch.compile(model) if compile_it else model
        res: dict = {}
        if compile_it:  # the first steps compile forward and backward
            res["first_steps_s"] = [round(timer(lambda: train_step(fn, opt, batch, device)), 2) for _ in range(2)]
        for _ in range(warmup):
            train_step(fn, opt, batch, device)
        reset_peak(device)
        res["times"] = [timer(lambda: train_step(fn, opt, batch, device)) for _ in range(steps)]
        res["peak_gib"] = peak_gib(device)
    del model, opt, fn, batch
    reset_peak(device)
    return res


def bench_models(cfg: dict, device: str, rounds: int = 3) -> list[dict]:
    """Eager step time and peak memory of every variant, ``rounds`` rounds in alternating order."""
    vs = variants(cfg)
    times: dict[str, list[float]] = {n: [] for n in vs}
    peaks: dict[str, list[float]] = {n: [] for n in vs}
    for r in range(rounds):
        for name in (list(vs) if r % 2 == 0 else list(vs)[::-1]):
            res = measure_model(cfg, device, name, vs[name], cfg["steps"], cfg["warmup"])
            times[name] += res["times"]
            if res["peak_gib"] is not None:
                peaks[name].append(res["peak_gib"])
            print(f"eager {name} round {r}: {statistics.median(res['times']) * 1e3:.1f} ms/step, "
                  f"peak {res['peak_gib']}", flush=True)
    return _model_rows(vs, times, peaks, "eager")


def _model_rows(vs: dict, times: dict, peaks: dict, mode: str, extra: dict | None = None) -> list[dict]:
    base = statistics.median(times["tsn"])
    base_peak = max(peaks["tsn"]) if peaks.get("tsn") else None
    rows = []
    for name in vs:
        if not times.get(name):
            continue
        ms = statistics.median(times[name])
        peak = max(peaks[name]) if peaks.get(name) else None
        rows.append(dict(mode=mode, variant=name, settings={k: v for k, v in vs[name].items()},
                         ms_per_step=round(ms * 1e3, 2), vs_tsn=round(ms / base, 3), steps=len(times[name]),
                         peak_gib=None if peak is None else round(peak, 3),
                         peak_vs_tsn=None if peak is None or base_peak is None else round(peak / base_peak, 3),
                         **(extra or {}).get(name, {})))
    return rows


def bench_compiled(cfg: dict, device: str, deadline: float) -> list[dict]:
    """torch.compile of TSN, TSAM and TSM (in that order, while the time budget lasts)."""
    vs = {n: s for n, s in variants(cfg).items() if n in ("tsn", "tsam", "tsm")}
    times, peaks, extra = {}, {}, {}
    for name in ("tsn", "tsam", "tsm"):
        if time.time() > deadline:
            extra[name] = dict(skipped="time budget")
            print(f"compiled {name}: skipped (time budget)", flush=True)
            continue
        t0 = time.perf_counter()
        res = measure_model(cfg, device, name, vs[name], cfg["steps"], cfg["warmup"], compile_it=True)
        times[name], peaks[name] = res["times"], [res["peak_gib"]] if res["peak_gib"] is not None else []
        ms = statistics.median(res["times"])
        extra[name] = dict(first_steps_s=res["first_steps_s"], compile_s=round(sum(res["first_steps_s"]) - 2 * ms, 1),
                           wall_s=round(time.perf_counter() - t0, 1))
        print(f"compiled {name}: {ms * 1e3:.1f} ms/step, compile {extra[name]['compile_s']} s", flush=True)
    if "tsn" not in times:
        return [dict(mode="compiled", variant=n, **e) for n, e in extra.items()]
    return _model_rows({n: vs[n] for n in vs if n in times}, times, peaks, "compiled", extra)


def shifted_inputs(cfg: dict, settings: dict) -> list[tuple[int, int]]:
    """(channels, size) of the input of every shifted conv of a variant at ``cfg``'s image size, in network order: one
    forward pass on the meta device (shapes only: no memory, no arithmetic)."""
    shape_settings = tuple(sorted((k, v) for k, v in settings.items() if k not in ("recompute", "kernel")))
    return list(_shifted_inputs(cfg["arch"], cfg["frames"], cfg["img"], shape_settings))


@functools.lru_cache(maxsize=None)  # the report is rewritten after every part: each variant's shapes are found once
def _shifted_inputs(arch: str, frames: int, img: int, settings: tuple) -> tuple[tuple[int, int], ...]:
    from tsamlib.model.shift import TemporalShift
    model = create_model(dict(arch=arch, frames=frames), dict(settings)).to("meta")
    seen: list[tuple[int, int]] = []
    for m in model.modules():
        if isinstance(m, TemporalShift):
            m.register_forward_pre_hook(lambda m, args: seen.append((args[0].shape[1], args[0].shape[2])))
    with torch.no_grad():
        model(torch.empty(1, frames, 3, img, img, device="meta"), torch.empty(1, 1, 3, img, img, device="meta"))
    return tuple(seen)


def traffic_floor(res: dict) -> list[dict]:
    """The least extra time per step that a shift writing its whole output can cost, from the run's own clone times.

    A shift pass reads and writes the block input once, as ``clone`` does. Per shifted block a training step makes
    3 passes: the forward shift, the adjoint in backward, and the shift again in backward where the shifted copy is not
    kept (``recompute``, the default); 2 with ``recompute=False``, which keeps the copy and costs memory instead.
    floor ms = passes x the sum of the clone times of the shifted blocks' inputs, e.g. for TSAM at 224 px 3 x
    (layer1.0 + 2 x layer1 + 2 x layer2 + 3 x layer3 + layer4 shapes). As a ratio to TSN's measured step: a step-time
    goal below it cannot be met by a shift kernel of its own, only by fusing the shift into its neighbours."""
    cfg, rows = res["meta"]["cfg"], res.get("shift") or []
    clone = {(r["channels"], r["size"]): r["clone_ms"] for r in rows}
    measured = {mode: {r["variant"]: r for r in res.get(mode) or [] if "ms_per_step" in r}
                for mode in ("eager", "compiled")}
    out = []
    for name, settings in variants(cfg).items():
        if not settings.get("shift_depth") or settings.get("kernel"):
            continue
        shapes = shifted_inputs(cfg, settings)
        missing = sorted(set(shapes) - set(clone))
        passes = 2 if settings.get("recompute") is False else 3
        row = dict(variant=name, shifted_blocks=len(shapes), passes=passes)
        if missing or not shapes:
            row["missing_clone_times"] = missing
            out.append(row)
            continue
        row["floor_ms"] = round(passes * sum(clone[sh] for sh in shapes), 3)
        for mode, rows_of in measured.items():
            if "tsn" in rows_of:
                row[f"floor_vs_tsn_{mode}"] = round(1 + row["floor_ms"] / rows_of["tsn"]["ms_per_step"], 3)
                if name in rows_of:
                    row[f"measured_vs_tsn_{mode}"] = rows_of[name]["vs_tsn"]
        out.append(row)
    return out


def floor_markdown(rows: list[dict]) -> list[str]:
    """The floor section of the report (see :func:`traffic_floor`)."""
    lines = ["## Memory-traffic floor of a shift kernel (derived from this run's clone times)", "",
             "Each shift pass reads and writes the block input once, like `clone`: per shifted block the forward "
             "shift, the adjoint in backward and, when the shifted copy is not kept, the shift again in backward. "
             "floor = passes x the clone times of the shifted blocks' inputs (table above), as a ratio to TSN's "
             "step: what a kernel that writes the whole shifted tensor costs at best, each pass as fast as a clone.", "",
             "| variant | shifted blocks | passes | floor ms/step | floor vs TSN, eager | measured, eager | "
             "floor vs TSN, compiled | measured, compiled |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "floor_ms" not in r:
            lines.append(f"| {r['variant']} | {r['shifted_blocks']} | {r['passes']} | no clone time for "
                         f"{r['missing_clone_times']} | | | | |")
            continue
        lines.append(f"| {r['variant']} | {r['shifted_blocks']} | {r['passes']} | {r['floor_ms']} | "
                     + " | ".join(str(r.get(k, "-")) for k in ("floor_vs_tsn_eager", "measured_vs_tsn_eager",
                                                              "floor_vs_tsn_compiled", "measured_vs_tsn_compiled"))
                     + " |")
    return lines + [""]


def profile_steps(cfg: dict, device: str, steps: int = 5, top: int = 12) -> dict:
    """Where an eager step's time goes, for TSN, TSAM and TSM: wall time against the time the CPU takes to enqueue the
    step (no sync) and against the GPU's kernel time (``torch.profiler``); the kernels (CPU ops on CPU) that take the
    most time per step, and those whose time differs most between TSAM and TSN. A GPU busy for much less than the
    wall time waits on the CPU (launch overhead); otherwise the kernels named here are the cost."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile
    cuda = device.startswith("cuda")
    vs = variants(cfg)
    out: dict = {}
    per_key: dict[str, dict[str, float]] = {}
    for name in ("tsn", "tsam", "tsm"):
        model, opt, batch = build(cfg, device, vs[name])
        for _ in range(cfg["warmup"]):
            train_step(model, opt, batch, device)
        wall, enqueue = [], []
        for _ in range(steps):
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            train_step(model, opt, batch, device)
            t1 = time.perf_counter()  # the CPU is done; the GPU may still be working
            if cuda:
                torch.cuda.synchronize()
            wall.append(time.perf_counter() - t0)
            enqueue.append(t1 - t0)
        with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
            for _ in range(steps):
                train_step(model, opt, batch, device)
            if cuda:
                torch.cuda.synchronize()
        # GPU kernels (and copies) on CUDA; CPU ops' self time on CPU (then "busy" is the CPU's op time)
        events = [e for e in prof.key_averages()
                  if (e.device_type == DeviceType.CUDA if cuda else e.device_type == DeviceType.CPU)]
        times = {e.key: (e.self_device_time_total if cuda else e.self_cpu_time_total) / steps / 1e3 for e in events}
        counts = {e.key: e.count / steps for e in events}
        per_key[name] = times
        ranked = sorted(times, key=times.get, reverse=True)[:top]
        w = statistics.median(wall) * 1e3
        out[name] = dict(wall_ms=round(w, 2), enqueue_ms=round(statistics.median(enqueue) * 1e3, 2),
                         busy_ms=round(sum(times.values()), 2), busy_share=round(sum(times.values()) / w, 3),
                         launches_per_step=round(sum(counts.values()), 1),
                         top=[dict(key=k[:90], ms=round(times[k], 3), per_step=counts[k]) for k in ranked])
        print(f"profile {name}: wall {w:.1f} ms, enqueue {out[name]['enqueue_ms']} ms, busy {out[name]['busy_ms']} ms",
              flush=True)
        del model, opt, batch
        reset_peak(device)
    for name in ("tsam", "tsm"):
        keys = set(per_key[name]) | set(per_key["tsn"])
        diff = {k: per_key[name].get(k, 0.0) - per_key["tsn"].get(k, 0.0) for k in keys}
        out[f"{name}_minus_tsn"] = [dict(key=k[:90], tsn_ms=round(per_key["tsn"].get(k, 0.0), 3),
                                         ms=round(per_key[name].get(k, 0.0), 3), diff_ms=round(diff[k], 3))
                                    for k in sorted(keys, key=lambda k: -abs(diff[k]))[:top]]
    out["steps"], out["unit"] = steps, "GPU kernels" if cuda else "CPU ops (no GPU)"
    return out


# ------------------------------------------------------------------------------------- 3. training loop
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
    from fastai.callback.core import Callback

    from tsamlib.data.loaders import video_dataloaders
    from tsamlib.training.learner import tsam_learner

    class Stamps(Callback):
        order = 100

        def before_fit(self):
            self.stamps = []

        def after_batch(self):
            if self.training:
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                self.stamps.append(time.perf_counter())

    dls = video_dataloaders(manifest, n_frames=cfg["frames"], audio=True, img_size=cfg["img"], resize=cfg["resize"],
                            batch_size=cfg["batch"], num_workers=workers, cache_dir=cache_dir, seed=0)
    torch.manual_seed(0)
    learn = tsam_learner(dls, arch=cfg["arch"], recipe="paper", n_frames=cfg["frames"], audio=True,
                         shift_depth=cfg["k"], f_div=4, n_insert=2, m_insert=0, progress_bars=False)
    cb = Stamps()
    t = time.perf_counter()
    learn.fit(1, lr=0.01, cbs=[cb])
    wall = time.perf_counter() - t
    s = cb.stamps
    warm = min(5, len(s) - 2)
    rate = (len(s) - 1 - warm) * cfg["batch"] / (s[-1] - s[warm]) if len(s) > warm + 1 else None
    return dict(batches=len(s), warm_batches=warm, clips_per_s=None if rate is None else round(rate, 1),
                epoch_wall_s=round(wall, 1), fp16=bool(getattr(learn, "mixed_precision", None) or
                                                       any(type(c).__name__ == "MixedPrecision" for c in learn.cbs)),
                skipped=dls.n_skipped())


def run_accelerate(cfg: dict, manifest: Path, workers: int, tmp: Path) -> dict:
    """``accelerate launch --num_processes 1 -m tsamlib train --config`` on the prepared manifest, one epoch."""
    exe = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    if exe is None:
        return dict(error="accelerate not found")
    params = dict(dataset=str(manifest), n_frames=cfg["frames"], audio=True, arch=cfg["arch"], img_size=cfg["img"],
                  resize=cfg["resize"], shift_depth=cfg["k"], f_div=4, n_insert=2, epochs=1, batch_size=cfg["batch"],
                  recipe="paper", lr=0.01, num_workers=workers, run_id="accelerate", runs_root=str(tmp / "runs"))
    (tmp / "accelerate.json").write_text(json.dumps(params))
    t = time.perf_counter()
    cmd = [exe, "launch", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "-m", "tsamlib", "train", "--config", str(tmp / "accelerate.json")]
    if not torch.cuda.is_available():
        cmd.insert(2, "--cpu")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    res = dict(command=" ".join(["accelerate"] + cmd[1:-1] + ["params.json"]), returncode=out.returncode,
               wall_s=round(time.perf_counter() - t, 1))
    metrics = tmp / "runs" / "accelerate" / "metrics.json"
    if metrics.is_file():
        m = json.loads(metrics.read_text())
        res.update(finished=m.get("finished"), top1=m.get("final", {}).get("top1"),
                   world_size=m.get("launch", {}).get("world_size"))
    if out.returncode:
        res["stderr_tail"] = out.stderr[-1500:]
    return res


# ---------------------------------------------------------------------------------------------- report
def to_markdown(res: dict) -> str:
    m = res["meta"]
    lines = [f"# GPU benchmark: {m['device_name']}", "",
             f"`{m['command']}`; torch {m['torch']}, triton {m['triton']}, CUDA {m['cuda']}; {m['cfg']['arch']}, "
             f"batch {m['cfg']['batch']} clips of {m['cfg']['frames']}+1 segments at {m['cfg']['img']} px, "
             f"fp16 autocast and channels_last on CUDA, cudnn.benchmark on; {m['date']}.", ""]
    for name, run in m.get("runs", {}).items():
        lines.append(f"- {name}: `{run['command']}`, {run['date']}; code: {run['code']}.")
    lines += [f"- {note}" for note in res.get("notes", [])] + ([""] if m.get("runs") or res.get("notes") else [])
    if res.get("shift"):
        lines += ["## Shift op vs clone (ms per call, ratio to clone)", "",
                  "| stage (C, size) | same as reference | clone ms | TSAM fwd | TSAM fwd, eager twin | TSAM bwd | "
                  "TSAM fwd keep | TSM fwd | TSM bwd | slices fwd |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in res["shift"]:
            lines.append(f"| {r['stage']} ({r['channels']}, {r['size']}) | {r.get('matches_reference', '-')} | "
                         f"{r['clone_ms']:.3f} | "
                         + " | ".join(f"{r[k + '_vs_clone']:.2f}x" if k + "_vs_clone" in r else "-"
                                      for k in ("tsam_fwd", "tsam_fwd_eager", "tsam_bwd", "tsam_fwd_keep", "tsm_fwd",
                                                "tsm_bwd", "tsam_slices_fwd"))
                         + " |")
        lines.append("")
    for key, title in (("eager", "Model step, eager"), ("compiled", "Model step, torch.compile")):
        rows = res.get(key)
        if not rows:
            continue
        lines += [f"## {title}", "", "| variant | ms/step | vs TSN | peak GiB | peak vs TSN | compile s |",
                  "|---|---|---|---|---|---|"]
        for r in rows:
            if "ms_per_step" not in r:
                lines.append(f"| {r['variant']} | {r.get('skipped') or r.get('error')} | | | | |")
                continue
            lines.append(f"| {r['variant']} | {r['ms_per_step']:.1f} | {r['vs_tsn']:.3f} | {r['peak_gib']} | "
                         f"{r['peak_vs_tsn']} | {r.get('compile_s', '')} |")
        lines.append("")
    if res.get("shift") and res.get("eager"):
        lines += floor_markdown(traffic_floor(res))
    if res.get("profile"):
        lines += profile_markdown(res["profile"])
    if res.get("data"):
        lines += data_markdown(res["data"], m)
    if res.get("accelerate"):
        a = res["accelerate"]
        lines += ["## accelerate launch", ""]
        if a.get("not_run"):
            lines += [f"`{a.get('command')}`: not run: {a['not_run']}.", ""]
        else:
            lines += [f"`{a.get('command')}` (TSAM 16+1, paper recipe, one epoch over the prepared clips): exit code "
                      f"{a.get('returncode')}, {a.get('wall_s')} s, finished {a.get('finished')}, world size "
                      f"{a.get('world_size')}, top-1 {a.get('top1')} (4 validation clips: meaningless as accuracy, it "
                      "shows the run completed).", ""]
        if a.get("stderr_tail"):
            lines += ["```", a["stderr_tail"], "```", ""]
    if res.get("errors"):
        lines += ["## Errors", ""] + [f"- {k}: {v}" for k, v in res["errors"].items()] + [""]
    return "\n".join(lines)


def profile_markdown(p: dict) -> list[str]:
    """The profiler section: is the GPU waiting on the CPU, and which kernels make TSAM's extra time."""
    unit = p.get("unit", "GPU kernels")
    lines = ["## Where an eager step's time goes (torch.profiler)", "",
             f"Median of {p['steps']} steps each; enqueue: CPU time of a step before the sync; busy: the summed time "
             f"of the {unit} per step (a GPU busy for much less than the wall time waits on the CPU).", "",
             "| variant | wall ms | enqueue ms | busy ms | busy / wall | launches per step |", "|---|---|---|---|---|---|"]
    for name in ("tsn", "tsam", "tsm"):
        if name in p:
            r = p[name]
            lines.append(f"| {name} | {r['wall_ms']} | {r['enqueue_ms']} | {r['busy_ms']} | {r['busy_share']} | "
                         f"{r['launches_per_step']} |")
    for name in ("tsam", "tsm"):
        rows = p.get(f"{name}_minus_tsn", [])
        if rows:
            lines += ["", f"{name.upper()} against TSN, ms per step ({unit} with the largest differences):", "",
                      "| kernel | TSN | " + name.upper() + " | difference |", "|---|---|---|---|"]
            lines += [f"| `{r['key']}` | {r['tsn_ms']} | {r['ms']} | {r['diff_ms']:+} |" for r in rows]
    return lines + [""]


def _rate(d: dict, key: str, p: str = "pass0") -> str:
    r = d.get(key, {})
    if "error" in r:
        return f"failed: {r['error']}"
    return str(r.get(p, {}).get("clips_per_s", "-"))


def data_markdown(d: dict, m: dict) -> list[str]:
    """The loader / training section: clips per second."""
    t = d.get("train_prepared", {})
    w = m["workers"]
    return ["## Loader and training over the real clips", "",
            f"The {d.get('n_clips')} real clips prepared in {d.get('prepare_s')} s ({d.get('prepared_mb')} MB of "
            f"frames), training clips repeated (links) to fill the epoch; {w} loader processes, one thread "
            f"each; clips/s after the first 3 batches (the loader alone: batches moved to the device, nothing "
            "else).", "",
            "| what | clips/s |", "|---|---|",
            f"| loader, prepared, audio cold (no mel cache) | {_rate(d, 'loader_prepared_cold')} |",
            f"| loader, prepared, mel cache being filled | {_rate(d, 'loader_prepared_cached')} |",
            f"| loader, prepared, mel cache warm | {_rate(d, 'loader_prepared_cached', 'pass1')} |",
            f"| loader, mp4, mel cache being filled | {_rate(d, 'loader_mp4_cached')} |",
            f"| loader, mp4, mel cache warm | {_rate(d, 'loader_mp4_cached', 'pass1')} |",
            f"| training TSAM 16+1 (`tsam_learner`, paper recipe, fp16 {t.get('fp16')}), prepared, cache warm | "
            + (f"not valid ({t['clips_per_s']} measured): {t['invalid']}" if t.get("invalid") else
               f"{t.get('clips_per_s', t.get('error', '-'))}") + " |", ""]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--small", action="store_true", help="tiny sizes (resnet18, 4+1 frames, 32 px): a quick try")
    ap.add_argument("--budget", type=float, default=150,
                    help="seconds from the start after which no further compiled variant is started")
    ap.add_argument("--clips", type=Path, default=REPO.parent / "shared" / "kinetics-clips",
                    help="folder of the real clips (videos/, training.txt, validation.txt)")
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1), help="loader processes")
    ap.add_argument("--repeat", type=int, default=30, help="copies of each training clip (8 clips x 30 = 240)")
    ap.add_argument("--parts", default="shift,eager,profile,compiled,data,accelerate")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--render", type=Path, help="only rewrite the .md of this JSON (e.g. after editing the layout)")
    args = ap.parse_args(argv)
    if args.render:
        args.render.with_suffix(".md").write_text(to_markdown(json.loads(args.render.read_text())))
        return 0
    start = time.time()
    deadline = start + args.budget
    cfg = dict(arch="resnet50", img=224, resize=256, batch=8, frames=16, k=4, steps=20, warmup=3,
               shapes=STAGE_SHAPES)
    if args.small:
        cfg = dict(arch="resnet18", img=32, resize=36, batch=2, frames=4, k=2, steps=3, warmup=1, shapes=SMALL_SHAPES)
        args.repeat = min(args.repeat, 3)
    parts = args.parts.split(",")
    torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest convolutions, as trainers do
    import triton
    stem = f"gpu_small_{args.device.split(':')[0]}" if args.small else "gpu"
    meta = dict(command="python benchmarks/bench_gpu.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                device_name=torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor()
                or platform.machine(), torch=torch.__version__, triton=triton.__version__, cuda=torch.version.cuda,
                cpus=os.cpu_count(), workers=args.workers, date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                cfg={k: v for k, v in cfg.items() if k != "shapes"}, shapes=cfg["shapes"])
    res: dict = dict(meta=meta, errors={})
    args.out.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        res["meta"]["elapsed_s"] = round(time.time() - start, 1)
        (args.out / f"{stem}.json").write_text(json.dumps(res, indent=1))
        (args.out / f"{stem}.md").write_text(to_markdown(res))

    def part(name: str, fn) -> None:
        if name not in parts:
            return
        print(f"== {name} ({time.time() - start:.0f} s)", flush=True)
        try:
            res[name] = fn()
        except Exception as e:  # recorded, and the next part still runs
            traceback.print_exc()
            res["errors"][name] = _error(e)
        save()

    part("shift", lambda: bench_shift(cfg, args.device))
    part("eager", lambda: bench_models(cfg, args.device))
    part("profile", lambda: profile_steps(cfg, args.device))
    part("compiled", lambda: bench_compiled(cfg, args.device, deadline))
    with tempfile.TemporaryDirectory(prefix="tsam-gpu-") as tmp_s:
        tmp = Path(tmp_s)
        prep: dict = {}

        def data() -> dict:
            prep.update(prepared_clips(args.clips, tmp, args.repeat, args.workers))
            d = {k: v for k, v in prep.items() if k != "manifests"}
            d["loader_prepared_cold"] = loader_rate(prep["manifests"]["prepared"], cfg, args.workers, None)
            d["loader_prepared_cached"] = loader_rate(prep["manifests"]["prepared"], cfg, args.workers, tmp / "mels",
                                                      passes=2)
            save()
            try:
                d["loader_mp4_cached"] = loader_rate(prep["manifests"]["mp4"], cfg, args.workers, tmp / "mels_mp4",
                                                     passes=2)
            except Exception as e:
                d["loader_mp4_cached"] = dict(error=_error(e))
            d["train_prepared"] = bench_training(cfg, prep["manifests"]["prepared"], args.workers, tmp / "mels")
            return d

        part("data", data)
        if prep:
            part("accelerate", lambda: run_accelerate(cfg, prep["manifests"]["prepared"], args.workers, tmp))
    save()
    print(to_markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
