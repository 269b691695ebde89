"""The shift op on its own: its cost against ``x.clone()`` at every ResNet stage shape, and the least extra time a
shift kernel can add to a training step (the memory-traffic floor), from those clone times."""
from __future__ import annotations

import functools
import statistics

import torch

from .settings import create_model, shift_path, variants
from .timing import Timer

__all__ = ["bench_shift", "shifted_inputs", "traffic_floor"]


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
