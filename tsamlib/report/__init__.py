"""The report layer: the report's Table 1 and Table 2 as experiment grids, their tables and figures, and
the explanatory figures of notebook 02 (imports every layer below).

    experiments   the rows of both tables, the paper and mini grids, running a grid through notebook 03
    tables        tables and figures from finished runs
    viz           shift pattern, shift on features, sampled frames, log-mel channels (notebook 02)
    plots         training curves, per-class accuracy, a prediction, both protocols, a stream (notebooks 04, 06, 07)
"""
from .._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    ".experiments": ["TABLE1_ROWS", "TABLE2_ROWS", "CAUSAL_ROWS", "paper_grid", "mini_grid", "grid", "grid_frame",
                     "grid_summary", "run_grid", "run_summary", "grid_tensorboard"],
    ".tables": ["collect_runs", "render_table", "write_tables", "write_figures", "evaluate_shapes"],
    ".viz": ["plot_shift_pattern", "plot_shift_on_features", "plot_sampled_frames", "plot_log_mels"],
    ".plots": ["plot_training_curves", "plot_per_class_accuracy", "plot_prediction", "plot_protocols", "plot_stream"],
})
