#!/usr/bin/env bash
# The GPU benchmark in one call on a lent GPU (about 7 minutes, never more than 8):
#
#     TSAM_BENCH_COMMIT=<git rev-parse HEAD> bash benchmarks/gpu_check.sh        # as the device tool's command,
#                                                                                # timeout_s 540
#
# Writes gpu.json, gpu.md and gpu_log.txt into $OUT (the device tool's folder that comes back) or, without $OUT,
# into results/benchmarks/. Copy gpu.json and gpu.md into results/benchmarks/, then set
# DEFAULT_CUDA_SHIFT_KERNEL in tsamlib/model/shift.py to the path gpu.md's section "Default CUDA shift path" names.
# The device copy of the tree has no .git: TSAM_BENCH_COMMIT records the commit that was measured.
#
# What runs: benchmarks/bench_gpu.py at 8 and 32 clips per step (ResNet-50, 16+1 frames, 224 px): the shift op
# against clone, every variant eager (with torch.profiler: GPU busy fraction, top CPU-side ops), then torch.compile
# of the variants, 32 clips first, while the time budget lasts (a compiled variant starts only within BUDGET seconds
# of the benchmark's start; one takes about a minute to compile). The training-loop parts (the repository's loop and
# `accelerate launch`) need fastai, PyAV, decord and librosa, which the GPU image lacks: they are recorded as not
# run, unless wheels of them lie in .whl/ (carried with the call, installed here first); then run them in a second
# call, PARTS=eager,train,accelerate, as the first call has no time left for them.
#
# Settings by environment: PARTS (default shift,eager,profile,compiled,train,accelerate), BUDGET (330), STEPS (15),
# DEVICE (cuda), BENCH_ARGS (more flags, e.g. "--small" for a try of this script on a CPU: DEVICE=cpu).
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR="${OUT:-results/benchmarks}"
mkdir -p "$OUTDIR"
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>&1 | tee "$OUTDIR/gpu_log.txt"
# shellcheck disable=SC2086  # BENCH_ARGS: several flags
timeout 470 python3 benchmarks/bench_gpu.py --device "${DEVICE:-cuda}" \
    --parts "${PARTS:-shift,eager,profile,compiled,train,accelerate}" --budget "${BUDGET:-330}" \
    --steps "${STEPS:-15}" --out "$OUTDIR" ${BENCH_ARGS:-} 2>&1 | tee -a "$OUTDIR/gpu_log.txt"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 124 ] && echo "gpu_check: stopped at 470 s; gpu.json/gpu.md hold every part finished before" \
    | tee -a "$OUTDIR/gpu_log.txt"
exit "$rc"
