"""The training layer: a fastai Learner over TSAM, one run from its settings, on one or several processes
(imports ``model``, ``data``, ``runs``, ``config``).

    learner       ``tsam_learner``: the Learner factory, the recipes, the metrics
    callbacks     the run's callbacks (seeds per epoch, step decay, bf16, the epoch line, the metrics record)
    fit           ``fit_run`` / ``finish_run``: the epochs into a run folder, the final validation and weights
    tracking      ``log``: each epoch's metrics.json row to TensorBoard, W&B (offline) or MLflow (a local store)
    run           ``train(cfg)``: the one training loop (checks, run folder, data, Learner, fit, final weights)
    distributed   data-parallel training with the recipe kept (``batch_size`` is the global batch)
"""
from .._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    ".learner": ["tsam_learner", "resolve_precision", "top1", "top5"],
    ".callbacks": ["EpochSeed", "StepDecay", "EpochsFromOne", "ProgressLine", "RunLogger", "BF16Autocast"],
    ".fit": ["fit_run", "finish_run", "plot_learning_curve"],
    ".tracking": ["Tracking", "TrackEpochs", "write_tensorboard"],
    ".run": ["train", "setup_training", "Training", "begin_run", "check_resume"],
    ".distributed": ["data_parallel", "launch_record", "per_process_batch", "GlobalBatchDL"],
})
