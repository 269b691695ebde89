"""The training-step cases: every variant eager (rounds in alternating order, profiled in the last), then
``torch.compile`` while the time budget lasts, with ratios to TSN; and the default CUDA shift path they decide."""
from __future__ import annotations

import statistics
import time
import traceback

import torch

from .settings import COMPILE_ORDER, SHIFT_PATHS, shift_path, variants
from .timing import error_text, measure, reset_peak

__all__ = ["add_ratios", "bench_eager", "compile_key", "bench_compiled", "choose_default"]


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
                    errors[name] = error_text(e)
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
                                 error=error_text(e)))
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
    """The default CUDA shift path by the benchmark's rule: the fastest eager TSAM step among the shift paths at the
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
