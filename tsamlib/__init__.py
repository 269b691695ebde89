"""tsamlib: TSAM (Temporal Shift with Audio Modality), the library behind the notebooks.

    from tsamlib import create_tsam, ShiftSpec, temporal_shift, RunConfig, train, load_run, evaluate

The layers, each a folder with its public API in ``__init__``; imports point down only::

    cli/ (and __main__)     python -m tsamlib: the notebook runner, the notebooks' kernel
    report/                 Table 1 / Table 2 grids, tables, figures
    evaluation/, training/  scoring and interpreting runs, predicting videos; the Learner, a run, several processes
    model/, data/           the shift and TSAM; manifests, decoding, audio frames, loaders, synthetic data
    runs/                   run folders, checkpoints, atomic files, provenance
    config.py               RunConfig: every setting of a run

Names are imported on first use, so ``import tsamlib`` and ``python -m tsamlib`` stay quick.
"""
import warnings

from ._lazy import lazy_exports

# fastai decorates a few helpers with torch.jit.script, which torch 2.14 deprecates with a FutureWarning at import
# time; that is fastai's to change, not our users'. Only this message, only from torch.jit's own module.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning,
                        module=r"torch\.jit\._script")

__version__ = "0.1.0"
__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    ".config": ["RunConfig"],
    ".model.tsam": ["create_tsam", "create_tsam_from", "TSAM"],
    ".model.formats": ["inspect_checkpoint"],
    ".model.shift": ["temporal_shift", "TemporalShift"],
    ".model.shift_reference": ["ShiftSpec"],
    ".data.loaders": ["video_dataloaders"],
    ".data.manifest": ["read_manifest", "check_manifest"],
    ".training.learner": ["tsam_learner"],
    ".training.run": ["train", "setup_training"],
    ".runs.folder": ["load_run"],
    ".evaluation.views": ["evaluate=evaluate_run", "interpretation"],
    ".evaluation.predict": ["predict"],
    ".evaluation.export": ["export_onnx", "export_onnx_stream"],
    ".evaluation.quantize": ["export_int8"],
    ".evaluation.onnx_stream": ["OnnxStream"],
    ".model.online": ["StreamingTSAM"],
    ".evaluation.stream": ["stream_video"],
})
__all__ = ["__version__", *__all__]
