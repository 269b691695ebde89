"""The parts of ``benchmarks/bench_gpu.py`` (its command line), each readable alone:

    settings      the sizes of a full and a --small run, the variants and their models, the CPU-bound rule
    timing        the harness: a fixed batch, synchronised step times, peak memory, torch.profiler's view of a step
    shift_cases   the shift op against clone at every stage shape, and the memory-traffic floor derived from them
    step_cases    every variant's training step, eager and compiled, ratios to TSN, the default CUDA shift path
    training      the repository's training loop and ``accelerate launch`` over a small synthetic dataset
    real_clips    loader and training rates over the real Kinetics clips (part ``data``)
    report        the record, written as ``<stem>.json`` and ``<stem>.md`` after every part

Import the modules themselves (``from gpu_bench.timing import measure``); this package exports nothing of its own.
"""
__all__: list[str] = []
