"""The timing harness: one fixed batch per model, synchronised step times, peak memory, and torch.profiler's view of
a step (GPU busy fraction, the CPU-side ops with the most time)."""
from __future__ import annotations

import contextlib
import os
import statistics
import time

import torch
import torch.nn.functional as F

from .settings import CPU_BOUND, GPU_BOUND, create_model

__all__ = ["Timer", "error_text", "shift_kernel_env", "peak_gib", "reset_peak", "build", "train_step", "timed_steps",
           "measure", "profile_model", "cpu_bound_verdict"]


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


def error_text(e: BaseException) -> str:
    """An exception in one line for the report: its type and the start of its message."""
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
