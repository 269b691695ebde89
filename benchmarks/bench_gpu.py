"""GPU benchmark (issue 20, item 6): what does TSAM's shift cost a training step, which shift path is fastest, and is
the step CPU-bound?

ResNet-50, 16 video frames (+1 audio frame for TSAM) at 224 px, forward + backward + SGD step on one fixed random
batch (fp16 autocast and channels_last on CUDA, fp32 on the CPU), at each of ``--clips`` clips per step (8 and 32).
The variants (:func:`variants`):

- ``tsn``: TSN 16, no shift, no audio (the baseline of every ratio); ``tsn-audio``: TSN 16+1 (what TSAM adds
  beyond the audio frame is the shift);
- ``tsam``: TSAM 16+1 (k=4, f_div 4, every 2nd block) on the default path (``$TSAM_SHIFT_KERNEL`` unset:
  :data:`tsamlib.model.shift.DEFAULT_CUDA_SHIFT_KERNEL` on CUDA, the reference on the CPU);
- ``tsam-triton``: the fused Triton kernels, the shifted copy recomputed in backward (``TSAM_SHIFT_KERNEL=triton``);
- ``tsam-autograd``: the shift as plain ops that autograd differentiates, no custom op (``TSAM_SHIFT_KERNEL=autograd``,
  :func:`tsamlib.model.shift.autograd_shift`; the conv keeps the shifted copy);
- ``tsam-keepcopy``: the Triton kernels keeping the shifted copy for backward (``recompute=False``);
- ``tsm16``: TSM 16 (k=1, f_div 8, every block, no audio), default path.

Parts (``--parts``; each is written to the JSON as soon as it is done, and a part that fails or does not fit the
time budget is recorded as such, never left out silently):

1. ``shift``: the shift op and its adjoint against ``x.clone()`` at the conv1 input of every ResNet stage shape.
2. ``eager``: every variant at every clip count, ``--rounds`` rounds in alternating order, median ms/step of the
   timed steps, the CPU's time to enqueue a step, peak memory; ratios to TSN at the same clip count.
3. ``profile`` (inside ``eager``'s last round, on the same models): ``torch.profiler`` over ``--profile-steps`` steps:
   the GPU's busy fraction (summed kernel time per step / the step's wall time) and the CPU-side ops with the most
   self time per step; the report says whether the step is CPU-bound (:data:`CPU_BOUND_RULE`).
4. ``compiled``: ``torch.compile`` of each variant, the largest clip count first, while ``--budget`` lasts: compile
   time (the first two steps) and step time. A variant whose path equals one already compiled is not compiled twice.
5. ``train``: the repository's own training loop (``tsamlib.training.setup_training`` + ``fit``: fastai Learner,
   video loaders, mixed precision) on a small synthetic dataset, TSAM 16+1 at each clip count: ms per step after the
   first batches, against the bare step of part 2. Needs fastai, PyAV, decord and librosa; skipped (with the reason)
   where one is missing.
6. ``accelerate``: ``accelerate launch --num_processes 1 -m tsamlib train --config params.json`` on that dataset, one
   epoch (``--cpu`` without a GPU).
7. ``data`` (not in the default parts): loader and training rates over the 12 real Kinetics clips (``--clip-dir``).

    bash benchmarks/gpu_check.sh                          # on a lent GPU: one call, under 8 minutes
    python benchmarks/bench_gpu.py                        # the same, by hand
    python benchmarks/bench_gpu.py --device cpu --small   # a smoke run on CPU (resnet18, 4+1 frames, 32 px)

Writes ``results/benchmarks/gpu.{json,md}`` (a CPU or ``--small`` run: ``gpu_<device>[_small].*``, so the GPU record
is never overwritten by a smoke run) with the device, torch version, git commit and every setting.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import json
import math
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
FULL = dict(arch="resnet50", img=224, resize=256, frames=16, k=4, clips=[8, 32], steps=20, warmup=3, rounds=2,
            profile_steps=3, shapes=STAGE_SHAPES)
SMALL = dict(arch="resnet18", img=32, resize=36, frames=4, k=2, clips=[2, 4], steps=3, warmup=1, rounds=2,
             profile_steps=2, shapes=SMALL_SHAPES)
VARIANT_ORDER = ("tsn", "tsn-audio", "tsam", "tsam-triton", "tsam-autograd", "tsam-keepcopy", "tsm16")
# compiled variants in this order while the time budget lasts: the baseline and the shift paths first
COMPILE_ORDER = ("tsn", "tsam", "tsam-autograd", "tsam-triton", "tsam-keepcopy", "tsm16", "tsn-audio", "tsam-torch")
# the candidates for tsamlib.model.shift.DEFAULT_CUDA_SHIFT_KERNEL: variant -> the shift path it measures
SHIFT_PATHS = {"tsam-triton": "triton", "tsam-autograd": "autograd", "tsam-torch": "torch"}
CPU_BOUND = 0.8      # GPU busy below this fraction of the step's wall time: CPU-bound
GPU_BOUND = 0.95     # at or above: GPU-bound; in between: partly CPU-bound
CPU_BOUND_RULE = (f"GPU busy fraction = summed GPU kernel time per step (torch.profiler) / median wall time of an "
                  f"unprofiled step. With one stream and no host sync inside a step, the GPU is idle only while it "
                  f"waits for the CPU to launch work, so: busy < {CPU_BOUND}: **CPU-bound** (the GPU waits on the "
                  f"CPU at least {1 - CPU_BOUND:.0%} of the step); {CPU_BOUND} <= busy < {GPU_BOUND}: **partly "
                  f"CPU-bound**; busy >= {GPU_BOUND}: **GPU-bound**. The CPU's enqueue time (a step's time before "
                  "the final sync) close to the wall time says the same from the CPU's side.")

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
def shift_kernel_env(name: str | None):
    """``$TSAM_SHIFT_KERNEL`` for the block: a name from :data:`tsamlib.model.shift.SHIFT_KERNELS`, or None (unset:
    the default path)."""
    old = os.environ.pop("TSAM_SHIFT_KERNEL", None)
    if name is not None:
        os.environ["TSAM_SHIFT_KERNEL"] = name
    try:
        yield
    finally:
        os.environ.pop("TSAM_SHIFT_KERNEL", None)
        if old is not None:
            os.environ["TSAM_SHIFT_KERNEL"] = old


def peak_gib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def git_commit() -> str:
    """HEAD of the repository (``+ uncommitted changes`` when the tree differs), or ``$TSAM_BENCH_COMMIT`` where the
    copy has no git (a device machine gets the working tree without its history)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=20)
        if head.returncode == 0:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                                   capture_output=True, text=True, timeout=20).stdout.strip()
            return head.stdout.strip() + (" + uncommitted changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return os.environ.get("TSAM_BENCH_COMMIT", "unknown (no git here; set TSAM_BENCH_COMMIT)")


def missing_modules(*names: str) -> list[str]:
    """Those of ``names`` that cannot be imported here."""
    return [n for n in names if importlib.util.find_spec(n) is None]


# ------------------------------------------------------------------------------------------- 1. shift op
def bench_shift(cfg: dict, device: str, clips: int, repeats: int = 7, iters: int = 20) -> list[dict]:
    """Shift op, its adjoint and the slice-copy reference against ``clone`` at each stage shape, ``clips`` clips of
    frames+1 segments (the Triton ops on CUDA; elsewhere they fall back to the reference loops)."""
    from tsamlib.model.shift import _TemporalShiftFn, autograd_shift
    from tsamlib.model.shift_reference import ShiftLayout, ShiftSpec, shift_into
    from tsamlib.model.shift_triton import eager_shift, temporal_shift_adjoint_op, temporal_shift_op
    b, t, n = clips, cfg["frames"] + 1, cfg["frames"]
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    timer = Timer(device)
    rows = []
    for stage, (c, hw) in cfg["shapes"].items():
        x = torch.randn(b * t, c, hw, hw, device=device, dtype=dtype).to(memory_format=torch.channels_last)
        x = x.view(b, t, c, hw, hw)
        fns = {"clone": lambda: x.clone()}
        for name, k, f_div in (("tsam", cfg["k"], 4), ("tsm", 1, 8)):
            f = ShiftSpec(k, f_div).fold(c)
            fns[f"{name}_fwd"] = lambda k=k, f=f: temporal_shift_op(x, k, f, n, "zero")
            fns[f"{name}_bwd"] = lambda k=k, f=f: temporal_shift_adjoint_op(x, k, f, n, "zero")
        fk = ShiftSpec(cfg["k"], 4).fold(c)
        lay = {pad: ShiftLayout(cfg["k"], fk, n, pad, "bidirectional") for pad in ("zero", "keep")}
        fns["tsam_fwd_keep"] = lambda: temporal_shift_op(x, cfg["k"], fk, n, "keep")
        fns["tsam_fwd_eager"] = lambda: eager_shift(x, cfg["k"], fk, n, "zero")  # as training calls it: no dispatch
        fns["tsam_slices_fwd"] = lambda: _TemporalShiftFn.apply(x, lay["zero"])
        fns["tsam_autograd_fwd"] = lambda: autograd_shift(x, lay["zero"])
        ok = True  # the fused ops against the reference loops, both directions and pads
        for pad in ("zero", "keep"):
            for adjoint, op in ((False, temporal_shift_op), (True, temporal_shift_adjoint_op)):
                ref = shift_into(torch.empty_like(x), x, lay[pad], adjoint)
                ok &= torch.equal(op(x, cfg["k"], fk, n, pad), ref)
            ok &= torch.equal(autograd_shift(x, lay[pad]), shift_into(torch.empty_like(x), x, lay[pad]))
        times: dict[str, list[float]] = {name: [] for name in fns}
        for fn in fns.values():
            fn()  # compile / warm
        for _ in range(repeats):
            for name, fn in fns.items():
                times[name].append(timer(lambda fn=fn: [fn() for _ in range(iters)]) / iters * 1e3)
        med = {name: statistics.median(v) for name, v in times.items()}
        row = dict(clips=clips, stage=stage, channels=c, size=hw, matches_reference=bool(ok),
                   clone_ms=round(med["clone"], 4))
        for name in fns:
            if name != "clone":
                row[f"{name}_ms"] = round(med[name], 4)
                row[f"{name}_vs_clone"] = round(med[name] / med["clone"], 3)
        rows.append(row)
        print(f"shift {clips} clips {stage} (same as reference: {ok}): "
              + ", ".join(f"{k[:-9]} {v:.2f}x" for k, v in row.items() if k.endswith("_vs_clone")), flush=True)
    return rows


# ------------------------------------------------------------------------------------------ 2. model step
def variants(cfg: dict) -> dict[str, dict]:
    """Every variant: ``title``, ``model`` (create_tsam settings), ``kernel`` ($TSAM_SHIFT_KERNEL, None: unset, the
    default path) and ``recompute`` (False: the shifted copy is kept for backward)."""
    k, n = cfg["k"], cfg["frames"]
    tsam = dict(shift_depth=k, f_div=4, n_insert=2, m_insert=0, audio=True)
    return {
        "tsn": dict(title=f"TSN {n}: no shift, no audio", model=dict(shift_depth=0, audio=False), kernel=None),
        "tsn-audio": dict(title=f"TSN {n}+1: no shift", model=dict(shift_depth=0, audio=True), kernel=None),
        "tsam": dict(title=f"TSAM {n}+1, default path", model=tsam, kernel=None),
        "tsam-triton": dict(title=f"TSAM {n}+1, fused Triton kernels, copy recomputed", model=tsam, kernel="triton"),
        "tsam-autograd": dict(title=f"TSAM {n}+1, plain-autograd slice copies (no custom op), copy kept", model=tsam,
                              kernel="autograd"),
        "tsam-keepcopy": dict(title=f"TSAM {n}+1, fused Triton kernels, copy kept", model=tsam, kernel="triton",
                              recompute=False),
        "tsm16": dict(title=f"TSM {n}: k=1, f_div 8, every block, no audio, default path",
                      model=dict(shift_depth=1, f_div=8, n_insert=1, audio=False), kernel=None),
        "tsam-torch": dict(title=f"TSAM {n}+1, reference slice copies in an autograd.Function, copy recomputed",
                           model=tsam, kernel="torch"),
    }


def shift_path(v: dict, device: str) -> str:
    """What the shift of variant ``v`` runs on ``device``: none, triton, torch (the reference) or autograd, with
    whether the shifted copy is kept for backward."""
    from tsamlib.model.shift import default_shift_kernel
    if not v["model"].get("shift_depth"):
        return "none"
    kernel = v["kernel"] or default_shift_kernel(device)
    if kernel == "triton" and not device.startswith("cuda"):
        kernel = "torch"  # the Triton kernels serve CUDA tensors; elsewhere the reference runs
    kept = kernel == "autograd" or v.get("recompute") is False
    return f"{kernel}, copy {'kept' if kept else 'recomputed'}"


def create_model(cfg: dict, v: dict):
    """The TSAM model of variant ``v`` (from :func:`variants`), on CPU."""
    from tsamlib.model.shift import TemporalShift
    from tsamlib.model.tsam import create_tsam, tsam_kwargs
    model = create_tsam(cfg["arch"], num_classes=400, n_frames=cfg["frames"], **tsam_kwargs(v["model"]))
    for m in model.modules():
        if isinstance(m, TemporalShift):
            m.recompute = v.get("recompute", True)
    return model


def build(cfg: dict, device: str, v: dict, clips: int):
    """A model on ``device`` (channels_last), its SGD optimiser and one fixed batch of ``clips`` clips."""
    torch.manual_seed(0)
    model = create_model(cfg, v).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    b, t, s = clips, cfg["frames"], cfg["img"]
    video = torch.randn(b * t, 3, s, s, device=device).to(memory_format=torch.channels_last).view(b, t, 3, s, s)
    audio = None
    if v["model"].get("audio"):
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


def timed_steps(fn, opt, batch, device: str, steps: int) -> tuple[list[float], list[float]]:
    """Wall time (synchronised) and enqueue time (the CPU done, before the final sync) of ``steps`` steps."""
    cuda = device.startswith("cuda")
    wall, enqueue = [], []
    for _ in range(steps):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        train_step(fn, opt, batch, device)
        t1 = time.perf_counter()
        if cuda:
            torch.cuda.synchronize()
        wall.append(time.perf_counter() - t0)
        enqueue.append(t1 - t0)
    return wall, enqueue


def measure(cfg: dict, device: str, v: dict, clips: int, compile_it: bool = False,
            profile_steps: int = 0) -> dict:
    """Step times (s), enqueue times and peak memory of one variant at ``clips`` clips, eager or compiled (then with
    the first two steps' times, which compile); with ``profile_steps`` also :func:`profile_model` on the same model."""
    with shift_kernel_env(v["kernel"]):
        if compile_it:
            torch._dynamo.reset()
        try:
            return _measure(cfg, device, v, clips, compile_it, profile_steps)
        finally:  # the model and its batch are gone with _measure's frame
            if compile_it:
                torch._dynamo.reset()
            reset_peak(device)


def _measure(cfg: dict, device: str, v: dict, clips: int, compile_it: bool, profile_steps: int) -> dict:
    timer = Timer(device)
    model, opt, batch = build(cfg, device, v, clips)
    # static shapes: without dynamic=False a second clip count (or dynamo's local profile of earlier runs) compiles a
    # dynamic-batch graph, which is neither what a fixed-batch trainer gets nor comparable between clip counts
    fn = torch.compile(model, dynamic=False) if compile_it else model
    res: dict = {}
    if compile_it:  # the first steps compile forward and backward
        res["first_steps_s"] = [round(timer(lambda: train_step(fn, opt, batch, device)), 2) for _ in range(2)]
    for _ in range(cfg["warmup"]):
        train_step(fn, opt, batch, device)
    reset_peak(device)
    res["times"], res["enqueue"] = timed_steps(fn, opt, batch, device, cfg["steps"])
    res["peak_gib"] = peak_gib(device)
    if profile_steps:
        res["profile"] = profile_model(fn, opt, batch, device, profile_steps, statistics.median(res["times"]))
    return res


def profile_model(fn, opt, batch, device: str, steps: int, wall_s: float, top: int = 12) -> dict:
    """``torch.profiler`` over ``steps`` steps: per step the GPU's summed kernel time and its share of ``wall_s`` (an
    unprofiled step's median wall time), the CPU ops' summed self time, and the CPU ops with the most self time
    (``cudaLaunchKernel`` and the like included: the CPU's cost of launching) and the GPU kernels with the most time."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile
    cuda = device.startswith("cuda")
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        for _ in range(steps):
            train_step(fn, opt, batch, device)
        if cuda:
            torch.cuda.synchronize()
    events = prof.key_averages()
    # the final synchronisation's CPU time is the wait for the GPU, not a cost of the step: left out
    cpu = {e.key: (e.self_cpu_time_total / steps / 1e3, e.count / steps) for e in events
           if e.device_type == DeviceType.CPU and e.self_cpu_time_total > 0 and "Synchronize" not in e.key}
    gpu = {e.key: (e.self_device_time_total / steps / 1e3, e.count / steps) for e in events
           if e.device_type == DeviceType.CUDA} if cuda else {}
    wall_ms = wall_s * 1e3
    out = dict(steps=steps, wall_ms=round(wall_ms, 3),
               cpu_self_ms=round(sum(ms for ms, _ in cpu.values()), 3),
               top_cpu=[dict(op=k[:90], self_ms=round(cpu[k][0], 3), calls=round(cpu[k][1], 1))
                        for k in sorted(cpu, key=lambda k: -cpu[k][0])[:top]])
    if cuda and not gpu:
        out["no_gpu_events"] = "the profiler recorded no GPU kernels (CUPTI unavailable?): no busy fraction"
    if gpu:
        busy = sum(ms for ms, _ in gpu.values())
        out.update(gpu_kernel_ms=round(busy, 3), busy_fraction=round(busy / wall_ms, 3),
                   kernels_per_step=round(sum(n for _, n in gpu.values()), 1),
                   gpu_ms_by_kernel={k[:90]: round(ms, 4) for k, (ms, _) in gpu.items()},
                   top_gpu=[dict(kernel=k[:90], ms=round(gpu[k][0], 3), calls=round(gpu[k][1], 1))
                            for k in sorted(gpu, key=lambda k: -gpu[k][0])[:top]])
    out["verdict"] = cpu_bound_verdict(out.get("busy_fraction")) if not (cuda and not gpu) else \
        "unknown: " + out["no_gpu_events"]
    return out


def cpu_bound_verdict(busy: float | None) -> str:
    """The answer of :data:`CPU_BOUND_RULE` for a GPU busy fraction (None: no GPU)."""
    if busy is None:
        return "not applicable (no GPU: the whole step runs on the CPU)"
    if busy < CPU_BOUND:
        return "CPU-bound"
    return "partly CPU-bound" if busy < GPU_BOUND else "GPU-bound"


def _row(name: str, v: dict, device: str, clips: int, times: list[float], enqueue: list[float],
         peaks: list[float]) -> dict:
    return dict(variant=name, clips=clips, path=shift_path(v, device),
                ms_per_step=round(statistics.median(times) * 1e3, 3),
                enqueue_ms=round(statistics.median(enqueue) * 1e3, 3) if enqueue else None,
                spread=round((max(times) - min(times)) / statistics.median(times), 3), steps=len(times),
                peak_gib=round(max(peaks), 3) if peaks else None)


def add_ratios(rows: list[dict]) -> list[dict]:
    """``vs_tsn`` (and ``vs_tsn_audio``, ``peak_vs_tsn``): each row against the TSN row of its clip count and mode."""
    base = {(r["clips"], r.get("mode")): r for r in rows if r["variant"] == "tsn" and "ms_per_step" in r}
    base_a = {(r["clips"], r.get("mode")): r for r in rows if r["variant"] == "tsn-audio" and "ms_per_step" in r}
    for r in rows:
        if "ms_per_step" not in r:
            continue
        b, ba = base.get((r["clips"], r.get("mode"))), base_a.get((r["clips"], r.get("mode")))
        r["vs_tsn"] = round(r["ms_per_step"] / b["ms_per_step"], 3) if b else None
        r["vs_tsn_audio"] = round(r["ms_per_step"] / ba["ms_per_step"], 3) if ba else None
        r["peak_vs_tsn"] = (round(r["peak_gib"] / b["peak_gib"], 3)
                            if b and r.get("peak_gib") and b.get("peak_gib") else None)
    return rows


def bench_eager(cfg: dict, device: str, names: list[str], profile: bool, save) -> dict:
    """Every variant at every clip count, ``cfg['rounds']`` rounds in alternating order (profiled in the last round
    when ``profile``); the report is saved after every clip count."""
    vs = variants(cfg)
    out: dict = dict(rows=[], profile=[])
    for clips in cfg["clips"]:
        times = {n: [] for n in names}
        enq = {n: [] for n in names}
        peaks: dict[str, list[float]] = {n: [] for n in names}
        errors: dict[str, str] = {}
        for r in range(cfg["rounds"]):
            last = r == cfg["rounds"] - 1
            for name in (names if r % 2 == 0 else names[::-1]):
                if name in errors:
                    continue
                try:
                    res = measure(cfg, device, vs[name], clips, profile_steps=cfg["profile_steps"] if profile and last
                                  else 0)
                except Exception as e:  # e.g. out of memory: recorded, the others still run
                    traceback.print_exc()
                    errors[name] = _error(e)
                    reset_peak(device)
                    continue
                times[name] += res["times"]
                enq[name] += res["enqueue"]
                if res["peak_gib"] is not None:
                    peaks[name].append(res["peak_gib"])
                if "profile" in res:
                    out["profile"].append(dict(variant=name, clips=clips, **res["profile"]))
                print(f"eager {clips} clips {name} round {r}: {statistics.median(res['times']) * 1e3:.1f} ms/step, "
                      f"peak {res['peak_gib']}", flush=True)
        for name in names:
            out["rows"].append(dict(variant=name, clips=clips, mode="eager", error=errors[name]) if name in errors
                               else dict(mode="eager", **_row(name, vs[name], device, clips, times[name], enq[name],
                                                              peaks[name])))
        add_ratios(out["rows"])
        save(out)
    return out


def compile_key(v: dict, device: str) -> tuple:
    """Variants with equal keys run the same code: one is compiled, the other names it."""
    return tuple(sorted(v["model"].items())), shift_path(v, device)


def bench_compiled(cfg: dict, device: str, names: list[str], deadline: float, save) -> list[dict]:
    """``torch.compile`` of every variant (in :data:`COMPILE_ORDER`), the largest clip count first, while the time
    budget lasts."""
    vs = variants(cfg)
    rows: list[dict] = []
    names = sorted(names, key=COMPILE_ORDER.index)
    for clips in sorted(cfg["clips"], reverse=True):
        done: dict[tuple, str] = {}
        for name in names:
            v = vs[name]
            key = compile_key(v, device)
            if key in done:
                rows.append(dict(variant=name, clips=clips, mode="compiled", path=shift_path(v, device),
                                 skipped=f"the same code as {done[key]} ({shift_path(v, device)}): compiled once"))
                continue
            if time.time() > deadline:
                rows.append(dict(variant=name, clips=clips, mode="compiled", path=shift_path(v, device),
                                 skipped="time budget (--budget) spent"))
                print(f"compiled {clips} clips {name}: skipped (time budget)", flush=True)
                save(rows)
                continue
            t0 = time.perf_counter()
            try:
                res = measure(cfg, device, v, clips, compile_it=True)
            except Exception as e:
                traceback.print_exc()
                rows.append(dict(variant=name, clips=clips, mode="compiled", path=shift_path(v, device),
                                 error=_error(e)))
                reset_peak(device)
                torch._dynamo.reset()
                save(rows)
                continue
            done[key] = name
            row = dict(mode="compiled", **_row(name, v, device, clips, res["times"], res["enqueue"],
                                               [res["peak_gib"]] if res["peak_gib"] is not None else []))
            ms = row["ms_per_step"] / 1e3
            row.update(first_steps_s=res["first_steps_s"], compile_s=round(sum(res["first_steps_s"]) - 2 * ms, 1),
                       wall_s=round(time.perf_counter() - t0, 1))
            rows.append(row)
            add_ratios(rows)
            print(f"compiled {clips} clips {name}: {row['ms_per_step']:.1f} ms/step, compile {row['compile_s']} s",
                  flush=True)
            save(rows)
    return add_ratios(rows)


def choose_default(res: dict) -> dict:
    """The default CUDA shift path by the issue's rule: the fastest eager TSAM step among the shift paths at the
    largest clip count (``tsamlib train`` runs eager), with the compiled winner beside it."""
    from tsamlib.model.shift import DEFAULT_CUDA_SHIFT_KERNEL
    clips = max(res["meta"]["cfg"]["clips"])
    out = dict(clips=clips, current=DEFAULT_CUDA_SHIFT_KERNEL, rule=(
        f"the shift path (TSAM_SHIFT_KERNEL) whose eager TSAM {res['meta']['cfg']['frames']}+1 training step is "
        f"fastest at {clips} clips per step (training runs eager); compiled steps are shown beside it"))
    if not res["meta"]["device"].startswith("cuda"):
        out["decision"] = (f"none: these are not CUDA numbers (the CPU runs the reference for 'triton'); "
                           f"DEFAULT_CUDA_SHIFT_KERNEL stays {DEFAULT_CUDA_SHIFT_KERNEL!r} until a GPU run decides")
    for mode in ("eager", "compiled"):
        rows = {r["variant"]: r for r in res.get(mode) or [] if r.get("clips") == clips and "ms_per_step" in r}
        cands = {SHIFT_PATHS[n]: rows[n]["ms_per_step"] for n in SHIFT_PATHS if n in rows}
        out[f"{mode}_ms"] = cands
        if cands:
            out[f"{mode}_fastest"] = min(cands, key=cands.get)
    if "decision" not in out:
        best = out.get("eager_fastest")
        out["decision"] = ("none: no eager TSAM shift path was measured" if best is None else
                           f"{best!r} is fastest; DEFAULT_CUDA_SHIFT_KERNEL is {DEFAULT_CUDA_SHIFT_KERNEL!r}"
                           + (" (matches)" if best == DEFAULT_CUDA_SHIFT_KERNEL else
                              f": set it to {best!r} in tsamlib/model/shift.py"))
    return out


def shifted_inputs(cfg: dict, model_settings: dict) -> list[tuple[int, int]]:
    """(channels, size) of the input of every shifted conv of a model at ``cfg``'s image size, in network order: one
    forward pass on the meta device (shapes only: no memory, no arithmetic)."""
    return list(_shifted_inputs(cfg["arch"], cfg["frames"], cfg["img"], tuple(sorted(model_settings.items()))))


@functools.lru_cache(maxsize=None)  # the report is rewritten after every part: each model's shapes are found once
def _shifted_inputs(arch: str, frames: int, img: int, settings: tuple) -> tuple[tuple[int, int], ...]:
    from tsamlib.model.shift import TemporalShift
    model = create_model(dict(arch=arch, frames=frames), dict(model=dict(settings), kernel=None)).to("meta")
    seen: list[tuple[int, int]] = []
    for m in model.modules():
        if isinstance(m, TemporalShift):
            m.register_forward_pre_hook(lambda m, args: seen.append((args[0].shape[1], args[0].shape[2])))
    audio = torch.empty(1, 1, 3, img, img, device="meta") if dict(settings).get("audio") else None
    with torch.no_grad():
        model(torch.empty(1, frames, 3, img, img, device="meta"), audio)
    return tuple(seen)


def traffic_floor(res: dict) -> list[dict]:
    """The least extra time per step that a shift writing its whole output can cost, from the run's own clone times,
    at each clip count.

    A shift pass reads and writes the block input once, as ``clone`` does. Per shifted block a training step makes
    3 passes: the forward shift, the adjoint in backward, and the shift again in backward where the shifted copy is not
    kept (``recompute``, the default); 2 where the copy is kept (``recompute=False``, the plain-autograd path), which
    costs memory instead. floor ms = passes x the sum of the clone times of the shifted blocks' inputs, e.g. for TSAM
    at 224 px 3 x (layer1.0 + 2 x layer1 + 2 x layer2 + 3 x layer3 + layer4 shapes). As a ratio to the step of the TSN
    with the same segments (TSN 16+1 for TSAM, TSN 16 for TSM): a step-time goal below it cannot be met by a shift
    kernel of its own, only by fusing the shift into its neighbours."""
    cfg, device = res["meta"]["cfg"], res["meta"]["device"]
    out = []
    for clips in cfg["clips"]:
        clone = {(r["channels"], r["size"]): r["clone_ms"] for r in res.get("shift") or [] if r.get("clips") == clips}
        if not clone:
            continue
        measured = {mode: {r["variant"]: r for r in res.get(mode) or [] if r.get("clips") == clips
                           and "ms_per_step" in r} for mode in ("eager", "compiled")}
        seen = set()
        for name, v in variants(cfg).items():
            path = shift_path(v, device)
            key = (tuple(sorted(v["model"].items())), path)
            if path == "none" or key in seen or not any(name in m for m in measured.values()):
                continue
            seen.add(key)
            shapes = shifted_inputs(cfg, v["model"])
            missing = sorted(set(shapes) - set(clone))
            passes = 2 if path.endswith("copy kept") else 3
            row = dict(clips=clips, variant=name, path=path, shifted_blocks=len(shapes), passes=passes)
            if missing or not shapes:
                row["missing_clone_times"] = missing
                out.append(row)
                continue
            row["floor_ms"] = round(passes * sum(clone[sh] for sh in shapes), 3)
            base = "tsn-audio" if v["model"].get("audio") else "tsn"
            row["baseline"] = base
            for mode, rows_of in measured.items():
                if base in rows_of:
                    row[f"floor_vs_base_{mode}"] = round(1 + row["floor_ms"] / rows_of[base]["ms_per_step"], 3)
                    if name in rows_of:
                        row[f"measured_vs_base_{mode}"] = round(rows_of[name]["ms_per_step"]
                                                                / rows_of[base]["ms_per_step"], 3)
            out.append(row)
    return out


def floor_markdown(rows: list[dict]) -> list[str]:
    """The floor section of the report (see :func:`traffic_floor`)."""
    lines = ["## Memory-traffic floor of a shift kernel (derived from this run's clone times)", "",
             "Each shift pass reads and writes the block input once, like `clone`: per shifted block the forward "
             "shift, the adjoint in backward and, when the shifted copy is not kept, the shift again in backward. "
             "floor = passes x the clone times of the shifted blocks' inputs, as a ratio to the step of the TSN with "
             "the same segments (baseline): what a shift that writes the whole shifted tensor costs at best, each "
             "pass as fast as a clone.", "",
             "| clips | variant | path | shifted blocks | passes | floor ms/step | baseline | floor vs baseline, eager "
             "| measured, eager | floor vs baseline, compiled | measured, compiled |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        head = f"| {r['clips']} | {r['variant']} | {r['path']} | {r['shifted_blocks']} | {r['passes']} | "
        if "floor_ms" not in r:
            lines.append(head + f"no clone time for {r['missing_clone_times']} | | | | | |")
            continue
        lines.append(head + f"{r['floor_ms']} | {r['baseline']} | "
                     + " | ".join(str(r.get(k, "-")) for k in ("floor_vs_base_eager", "measured_vs_base_eager",
                                                              "floor_vs_base_compiled", "measured_vs_base_compiled"))
                     + " |")
    return lines + [""]


# ------------------------------------------------------------------------- 5-6. the repository's training loop
TRAIN_NEEDS = ("fastai", "av", "decord", "librosa")


def synthetic_manifest(cfg: dict, tmp: Path, workers: int) -> Path:
    """A small synthetic dataset (:func:`tsamlib.data.synthetic.make_synthetic_dataset`, 64 px clips with sound) with
    enough training clips for ``warmup + steps`` steps at the largest clip count; its manifest."""
    from tsamlib.data.synthetic import make_synthetic_dataset
    n_train = max(cfg["clips"]) * (cfg["train_warmup"] + cfg["train_steps"])
    n_classes, valid = 6, 0.2
    per_class = math.ceil(n_train / (1 - valid) / n_classes) + 1
    root = make_synthetic_dataset(tmp / "synthetic", kind="default", n_per_class=per_class, n_classes=n_classes,
                                  seconds=1.5, workers=workers, valid_fraction=valid)
    return root / "manifest.csv"


def run_settings(cfg: dict, manifest: Path, clips: int, workers: int, runs_root: Path, run_id: str) -> dict:
    """The RunConfig settings of TSAM at ``cfg``'s sizes over the synthetic manifest, one epoch (paper recipe)."""
    return dict(dataset=str(manifest), arch=cfg["arch"], n_frames=cfg["frames"], audio=True, shift_depth=cfg["k"],
                f_div=4, n_insert=2, m_insert=0, img_size=cfg["img"], resize=cfg["resize"], batch_size=clips,
                epochs=1, recipe="paper", lr=0.01, num_workers=workers, seed=0, run_id=run_id,
                runs_root=str(runs_root))


def batch_clock():
    """A fastai callback whose ``ticks`` are the time the first epoch's training began and the time after each training
    batch (the GPU synchronised). Validation passes (fastai calls ``before_fit`` for them too) add nothing."""
    from fastai.callback.core import Callback

    class BatchClock(Callback):
        order = 100

        def __init__(self):
            self.ticks: list[float] = []

        def before_train(self):
            if not self.ticks:
                self.ticks.append(time.perf_counter())

        def after_batch(self):
            if self.training:
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                self.ticks.append(time.perf_counter())

    return BatchClock()


def bench_train_loop(cfg: dict, device: str, manifest: Path, workers: int, tmp: Path, bare: dict) -> list[dict]:
    """``tsamlib.training.setup_training`` + ``Training.fit`` (the loop of ``python -m tsamlib train``) for one epoch
    of TSAM at each clip count: the time of each training batch (synchronised), its median after the first
    ``train_warmup`` batches, against the bare eager step of ``tsam`` at the same clip count (``bare``: clips -> ms)."""
    from tsamlib.config import RunConfig
    from tsamlib.training.run import setup_training

    rows = []
    for clips in cfg["clips"]:
        cfg_run = RunConfig(**run_settings(cfg, manifest, clips, workers, tmp / "runs", f"loop-{clips}"))
        t0 = time.perf_counter()
        with shift_kernel_env(None):
            training = setup_training(cfg_run, progress_bars=False)
            setup_s = time.perf_counter() - t0
            cb = batch_clock()
            training.learn.add_cb(cb)
            try:
                t1 = time.perf_counter()
                run = training.fit()
                fit_s = time.perf_counter() - t1
            finally:
                training.run.close()
        gaps = [b - a for a, b in zip(cb.ticks, cb.ticks[1:])]
        timed = gaps[cfg["train_warmup"]:]
        ms = statistics.median(timed) * 1e3 if timed else None
        epoch = (run.metrics.get("epochs") or [{}])[0]
        row = dict(clips=clips, batches=len(gaps), timed_batches=len(timed), ms_per_step=None if ms is None
                   else round(ms, 2), clips_per_s=None if ms is None else round(clips / ms * 1e3, 1),
                   first_batch_s=round(gaps[0], 2) if gaps else None, setup_s=round(setup_s, 1),
                   fit_s=round(fit_s, 1), precision=training.learn.precision, launch=run.metrics.get("launch"),
                   finished=run.metrics.get("finished"), train_steps=epoch.get("train_steps"))
        if ms is not None and bare.get(clips):
            row["bare_ms_per_step"] = bare[clips]
            row["vs_bare_step"] = round(ms / bare[clips], 3)
        rows.append(row)
        print(f"training loop {clips} clips: {row['ms_per_step']} ms/step over {len(timed)} batches "
              f"(bare step {bare.get(clips)} ms)", flush=True)
    return rows


def run_accelerate(cfg: dict, manifest: Path, workers: int, tmp: Path, device: str) -> dict:
    """``accelerate launch --num_processes 1 -m tsamlib train --config params.json``, one epoch over the synthetic
    manifest at the largest clip count (``--cpu`` without CUDA)."""
    exe = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    if exe is None:
        return dict(skipped="accelerate is not installed here")
    clips = max(cfg["clips"])
    params = run_settings(cfg, manifest, clips, workers, tmp / "runs", "accelerate")
    (tmp / "accelerate.json").write_text(json.dumps(params))
    cmd = [exe, "launch", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "-m", "tsamlib", "train", "--config", str(tmp / "accelerate.json")]
    if not device.startswith("cuda"):
        cmd.insert(2, "--cpu")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    env.pop("TSAM_SHIFT_KERNEL", None)
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO, env=env)
    res = dict(command=" ".join(["accelerate"] + cmd[1:-1] + ["params.json"]), clips=clips, returncode=out.returncode,
               wall_s=round(time.perf_counter() - t, 1))
    metrics = tmp / "runs" / "accelerate" / "metrics.json"
    if metrics.is_file():
        m = json.loads(metrics.read_text())
        epoch = (m.get("epochs") or [{}])[0]
        res.update(finished=m.get("finished"), launch=m.get("launch"), train_steps=epoch.get("train_steps"),
                   train_clips_per_s=round(epoch["train_clips_per_s"], 1) if epoch.get("train_clips_per_s") else None,
                   epoch_wall_s=round(epoch["wall_s"], 1) if epoch.get("wall_s") else None)
    if out.returncode:
        res["stderr_tail"] = out.stderr[-1500:]
    return res


# ----------------------------------------------------------------- 7. real Kinetics clips (optional part 'data')
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




# ---------------------------------------------------------------------------------------------- report
def _fmt(v, spec: str = "") -> str:
    if v is None:
        return "-"
    return format(v, spec) if spec else str(v)


def step_markdown(rows: list[dict], mode: str, clips_list: list[int], gpu: bool, frames: int) -> list[str]:
    """One table per clip count of the eager or compiled steps."""
    title = "eager" if mode == "eager" else "torch.compile"
    lines = [f"## Training step, {title}", "",
             f"Median of the timed steps (forward + backward + SGD step), ratios to TSN {frames} and to TSN {frames}+1 "
             "at the same clip count; spread = (slowest - fastest) / median; enqueue = the CPU's time for a step "
             "before the final sync."
             + (" `torch.compile(model, dynamic=False)` (inductor, static shapes; optimizer eager); compile s: the "
               "first two steps less two compiled steps." if mode == "compiled" else ""), ""]
    for clips in clips_list:
        rs = [r for r in rows if r.get("clips") == clips]
        if not rs:
            continue
        lines += [f"**{clips} clips per step**", "",
                  f"| variant | shift path | ms/step | vs TSN | vs TSN {frames}+1 | spread | enqueue ms | peak GiB | "
                  "peak vs TSN | " + ("compile s |" if mode == "compiled" else "steps |"),
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rs:
            if "ms_per_step" not in r:
                lines.append(f"| {r['variant']} | {r.get('path', '-')} | {r.get('skipped') or r.get('error')} "
                             "| | | | | | | |")
                continue
            lines.append(f"| {r['variant']} | {r['path']} | {r['ms_per_step']:.2f} | {_fmt(r.get('vs_tsn'), '.3f')} | "
                         f"{_fmt(r.get('vs_tsn_audio'), '.3f')} | {r['spread']} | {_fmt(r.get('enqueue_ms'), '.2f')} | "
                         f"{_fmt(r.get('peak_gib'))} | {_fmt(r.get('peak_vs_tsn'))} | "
                         + (f"{r.get('compile_s', '-')} |" if mode == "compiled" else f"{r['steps']} |"))
        lines.append("")
    if not gpu:
        lines += ["(CPU: no peak memory; 'triton' runs the reference slice copies, so tsam, tsam-triton and "
                  "tsam-keepcopy differ only in keeping the copy.)", ""]
    return lines


def profile_markdown(prof: list[dict], clips_list: list[int], gpu: bool, top: int = 8) -> list[str]:
    """The profiler section: GPU busy fraction, the verdict, the top CPU-side ops per step."""
    lines = ["## Profile: is the step CPU-bound? (torch.profiler)", "",
             f"Rule: {CPU_BOUND_RULE}", ""]
    if not gpu:
        lines += ["**CPU-bound: not applicable on this run** (no GPU: every op runs on the CPU, so the GPU busy "
                  "fraction does not exist). The tables show where the CPU's time goes; the GPU verdict needs the "
                  "GPU run.", ""]
    for clips in clips_list:
        rs = [p for p in prof if p["clips"] == clips]
        if not rs:
            continue
        lines += [f"**{clips} clips per step** ({rs[0]['steps']} profiled steps per variant)", "",
                  "| variant | wall ms | GPU kernel ms | GPU busy | CPU ops self ms | kernels per step | verdict |",
                  "|---|---|---|---|---|---|---|"]
        for p in rs:
            lines.append(f"| {p['variant']} | {p['wall_ms']:.2f} | {_fmt(p.get('gpu_kernel_ms'))} | "
                         f"{_fmt(p.get('busy_fraction'))} | {p['cpu_self_ms']:.2f} | "
                         f"{_fmt(p.get('kernels_per_step'))} | {p['verdict']} |")
        lines.append("")
        by = {p["variant"]: p for p in rs}
        for name in ("tsam", "tsn"):
            if name in by:
                lines += [f"Top CPU-side ops per step, {name}, {clips} clips (self CPU time; the profiler's own "
                          "overhead inflates these):", "", "| op | self ms per step | calls per step |",
                          "|---|---|---|"]
                lines += [f"| `{o['op']}` | {o['self_ms']} | {o['calls']} |" for o in by[name]["top_cpu"][:top]]
                lines.append("")
        base = by.get("tsn-audio") or by.get("tsn")
        if gpu and "tsam" in by and base and "gpu_ms_by_kernel" in base:
            a, b = by["tsam"]["gpu_ms_by_kernel"], base["gpu_ms_by_kernel"]
            diff = {k: a.get(k, 0.0) - b.get(k, 0.0) for k in set(a) | set(b)}
            keys = sorted(diff, key=lambda k: -abs(diff[k]))[:top]
            lines += [f"GPU kernels whose time differs most between tsam and {base['variant']}, {clips} clips "
                      "(ms per step):", "", f"| kernel | {base['variant']} | tsam | difference |", "|---|---|---|---|"]
            lines += [f"| `{k}` | {b.get(k, 0.0):.3f} | {a.get(k, 0.0):.3f} | {diff[k]:+.3f} |" for k in keys]
            lines.append("")
    return lines


def cpu_bound_summary(prof: list[dict], gpu: bool) -> list[str]:
    """One sentence per clip count: is the TSAM (default path) and the TSN step CPU-bound."""
    if not gpu:
        return ["**Is the step CPU-bound?** Not answerable from a CPU run (no GPU busy fraction): to be measured on "
                "a GPU.", ""]
    out = []
    for p in prof:
        if p["variant"] in ("tsam", "tsn"):
            out.append(f"- {p['variant']} at {p['clips']} clips: GPU busy {p['busy_fraction']} of the step -> "
                       f"**{p['verdict']}**.")
    return (["**Is the step CPU-bound?** (rule in the profile section)", ""] + out + [""]) if out else []


def shift_markdown(rows: list[dict]) -> list[str]:
    lines = ["## Shift op vs clone (ms per call, ratio to clone)", "",
             "| clips | stage (C, size) | same as reference | clone ms | TSAM fwd | TSAM fwd, eager twin | TSAM bwd | "
             "TSAM fwd keep | TSM fwd | TSM bwd | slices fwd | autograd fwd |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.get('clips', '-')} | {r['stage']} ({r['channels']}, {r['size']}) | "
                     f"{r.get('matches_reference', '-')} | {r['clone_ms']:.3f} | "
                     + " | ".join(f"{r[k + '_vs_clone']:.2f}x" if k + "_vs_clone" in r else "-"
                                  for k in ("tsam_fwd", "tsam_fwd_eager", "tsam_bwd", "tsam_fwd_keep", "tsm_fwd",
                                            "tsm_bwd", "tsam_slices_fwd", "tsam_autograd_fwd"))
                     + " |")
    return lines + [""]


def default_markdown(d: dict) -> list[str]:
    lines = ["## Default CUDA shift path", "",
             f"Rule (issue 20, item 6): {d['rule']}. `DEFAULT_CUDA_SHIFT_KERNEL` in `tsamlib/model/shift.py` is "
             f"{d['current']!r}.", ""]
    for mode in ("eager", "compiled"):
        if d.get(f"{mode}_ms"):
            lines.append(f"- {mode}, {d['clips']} clips, ms/step by path: "
                         + ", ".join(f"{k} {v:.2f}" for k, v in d[f"{mode}_ms"].items())
                         + f"; fastest: {d[f'{mode}_fastest']}.")
    return lines + [f"- **Decision: {d['decision']}.**", ""]


def train_markdown(res: dict) -> list[str]:
    lines = []
    t = res.get("train")
    if t is not None:
        lines += ["## The repository's training loop (`setup_training` + `fit`)", ""]
        if isinstance(t, dict) and t.get("skipped"):
            lines += [f"Not run: {t['skipped']}.", ""]
        else:
            lines += ["TSAM on a small synthetic dataset (64 px clips with sound, decoded by the real loaders, one "
                      "epoch, paper recipe, precision auto), one process; ms per training batch (synchronised) after "
                      f"the first {res['meta']['cfg']['train_warmup']} batches, against the bare eager `tsam` step "
                      "of the same size (fixed batch on the device, no loader).", "",
                      "| clips | ms/step | clips/s | bare step ms | vs bare step | timed batches | first batch s | "
                      "setup s | fit s (with validation) | precision |", "|---|---|---|---|---|---|---|---|---|---|"]
            for r in t:
                lines.append(f"| {r['clips']} | {_fmt(r['ms_per_step'])} | {_fmt(r['clips_per_s'])} | "
                             f"{_fmt(r.get('bare_ms_per_step'))} | {_fmt(r.get('vs_bare_step'))} | "
                             f"{r['timed_batches']} | {_fmt(r['first_batch_s'])} | {r['setup_s']} | {r['fit_s']} | "
                             f"{r['precision']} |")
            lines.append("")
    a = res.get("accelerate")
    if a is not None:
        lines += ["## accelerate launch", ""]
        if a.get("skipped"):
            lines += [f"Not run: {a['skipped']}.", ""]
        else:
            lines += [f"`{a['command']}` (TSAM, {a['clips']} clips per step, one epoch over the synthetic dataset): "
                      f"exit code {a['returncode']}, {a['wall_s']} s in all (start-up, data, training, validation), "
                      f"finished {a.get('finished')}, launch {a.get('launch')}, {a.get('train_steps')} training steps "
                      f"at {a.get('train_clips_per_s')} clips/s (epoch {a.get('epoch_wall_s')} s).", ""]
            if a.get("stderr_tail"):
                lines += ["```", a["stderr_tail"], "```", ""]
    return lines


def to_markdown(res: dict) -> str:
    m = res["meta"]
    cfg = m["cfg"]
    gpu = m["device"].startswith("cuda")
    if gpu and not cfg.get("small"):
        lines = [f"# GPU benchmark: {m['device_name']}", ""]
    else:
        lines = [f"# Smoke run of the GPU benchmark on {m['device_name']}: NOT GPU numbers", "",
                 "> These numbers come from a " + ("CPU" if not gpu else "GPU") + (" with the tiny `--small` settings"
                 if cfg.get("small") else "") + ". They show that every part runs and what the report looks like; "
                 "they say nothing about the GPU step. **The GPU numbers are still to be measured**: "
                 "`bash benchmarks/gpu_check.sh` on a lent GPU writes `results/benchmarks/gpu.md`.", ""]
    lines += [f"`{m['command']}`; commit {m['commit']}; torch {m['torch']}, triton {m['triton']}, CUDA {m['cuda']}, "
              f"{m['threads']} CPU threads of {m['cpus']}; {cfg['arch']}, {cfg['frames']} frames (+1 audio frame for "
              f"TSAM) at {cfg['img']} px, {', '.join(map(str, cfg['clips']))} clips per step; {cfg['rounds']} rounds "
              f"x {cfg['steps']} timed steps after {cfg['warmup']} warm-up steps per variant and clip count; "
              + ("fp16 autocast (no loss scaler), channels_last, cudnn.benchmark on" if gpu else "fp32, channels_last")
              + f", SGD with momentum; TSAM k={cfg['k']}, f_div 4, every 2nd block; {m['date']}; "
              f"{m.get('elapsed_s')} s in all; load average (1, 5, 15 min) {m.get('load_average_start')} at the start, "
              f"{m.get('load_average_now')} at the end.", ""]
    if not gpu:
        lines += ["On a shared CPU machine the step times of one variant spread widely (column spread: (slowest - "
                  "fastest) / median); differences between variants smaller than that spread mean nothing.", ""]
    lines += [f"- {note}" for note in res.get("notes", [])] + ([""] if res.get("notes") else [])
    lines += ["| variant | what | shift path here |", "|---|---|---|"]
    lines += [f"| {n} | {v['title']} | {v['path']} |" for n, v in m["variants"].items()] + [""]
    if res.get("eager"):
        lines += step_markdown(res["eager"], "eager", cfg["clips"], gpu, cfg["frames"])
    if res.get("compiled"):
        lines += step_markdown(res["compiled"], "compiled", sorted(cfg["clips"], reverse=True), gpu, cfg["frames"])
    if res.get("default_shift"):
        lines += default_markdown(res["default_shift"])
    if res.get("profile"):
        lines += cpu_bound_summary(res["profile"], gpu)
        lines += profile_markdown(res["profile"], cfg["clips"], gpu)
    if res.get("shift"):
        lines += shift_markdown(res["shift"])
        if res.get("eager"):
            lines += floor_markdown(traffic_floor(res))
    lines += train_markdown(res)
    if res.get("data"):
        lines += data_markdown(res["data"], m)
    if res.get("skipped_parts"):
        lines += ["## Parts not run", ""] + [f"- {k}: {v}" for k, v in res["skipped_parts"].items()] + [""]
    if res.get("errors"):
        lines += ["## Errors", ""] + [f"- {k}: {v}" for k, v in res["errors"].items()] + [""]
    return "\n".join(lines)


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
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cuda or cpu")
    ap.add_argument("--small", action="store_true",
                    help="tiny sizes for a try on CPU: resnet18, 4+1 frames, 32 px, 2 and 4 clips, 3 steps")
    ap.add_argument("--clips", type=int, nargs="+", help="clips per step (default: 8 32; --small: 2 4)")
    ap.add_argument("--variants", default=",".join(VARIANT_ORDER),
                    help=f"comma-separated, from {list(variants(FULL))}")
    ap.add_argument("--parts", default="shift,eager,profile,compiled,train,accelerate",
                    help="comma-separated: shift, eager, profile, compiled, train, accelerate, data")
    ap.add_argument("--no-compile", action="store_true", help="drop the compiled part (recorded as not run)")
    ap.add_argument("--budget", type=float, default=360,
                    help="seconds from the start after which no further compiled variant is started")
    ap.add_argument("--steps", type=int, help="timed steps per variant and round")
    ap.add_argument("--warmup", type=int, help="untimed steps before them")
    ap.add_argument("--rounds", type=int, help="rounds of the eager part (alternating order)")
    ap.add_argument("--profile-steps", type=int, help="profiled steps per variant and clip count")
    ap.add_argument("--train-steps", type=int, default=None, help="timed batches of the training-loop part")
    ap.add_argument("--workers", type=int, default=max(1, min(8, (os.cpu_count() or 2) - 1)),
                    help="loader processes of the training-loop parts")
    ap.add_argument("--clip-dir", type=Path, default=REPO.parent / "shared" / "kinetics-clips",
                    help="part 'data': folder of the real clips (videos/, training.txt, validation.txt)")
    ap.add_argument("--repeat", type=int, default=30, help="part 'data': copies of each training clip")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--render", type=Path, help="only rewrite the .md of this JSON (e.g. after editing the layout)")
    args = ap.parse_args(argv)
    if args.render:
        args.render.with_suffix(".md").write_text(to_markdown(json.loads(args.render.read_text())))
        return 0
    start = time.time()
    deadline = start + args.budget
    device = args.device
    cfg = dict(SMALL if args.small else FULL, small=args.small)
    for key in ("clips", "steps", "warmup", "rounds", "profile_steps"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    cfg["clips"] = list(cfg["clips"])
    cfg["train_warmup"] = 2
    cfg["train_steps"] = args.train_steps or (3 if args.small else 5)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    known = variants(cfg)
    if unknown := [n for n in names if n not in known]:
        ap.error(f"unknown variants {unknown}: choose from {list(known)}")
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest convolutions, as trainers do
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    from tsamlib.model.shift import DEFAULT_CUDA_SHIFT_KERNEL
    stem = "gpu" if device.startswith("cuda") and not args.small else \
        f"gpu_{device.split(':')[0]}" + ("_small" if args.small else "")
    meta = dict(command="python benchmarks/bench_gpu.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                device=device, device_name=torch.cuda.get_device_name() if device.startswith("cuda")
                else (platform.processor() or platform.machine()) + " CPU",
                commit=git_commit(), torch=torch.__version__, triton=triton_version, cuda=torch.version.cuda,
                python=platform.python_version(), cpus=os.cpu_count(), threads=torch.get_num_threads(),
                workers=args.workers, date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                load_average_start=[round(x, 2) for x in os.getloadavg()],
                default_cuda_shift_kernel=DEFAULT_CUDA_SHIFT_KERNEL, budget_s=args.budget, parts=parts,
                cfg={k: v for k, v in cfg.items() if k != "shapes"}, shapes=cfg["shapes"],
                variants={n: dict(title=known[n]["title"], model=known[n]["model"], kernel=known[n]["kernel"],
                                  recompute=known[n].get("recompute", True), path=shift_path(known[n], device))
                          for n in names})
    res: dict = dict(meta=meta, errors={}, skipped_parts={})
    args.out.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        res["meta"]["elapsed_s"] = round(time.time() - start, 1)
        res["meta"]["load_average_now"] = [round(x, 2) for x in os.getloadavg()]
        if res.get("eager") or res.get("compiled"):
            try:
                res["default_shift"] = choose_default(res)
            except Exception as e:
                res["errors"]["default_shift"] = _error(e)
        (args.out / f"{stem}.json").write_text(json.dumps(res, indent=1))
        (args.out / f"{stem}.md").write_text(to_markdown(res))

    def part(name: str, fn) -> None:
        print(f"== {name} ({time.time() - start:.0f} s)", flush=True)
        try:
            out = fn()
            if out is not None:
                res[name] = out
        except Exception as e:  # recorded, and the next part still runs
            traceback.print_exc()
            res["errors"][name] = _error(e)
        save()

    def keep(key: str):
        def store(value):
            res[key] = value
            save()
        return store

    if "shift" in parts:
        part("shift", lambda: [row for clips in cfg["clips"] for row in bench_shift(cfg, device, clips)])
    if "eager" in parts:
        def eager():
            def store(out):
                res["eager"], res["profile"] = out["rows"], out["profile"]
                save()
            out = bench_eager(cfg, device, names, "profile" in parts, store)
            res["profile"] = out["profile"]
            return out["rows"]
        part("eager", eager)
    elif "profile" in parts:
        res["skipped_parts"]["profile"] = "runs inside the eager part, which was not asked for"
    if "compiled" in parts and not args.no_compile:
        part("compiled", lambda: bench_compiled(cfg, device, names, deadline, keep("compiled")))
    elif "compiled" in parts or args.no_compile:
        res["skipped_parts"]["compiled"] = "not run: --no-compile"
    with tempfile.TemporaryDirectory(prefix="tsam-gpu-") as tmp_s:
        tmp = Path(tmp_s)
        want = [p for p in ("train", "accelerate") if p in parts]
        missing = missing_modules(*TRAIN_NEEDS) if want else []
        if want and missing:
            why = (f"needs {', '.join(TRAIN_NEEDS)}; missing here: {', '.join(missing)} (the GPU image has none of "
                   "fastai, PyAV, decord, librosa: carry them as wheels, see benchmarks/gpu_check.sh)")
            for p in want:
                res[p] = dict(skipped=why)
            save()
        elif want:
            manifest: list[Path] = []

            def dataset():
                t = time.perf_counter()
                manifest.append(synthetic_manifest(cfg, tmp, args.workers))
                return dict(manifest_rows=sum(1 for _ in open(manifest[0])) - 1,
                            seconds=round(time.perf_counter() - t, 1))
            part("dataset", dataset)
            bare = {r["clips"]: r["ms_per_step"] for r in res.get("eager") or []
                    if r["variant"] == "tsam" and "ms_per_step" in r}
            if manifest and "train" in parts:
                part("train", lambda: bench_train_loop(cfg, device, manifest[0], args.workers, tmp, bare))
            if manifest and "accelerate" in parts:
                part("accelerate", lambda: run_accelerate(cfg, manifest[0], args.workers, tmp, device))
        if "data" in parts:
            if not (args.clip_dir / "videos").is_dir():
                res["skipped_parts"]["data"] = f"no real clips at {args.clip_dir} (--clip-dir)"
            else:
                def data() -> dict:
                    dcfg = dict(cfg, batch=cfg["clips"][0])
                    prep = prepared_clips(args.clip_dir, tmp, min(args.repeat, 3) if args.small else args.repeat,
                                          args.workers)
                    d = {k: v for k, v in prep.items() if k != "manifests"}
                    d["loader_prepared_cold"] = loader_rate(prep["manifests"]["prepared"], dcfg, args.workers, None)
                    d["loader_prepared_cached"] = loader_rate(prep["manifests"]["prepared"], dcfg, args.workers,
                                                              tmp / "mels", passes=2)
                    try:
                        d["loader_mp4_cached"] = loader_rate(prep["manifests"]["mp4"], dcfg, args.workers,
                                                             tmp / "mels_mp4", passes=2)
                    except Exception as e:
                        d["loader_mp4_cached"] = dict(error=_error(e))
                    d["train_prepared"] = bench_training(dcfg, prep["manifests"]["prepared"], args.workers,
                                                         tmp / "mels")
                    return d
                part("data", data)
    save()
    print(to_markdown(res))
    print(f"wrote {args.out / stem}.md and .json", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
