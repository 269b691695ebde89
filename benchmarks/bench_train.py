"""Training throughput, side by side: TSAM against the same model with shift_depth 0 (TSN, no shift) and against
the same model with the shift written as naive slice copies. Goal: the shift costs at most 3 % of clips/s.

Training steps (forward, backward, SGD step) on fixed random clips, so only the model differs; the variants
are interleaved round by round and the median step time of each is compared.

    python benchmarks/bench_train.py                      # the notebooks' CPU config (resnet18, 8 frames, 64 px)
    python benchmarks/bench_train.py --arch resnet50 --img-size 112 --batch 4
Writes results/benchmarks/train_<arch>_<frames>f_<size>px.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_shift import naive_shift  # noqa: E402

from tsamlib.model.shift import TemporalShift  # noqa: E402
from tsamlib.model.shift_reference import ShiftSpec  # noqa: E402
from tsamlib.model.tsam import create_tsam  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "results" / "benchmarks"


class NaiveShift(TemporalShift):
    """The same wrapper with the shift as clone + slice copies (autograd through the slices)."""

    def forward(self, x):
        bt, c, h, w = x.shape
        x5 = x.view(bt // self.n_segments, self.n_segments, c, h, w)
        return self.net(naive_shift(x5, self.shift.depth, self.shift.f_div).view(bt, c, h, w))


def build(variant: str, args) -> torch.nn.Module:
    torch.manual_seed(0)
    k = 0 if variant == "tsn (k=0)" else args.shift_depth
    m = create_tsam(args.arch, num_classes=10, n_frames=args.frames, audio=False,
                    shift=ShiftSpec(depth=k, f_div=args.f_div), n_insert=args.n_insert)
    if variant == "naive shift":
        for mod in list(m.modules()):
            for name, child in list(mod.named_children()):
                if isinstance(child, TemporalShift):
                    naive = NaiveShift(child.net, child.n_segments, child.shift)
                    setattr(mod, name, naive)
    return m.train()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--shift-depth", type=int, default=4)
    ap.add_argument("--f-div", type=int, default=4)
    ap.add_argument("--n-insert", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=3, help="steps per variant per round")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    variants = ["tsam", "tsn (k=0)", "naive shift"]
    models = {v: build(v, args) for v in variants}
    opts = {v: torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9) for v, m in models.items()}
    x = torch.randn(args.batch, args.frames, 3, args.img_size, args.img_size)
    y = torch.randint(0, 10, (args.batch,))
    times = {v: [] for v in variants}

    def step(v):
        opts[v].zero_grad()
        torch.nn.functional.cross_entropy(models[v](x), y).backward()
        opts[v].step()

    for v in variants:  # warm-up
        step(v)
    for r in range(args.rounds):
        for v in variants:
            for _ in range(args.steps):
                t = time.perf_counter()
                step(v)
                times[v].append(time.perf_counter() - t)
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{v} {statistics.median(times[v]) * 1e3:.0f} ms"
                                                            for v in variants), flush=True)
    med = {v: statistics.median(t) for v, t in times.items()}
    clips = {v: args.batch / med[v] for v in variants}
    rows = [dict(variant=v, median_step_ms=med[v] * 1e3, clips_per_s=clips[v],
                 throughput_vs_tsn=clips[v] / clips["tsn (k=0)"]) for v in variants]
    name = f"train_{args.arch}_{args.frames}f_{args.img_size}px"
    meta = dict(vars(args), torch=torch.__version__, device="cpu")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
    table = "\n".join(["| variant | median step (ms) | clips/s | throughput vs TSN |", "|---|---|---|---|"] +
                      [f"| {r['variant']} | {r['median_step_ms']:.1f} | {r['clips_per_s']:.2f} | "
                       f"{r['throughput_vs_tsn']:.3f} |" for r in rows])
    (OUT / f"{name}.md").write_text(
        f"Training step, CPU {args.threads} threads, {args.arch}, {args.frames} frames, {args.img_size} px, batch "
        f"{args.batch}, shift k={args.shift_depth} f_div={args.f_div} n_insert={args.n_insert}; medians of "
        f"{args.rounds * args.steps} interleaved steps\n\n{table}\n")
    print(table)
    print(f"shift cost: {100 * (1 - clips['tsam'] / clips['tsn (k=0)']):.1f} % of TSN throughput "
          f"(naive: {100 * (1 - clips['naive shift'] / clips['tsn (k=0)']):.1f} %)")


if __name__ == "__main__":
    main()
