"""The GPU benchmark's settings: the sizes of a full and a ``--small`` run, the variants it times (and the model of
each), and the rule that says whether a step is CPU-bound."""
from __future__ import annotations

from pathlib import Path

__all__ = ["REPO", "OUT", "STAGE_SHAPES", "SMALL_SHAPES", "FULL", "SMALL", "VARIANT_ORDER", "COMPILE_ORDER",
           "SHIFT_PATHS", "CPU_BOUND", "GPU_BOUND", "CPU_BOUND_RULE", "variants", "shift_path", "create_model"]

REPO = Path(__file__).resolve().parents[2]
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
