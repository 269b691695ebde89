"""Cost of the temporal shift against a plain ``x.clone()`` of the same tensor (goal: at most 1.2x).

For k = 1..5, 8 and 16 frames, on the inputs of the shifted convs of ResNet-50 (conv1 of the bottlenecks of
each stage), forward and forward+backward. A naive version (clone, then one slice copy per group, as most
TSM ports write it) is measured beside it. Timings are interleaved (clone, shift, naive, clone, ...) and
the medians compared, so machine noise hits all three alike.

    python benchmarks/bench_shift.py              # batch of 8 clips: writes results/benchmarks/shift_b8.{json,md}
    python benchmarks/bench_shift.py --batch 1    # one clip: the fixed cost of the 4k+2 copies shows most
    python benchmarks/bench_shift.py --naive-backward   # also the naive version's forward+backward (slow)
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from pathlib import Path

import torch

from tsamlib.model.shift import temporal_shift

OUT = Path(__file__).resolve().parents[1] / "results" / "benchmarks"
# (channels, size) at the input of a shifted conv1 in each ResNet-50 stage (after its first block)
STAGES = {"layer1": (256, 56), "layer2": (512, 28), "layer3": (1024, 14), "layer4": (2048, 7)}


def naive_shift(x: torch.Tensor, k: int, f_div: int) -> torch.Tensor:
    """The slice-copy version: clone everything, then overwrite each group (writes the moved part twice)."""
    out = x.clone()
    t, f = x.shape[1], (x.shape[2] // f_div) // k
    for d in range(1, k + 1):
        a, b, c = (2 * d - 2) * f, (2 * d - 1) * f, 2 * d * f
        out[:, : t - d, a:b] = x[:, d:, a:b]
        out[:, t - d :, a:b] = 0
        out[:, d:, b:c] = x[:, : t - d, b:c]
        out[:, :d, b:c] = 0
    return out


def timed(fn, x, grad, backward: bool) -> float:
    start = time.perf_counter()
    y = fn(x)
    if backward:
        y.backward(grad)
    return time.perf_counter() - start


def measure(c: int, hw: int, frames: int, k: int, backward: bool, repeats: int, batch: int, f_div: int = 4,
            naive: bool = True) -> dict:
    x = torch.randn(batch, frames, c, hw, hw, requires_grad=backward)
    grad = torch.randn_like(x) if backward else None
    fns = {"clone": lambda t: t.clone(), "shift": lambda t: temporal_shift(t, k, f_div)}
    if naive:
        fns["naive"] = lambda t: naive_shift(t, k, f_div)
    times = {name: [] for name in fns}
    for name, fn in fns.items():  # warm-up
        timed(fn, x, grad, backward)
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed(fn, x, grad, backward))
            x.grad = None
    med = {name: statistics.median(v) for name, v in times.items()}
    nan = float("nan")
    return dict(channels=c, size=hw, frames=frames, k=k, backward=backward, clone_ms=med["clone"] * 1e3,
                shift_ms=med["shift"] * 1e3, naive_ms=med.get("naive", nan) * 1e3,
                shift_ratio=med["shift"] / med["clone"], naive_ratio=med.get("naive", nan) / med["clone"])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--batch", type=int, default=8, help="clips per batch")
    ap.add_argument("--naive-backward", action="store_true",
                    help="also time the naive version's forward+backward (slow: 6-40x a clone)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: as a data-parallel worker)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    repeats = 5 if args.quick else 15
    rows = []
    for frames in (8, 16):
        for backward in (False, True):
            for k in range(1, 6):
                for stage, (c, hw) in STAGES.items():
                    r = measure(c, hw, frames, k, backward, repeats, args.batch,
                                naive=not backward or args.naive_backward)
                    rows.append(dict(stage=stage, **r))
                    print(f"T={frames:2d} k={k} {'fwd+bwd' if backward else 'fwd    '} {stage}: "
                          f"shift {r['shift_ratio']:.3f}x clone, naive {r['naive_ratio']:.3f}x", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    meta = dict(torch=torch.__version__, threads=args.threads, repeats=repeats, machine=platform.machine(),
                processor=platform.processor(), f_div=4, batch=args.batch)
    (OUT / f"shift_b{args.batch}.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
    lines = ["| frames | pass | k | median shift/clone (worst stage) | median naive/clone (worst stage) |",
             "|---|---|---|---|---|"]
    for frames in (8, 16):
        for backward in (False, True):
            for k in range(1, 6):
                sel = [r for r in rows if r["frames"] == frames and r["backward"] == backward and r["k"] == k]
                s = [r["shift_ratio"] for r in sel]
                n = [r["naive_ratio"] for r in sel]
                lines.append(f"| {frames} | {'fwd+bwd' if backward else 'fwd'} | {k} | "
                             f"{statistics.median(s):.3f} ({max(s):.3f}) | " +
                             (f"{statistics.median(n):.3f} ({max(n):.3f}) |" if not any(map(math.isnan, n)) else "- |"))
    table = "\n".join(lines)
    (OUT / f"shift_b{args.batch}.md").write_text(f"Temporal shift vs clone, CPU, batch {args.batch}, {args.threads} "
                                                 f"thread(s), torch {torch.__version__}, medians of {repeats} "
                                                 f"interleaved repeats over the 4 ResNet-50 stages\n\n{table}\n")
    print(table)
    worst = max(r["shift_ratio"] for r in rows)
    print(f"worst shift/clone ratio over all {len(rows)} cases: {worst:.3f}")


if __name__ == "__main__":
    main()
