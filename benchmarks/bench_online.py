"""Online TSAM on the CPU: milliseconds per streamed frame against a plain 2D ResNet frame, and ONNX Runtime
against PyTorch per clip (goal: the streaming shift adds at most 10 % to a frame).

Per arch (resnet18, resnet50) at 224 px, with 1 thread and with every core:
- ``plain``: the timm ResNet's forward on one frame (no shift, no buffers): what any per-frame 2D model costs;
- ``stream``: :class:`tsamlib.model.online.StreamingTSAM` ``step`` on one frame, the report's shift made causal
  (k = 4, f_div = 4, every 2nd block), buffers full (after k warm-up frames), logits included;
- per clip (16 frames + the audio frame, batch 1): PyTorch eager ``model(video, audio)`` against ONNX Runtime on
  the exported graph (:func:`tsamlib.model.onnx_export.export_model_onnx`);
- in ONNX Runtime, the deployed forms: the plain frame's graph against one step of the stream graph
  (:func:`tsamlib.evaluation.export.write_stream_onnx`, a video-only causal model, state full), fp32 and INT8, and
  the clip graph in INT8 (:func:`tsamlib.evaluation.quantize.quantize_checked`, static QDQ, per-channel weights)
  with the file sizes. INT8 is calibrated here on random inputs: these rows time it; its agreement with fp32 is
  measured on real clips by ``bench_int8.py`` and, for a trained run, by ``export --int8``.
Timings alternate between the variants and the medians are compared, so machine noise hits them alike.

    python benchmarks/bench_online.py            # writes results/benchmarks/online.{json,md}
    python benchmarks/bench_online.py --quick    # fewer repeats, resnet18 only (a smoke test)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from tsamlib.model.online import StreamingTSAM
from tsamlib.model.onnx_export import export_model_onnx
from tsamlib.model.tsam import create_backbone, create_tsam, tsam_kwargs
from tsamlib.runs.provenance import environment_info

OUT = Path(__file__).resolve().parents[1] / "results" / "benchmarks"
SHIFT = dict(shift_depth=4, f_div=4, n_insert=2, m_insert=0, shift_direction="causal")


def _median_ms(fns: dict, repeats: int) -> dict[str, float]:
    """Median milliseconds of each function, called in turn ``repeats`` times after one warm-up call each."""
    times = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: 1e3 * statistics.median(v) for name, v in times.items()}


@torch.no_grad()
def frame_costs(arch: str, size: int, repeats: int) -> dict[str, float]:
    model = create_tsam(arch, num_classes=400, n_frames=16, audio=True, **tsam_kwargs(SHIFT)).eval()
    plain = create_backbone(arch, num_classes=400)[0].eval()   # the timm ResNet alone: a plain 2D frame
    stream = StreamingTSAM(model)
    frame = torch.randn(1, 3, size, size)
    for _ in range(SHIFT["shift_depth"] + 1):   # buffers full, audio features in place
        stream.step(frame, torch.randn(1, 3, size, size) if stream.frames == 0 else None)
    med = _median_ms({"plain": lambda: plain(frame), "stream": lambda: stream.step(frame)}, repeats)
    return dict(plain_ms=med["plain"], stream_ms=med["stream"], ratio=med["stream"] / med["plain"],
                state_mb=stream.state_bytes() / 1e6)


@torch.no_grad()
def clip_costs(arch: str, size: int, repeats: int) -> dict[str, float]:
    import onnxruntime as ort
    model = create_tsam(arch, num_classes=400, n_frames=16, audio=True, **tsam_kwargs(SHIFT)).eval()
    video, audio = torch.randn(1, 16, 3, size, size), torch.randn(1, 1, 3, size, size)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_model_onnx(model, Path(tmp) / "m.onnx", video, audio)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        feed = {"video": video.numpy(), "audio": audio.numpy()}
        diff = float((torch.from_numpy(session.run(None, feed)[0]) - model(video, audio)).abs().max())
        med = _median_ms({"eager": lambda: model(video, audio), "onnxruntime": lambda: session.run(None, feed)},
                         repeats)
    return dict(eager_ms=med["eager"], onnxruntime_ms=med["onnxruntime"], ratio=med["onnxruntime"] / med["eager"],
                max_abs_diff=diff)


def _session(path: Path, threads: int):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@torch.no_grad()
def onnx_graphs(arch: str, size: int, tmp: Path) -> dict[str, Path | int]:
    """The plain frame, the stream step (fp32, INT8) and the clip (fp32, INT8) as ONNX files, and their sizes."""
    import numpy as np

    from tsamlib.evaluation.export import write_stream_onnx
    from tsamlib.evaluation.onnx_stream import OnnxStream
    from tsamlib.evaluation.quantize import quantize_checked
    torch.manual_seed(0)
    frame = torch.randn(1, 3, size, size)
    plain = create_backbone(arch, num_classes=400)[0].eval()
    torch.onnx.export(plain, (frame,), str(tmp / "plain.onnx"), input_names=["frame"], output_names=["logits"],
                      opset_version=17, dynamo=False)
    video_model = create_tsam(arch, num_classes=400, n_frames=16, audio=False, **tsam_kwargs(SHIFT)).eval()
    write_stream_onnx(video_model, tmp / "stream.onnx", frame)
    stream, rng = OnnxStream(tmp / "stream.onnx"), np.random.default_rng(0)
    stream.record = []
    for _ in range(12):   # calibration: a random 12-frame stream's every step
        stream.step(rng.standard_normal((1, 3, size, size), dtype=np.float32))
    feeds = stream.record
    quantize_checked(tmp / "stream.onnx", tmp / "stream.int8.onnx", feeds, feeds[-2:], min_agreement=0.0)
    model = create_tsam(arch, num_classes=400, n_frames=16, audio=True, **tsam_kwargs(SHIFT)).eval()
    clips = [dict(video=rng.standard_normal((1, 16, 3, size, size), dtype=np.float32),
                  audio=rng.standard_normal((1, 1, 3, size, size), dtype=np.float32)) for _ in range(4)]
    export_model_onnx(model, tmp / "clip.onnx", *(torch.from_numpy(clips[0][k]) for k in ("video", "audio")))
    quantize_checked(tmp / "clip.onnx", tmp / "clip.int8.onnx", clips, clips[:1], min_agreement=0.0)
    return dict(step_feed=feeds[-1], clip_feed=clips[0], **{k: tmp / f"{k}.onnx" for k in
                                                    ("plain", "stream", "stream.int8", "clip", "clip.int8")})


def onnx_costs(graphs: dict, threads: int, repeats: tuple[int, int]) -> dict[str, float]:
    """Median ms of each graph in ONNX Runtime with ``threads`` threads, variants alternating; sizes in MB."""
    s = {k: _session(graphs[k], threads) for k in ("plain", "stream", "stream.int8", "clip", "clip.int8")}
    frame = {"frame": graphs["step_feed"]["frame"]}
    step = graphs["step_feed"]   # a step with the state full (the 12th)
    f = _median_ms({"plain": lambda: s["plain"].run(None, frame), "stream": lambda: s["stream"].run(None, step),
                    "stream_int8": lambda: s["stream.int8"].run(None, step)}, repeats[0])
    c = _median_ms({"fp32": lambda: s["clip"].run(None, graphs["clip_feed"]),
                    "int8": lambda: s["clip.int8"].run(None, graphs["clip_feed"])}, repeats[1])
    mb = {k: graphs[k].stat().st_size / 1e6 for k in ("stream", "stream.int8", "clip", "clip.int8")}
    return dict(ort_plain_ms=f["plain"], ort_stream_ms=f["stream"], ort_stream_int8_ms=f["stream_int8"],
                ort_stream_ratio=f["stream"] / f["plain"], ort_clip_ms=c["fp32"], ort_clip_int8_ms=c["int8"],
                int8_speedup=c["fp32"] / c["int8"], clip_mb=mb["clip"], clip_int8_mb=mb["clip.int8"],
                stream_mb=mb["stream"], stream_int8_mb=mb["stream.int8"])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="resnet18 only, few repeats (smoke test)")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    archs = ["resnet18"] if args.quick else ["resnet18", "resnet50"]
    repeats = (3, 2) if args.quick else (30, 8)
    cores = os.cpu_count() or 1
    load_start = os.getloadavg()[0]
    rows = []
    for arch in archs:
        with tempfile.TemporaryDirectory() as tmp:
            graphs = onnx_graphs(arch, args.size, Path(tmp))
            for threads in sorted({1, cores}):
                torch.set_num_threads(threads)
                torch.manual_seed(0)
                rows.append(dict(arch=arch, threads=threads, **frame_costs(arch, args.size, repeats[0]),
                                 **{f"clip_{k}": v for k, v in clip_costs(arch, args.size, repeats[1]).items()},
                                 **onnx_costs(graphs, threads, repeats)))
                print(rows[-1], flush=True)
    env = environment_info()
    load = (load_start, os.getloadavg()[0])
    record = dict(size=args.size, shift=SHIFT, rows=rows, machine=platform.processor() or platform.machine(),
                  cores=cores, torch=torch.__version__, git_commit=env.get("git_commit"), quick=args.quick,
                  load_average=load)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "online_quick" if args.quick else "online"
    (args.out / f"{name}.json").write_text(json.dumps(record, indent=1))
    lines = [f"# Online TSAM on the CPU ({args.size} px, {cores} cores, torch {torch.__version__}, commit "
             f"{str(env.get('git_commit'))[:10]})", "",
             "`python benchmarks/bench_online.py`. Medians of alternating timings. Per frame: a plain 2D ResNet "
             "frame (timm backbone) against `StreamingTSAM.step` (the report's shift made causal: k = 4, f_div = 4, "
             "every 2nd block; buffers full; logits included). Per clip (16 frames + audio, batch 1): PyTorch eager "
             f"against ONNX Runtime on the exported graph. 1-minute load average {load[0]:.1f} at the start, "
             f"{load[1]:.1f} at the end (other jobs shared the cores when above 1: absolute times are inflated, the "
             "ratios of alternating timings hold better).", "",
             "| arch | threads | plain frame ms | stream frame ms | stream / plain | state MB | clip eager ms | "
             "clip onnxruntime ms | onnxruntime / eager | max abs diff |", "|" + "---|" * 10]
    for r in rows:
        lines.append(f"| {r['arch']} | {r['threads']} | {r['plain_ms']:.1f} | {r['stream_ms']:.1f} | "
                     f"{r['ratio']:.3f} | {r['state_mb']:.1f} | {r['clip_eager_ms']:.0f} | "
                     f"{r['clip_onnxruntime_ms']:.0f} | {r['clip_ratio']:.3f} | {r['clip_max_abs_diff']:.1e} |")
    worst = max(r["ratio"] for r in rows)
    lines += ["", f"Goal: the streaming shift adds at most 10 % to a frame. Worst stream / plain here: {worst:.3f} "
              f"({'met' if worst <= 1.10 else 'NOT met'}).", "",
              "Deployed in ONNX Runtime (the same threads): the plain frame's graph against one step of the stream "
              "graph (`export --stream`: video only, state full, state in and out), fp32 and INT8; the clip graph "
              "(16 frames + audio) fp32 against INT8 (static QDQ, per-channel weights, calibrated on random inputs: "
              "timing only; agreement on real clips in `int8.md`, on a trained run by `export --int8`).", "",
              "| arch | threads | plain frame ms | stream step ms | stream / plain | stream step INT8 ms | "
              "clip fp32 ms | clip INT8 ms | fp32 / INT8 | clip MB fp32 / INT8 | stream MB fp32 / INT8 |",
              "|" + "---|" * 11]
    for r in rows:
        lines.append(f"| {r['arch']} | {r['threads']} | {r['ort_plain_ms']:.1f} | {r['ort_stream_ms']:.1f} | "
                     f"{r['ort_stream_ratio']:.3f} | {r['ort_stream_int8_ms']:.1f} | {r['ort_clip_ms']:.0f} | "
                     f"{r['ort_clip_int8_ms']:.0f} | {r['int8_speedup']:.2f} | {r['clip_mb']:.1f} / "
                     f"{r['clip_int8_mb']:.1f} | {r['stream_mb']:.1f} / {r['stream_int8_mb']:.1f} |")
    s_worst = max(r["ort_stream_ratio"] for r in rows)
    i_worst = min(r["int8_speedup"] for r in rows)
    b_worst = max(r["clip_int8_mb"] / r["clip_mb"] for r in rows)
    lines += ["", f"Goals: the ONNX stream step within 1.1x a plain frame in ONNX Runtime: worst {s_worst:.3f} "
              f"({'met' if s_worst <= 1.10 else 'NOT met'}); INT8 at least 1.8x faster than fp32 per clip: worst "
              f"{i_worst:.2f}x ({'met' if i_worst >= 1.8 else 'NOT met'}); at most 0.3x the bytes: {b_worst:.2f}x "
              f"({'met' if b_worst <= 0.3 else 'NOT met'}); >= 98 % agreement on a trained run: not measured here "
              "(no trained checkpoint is committed)."]
    (args.out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
