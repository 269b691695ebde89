"""INT8 against fp32 ONNX Runtime per clip on the CPU: milliseconds on 1 and 2 threads, file sizes, agreement.

One TSAM model per arch (16 frames + the audio frame at 224 px, the report's causal shift as in bench_online), its
clip graph exported (:func:`tsamlib.model.onnx_export.export_model_onnx`) and quantized by
:func:`tsamlib.evaluation.quantize.quantize_checked` (static QDQ, per-channel weights, min-max calibration) on the
real Kinetics clips preprocessed as a run's test views are (centre clip and crop, the audio frame). Both graphs
then classify every real clip: top-1 agreement and max |logit difference|. The weights are seeded random ones
(no trained run's checkpoint is committed), so the agreement here is a property of this untrained model, not the
goal's measure on a trained run's validation set: ``export --int8`` measures that for a run.
Timings alternate fp32 / INT8 per repeat; medians.

    OMP_NUM_THREADS=1 python benchmarks/bench_int8.py     # writes results/benchmarks/int8.{json,md}
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tsamlib.data.audio import AudioFrame
from tsamlib.data.transforms import ClipTransform
from tsamlib.data.video import load_clip
from tsamlib.evaluation.quantize import quantize_checked
from tsamlib.model.onnx_export import export_model_onnx
from tsamlib.model.tsam import create_tsam, tsam_kwargs
from tsamlib.runs.provenance import environment_info

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "results" / "benchmarks"
SHIFT = dict(shift_depth=4, f_div=4, n_insert=2, m_insert=0, shift_direction="causal")


def clip_feeds(size: int) -> list[dict[str, np.ndarray]]:
    """The 12 real clips as batch-1 feeds: 16 centre-sampled frames, centre crop, and the audio frame."""
    root = Path(os.environ.get("TSAM_KINETICS_CLIPS", REPO.parent / "shared" / "kinetics-clips")) / "videos"
    videos = sorted(root.glob("*.mp4"))
    if not videos:
        sys.exit(f"no real clips at {root}: set TSAM_KINETICS_CLIPS")
    tfm, af = ClipTransform(size, round(size * 256 / 224), train=False), AudioFrame(size=(size, size))
    feeds = []
    for v in videos:
        frames, _ = load_clip(v, 16, "valid")
        feeds.append(dict(video=tfm(frames)[None].numpy(), audio=af(v)[0][None, None].numpy()))
    return feeds


def median_ms(sessions: dict, feed: dict, repeats: int) -> dict[str, float]:
    times = {k: [] for k in sessions}
    for s in sessions.values():
        s.run(None, feed)
    for _ in range(repeats):
        for k, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, feed)
            times[k].append(time.perf_counter() - t0)
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def bench_arch(arch: str, feeds: list[dict], repeats: int, tmp: Path) -> list[dict]:
    import onnxruntime as ort
    torch.manual_seed(0)
    model = create_tsam(arch, num_classes=400, n_frames=16, audio=True, **tsam_kwargs(SHIFT)).eval()
    f32 = export_model_onnx(model, tmp / f"{arch}.onnx", torch.from_numpy(feeds[0]["video"]),
                            torch.from_numpy(feeds[0]["audio"]))
    rep = quantize_checked(f32, tmp / f"{arch}.int8.onnx", feeds, feeds, min_agreement=0.0)
    rows = []
    for threads in (1, 2):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        sessions = {name: ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
                    for name, p in (("fp32", f32), ("int8", rep.path))}
        med = median_ms(sessions, feeds[0], repeats)
        rows.append(dict(arch=arch, threads=threads, fp32_ms=med["fp32"], int8_ms=med["int8"],
                         speedup=med["fp32"] / med["int8"], fp32_bytes=rep.fp32_bytes, int8_bytes=rep.int8_bytes,
                         bytes_ratio=rep.int8_bytes / rep.fp32_bytes, agreement=rep.agreement,
                         max_abs_diff=rep.max_abs_diff, n_clips=rep.n_eval))
        print(rows[-1], flush=True)
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", nargs="+", default=["resnet18"])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    load0 = os.getloadavg()[0]
    feeds = clip_feeds(args.size)
    with tempfile.TemporaryDirectory() as t:
        rows = [r for arch in args.archs for r in bench_arch(arch, feeds, args.repeats, Path(t))]
    import onnxruntime as ort
    env = environment_info()
    load = (round(load0, 1), round(os.getloadavg()[0], 1))
    record = dict(rows=rows, size=args.size, shift=SHIFT, repeats=args.repeats, git_commit=env.get("git_commit"),
                  torch=torch.__version__, onnxruntime=ort.__version__, cores=os.cpu_count(), load_average=load)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "int8.json").write_text(json.dumps(record, indent=1))
    lines = [f"# INT8 against fp32 ONNX Runtime per clip ({args.size} px, {os.cpu_count()} cores, onnxruntime "
             f"{ort.__version__}, commit {str(env.get('git_commit'))[:10]})", "",
             f"`OMP_NUM_THREADS=1 python benchmarks/bench_int8.py`. A TSAM clip (16 frames + audio, batch 1, causal "
             "k = 4 shift), static QDQ INT8 with per-channel weights calibrated on the 12 real clips; medians of "
             f"{args.repeats} alternating runs. Agreement: top-1 of INT8 against fp32 on the 12 real clips, for "
             "seeded random weights (no trained checkpoint is committed): not the goal's measure, which "
             "`export --int8` takes on a trained run's validation set. 1-minute load average "
             f"{load[0]} at the start, {load[1]} at the end (other jobs shared the cores when above 1).", "",
             "| arch | threads | fp32 ms | INT8 ms | fp32 / INT8 | fp32 MB | INT8 MB | INT8 / fp32 bytes | "
             "agreement | max abs logit diff |", "|" + "---|" * 10]
    for r in rows:
        lines.append(f"| {r['arch']} | {r['threads']} | {r['fp32_ms']:.0f} | {r['int8_ms']:.0f} | {r['speedup']:.2f} "
                     f"| {r['fp32_bytes'] / 1e6:.1f} | {r['int8_bytes'] / 1e6:.1f} | {r['bytes_ratio']:.2f} | "
                     f"{r['agreement']:.0%} ({r['n_clips']}) | {r['max_abs_diff']:.3g} |")
    worst = min(r["speedup"] for r in rows)
    big = max(r["bytes_ratio"] for r in rows)
    lines += ["", f"Goals: INT8 at least 1.8x faster than fp32 per clip: worst here {worst:.2f}x "
              f"({'met' if worst >= 1.8 else 'NOT met'}); at most 0.3x the bytes: {big:.2f}x "
              f"({'met' if big <= 0.3 else 'NOT met'}); agreement >= 98 % on a trained run: not measured here."]
    (args.out / "int8.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
