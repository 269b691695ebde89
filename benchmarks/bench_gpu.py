"""GPU benchmark: what does TSAM's shift cost a training step, which shift path is fastest, and is
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
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))   # its parts, in gpu_bench/ beside it, wherever it is run
from gpu_bench.real_clips import real_clip_rates  # noqa: E402
from gpu_bench.report import Record, to_markdown  # noqa: E402
from gpu_bench.settings import FULL, OUT, REPO, SMALL, VARIANT_ORDER, shift_path, variants  # noqa: E402
from gpu_bench.shift_cases import bench_shift  # noqa: E402
from gpu_bench.step_cases import bench_compiled, bench_eager  # noqa: E402
from gpu_bench.training import TRAIN_NEEDS, bench_train_loop, missing_modules, run_accelerate  # noqa: E402
from gpu_bench.training import synthetic_manifest  # noqa: E402

from tsamlib.runs.provenance import git  # noqa: E402

__all__ = ["main"]


def git_commit() -> str:
    """HEAD of the repository (``+ uncommitted changes`` when the tree differs), or ``$TSAM_BENCH_COMMIT`` where the
    copy has no git (a device machine gets the working tree without its history)."""
    head = git("rev-parse", "HEAD")
    if head is None:
        return os.environ.get("TSAM_BENCH_COMMIT", "unknown (no git here; set TSAM_BENCH_COMMIT)")
    return head + (" + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def parser() -> argparse.ArgumentParser:
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
    return ap


def settings(args: argparse.Namespace) -> dict:
    """The sizes of this run: FULL or SMALL, with the flags that override them."""
    cfg = dict(SMALL if args.small else FULL, small=args.small)
    for key in ("clips", "steps", "warmup", "rounds", "profile_steps"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    cfg["clips"] = list(cfg["clips"])
    cfg["train_warmup"] = 2
    cfg["train_steps"] = args.train_steps or (3 if args.small else 5)
    return cfg


def run_meta(args: argparse.Namespace, argv, cfg: dict, names: list[str], parts: list[str]) -> dict:
    """What was measured, where and with what: the record's ``meta``."""
    from tsamlib.model.shift import DEFAULT_CUDA_SHIFT_KERNEL
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    device, known = args.device, variants(cfg)
    return dict(command="python benchmarks/bench_gpu.py " + " ".join(argv if argv is not None else sys.argv[1:]),
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


def model_parts(rec: Record, cfg: dict, args: argparse.Namespace, names: list[str], parts: list[str],
                deadline: float) -> None:
    """Parts 1-4 on fixed batches: the shift op, the eager steps (profiled inside), the compiled steps."""
    device = args.device
    if "shift" in parts:
        rec.part("shift", lambda: [row for clips in cfg["clips"] for row in bench_shift(cfg, device, clips)])
    if "eager" in parts:
        def eager():
            def store(out):   # saved after every clip count: a run stopped by its timeout keeps them
                rec.res["eager"], rec.res["profile"] = out["rows"], out["profile"]
                rec.save()
            out = bench_eager(cfg, device, names, "profile" in parts, store)
            rec.res["profile"] = out["profile"]
            return out["rows"]
        rec.part("eager", eager)
    elif "profile" in parts:
        rec.res["skipped_parts"]["profile"] = "runs inside the eager part, which was not asked for"
    if "compiled" in parts and not args.no_compile:
        rec.part("compiled", lambda: bench_compiled(cfg, device, names, deadline, rec.keep("compiled")))
    elif "compiled" in parts or args.no_compile:
        rec.res["skipped_parts"]["compiled"] = "not run: --no-compile"


def training_parts(rec: Record, cfg: dict, args: argparse.Namespace, parts: list[str], tmp: Path) -> None:
    """Parts 5-6 over a synthetic dataset made for them, or each recorded as not run, naming what is missing."""
    want = [p for p in ("train", "accelerate") if p in parts]
    missing = missing_modules(*TRAIN_NEEDS) if want else []
    if want and missing:
        why = (f"needs {', '.join(TRAIN_NEEDS)}; missing here: {', '.join(missing)} (the GPU image has none of "
               "fastai, PyAV, decord, librosa: carry them as wheels, see benchmarks/gpu_check.sh)")
        for p in want:
            rec.res[p] = dict(skipped=why)
        rec.save()
        return
    if not want:
        return
    manifest: list[Path] = []

    def dataset():
        t = time.perf_counter()
        manifest.append(synthetic_manifest(cfg, tmp, args.workers))
        return dict(manifest_rows=sum(1 for _ in open(manifest[0])) - 1,
                    seconds=round(time.perf_counter() - t, 1))
    rec.part("dataset", dataset)
    bare = {r["clips"]: r["ms_per_step"] for r in rec.res.get("eager") or []   # the loop against the bare step
            if r["variant"] == "tsam" and "ms_per_step" in r}
    if manifest and "train" in parts:
        rec.part("train", lambda: bench_train_loop(cfg, args.device, manifest[0], args.workers, tmp, bare))
    if manifest and "accelerate" in parts:
        rec.part("accelerate", lambda: run_accelerate(cfg, manifest[0], args.workers, tmp, args.device))


def data_part(rec: Record, cfg: dict, args: argparse.Namespace, tmp: Path) -> None:
    """Part 7 over the real clips of ``--clip-dir``, or recorded as not run where there are none."""
    if not (args.clip_dir / "videos").is_dir():
        rec.res["skipped_parts"]["data"] = f"no real clips at {args.clip_dir} (--clip-dir)"
        return
    repeat = min(args.repeat, 3) if args.small else args.repeat
    rec.part("data", lambda: real_clip_rates(cfg, args.clip_dir, tmp, repeat, args.workers))


def main(argv=None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    if args.render:
        args.render.with_suffix(".md").write_text(to_markdown(json.loads(args.render.read_text())))
        return 0
    start = time.time()
    deadline = start + args.budget
    device = args.device
    cfg = settings(args)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    known = variants(cfg)
    if unknown := [n for n in names if n not in known]:
        ap.error(f"unknown variants {unknown}: choose from {list(known)}")
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest convolutions, as trainers do
    # a CPU or --small run never overwrites the GPU record
    stem = "gpu" if device.startswith("cuda") and not args.small else \
        f"gpu_{device.split(':')[0]}" + ("_small" if args.small else "")
    rec = Record(run_meta(args, argv, cfg, names, parts), args.out, stem, start)
    args.out.mkdir(parents=True, exist_ok=True)
    model_parts(rec, cfg, args, names, parts, deadline)
    with tempfile.TemporaryDirectory(prefix="tsam-gpu-") as tmp_s:
        training_parts(rec, cfg, args, parts, Path(tmp_s))
        if "data" in parts:
            data_part(rec, cfg, args, Path(tmp_s))
    rec.save()
    print(to_markdown(rec.res))
    print(f"wrote {args.out / stem}.md and .json", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
