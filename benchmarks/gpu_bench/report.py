"""The benchmark's report: ``<stem>.json`` (every number) and ``<stem>.md`` (its tables), rewritten after every
part so that a run stopped by its timeout leaves every finished part on disk."""
from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path

from .settings import CPU_BOUND_RULE
from .shift_cases import traffic_floor
from .step_cases import choose_default
from .timing import error_text

__all__ = ["Record", "to_markdown", "step_markdown", "profile_markdown", "cpu_bound_summary", "shift_markdown",
           "default_markdown", "floor_markdown", "train_markdown", "data_markdown"]


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


class Record:
    """The benchmark's result as it grows (``res``: meta, one key per part, errors, parts not run), written to
    ``out/<stem>.json`` and ``out/<stem>.md`` by :meth:`save`."""

    def __init__(self, meta: dict, out: Path, stem: str, start: float):
        self.res: dict = dict(meta=meta, errors={}, skipped_parts={})
        self.out, self.stem, self.start = out, stem, start

    def save(self) -> None:
        res = self.res
        res["meta"]["elapsed_s"] = round(time.time() - self.start, 1)
        res["meta"]["load_average_now"] = [round(x, 2) for x in os.getloadavg()]
        if res.get("eager") or res.get("compiled"):
            try:
                res["default_shift"] = choose_default(res)
            except Exception as e:
                res["errors"]["default_shift"] = error_text(e)
        (self.out / f"{self.stem}.json").write_text(json.dumps(res, indent=1))
        (self.out / f"{self.stem}.md").write_text(to_markdown(res))

    def part(self, name: str, fn) -> None:
        """Run one part, keep what it returns under ``name``, and save; a part that fails is recorded."""
        print(f"== {name} ({time.time() - self.start:.0f} s)", flush=True)
        try:
            out = fn()
            if out is not None:
                self.res[name] = out
        except Exception as e:  # recorded, and the next part still runs
            traceback.print_exc()
            self.res["errors"][name] = error_text(e)
        self.save()

    def keep(self, key: str):
        """A callback for a part that saves as it goes: it stores its rows so far under ``key`` and saves."""
        def store(value):
            self.res[key] = value
            self.save()
        return store
