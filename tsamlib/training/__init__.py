"""The training layer: a fastai Learner over TSAM, one run from its settings, on one or several processes
(imports ``model``, ``data``, ``runs``, ``config``).

    learner       ``tsam_learner``, the recipes, the callbacks, ``fit_run`` / ``finish_run``
    run           ``train(cfg)``: the one training loop (checks, run folder, data, Learner, fit, final weights)
    distributed   data-parallel training with the recipe kept (``batch_size`` is the global batch)
"""
from .._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    ".learner": ["tsam_learner", "fit_run", "finish_run", "seed_everything", "plot_learning_curve", "EpochSeed",
                 "StepDecay", "EpochsFromOne", "ProgressLine", "RunLogger", "top1", "top5"],
    ".run": ["train", "setup_training", "Training", "begin_run", "check_resume"],
    ".distributed": ["data_parallel", "launch_record", "per_process_batch", "GlobalBatchDL"],
})
